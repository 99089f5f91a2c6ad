"""The replication page from known outcomes: the stream's R[i, j] with paired intervals, and the sweep
section (trials chosen on valid, the tuned arm confirmed on test) next to the interval table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from benchmarks.replication import report
from benchmarks.replication.protocol import ReplicateConfig

TASKS = (("speech", "word"), ("music", "instrument"), ("prior", "event"))


def _sweep_folder(folder) -> str:
    folder.mkdir()
    nan = float("nan")
    trials = pd.DataFrame({
        "trial": ["a1", "b2", "c3"], "status": ["complete", "complete", "stopped"], "eval_split": "valid",
        "replay_ratio": [0.2, 0.6, 0.4], "lambda_tok": [1.0, 0.5, 0.1], "lambda_model": [1.0, 1.5, 0.2],
        "adaptability": [0.65, 0.5, 0.4], "adaptability_gain": [0.2, 0.05, -0.05],
        "adaptability_gain_lo": [0.05, -0.05, nan], "adaptability_gain_hi": [0.25, 0.15, nan],
        "forgetting": [0.1, 0.0, 0.2], "forgetting_lo": [0.02, -0.08, nan], "forgetting_hi": [0.18, 0.08, nan]})
    trials["objective"] = trials["adaptability"] - trials["forgetting"]
    trials.to_csv(folder / "trials.csv", index=False)
    trials.iloc[:2].to_csv(folder / "pareto.csv", index=False)
    (folder / "pareto.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "recommended.json").write_text(json.dumps({"replay_ratio": 0.2, "lambda_tok": 1.0, "lambda_model": 1.0,
                                                         "max_steps": 999}))
    return str(folder / "recommended.json")


def test_page_has_stream_intervals_and_the_sweep_with_its_confirmation(tmp_path):
    cfg = ReplicateConfig(work=str(tmp_path), page=str(tmp_path / "page.md"), domains=["speech"], methods=["sonar"],
                          seeds=[0, 1], sequence=["speech", "music"], sequence_methods=["sonar"], sequence_seeds=[0, 1],
                          bootstrap_draws=200, tuned=_sweep_folder(tmp_path / "sweep"))
    rng = np.random.default_rng(0)
    models = ["base", "random_init", *(f"{m}/speech-s{s}" for m in ("sonar", "sonar_tuned") for s in (0, 1)),
              *(f"seq-sonar-s{s}/1-music" for s in (0, 1))]
    rows, runs = [], {}
    for m in models:
        for domain, task in TASKS:
            correct = (rng.random(100) < 0.5).astype(int)
            rows.append({"model": m, "domain": domain, "task": task, "score": correct.mean(),
                         "test_correct": correct.tolist()})
        runs[m] = {"id": m, "seed": int(m[-1]) if m[-1].isdigit() else 0, "samples_seen": 10, "worker_seconds": 1.0,
                   "job_seconds": 1.0}
    results = report.report(cfg, runs, pd.DataFrame(rows), "test", [])

    stream = results["sequential_by_method"]["sonar"]
    R = stream["intervals"]["R"]
    assert np.allclose([[est for est, _, _ in row] for row in R], stream["R_mean"])  # single-label: mean accuracy
    assert all(lo <= est <= hi for row in R for est, lo, hi in row)
    sw = results["sweep"]
    assert sw["split"] == "valid" and sw["trials"] == 3 and sw["recommended"] == "a1"
    assert sw["knobs"] == {"replay_ratio": 0.2, "lambda_tok": 1.0, "lambda_model": 1.0}  # max_steps is not a knob
    assert set(results["intervals"]["speech"]) == {"sonar", "sonar_tuned"}
    assert sw["vs_sonar"]["speech"]["seeds"] == [0, 1]
    page = (tmp_path / "page.md").read_text()
    assert "### Sweep" in page and "**valid** split, never on test" in page and "sonar_tuned − sonar" in page
    assert "Backward transfer of sonar" in page
    assert (tmp_path / "page" / "sweep-pareto.png").exists()
