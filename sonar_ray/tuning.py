"""One Ray Tune trial of the knob sweep (`tuning/sweep.py` is the job: config, search, outputs).

A trial is the sweep's base adaptation with the sampled knobs, run by the library pipeline
(`sonar_ray.train.adapt.adapt`) and paused at each rung with `--stop-after`, so rung r+1 continues
rung r's run. It lives in the package so Tune's actors import it like any other library code.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

from sonar_ray import storage
from sonar_ray.config import from_dict, save
from sonar_ray.train.adapt import SUMMARY, adapt
from sonar_ray.train.config import TrainConfig

# What a trial reports to Tune at each rung (besides rung and steps).
REPORTED = ("adaptability", "forgetting", "objective", "adaptability_base", "adaptability_gain",
            "forgetting_relative", "prior_base", "prior_adapted",
            # paired 95 % intervals over the scored clips (one seed: the trial's)
            "adaptability_gain_lo", "adaptability_gain_hi", "forgetting_lo", "forgetting_hi")


def rung_steps(max_steps: int, rungs: int) -> list[int]:
    """Where a trial pauses to be evaluated: max_steps * r / rungs for r = 1..rungs."""
    steps = [max_steps * r // rungs for r in range(1, rungs + 1)]
    if steps[0] < 1:
        raise ValueError(f"--max-steps {max_steps} is too few for {rungs} rungs")
    return steps


def adapt_and_evaluate(cfg: TrainConfig) -> dict:
    """`adapt(cfg)` with evaluation; its float metrics. When `cfg.output` already holds the evaluated
    summary of step `cfg.end_step` (a restored trial), that rung is not redone."""
    uri = storage.join(cfg.output, SUMMARY)
    done = json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None
    if done and done["steps"] == cfg.end_step and done["metrics"]:
        metrics = done["metrics"]
    else:
        result = adapt(replace(cfg, evaluate=True))
        # What the trial ran, as a jobs/adapt.py --config FILE that retrains it whole.
        save(replace(result.config, resume=False, stop_after=None), storage.join(cfg.output, "config.json"))
        metrics = result.metrics
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def run_trial(params: dict, setup: dict) -> None:
    """Tune function trainable: the base run with `params`, paused and reported at each rung."""
    from ray import tune
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = bool(os.environ.get("SONAR_PROGRESS"))  # as init_ray does
    base = from_dict(TrainConfig, setup["base"])
    trial_dir = storage.join(setup["trials"], tune.get_context().get_trial_id())
    for rung, steps in enumerate(rung_steps(base.max_steps, setup["rungs"]), start=1):
        cfg = replace(base, **params, stop_after=steps, output=trial_dir, resume=True)
        m = adapt_and_evaluate(cfg)
        m["objective"] = m["adaptability"] - setup["alpha"] * m["forgetting"]
        tune.report({"rung": rung, "steps": steps, **{k: m[k] for k in REPORTED}})
