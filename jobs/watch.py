r"""Watch a bucket for new audio per domain and adapt each domain's current model on it.

    python jobs/watch.py --incoming s3://bucket/incoming/ --registry s3://bucket/registry/ \
        --base s3://bucket/models/prior/model.pt --prior s3://bucket/prior/manifests/train.jsonl \
        --probes s3://bucket/eval/ [--interval 300] [--once [--wait]] \
        [--min-new-clips N] [--min-new-hours H] [--ray-address http://HEAD:8265 | --inline]

Prints one JSON report per poll. See docs/scheduled_adaptation.md.
"""

from __future__ import annotations

import logging

from sonar_ray.config import parse_cli, run_job
from sonar_ray.pipelines.watch import WatchConfig, Watcher


def main(argv: list[str] | None = None) -> None:
    cfg = parse_cli(WatchConfig, argv, description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Watcher(cfg).run()


if __name__ == "__main__":
    run_job(main, "watch")
