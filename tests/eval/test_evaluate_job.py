"""jobs/evaluate.py: end to end as a subprocess (tables, summary, plots), and its argument checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs import evaluate

REPO = Path(__file__).resolve().parents[2]


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "jobs" / "evaluate.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO)


@pytest.mark.slow
def test_evaluate_writes_tables_and_plots(probe_corpus, checkpoints, tmp_path):
    out = tmp_path / "eval"
    proc = run_job("--models", f"base={checkpoints['base']}", f"damaged={checkpoints['damaged']}",
                   "--corpus", str(probe_corpus), "--domain", "speech", "--tasks", "prior", "speech", "music",
                   "--output", str(out), "--cache-dir", str(tmp_path / "cache"), "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and set(table["model"]) == {"base", "damaged"}
    assert {"domain", "accuracy", "macro_f1", "score_std", "n_test"} <= set(table.columns)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table, check_dtype=False)
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary.loc["base", "forgetting"] == 0.0
    assert summary.loc["damaged", "forgetting"] > 0
    assert summary.loc["damaged", "other_domains_mean"] == table.query("model == 'damaged' and domain == 'music'")["score"].mean()
    for name in ("per_task.png", "tradeoff.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "| damaged | speech | rate |" in md and "forgetting" in md
    meta = json.loads((out / "summary.json").read_text())
    assert meta["config"]["repeats"] == 2 and len(meta["results"]) == 6
    assert str(out / "report.md") in proc.stdout  # says where the outputs went
    assert "fewer than 100 test clips" in proc.stdout  # small test splits are flagged as noisy


@pytest.mark.parametrize("args, message", [
    ([], "at least one model"),
    (["--models", "base"], "NAME=CHECKPOINT"),
    (["--models", "a=x.pt", "--domain", "speech"], "--base"),
])
def test_bad_arguments_fail_clearly(args, message, probe_corpus):
    with pytest.raises(ValueError, match=message):
        evaluate.main([*args, "--corpus", str(probe_corpus)])
