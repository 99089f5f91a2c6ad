"""benchmarks/replicate.py --smoke end to end on the tiny corpus and the tiny base model: DCPT, SONAR and
one ablation (3 steps each), a two-stage stream whose first stage is the single-domain run, probes on
every task, then the results page, its plots and the JSON. A second call trains nothing (resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import replicate
from benchmarks.replication.report import GENERATED

pytestmark = pytest.mark.slow


def test_smoke_pipeline_writes_page_plots_json_and_resumes(tiny_corpus, tiny_base, tmp_path):
    work, page = tmp_path / "work", tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text("# Results\n\nHand-written notes.\n\n" + "\n".join(GENERATED) + "\n\nMore notes.\n")
    args = ["--smoke", "--corpus", tiny_corpus, "--base", tiny_base, "--work", str(work), "--page", str(page),
            "--methods", "dcpt", "sonar", "sonar_no_model_distill"]
    results = replicate.main(args)

    # single-domain table: every method, its scores, forgetting per prior task and compute
    table = results["single_domain"]["speech"]
    assert list(table) == ["dcpt", "sonar", "sonar_no_model_distill"]
    for row in table.values():
        assert row["seeds"] == [0]
        assert set(row["forgetting_per_task"]) == {"prior/event", "prior/pattern"}
        assert 0.0 <= row["adaptability"][0] <= 1.0 and row["compute"]["samples_seen"][0] == 3 * 4 * 2
    # no DCPT-on-prior, replay-only or scratch run: C3b, C4 and C5 are not decided
    assert [c["claim"].split()[0] for c in results["checks"]["speech"]] == ["C1", "C2", "C3a"]
    assert all(c["verdict"] in ("holds", "fails", "undecided") or c["verdict"].startswith("not testable")
               for c in results["checks"]["speech"])
    intervals = results["intervals"]["speech"]["sonar"]
    assert intervals["gain"][1] <= intervals["gain"][0] <= intervals["gain"][2]
    assert 0 <= intervals["cka_distance_new"] <= 1 and intervals["weight_change"] > 0
    drift = results["runs"]["sonar/speech-s0"]["drift"]
    assert len(drift["cka_speech"]) == len(drift["cka_prior"]) > 0
    # stream: stage 0 is the single-domain run, R is stages x stream tasks
    assert set(results["sequential"]) == {"sonar-s0", "dcpt-s0"}
    for stream in results["sequential"].values():
        assert stream["tasks"] == ["speech/word", "music/instrument"]
        assert len(stream["R"]) == 2 and len(stream["R"][0]) == 2 and len(stream["forgetting_per_stage"]) == 1
    assert set(results["sequential_by_method"]) == {"sonar", "dcpt"}
    for method, agg in results["sequential_by_method"].items():  # one seed: the mean is that seed's stream
        assert agg["seeds"] == [0] and agg["R_mean"] == results["sequential"][f"{method}-s0"]["R"]
        R = agg["intervals"]["R"]  # paired intervals: one seed, so only the test clips are resampled
        assert all(lo <= est <= hi for row in R for est, lo, hi in row)
        assert np.allclose([[est for est, _, _ in row] for row in R], agg["R_mean"])
    runs = sorted(p.parent.relative_to(work / "runs").as_posix() for p in (work / "runs").rglob("run.json"))
    assert runs == ["dcpt/speech-s0", "seq-dcpt-s0/1-music", "seq-sonar-s0/1-music", "sonar/speech-s0",
                    "sonar_no_model_distill/speech-s0"]
    assert results["missing"] == []

    # outputs: JSON, page (hand-written text kept around the generated block), plots it links
    saved = json.loads((work / "results-test.json").read_text())
    assert len(saved["per_task"]) == (2 + 5) * 6  # (base, random init, 5 runs) x 6 probe tasks
    text = page.read_text()
    assert text.startswith("# Results\n\nHand-written notes.") and text.rstrip().endswith("More notes.")
    assert "git revision" in text and "--smoke" in text and "### Sequential stream: speech → music" in text
    pngs = {"tradeoff-speech.png", "compute-speech.png", "sequential-R.png"}
    assert {p.name for p in (page.parent / "results").glob("*.png")} == pngs
    assert all(f"results/{name}" in text for name in pngs)

    # resumable: a second call trains and evaluates nothing and reports the same numbers
    stamps = {p: p.stat().st_mtime for p in work.rglob("run.json")}
    again = replicate.main([*args, "--no-train"])
    assert {p: p.stat().st_mtime for p in work.rglob("run.json")} == stamps
    assert json.dumps(again["single_domain"], sort_keys=True) == json.dumps(results["single_domain"], sort_keys=True)
