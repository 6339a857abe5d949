"""How sure a test score is: bootstrap confidence intervals over test examples, and the paired
bootstrap for the difference between two models on the same examples. Pure numpy, seeded.

A bootstrap resample draws n of the n test examples with replacement (Efron & Tibshirani 1993,
An Introduction to the Bootstrap); the 95% interval is the 2.5th to 97.5th percentile of the score
over the resamples (the percentile interval). Two models are compared on the same resamples, so
that the examples both find hard cancel out (Koehn 2004, Statistical Significance Tests for Machine
Translation Evaluation; Berg-Kirkpatrick et al. 2012): the difference is significant at 5% when its
interval excludes 0.

Vectorised: the index matrix (resamples x n) is drawn once and turned into counts (how often each
example is drawn in each resample); every score is then a sum over examples weighted by those
counts, so the per-class counts of macro-F1 for all resamples are three matrix products, not
sklearn in a Python loop.
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple

import numpy as np

# metric(counts, y_true, y_pred, num_labels): a score per row of counts (resamples x n).
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


class Difference(NamedTuple):
    difference: float  # metric(b) - metric(a) on the test examples as they are
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@cache  # every row of a results table is scored on the same resamples of its test set: drawn once
def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """counts[r, i]: how often example i is drawn in resample r (each row sums to n); read-only."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1 (got {resamples})")
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    offsets = np.arange(resamples)[:, None] * n  # row r's indices into a flat range of its own
    counts = np.bincount((indices + offsets).ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)
    counts.flags.writeable = False  # shared by every caller of the cache
    return counts


def accuracy(counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    return counts @ (y_true == y_pred) / counts.sum(axis=1)


def macro_f1(counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """F1 per class from its counts, 2 tp / (support + predicted), then the mean over *every* label: a
    label absent from a resample and never predicted scores 0, as with sklearn's f1_score(labels=all,
    average="macro", zero_division=0) in metrics.classification_metrics."""
    true_onehot, pred_onehot = np.eye(num_labels)[y_true], np.eye(num_labels)[y_pred]
    per_example = np.hstack([true_onehot * (y_true == y_pred)[:, None], true_onehot + pred_onehot])
    true_positives, support_plus_predicted = np.hsplit(counts @ per_example, 2)  # one product for both
    f1 = np.divide(2 * true_positives, support_plus_predicted, out=np.zeros_like(true_positives),
                   where=support_plus_predicted > 0)  # fmt: skip
    return f1.mean(axis=1)


def score(metric: Metric, y_true, y_pred, num_labels: int | None = None) -> float:
    """The metric on the examples as they are (every count 1)."""
    y_true, (y_pred,) = as_arrays(y_true, [y_pred])
    return float(metric(np.ones((1, len(y_true))), y_true, y_pred, num_labels or labels_in(y_true, y_pred))[0])


def bootstrap_ci(
    y_true, y_pred_per_seed: Sequence, metric: Metric, resamples: int = 1000, seed: int = 0,
    level: float = 0.95, num_labels: int | None = None,
) -> tuple[float, float]:  # fmt: skip
    """The percentile interval of the metric over test examples. With several seeds' predictions, each
    resample scores every seed on the same examples and averages them: the interval is that of the
    mean over seeds, and its width comes from the test sample (the spread across seeds is the std)."""
    y_true, predictions = as_arrays(y_true, y_pred_per_seed)
    num_labels = num_labels or labels_in(y_true, *predictions)
    scores = seed_mean(metric, resample_counts(len(y_true), resamples, seed), y_true, predictions, num_labels)
    return percentile_interval(scores, level)


def paired_bootstrap(
    y_true, pred_a, pred_b, metric: Metric, resamples: int = 1000, seed: int = 0, level: float = 0.95,
    num_labels: int | None = None,
) -> Difference:  # fmt: skip
    """metric(b) - metric(a), and its percentile interval over resamples of the test examples, both
    models scored on the same resample (paired). pred_a and pred_b are one model's predictions each,
    or a list of its seeds' predictions (averaged on each resample, as in bootstrap_ci)."""
    y_true, a = as_arrays(y_true, np.atleast_2d(pred_a))
    _, b = as_arrays(y_true, np.atleast_2d(pred_b))
    num_labels = num_labels or labels_in(y_true, *a, *b)
    counts = np.vstack([np.ones((1, len(y_true))), resample_counts(len(y_true), resamples, seed)])  # row 0: as is
    differences = seed_mean(metric, counts, y_true, b, num_labels) - seed_mean(metric, counts, y_true, a, num_labels)
    return Difference(float(differences[0]), *percentile_interval(differences[1:], level))


def seed_mean(metric: Metric, counts: np.ndarray, y_true, predictions: list[np.ndarray], num_labels: int) -> np.ndarray:
    """Per row of counts, the metric of each seed's predictions averaged over the seeds."""
    return np.mean([metric(counts, y_true, y_pred, num_labels) for y_pred in predictions], axis=0)


def percentile_interval(scores: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def as_arrays(y_true, y_pred_per_seed) -> tuple[np.ndarray, list[np.ndarray]]:
    """Integer label ids, every prediction as long as the gold labels."""
    y_true = np.asarray(y_true, dtype=int)
    predictions = [np.asarray(p, dtype=int) for p in y_pred_per_seed]
    if not predictions:
        raise ValueError("no predictions")
    for p in predictions:
        if p.shape != y_true.shape:
            raise ValueError(f"predictions for {len(p)} examples, gold labels for {len(y_true)}")
    return y_true, predictions


def labels_in(*arrays: np.ndarray) -> int:
    """Without a label count given: as many labels as the largest id seen needs."""
    return int(max(a.max() for a in arrays)) + 1
