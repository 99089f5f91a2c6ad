"""`python -m sonar_ray.data.shards pack SRC_DIR DST_DIR [--clips-per-shard 1000]`"""

from __future__ import annotations

import argparse

from sonar_ray.data.shards import __doc__ as DOC
from sonar_ray.data.shards import pack


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="write the audio files of a folder into tar shards")
    p.add_argument("src", help="folder or URI of audio files")
    p.add_argument("dst", help="folder or URI to write shard-NNNNNN.tar (+ .idx.json) into")
    p.add_argument("--clips-per-shard", type=int, default=1000, help="clips per shard (default: 1000)")
    args = parser.parse_args(argv)
    written = pack(args.src, args.dst, args.clips_per_shard)
    print(f"wrote {len(written)} shards under {args.dst}")
    return written


if __name__ == "__main__":
    main()
