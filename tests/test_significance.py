"""The bootstrap of significance.py: deterministic, right where the answer is known, and equal to sklearn."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from significance import accuracy, bootstrap_ci, macro_f1, paired_bootstrap, score

N, K = 2000, 4


def wrong(y: np.ndarray, where: np.ndarray) -> np.ndarray:
    """y with the examples at where given the next class: errors spread over every class."""
    out = y.copy()
    out[where] = (y[where] + 1) % K
    return out


@pytest.fixture
def gold() -> np.ndarray:
    return np.random.default_rng(0).integers(0, K, N)


def test_the_interval_is_deterministic_for_a_seed(gold):
    pred = wrong(gold, np.arange(300))
    first = bootstrap_ci(gold, [pred], macro_f1, seed=7)
    assert first == bootstrap_ci(gold, [pred], macro_f1, seed=7)
    assert first != bootstrap_ci(gold, [pred], macro_f1, seed=8)
    low, high = first
    assert low < score(macro_f1, gold, pred) < high and high - low < 0.1


def test_several_seeds_are_scored_on_the_same_resample_and_averaged(gold):
    a, b = wrong(gold, np.arange(100)), wrong(gold, np.arange(500))
    low, high = bootstrap_ci(gold, [a, b], accuracy)
    assert low < (0.95 + 0.75) / 2 < high
    one = bootstrap_ci(gold, [a], accuracy)
    assert bootstrap_ci(gold, [a, a], accuracy) == pytest.approx(one)  # a seed twice is that seed


def test_the_paired_interval_covers_a_known_difference_and_excludes_0(gold):
    a = wrong(gold, np.arange(200))  # 90% accurate
    b = wrong(gold, np.arange(400))  # the same errors and 200 more: 10 points worse
    result = paired_bootstrap(gold, a, b, accuracy, resamples=2000)
    assert result.difference == pytest.approx(-0.10)
    assert result.low < -0.10 < result.high and result.excludes_zero
    f1 = paired_bootstrap(gold, a, b, macro_f1)
    assert f1.difference == pytest.approx(score(macro_f1, gold, b) - score(macro_f1, gold, a))
    assert f1.low < f1.difference < f1.high < 0 and f1.excludes_zero


def test_models_of_equal_quality_are_not_told_apart(gold):
    a = wrong(gold, np.arange(0, 200))  # as many errors, on other examples
    b = wrong(gold, np.arange(200, 400))
    for metric in (accuracy, macro_f1):
        result = paired_bootstrap(gold, a, b, metric)
        assert result.low < 0 < result.high and not result.excludes_zero
    same = paired_bootstrap(gold, a, a, macro_f1)
    assert (same.difference, same.low, same.high) == (0, 0, 0) and not same.excludes_zero


def test_macro_f1_equals_sklearn_over_every_label():
    """Label 4 never occurs in the gold labels and label 3 is never predicted: both count as 0, as in
    metrics.classification_metrics, not as missing."""
    rng = np.random.default_rng(1)
    for n in (1, 7, 736):
        y_true, y_pred = rng.integers(0, 4, n), rng.choice([0, 1, 2, 4], n)
        expected = f1_score(y_true, y_pred, labels=range(5), average="macro", zero_division=0)
        assert score(macro_f1, y_true, y_pred, num_labels=5) == pytest.approx(expected, abs=1e-12)
        assert score(accuracy, y_true, y_pred) == pytest.approx((y_true == y_pred).mean(), abs=1e-12)


def test_inputs_of_different_lengths_are_a_one_line_error(gold):
    with pytest.raises(ValueError, match="^predictions for 1999 examples, gold labels for 2000$"):
        bootstrap_ci(gold, [gold[1:]], accuracy)
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        paired_bootstrap(gold, gold, gold, accuracy, resamples=0)
