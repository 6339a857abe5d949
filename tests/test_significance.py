"""The bootstrap of significance.py: deterministic, right where the answer is known, and equal to sklearn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from livedoor_classification import significance
from livedoor_classification.significance import accuracy, bootstrap_ci, macro_f1, paired_bootstrap, score

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


def sklearn_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The rule of metrics.classification_metrics: macro-F1 over the labels in the gold labels or the predictions."""
    occurring = np.union1d(y_true, y_pred)
    return f1_score(y_true, y_pred, labels=occurring, average="macro", zero_division=0)


def test_macro_f1_equals_sklearn_over_the_labels_that_occur():
    """Label 4 never occurs in the gold labels and label 3 is never predicted: both count as 0, as in
    metrics.classification_metrics, not as missing. Label 5 is neither: it is not in the average."""
    rng = np.random.default_rng(1)
    for n in (1, 7, 736):
        y_true, y_pred = rng.integers(0, 4, n), rng.choice([0, 1, 2, 4], n)
        expected = sklearn_macro_f1(y_true, y_pred)
        assert score(macro_f1, y_true, y_pred, num_labels=6) == pytest.approx(expected, abs=1e-12)
        assert score(accuracy, y_true, y_pred) == pytest.approx((y_true == y_pred).mean(), abs=1e-12)


def test_a_perfect_classifier_scores_1_whatever_labels_the_test_set_lacks():
    y = np.array([0, 1, 0, 1])
    assert score(macro_f1, y, y, num_labels=3) == 1.0
    assert bootstrap_ci(y, [y], macro_f1, num_labels=3) == (1.0, 1.0)


def test_the_bootstrap_equals_sklearn_on_the_same_resamples():
    """Rare labels: many resamples lack some. Each resample scored by sklearn (the draws as documented: one
    seeded generator, a row of n indices per resample) gives the same interval."""
    rng = np.random.default_rng(2)
    y_true = rng.choice(5, 60, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    a, b = wrong(y_true % K, np.arange(10)), wrong(y_true % K, np.arange(5, 25))
    draws = np.random.default_rng(3).integers(0, 60, size=(200, 60))
    for pred in (a, b):
        assert bootstrap_ci(y_true, [pred], macro_f1, resamples=200, seed=3, num_labels=5) == pytest.approx(
            np.percentile([sklearn_macro_f1(y_true[d], pred[d]) for d in draws], [2.5, 97.5]), abs=1e-12
        )
    differences = [sklearn_macro_f1(y_true[d], b[d]) - sklearn_macro_f1(y_true[d], a[d]) for d in draws]
    paired = paired_bootstrap(y_true, a, b, macro_f1, resamples=200, seed=3, num_labels=5)
    assert paired.difference == pytest.approx(sklearn_macro_f1(y_true, b) - sklearn_macro_f1(y_true, a), abs=1e-12)
    assert (paired.low, paired.high) == pytest.approx(np.percentile(differences, [2.5, 97.5]), abs=1e-12)


def test_resamples_in_blocks_give_the_numbers_of_one_block(gold, monkeypatch):
    """The draws continue from block to block, so the block size (here 1 resample, 3, or all) changes nothing."""
    a, b = wrong(gold, np.arange(300)), wrong(gold, np.arange(200, 600))
    results = []
    for block in (1, 3 * N, 1000 * N):
        monkeypatch.setattr(significance, "BLOCK", block)
        results.append([bootstrap_ci(gold, [a, b], metric) for metric in (accuracy, macro_f1)])
        results[-1].append(paired_bootstrap(gold, a, b, macro_f1))
    assert results[0] == results[1] == results[2]


def test_inputs_of_different_lengths_are_a_one_line_error(gold):
    with pytest.raises(ValueError, match="^predictions for 1999 examples, gold labels for 2000$"):
        bootstrap_ci(gold, [gold[1:]], accuracy)
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        paired_bootstrap(gold, gold, gold, accuracy, resamples=0)


# Multi-label: 0/1 matrices, a row per text and a column per label.


def multi_label_data(texts: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gold labels with rare ones (label 3 on about 3% of texts, label 4 on none), and two models' predictions
    that also give label 4 now and then: many resamples lack a label, or have one only among the predictions."""
    rng = np.random.default_rng(4)
    gold = rng.random((texts, 5)) < [0.4, 0.3, 0.2, 0.03, 0.0]
    a = gold ^ (rng.random(gold.shape) < [0.05, 0.05, 0.1, 0.1, 0.02])
    b = gold ^ (rng.random(gold.shape) < [0.1, 0.1, 0.1, 0.2, 0.04])
    return gold, a, b


def sklearn_multi_label_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """metrics.multi_label_metrics' rule: the labels in the gold labels or the predictions, each counted."""
    occurring = np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))
    return f1_score(y_true, y_pred, labels=occurring, average="macro", zero_division=0)


SKLEARN_MULTI_LABEL = {
    significance.multi_label_macro_f1: sklearn_multi_label_macro_f1,
    significance.micro_f1: lambda y, p: f1_score(y, p, average="micro", zero_division=0),
    significance.subset_accuracy: accuracy_score,
}


def test_multi_label_scores_equal_sklearn_and_the_metrics_files():
    from livedoor_classification.metrics import multi_label_metrics

    gold, a, _ = multi_label_data()
    reported = multi_label_metrics(gold, a, list("abcde"))
    expected = {significance.multi_label_macro_f1: "f1", significance.micro_f1: "micro_f1"}
    expected[significance.subset_accuracy] = "subset_accuracy"
    for metric, oracle in SKLEARN_MULTI_LABEL.items():
        assert score(metric, gold, a) == pytest.approx(oracle(gold, a), abs=1e-12)
        assert score(metric, gold, a) == pytest.approx(reported[expected[metric]], abs=1e-12)


def test_the_multi_label_bootstrap_equals_sklearn_on_the_same_resamples():
    """Resampling texts (rows): each resample scored by sklearn, the absent-label rule applied per resample."""
    gold, a, b = multi_label_data()
    draws = np.random.default_rng(3).integers(0, len(gold), size=(100, len(gold)))
    assert any(not gold[d][:, 3].any() for d in draws)  # resamples that lack a label of the test set
    for metric, oracle in SKLEARN_MULTI_LABEL.items():
        for pred in (a, b):
            assert bootstrap_ci(gold, [pred], metric, resamples=100, seed=3) == pytest.approx(
                np.percentile([oracle(gold[d], pred[d]) for d in draws], [2.5, 97.5]), abs=1e-12
            )
    oracle = sklearn_multi_label_macro_f1
    differences = [oracle(gold[d], b[d]) - (oracle(gold[d], a[d]) + oracle(gold[d], b[d])) / 2 for d in draws]
    paired = paired_bootstrap(gold, [a, b], b, significance.multi_label_macro_f1, resamples=100, seed=3)
    assert paired.difference == pytest.approx(oracle(gold, b) - (oracle(gold, a) + oracle(gold, b)) / 2, abs=1e-12)
    assert (paired.low, paired.high) == pytest.approx(np.percentile(differences, [2.5, 97.5]), abs=1e-12)


def test_multi_label_resamples_in_blocks_give_the_numbers_of_one_block(monkeypatch):
    gold, a, b = multi_label_data(300)
    results = []
    for block in (1, 3 * 300, 1000 * 300):
        monkeypatch.setattr(significance, "BLOCK", block)
        results.append([bootstrap_ci(gold, [a, b], metric, resamples=50) for metric in SKLEARN_MULTI_LABEL])
        results[-1].append(paired_bootstrap(gold, a, b, significance.micro_f1, resamples=50))
    assert results[0] == results[1] == results[2]


def test_a_resample_without_any_label_has_no_macro_f1_and_is_left_out():
    """Texts 1-3 have no label and none predicted: a resample of those alone has nothing to score macro-F1 on
    (NaN, as sklearn), while its micro-F1 is 0 (zero_division=0); the interval is that of the other resamples."""
    gold = np.array([[1, 0], [0, 0], [0, 0], [0, 0]])
    assert np.isnan(score(significance.multi_label_macro_f1, gold[1:], gold[1:]))
    assert bootstrap_ci(gold, [gold], significance.multi_label_macro_f1) == (1.0, 1.0)
    assert bootstrap_ci(gold, [gold], significance.micro_f1)[0] == 0.0
