"""tuning/sweep.py: argument handling, the Pareto front, and a tiny real sweep (Ray Tune + nested Ray Train)
whose trials (sonar_ray.tuning) run the library pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fixtures_train import tiny_adapt_args
from sonar_ray.config import parse_cli
from sonar_ray.train.config import TrainConfig
from sonar_ray.train.driver import completed_steps

from sonar_ray import tuning
from tuning import sweep

REPO = Path(__file__).resolve().parents[2]


def test_flags_before_the_separator_configure_the_search_after_it_the_run():
    cfg, adapt = sweep.parse_args(["--num-samples", "3", "--alpha", "0.5", "--", "--domain", "music", "--max-steps", "6"])
    assert (cfg.num_samples, cfg.alpha, cfg.rungs) == (3, 0.5, 2)
    assert parse_cli(TrainConfig, adapt).domain == "music"
    smoke, adapt = sweep.parse_args(["--smoke", "--num-samples", "2"])
    assert smoke.smoke and smoke.num_samples == 2  # explicit flags win over the smoke defaults
    assert parse_cli(TrainConfig, adapt).max_steps == 8
    with pytest.raises(SystemExit):
        sweep.parse_args(["--max-steps", "6"])  # an adapt flag on the sweep's side of `--`
    with pytest.raises(ValueError):
        sweep.parse_args(["--replay-ratio", "0.8", "0.2"])


def test_rungs_split_the_step_budget():
    assert tuning.rung_steps(8, 2) == [4, 8]
    assert tuning.rung_steps(10, 3) == [3, 6, 10]
    assert tuning.rung_steps(5, 1) == [5]
    with pytest.raises(ValueError):
        tuning.rung_steps(2, 3)


def test_tune_ships_the_trial_by_reference_to_the_library():
    """Tune's actors import the trial from the package (no by-value pickling of tuning/sweep.py), and the
    trial runs the library pipeline rather than a copy of it."""
    from ray import cloudpickle

    from sonar_ray.train import adapt

    assert sweep.run_trial is tuning.run_trial and tuning.adapt is adapt.adapt
    shipped = cloudpickle.dumps(tuning.run_trial)
    assert b"sonar_ray.tuning" in shipped and len(shipped) < 200  # a reference: module + name, no code
    assert cloudpickle.loads(shipped) is tuning.run_trial


def test_pareto_front_keeps_exactly_the_non_dominated_trials():
    df = pd.DataFrame({"trial": list("abcdef"),
                       "adaptability": [0.9, 0.8, 0.7, 0.85, 0.6, 0.9],
                       "forgetting":   [0.3, 0.1, 0.0, 0.2, 0.0, 0.35]})
    # e (0.6, 0.0) loses to c; f loses to a on forgetting at equal adaptability.
    assert list(sweep.pareto_front(df)["trial"]) == ["c", "b", "d", "a"]


def test_trials_are_chosen_on_valid_clips_and_the_recommendation_reports_test(tmp_path):
    """Without a flag the sweep scores the valid split; the written outputs carry each trial's interval,
    and recommended.json (a jobs/adapt.py config) is back on the test split."""
    cfg, adapt = sweep.parse_args(["--output", str(tmp_path), "--", "--domain", "music", "--max-steps", "6",
                                   "--eval-split", "test"])
    base = sweep.base_config(cfg, adapt)
    assert cfg.eval_split == "valid" and base.eval_split == "valid"  # the sweep's split wins over the adapt flag
    table = pd.DataFrame({"trial": ["a", "b", "c"], "status": ["complete", "complete", "stopped"],
                          "replay_ratio": [0.2, 0.6, 0.4], "lambda_tok": [1.0, 0.5, 0.1], "lambda_model": [1.0, 1.5, 0.2],
                          "adaptability": [0.65, 0.5, 0.4], "adaptability_base": [0.45] * 3,
                          "adaptability_gain": [0.2, 0.05, -0.05], "adaptability_gain_lo": [0.05, -0.05, float("nan")],
                          "adaptability_gain_hi": [0.25, 0.15, float("nan")], "forgetting": [0.1, 0.0, 0.2],
                          "forgetting_lo": [0.02, -0.08, float("nan")], "forgetting_hi": [0.18, 0.08, float("nan")]})
    table["objective"] = table["adaptability"] - table["forgetting"]
    out = sweep.write_outputs(cfg, base, table.assign(eval_split=cfg.eval_split))
    assert out["recommended_trial"] == "a"  # objective 0.55 vs 0.5
    assert set(pd.read_csv(tmp_path / "trials.csv")["eval_split"]) == {"valid"}
    front = pd.read_csv(tmp_path / "pareto.csv")
    assert {"adaptability_gain_lo", "forgetting_hi"} <= set(front.columns)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert parse_cli(TrainConfig, ["--config", str(tmp_path / "recommended.json")]).eval_split == "test"


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_resume(tiny_corpus, tiny_base, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--output", str(out), "--num-samples", "2", "--rungs", "2", "--alpha", "1.0",
            "--", *tiny_adapt_args(tiny_corpus, tiny_base, str(tmp_path / "unused"))]  # 4 steps: rungs at 2 and 4
    result = sweep.main(argv)

    table = pd.read_csv(out / "trials.csv", dtype={"trial": str})
    assert len(table) == 2 and set(table["status"]) <= {"complete", "stopped"}
    done = table[table["status"] == "complete"]
    assert len(done) >= 1  # the first trial to reach a rung always goes on
    assert (done["steps"] == 4).all() and (table.loc[table["status"] == "stopped", "steps"] == 2).all()
    for row in table.itertuples():
        assert row.objective == pytest.approx(row.adaptability - row.forgetting)
        trial = out / "trials" / row.trial  # one run per trial, paused at each rung
        assert completed_steps(str(trial)) == row.steps
        steps = [json.loads(l)["step"] for l in (trial / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, row.steps + 1))  # rung 2 continued rung 1: no step trained twice
        trial_cfg = parse_cli(TrainConfig, ["--config", str(trial / "config.json")])
        assert trial_cfg.max_steps == 4 and trial_cfg.stop_after is None
        summary = json.loads((trial / "summary.json").read_text())  # written by the library's adapt(cfg)
        assert summary["steps"] == row.steps and summary["metrics"]["adaptability"] == pytest.approx(row.adaptability)
        assert trial_cfg.eval_split == "valid" and summary["metrics"]["split"] == "valid"  # never chosen on test
        assert row.forgetting_lo <= row.forgetting <= row.forgetting_hi
        assert row.adaptability_gain_lo <= row.adaptability_gain <= row.adaptability_gain_hi
    assert (out / "trials.md").read_text().startswith("| trial | status |")

    front = pd.read_csv(out / "pareto.csv", dtype={"trial": str})
    assert set(front["trial"]) <= set(done["trial"]) and len(front) >= 1
    for p in front.itertuples():  # no completed trial beats a front member on both axes
        assert not ((done["adaptability"] >= p.adaptability) & (done["forgetting"] <= p.forgetting)
                    & ((done["adaptability"] > p.adaptability) | (done["forgetting"] < p.forgetting))).any()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = done.sort_values(["objective", "forgetting", "trial"], ascending=[False, True, True]).iloc[0]
    assert result["recommended_trial"] == best["trial"]
    recommended = parse_cli(TrainConfig, ["--config", str(out / "recommended.json")])
    assert (recommended.replay_ratio, recommended.lambda_tok, recommended.lambda_model) == pytest.approx(
        (best["replay_ratio"], best["lambda_tok"], best["lambda_model"]))
    assert recommended.max_steps == 4 and recommended.base == tiny_base and recommended.output is None
    assert recommended.eval_split == "test"

    # Same output again: refused without --resume; with it, Tuner.restore finds the finished sweep (no new fits).
    first = json.loads((out / "recommended.json").read_text())
    with pytest.raises(FileExistsError):
        sweep.main(argv)
    again = sweep.main([*argv[:argv.index("--")], "--resume", *argv[argv.index("--"):]])
    assert again["recommended_trial"] == result["recommended_trial"]
    assert json.loads((out / "recommended.json").read_text()) == first


@pytest.mark.slow
def test_sweep_runs_through_ray_job_submit(ray_head, tiny_corpus, tiny_base, tmp_path):
    out = tmp_path / "submitted"
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [ray_bin, "job", "submit", "--address", ray_head["dashboard_url"], "--",
           sys.executable, str(REPO / "tuning" / "sweep.py"), "--output", str(out), "--num-samples", "1", "--rungs", "1",
           "--", *tiny_adapt_args(tiny_corpus, tiny_base, str(tmp_path / "unused"), "--max-steps", "2")]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout.lower()
    table = pd.read_csv(out / "trials.csv", dtype={"trial": str})
    assert list(table["status"]) == ["complete"] and list(table["steps"]) == [2]
    assert parse_cli(TrainConfig, ["--config", str(out / "recommended.json")]).max_steps == 2
