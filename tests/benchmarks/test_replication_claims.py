"""The replication's decision rules on outcomes whose answer is known: each claim's statistic, its
interval and verdict (holds / fails / undecided / not testable) come out as the rule states."""

from __future__ import annotations

import numpy as np

from benchmarks.replication.claims import Outcomes, decide, intervals, stream_intervals

N = 400


def _hits(k: int) -> list[int]:
    return [1] * k + [0] * (N - k)  # nested: a model right on more clips is right on the others' clips too


def _rows(model: str, new: int, prior: int) -> list[dict]:
    return [{"model": model, "domain": "bioacoustics", "task": "species", "test_correct": _hits(new)},
            {"model": model, "domain": "prior", "task": "event", "test_correct": _hits(prior)}]


def _runs(cka: dict[str, float], seeds=(0, 1, 2)) -> dict:
    return {f"{m}/bioacoustics-s{s}": {"drift": {"cka_bioacoustics": [c - 0.01 * s, c], "cka_prior": [0.95, 0.95],
                                                 "total": 1 - c}} for m, c in cka.items() for s in seeds}


def _outcomes(sonar_prior: int = 290, dcpt_new: int = 300) -> Outcomes:
    rows = _rows("base", 200, 300)
    for s in range(3):
        rows += _rows(f"sonar/bioacoustics-s{s}", 280, sonar_prior)
        rows += _rows(f"dcpt/bioacoustics-s{s}", dcpt_new, 200)
        rows += _rows(f"dcpt_prior/bioacoustics-s{s}", 200, 280)
        rows += _rows(f"replay_only/bioacoustics-s{s}", 210, 300)
    return Outcomes(rows)


def _verdicts(out: Outcomes, runs: dict) -> dict[str, str]:
    return {c["claim"].split()[0]: c["verdict"] for c in decide(out, runs, "bioacoustics", [0, 1, 2], draws=500)}


def test_clear_effects_hold_and_their_statistics_are_the_rules():
    runs = _runs({"sonar": 0.8, "replay_only": 0.9})
    found = {c["claim"].split()[0]: c for c in decide(_outcomes(), runs, "bioacoustics", [0, 1, 2], draws=500)}
    assert {k: c["verdict"] for k, c in found.items()} == {"C1": "holds", "C2": "holds", "C3a": "holds",
                                                           "C3b": "holds", "C4": "holds"}
    assert np.isclose(found["C1"]["statistic"][0], (280 - 200) / N)                         # SONAR − base
    assert np.isclose(found["C2"]["statistic"][0], (280 - 200) / N - 2 / 3 * (300 - 200) / N)
    assert np.isclose(found["C3a"]["statistic"][0], (300 - 200) / N / 3 - (300 - 290) / N)   # F_D/3 − F_S
    assert np.isclose(found["C3b"]["statistic"][0], (280 - 200) / N / 3 - (280 - 290) / N)  # vs the control
    lo, hi = found["C1"]["statistic"][1:]
    assert lo < (280 - 200) / N < hi


def test_a_sonar_that_forgets_like_dcpt_fails_and_a_dcpt_without_gain_makes_c2_untestable():
    runs = _runs({"sonar": 0.95, "replay_only": 0.8})  # SONAR moved less than replay-only
    v = _verdicts(_outcomes(sonar_prior=200, dcpt_new=200), runs)
    assert v["C3a"] == "fails" and v["C3b"] == "fails" and v["C4"] == "fails"
    assert v["C2"].startswith("not testable")


def test_intervals_per_method_pair_each_seed_with_the_base_and_the_control():
    table = intervals(_outcomes(), _runs({"sonar": 0.8, "replay_only": 0.9}), "bioacoustics",
                      ["dcpt", "dcpt_prior", "replay_only", "sonar"], [0, 1, 2], draws=300)
    assert table["sonar"]["seeds"] == [0, 1, 2]
    assert np.isclose(table["dcpt"]["forgetting"][0], 0.25) and np.isclose(table["dcpt"]["forgetting_vs_control"][0], 0.2)
    assert "forgetting_vs_control" not in table["dcpt_prior"]  # the control against itself says nothing
    assert np.isclose(table["sonar"]["cka_distance_new"], np.mean([0.2 + 0.005 * s for s in range(3)]))


def test_stream_intervals_are_paired_accuracies_changes_and_backward_transfer():
    tasks = ["speech/word", "music/instrument"]

    def rows(model: str, word: int, instrument: int, prior: int) -> list[dict]:
        return [{"model": model, "domain": "speech", "task": "word", "test_correct": _hits(word)},
                {"model": model, "domain": "music", "task": "instrument", "test_correct": _hits(instrument)},
                {"model": model, "domain": "prior", "task": "event", "test_correct": _hits(prior)}]

    found = rows("base", 200, 100, 300)
    streams = {}
    for s in range(3):
        streams[s] = [f"sonar/speech-s{s}", f"seq-sonar-s{s}/1-music"]
        found += rows(streams[s][0], 300, 120, 290) + rows(streams[s][1], 250, 320, 280)
    iv = stream_intervals(Outcomes(found), streams, tasks, draws=500)
    assert np.isclose(iv["R"][0][0][0], 300 / N) and np.isclose(iv["R"][1][1][0], 320 / N)
    assert np.isclose(iv["change"][1][1][0], (320 - 100) / N)
    assert np.isclose(iv["prior_change"][1][0], (280 - 300) / N)
    assert np.isclose(iv["backward_transfer"][0], (250 - 300) / N)  # the speech task after the music stage
    for row in iv["R"]:
        for est, lo, hi in row:
            assert lo <= est <= hi and hi - lo < 0.15
