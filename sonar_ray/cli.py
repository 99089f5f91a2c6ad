"""`sonar-ray adapt|pretrain|evaluate|watch|sweep [FLAGS]`: the job scripts as one console command.

`sonar-ray adapt --domain speech` runs exactly `python jobs/adapt.py --domain speech`: it imports the
job module and calls its `main`. The scripts stay the source of truth (and what `ray job submit --
python jobs/...` runs); they live in the source checkout, which an editable install (`make setup`,
`pip install -e .`) keeps in place.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from sonar_ray.config import run_job

CHECKOUT = Path(__file__).resolve().parents[1]
JOBS = {
    "adapt": "jobs/adapt.py",
    "pretrain": "jobs/pretrain.py",
    "evaluate": "jobs/evaluate.py",
    "watch": "jobs/watch.py",
    "sweep": "tuning/sweep.py",
}
USAGE = "usage: sonar-ray {" + ",".join(JOBS) + "} [FLAGS]   (sonar-ray JOB --help for a job's flags)"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in JOBS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    script = CHECKOUT / JOBS[argv[0]]
    if not script.exists():
        raise SystemExit(f"{script} not found: sonar-ray runs the jobs of its source checkout; "
                         "install it with `pip install -e .` from that checkout")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    job = importlib.import_module(module_name(JOBS[argv[0]]))
    run_job(lambda: job.main(argv[1:]), argv[0])


def module_name(script: str) -> str:
    """"jobs/adapt.py" -> "jobs.adapt": the job file as a module of the checkout."""
    return script.removesuffix(".py").replace("/", ".")
