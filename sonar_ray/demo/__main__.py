"""`python -m sonar_ray.demo --scale tiny|demo|large --out DIR_OR_URI`"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sonar_ray.config import parse_cli
from sonar_ray.demo.corpus import SCALES, generate_corpus


@dataclass
class DemoConfig:
    """Generate the seeded demo corpus (audio files + manifests) into a folder or bucket prefix."""

    out: str = field(default="demo_data", metadata={"help": "output folder or URI (s3://bucket/prefix)"})
    scale: str = field(default="demo", metadata={"help": "corpus size", "choices": tuple(SCALES)})
    seed: int = field(default=0, metadata={"help": "seeds every file"})
    workers: int = field(default=0, metadata={"help": "generator processes (0: the scale's default)"})


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_cli(DemoConfig, argv)
    summary = generate_corpus(cfg.out, cfg.scale, cfg.seed, cfg.workers or None)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
