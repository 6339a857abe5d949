"""Calibration: ECE and MCE against the paper's formula written out here, temperature scaling against an
independent fit, and the bootstrap interval of ECE."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from livedoor_classification import calibration, significance


def ece_by_the_formula(confidence, correct, bins=15) -> tuple[float, float]:
    """Guo et al. 2017, eq. (3) and (5): ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)|, MCE = max_m of the gap,
    bins of width 1/M, [k/M, (k+1)/M) with 1 in the last (torchmetrics' boundaries), one bin at a time."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    ece, mce = 0.0, 0.0
    for m in range(bins):
        low, high = m / bins, (m + 1) / bins
        inside = (confidence >= low) & ((confidence < high) if m < bins - 1 else (confidence <= high))
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            ece += inside.sum() / len(confidence) * gap
            mce = max(mce, gap)
    return ece, mce


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def calibrated_logits(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated as they are (T = 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(logits)])
    return logits, labels


def test_ece_and_mce_are_the_papers_formula():
    rng = np.random.default_rng(0)
    probabilities = softmax(rng.normal(scale=3, size=(500, 5)))
    labels = rng.integers(0, 5, size=500)
    predicted = probabilities.argmax(axis=1)
    reported = calibration.report(probabilities, predicted, labels)
    expected = ece_by_the_formula(probabilities.max(axis=1), predicted == labels)
    assert (reported["ece"], reported["mce"]) == pytest.approx(expected, abs=1e-12)
    bins = reported["reliability"]
    assert sum(bins["count"]) == 500 and len(bins["count"]) == 15


def test_multi_label_ece_is_each_labels_then_their_mean():
    rng = np.random.default_rng(1)
    probabilities = rng.uniform(size=(300, 4))
    labels = (rng.uniform(size=(300, 4)) < probabilities**2).astype(int)  # over-confident in the middle
    probabilities[0, 0], probabilities[1, 1] = 0.0, 1.0  # the ends of [0, 1] fall in the first and last bins
    reported = calibration.report(probabilities, None, labels, ["a", "b", "c", "d"])
    per_label = [ece_by_the_formula(probabilities[:, i], labels[:, i]) for i in range(4)]
    for name, (ece, mce) in zip("abcd", per_label, strict=True):
        assert (reported["per_label"][name]["ece"], reported["per_label"][name]["mce"]) == pytest.approx((ece, mce))
    assert reported["ece"] == pytest.approx(np.mean([ece for ece, _ in per_label]))


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_fitted_temperature_is_an_independent_fits(multi_label):
    logits, labels = calibrated_logits(2000, 4, seed=2)
    if multi_label:
        labels = (np.random.default_rng(3).uniform(size=logits.shape) < 1 / (1 + np.exp(-logits))).astype(int)
    logits = logits * 3

    def nll(t):  # written out: log-sum-exp, and the binary cross-entropy
        z = logits / t
        if multi_label:
            return np.mean(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - labels * z)
        top = z.max(axis=1)
        return np.mean(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - z[np.arange(len(z)), labels])

    independent = minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-8}).x
    assert calibration.fit_temperature(logits, labels, multi_label) == pytest.approx(independent, abs=1e-3)
    assert calibration.nll(logits / independent, labels, multi_label) == pytest.approx(nll(independent))


def test_an_over_confident_model_gets_t_about_5_and_a_lower_ece_with_its_predictions_kept():
    logits, labels = calibrated_logits(20_000, 5, seed=4)
    over_confident = logits * 5
    temperature = calibration.fit_temperature(over_confident, labels, multi_label=False)
    assert temperature == pytest.approx(5, rel=0.05)
    before, after = softmax(over_confident), softmax(over_confident / temperature)
    assert np.array_equal(before.argmax(axis=1), after.argmax(axis=1))  # scaling never changes a prediction
    predicted = before.argmax(axis=1)
    ece_before = calibration.report(before, predicted, labels)["ece"]
    ece_after = calibration.report(after, predicted, labels)["ece"]
    assert ece_after < ece_before / 3 and ece_after < 0.02


def test_the_ece_interval_holds_the_ece_and_narrows_with_more_texts():
    def interval(n):
        logits, labels = calibrated_logits(n, 3, seed=5)
        probabilities = softmax(logits * 2)
        confidence, outcome = calibration.confidence_and_outcome(probabilities, probabilities.argmax(1), labels)
        ece = calibration.errors(confidence, outcome)[0].mean()
        low, high = significance.bootstrap_ece([confidence], [outcome], resamples=300, seed=0)
        assert low <= ece <= high
        return high - low

    assert interval(2000) < interval(200)


def test_the_ece_interval_of_several_seeds_is_that_of_their_mean_on_the_same_resamples():
    rng = np.random.default_rng(6)
    confidence = [rng.uniform(size=(100, 1)) for _ in range(2)]
    outcome = [(rng.uniform(size=(100, 1)) < 0.5).astype(float) for _ in range(2)]
    draws = np.random.default_rng(1).integers(0, 100, size=(200, 100))  # significance.resample_blocks' draws
    seeds = list(zip(confidence, outcome, strict=True))
    means = [np.mean([ece_by_the_formula(c[d, 0], o[d, 0])[0] for c, o in seeds]) for d in draws]
    expected = np.percentile(means, [2.5, 97.5])
    assert significance.bootstrap_ece(confidence, outcome, resamples=200, seed=1) == pytest.approx(tuple(expected))
