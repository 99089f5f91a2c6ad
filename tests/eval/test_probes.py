"""The probe protocol on synthetic embeddings whose separability is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sonar_ray.eval.probes import (ProbeConfig, ProbeData, average_precision, encode_labels, fit_probe,
                                   macro_f1, mean_average_precision)


def gaussian_task(n_per_class: int, sep: float, dim: int = 16, seed: int = 0, classes: int = 2) -> ProbeData:
    """Class means +-sep/2 along axis 0 (2 classes), unit-variance noise, plus nuisance dims with big scale.

    Two classes: Bayes accuracy = Phi(sep / 2). The nuisance dims are scaled x100 so that a probe
    without standardization would be badly conditioned.
    """
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = rng.normal(size=(len(y), dim))
        x[:, 0] += (y - (classes - 1) / 2) * sep
        x[:, 1:] *= 100.0
        return x, y

    (xtr, ytr), (xva, yva), (xte, yte) = split(n_per_class), split(n_per_class), split(4 * n_per_class)
    return ProbeData(xtr, ytr, xva, yva, xte, yte, classes=[str(c) for c in range(classes)])


def bayes_accuracy(sep: float) -> float:
    return 0.5 * (1 + math.erf(sep / 2 / math.sqrt(2)))


@pytest.mark.parametrize("sep", [1.0, 2.0, 4.0])
def test_probe_reaches_the_bayes_accuracy(sep):
    data = gaussian_task(n_per_class=200, sep=sep)
    result = fit_probe(data)
    expected = bayes_accuracy(sep)  # 0.69, 0.84, 0.98
    # 1600 test clips: binomial standard error <= 0.0125; allow ~3 SE plus a little estimation loss.
    assert expected - 0.05 <= result.accuracy <= expected + 0.04
    assert result.score == result.accuracy
    assert abs(result.macro_f1 - result.accuracy) < 0.05  # balanced classes, symmetric errors
    assert (result.n_train, result.n_valid, result.n_test) == (400, 400, 1600)


def test_per_clip_outcomes_are_the_test_predictions_in_split_order():
    data = gaussian_task(n_per_class=60, sep=1.5, seed=2)
    result = fit_probe(data)
    assert len(result.test_correct) == len(data.y_test) and set(result.test_correct) <= {0, 1}
    assert np.isclose(np.mean(result.test_correct), result.accuracy)
    assert fit_probe(data, ProbeConfig(repeats=2)).test_correct is None  # resampled fits: no single outcome


def test_inseparable_classes_stay_at_chance():
    result = fit_probe(gaussian_task(n_per_class=200, sep=0.0))
    assert 0.44 <= result.accuracy <= 0.56


def test_multiclass_and_perfect_separation():
    result = fit_probe(gaussian_task(n_per_class=50, sep=12.0, classes=4))
    assert result.accuracy == 1.0 and result.macro_f1 == 1.0


def test_deterministic_for_a_seed_and_spread_over_repeats():
    data = gaussian_task(n_per_class=40, sep=1.5, seed=3)
    once = fit_probe(data)
    # The exact-train fit does not depend on anything random (assert_equal: NaN mAP equals NaN).
    np.testing.assert_equal(fit_probe(data).to_dict(), once.to_dict())
    cfg = ProbeConfig(repeats=3, seed=7)
    a, b = fit_probe(data, cfg), fit_probe(data, cfg)
    np.testing.assert_equal(a.to_dict(), b.to_dict())
    assert a.repeats == 3 and a.score_std > 0  # bootstrap resamples differ
    assert fit_probe(data, ProbeConfig(repeats=3, seed=8)).score_std != a.score_std


def test_regularization_is_chosen_on_valid_not_test():
    data = gaussian_task(n_per_class=30, sep=2.0, dim=64)
    chosen = fit_probe(data).l2
    # Replacing the test split changes the score but never the choice.
    other = gaussian_task(n_per_class=30, sep=0.0, dim=64, seed=9)
    swapped = ProbeData(data.x_train, data.y_train, data.x_valid, data.y_valid,
                        other.x_test, other.y_test, data.classes)
    assert fit_probe(swapped).l2 == chosen
    assert chosen in ProbeConfig().l2_grid


def test_multilabel_task_reports_map():
    rng = np.random.default_rng(0)

    def split(n):
        y = (rng.random((n, 3)) < 0.4).astype(np.int64)
        x = np.concatenate([3.0 * y + rng.normal(size=(n, 3)), rng.normal(size=(n, 5))], axis=1)
        return x, y

    (xtr, ytr), (xva, yva), (xte, yte) = split(150), split(150), split(300)
    result = fit_probe(ProbeData(xtr, ytr, xva, yva, xte, yte, classes=["a", "b", "c"]))
    assert math.isnan(result.accuracy)
    assert result.score == result.mAP and result.mAP > 0.9
    assert 0.8 < result.macro_f1 <= 1.0


def test_metric_definitions_on_hand_computed_cases():
    y = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    # F1: class 0 = 2*1/(2+2)=0.5, class 1 = 2*2/(3+2)=0.8, class 2 = 0 -> mean 0.4333
    assert macro_f1(y, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # AP of ranking [+, -, +]: precision at the hits 1 and 2/3 -> (1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7])) == pytest.approx(5 / 6)
    # all tied: one threshold, precision = base rate
    assert average_precision(np.array([1, 0, 0, 1]), np.zeros(4)) == pytest.approx(0.5)
    # classes without positives are left out of the mean
    yt = np.array([[1, 0], [0, 0]])
    assert mean_average_precision(yt, np.array([[0.2, 0.1], [0.1, 0.9]])) == 1.0


def test_encode_labels():
    y, classes = encode_labels(["dog", "cat", "dog"])
    assert classes == ["cat", "dog"] and y.tolist() == [1, 0, 1]
    y, classes = encode_labels([["a", "b"], "c", []])
    assert classes == ["a", "b", "c"] and y.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
