"""Accuracy-matrix metrics and the one-step adaptability / forgetting summary."""

from __future__ import annotations

import numpy as np
import pytest

from sonar_ray.eval.metrics import (NotEvaluatedError, accuracy_matrix, adaptation_summary, average_accuracy,
                                    backward_transfer, forgetting, forgetting_per_stage, forgetting_per_task,
                                    forward_transfer)

# 3 stages, stage i learns task i. Rows: after stage 0, 1, 2.
R = np.array([
    [0.80, 0.30, 0.20],
    [0.70, 0.90, 0.25],
    [0.75, 0.60, 0.85],
])


def test_accuracy_matrix_metrics_by_hand():
    assert average_accuracy(R) == pytest.approx((0.75 + 0.60 + 0.85) / 3)
    assert average_accuracy(R, stage=1) == pytest.approx((0.70 + 0.90) / 2)
    # BWT = mean(R[2,0]-R[0,0], R[2,1]-R[1,1]) = mean(-0.05, -0.30)
    assert backward_transfer(R) == pytest.approx(-0.175)
    # Forgetting at stage 2: task 0 max(0.80, 0.70) - 0.75 = 0.05; task 1: 0.90 - 0.60 = 0.30
    assert forgetting_per_task(R).tolist() == pytest.approx([0.05, 0.30])
    assert forgetting(R) == pytest.approx(0.175)
    assert forgetting_per_stage(R) == pytest.approx([0.10, 0.175])
    # FWT vs a random-init baseline b: mean(R[0,1]-b1, R[1,2]-b2)
    assert forward_transfer(R, [0.5, 0.25, 0.2]) == pytest.approx(((0.30 - 0.25) + (0.25 - 0.2)) / 2)


def test_no_change_means_no_forgetting():
    flat = np.tile([0.6, 0.7, 0.8], (3, 1))
    assert forgetting(flat) == 0.0 and backward_transfer(flat) == 0.0


def test_refuses_when_a_prior_task_was_not_evaluated():
    partial = accuracy_matrix({(0, 0): 0.8, (1, 1): 0.9, (2, 1): 0.7, (2, 2): 0.8}, num_tasks=3)
    assert np.isnan(partial[2, 0])
    with pytest.raises(NotEvaluatedError):
        forgetting(partial)
    with pytest.raises(NotEvaluatedError):
        backward_transfer(partial)
    # Stage 1's forgetting only needs task 0 at stages 0 and 1: also missing here.
    with pytest.raises(NotEvaluatedError):
        forgetting(partial, stage=1)
    with pytest.raises(ValueError):
        forgetting(np.zeros((2, 3)))


DOMAINS = {"prior/a": "prior", "prior/b": "prior", "speech/w": "speech", "music/g": "music"}


def test_adaptation_summary():
    base = {"prior/a": 0.8, "prior/b": 0.6, "speech/w": 0.5, "music/g": 0.4}
    adapted = {"prior/a": 0.7, "prior/b": 0.5, "speech/w": 0.75, "music/g": 0.45}
    s = adaptation_summary(base, adapted, DOMAINS, domain="speech")
    assert s["adaptability"] == 0.75 and s["adaptability_base"] == 0.5
    assert s["adaptability_gain"] == pytest.approx(0.25)
    assert s["forgetting"] == pytest.approx(0.1)
    assert s["forgetting_relative"] == pytest.approx(0.1 / 0.7)
    assert s["other_domains"] == {"music": {"adapted": 0.45, "base": 0.4}}
    same = adaptation_summary(base, base, DOMAINS, domain="speech")
    assert same["forgetting"] == 0.0 and same["forgetting_relative"] == 0.0


def test_adaptation_summary_refuses_partial_prior():
    base = {"prior/a": 0.8, "prior/b": 0.6, "speech/w": 0.5, "music/g": 0.4}
    adapted = {"prior/a": 0.7, "speech/w": 0.75, "music/g": 0.45}
    with pytest.raises(NotEvaluatedError):
        adaptation_summary(base, adapted, DOMAINS, domain="speech")
    with pytest.raises(NotEvaluatedError):
        adaptation_summary(base, base, {"speech/w": "speech"}, domain="speech")


# ---- paired bootstrap -------------------------------------------------------------------------

def test_paired_bootstrap_estimate_is_the_mean_and_its_interval_covers_it_and_narrows_with_clips():
    from sonar_ray.eval.metrics import paired_bootstrap

    rng = np.random.default_rng(0)

    def draw(n):
        return [[rng.binomial(1, 0.6, n) - rng.binomial(1, 0.5, n)] for _ in range(3)]

    small, large = draw(100), draw(1600)
    est, lo, hi = paired_bootstrap(small, draws=800)
    assert np.isclose(est, np.mean([s[0].mean() for s in small])) and lo < est < hi
    _, lo2, hi2 = paired_bootstrap(large, draws=800)
    assert (hi2 - lo2) < (hi - lo) / 2.5  # 16x the clips: about a quarter of the width
    assert paired_bootstrap([[np.zeros(50)]] * 3) == (0.0, 0.0, 0.0)  # identical models: no difference, no noise


def test_paired_bootstrap_refuses_seeds_scored_on_different_clips():
    from sonar_ray.eval.metrics import paired_bootstrap

    with pytest.raises(ValueError, match="same non-empty test clips"):
        paired_bootstrap([[np.zeros(10)], [np.zeros(12)]])


def test_verdicts_follow_the_interval():
    from sonar_ray.eval.metrics import verdict

    assert verdict((0.1, 0.02, 0.2)) == "holds"
    assert verdict((-0.1, -0.2, -0.01)) == "fails"
    assert verdict((0.01, -0.02, 0.05)) == "undecided"
