"""How sure a test score is: bootstrap confidence intervals over test examples, and the paired
bootstrap for the difference between two models on the same examples. Pure numpy, seeded.

A bootstrap resample draws n of the n test examples with replacement (Efron & Tibshirani 1993,
An Introduction to the Bootstrap); the 95% interval is the 2.5th to 97.5th percentile of the score
over the resamples (the percentile interval). Two models are compared on the same resamples, so
that the examples both find hard cancel out (Koehn 2004, Statistical Significance Tests for Machine
Translation Evaluation; Berg-Kirkpatrick et al. 2012): the difference is significant at 5% when its
interval excludes 0.

Vectorised, in blocks of resamples: a block's draws (rows x n example indices) come from one seeded
generator, and a metric scores every row of a block at once. Memory stays at a few block-sized arrays
(BLOCK draws each) whatever the number of resamples, examples or classes: macro-F1's per-class counts
are bincounts of the drawn classes, never a one-hot matrix of examples x classes. The blocks together
draw exactly what one draw of every resample at once would (numpy's generators continue their stream
from call to call), so the numbers do not depend on BLOCK.

Multi-label (gold labels and predictions as 0/1 matrices, a row per text and a column per label):
resampling draws texts, never single text-label decisions, as the texts are what was sampled. A
block's per-label counts are a matrix product: how often each text is drawn (rows x n, one bincount)
times the texts' true positives, or gold plus predicted labels (n x labels, sparse: most texts have
few labels). A block costs its counts matrix, never a drawn copy of the texts' labels.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from scipy import sparse

from livedoor_classification import calibration

# metric(draws, y_true, y_pred, num_labels): a score per row of draws (rows x n indices of the examples
# drawn; a row of arange(n) scores the examples as they are).
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]
# Indices drawn per block of resamples (32 MB as int64): large enough for numpy to run at full speed,
# small enough that the few arrays of a block's size fit any machine. A block has at least one resample.
BLOCK = 1 << 22


class Difference(NamedTuple):
    difference: float  # metric(b) - metric(a) on the test examples as they are
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def resample_blocks(n: int, resamples: int, seed: int, num_labels: int = 1) -> Iterator[np.ndarray]:
    """The resamples' draws, a block of rows at a time: row r holds the n indices resample r draws.
    Drawn afresh on each call (the same for the same seed): storing them all would take resamples x n.
    A block's rows x num_labels counts (macro-F1's) stay within BLOCK too."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1 (got {resamples})")
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK // max(n, num_labels))
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def accuracy(draws: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    return (y_true == y_pred)[draws].mean(axis=1)


def macro_f1(draws: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """F1 per class from its counts, 2 tp / (support + predicted), averaged over the labels that occur
    in the row's gold labels or predictions: a label with neither has no F1, as in
    metrics.classification_metrics (a label predicted but absent scores 0). Row r's classes are offset
    by r x num_labels, so that one bincount counts every row's classes at once."""
    rows = len(draws)
    offsets = (np.arange(rows) * num_labels)[:, None]
    true, predicted = y_true[draws] + offsets, y_pred[draws] + offsets
    size = rows * num_labels
    true_positives = np.bincount(true[true == predicted], minlength=size).reshape(rows, num_labels)
    support_plus_predicted = (
        np.bincount(true.ravel(), minlength=size) + np.bincount(predicted.ravel(), minlength=size)
    ).reshape(rows, num_labels)
    occurs = support_plus_predicted > 0
    f1 = np.divide(2 * true_positives, support_plus_predicted, out=np.zeros(occurs.shape), where=occurs)
    return f1.sum(axis=1) / occurs.sum(axis=1)


def label_counts(draws: np.ndarray, y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label: per row of draws and per label, the true positives and the gold plus predicted
    positives (rows x labels each). drawn[r, i]: how often row r draws text i; in as_arrays' dtype
    every sum stays exact (float32 below 2**24 texts)."""
    rows, n = draws.shape
    offsets = (np.arange(rows) * n)[:, None]
    drawn = np.bincount((draws + offsets).ravel(), minlength=rows * n).reshape(rows, n).astype(y_true.dtype)
    # Whole numbers, exact in either dtype; float64 so that the scores computed from them are float64's.
    return (drawn @ y_true.multiply(y_pred)).astype(np.float64), (drawn @ (y_true + y_pred)).astype(np.float64)


def subset_accuracy(draws: np.ndarray, y_true, y_pred, num_labels: int) -> np.ndarray:
    """Multi-label: the share of texts with every label right."""
    exact = abs(y_true - y_pred).sum(axis=1) == 0
    return exact[draws].mean(axis=1)


def micro_f1(draws: np.ndarray, y_true, y_pred, num_labels: int) -> np.ndarray:
    """Multi-label: F1 over every text-label decision pooled, 2 tp / (gold + predicted positives); 0
    where a resample has neither, as scikit-learn's f1_score(average="micro", zero_division=0)."""
    true_positives, gold_plus_predicted = (counts.sum(axis=1) for counts in label_counts(draws, y_true, y_pred))
    return np.divide(
        2 * true_positives,
        gold_plus_predicted,
        out=np.zeros(len(draws)),
        where=gold_plus_predicted > 0,
    )


def multi_label_macro_f1(draws: np.ndarray, y_true, y_pred, num_labels: int) -> np.ndarray:
    """Multi-label: each label's F1 averaged over the labels that occur in the resample's gold labels or
    predictions, the rule of metrics.multi_label_metrics. A resample where no label occurs at all (every
    drawn text without labels, none predicted) has no macro-F1: NaN, as in scikit-learn, and
    percentile_interval leaves it out."""
    true_positives, gold_plus_predicted = label_counts(draws, y_true, y_pred)
    occurs = gold_plus_predicted > 0
    f1 = np.divide(2 * true_positives, gold_plus_predicted, out=np.zeros(occurs.shape), where=occurs)
    labels = occurs.sum(axis=1)
    return np.divide(f1.sum(axis=1), labels, out=np.full(len(draws), np.nan), where=labels > 0)


def score(metric: Metric, y_true, y_pred, num_labels: int | None = None) -> float:
    """The metric on the examples as they are (each drawn once)."""
    y_true, (y_pred,) = as_arrays(y_true, [y_pred])
    as_is = np.arange(y_true.shape[0])[None, :]
    return float(metric(as_is, y_true, y_pred, num_labels or labels_in(y_true, y_pred))[0])


def bootstrap_ci(
    y_true,
    y_pred_per_seed: Sequence,
    metric: Metric,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    num_labels: int | None = None,
) -> tuple[float, float]:
    """The percentile interval of the metric over test examples. With several seeds' predictions, each
    resample scores every seed on the same examples and averages them: the interval is that of the
    mean over seeds, and its width comes from the test sample (the spread across seeds is the std)."""
    y_true, predictions = as_arrays(y_true, y_pred_per_seed)
    num_labels = num_labels or labels_in(y_true, *predictions)
    blocks = resample_blocks(y_true.shape[0], resamples, seed, num_labels)
    scores = np.concatenate([seed_mean(metric, draws, y_true, predictions, num_labels) for draws in blocks])
    return percentile_interval(scores, level)


def paired_bootstrap(
    y_true,
    pred_a,
    pred_b,
    metric: Metric,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    num_labels: int | None = None,
) -> Difference:
    """metric(b) - metric(a), and its percentile interval over resamples of the test examples, both
    models scored on the same resample (paired). pred_a and pred_b are one model's predictions each,
    or a list of its seeds' predictions (averaged on each resample, as in bootstrap_ci)."""
    pred_a, pred_b = per_seed(pred_a, y_true), per_seed(pred_b, y_true)
    y_true, predictions = as_arrays(y_true, [*pred_a, *pred_b])
    a, b = predictions[: len(pred_a)], predictions[len(pred_a) :]
    num_labels = num_labels or labels_in(y_true, *a, *b)

    def difference(draws: np.ndarray) -> np.ndarray:
        return seed_mean(metric, draws, y_true, b, num_labels) - seed_mean(metric, draws, y_true, a, num_labels)

    as_is = difference(np.arange(y_true.shape[0])[None, :])[0]
    differences = np.concatenate(
        [difference(draws) for draws in resample_blocks(y_true.shape[0], resamples, seed, num_labels)]
    )
    return Difference(float(as_is), *percentile_interval(differences, level))


def bootstrap_ece(
    confidence_per_seed: Sequence[np.ndarray],
    outcome_per_seed: Sequence[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile interval of the expected calibration error (calibration.errors; multi-label: averaged
    over labels) over resamples of the texts, every seed's on the same resample and averaged, as bootstrap_ci
    does. Each seed's confidences and outcomes are a row per text and a column per label (calibration's
    confidence_and_outcome). A resample is scored by how often it draws each text, so the bins are counted
    once per resample, never from a drawn copy of the texts."""
    texts, labels = confidence_per_seed[0].shape
    scores = []
    for draws in resample_blocks(texts, resamples, seed, labels * calibration.BINS):
        rows = len(draws)
        counts = np.bincount((draws + (np.arange(rows) * texts)[:, None]).ravel(), minlength=rows * texts)
        counts = counts.reshape(rows, texts).astype(np.float64)
        seeds = zip(confidence_per_seed, outcome_per_seed, strict=True)
        scores.append(np.mean([calibration.errors(c, o, counts)[0].mean(axis=1) for c, o in seeds], axis=0))
    return percentile_interval(np.concatenate(scores), level)


def per_seed(predictions, y_true) -> np.ndarray:
    """One model's predictions as a list of seeds: one seed's (shaped as the gold labels) becomes a list of one."""
    predictions = np.asarray(predictions)
    return predictions[None] if predictions.ndim == np.ndim(y_true) else predictions


def seed_mean(metric: Metric, draws: np.ndarray, y_true, predictions: list[np.ndarray], num_labels: int) -> np.ndarray:
    """Per row of draws, the metric of each seed's predictions averaged over the seeds."""
    return np.mean([metric(draws, y_true, y_pred, num_labels) for y_pred in predictions], axis=0)


def percentile_interval(scores: np.ndarray, level: float) -> tuple[float, float]:
    """Over the resamples that have a score (multi_label_macro_f1 may have none for some)."""
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def as_arrays(y_true, y_pred_per_seed) -> tuple:
    """Integer label ids; or, multi-label, the 0/1 matrices as sparse float matrices for label_counts'
    products, float32 while their sums (at most the number of texts) are exact in it. Every prediction
    shaped as the gold labels."""
    multi_label, texts = np.ndim(y_true) == 2, len(y_true)

    def converted(y):
        if multi_label:
            return sparse.csr_array(np.asarray(y) != 0, dtype=np.float32 if texts < 2**24 else np.float64)
        return np.asarray(y, dtype=int)

    y_true = converted(y_true)
    predictions = [converted(p) for p in y_pred_per_seed]
    if not predictions:
        raise ValueError("no predictions")
    for p in predictions:
        if p.shape != y_true.shape:
            raise ValueError(f"predictions for {p.shape[0]} examples, gold labels for {y_true.shape[0]}")
    return y_true, predictions


def labels_in(*arrays: np.ndarray) -> int:
    """Without a label count given: as many labels as the largest id seen needs (multi-label: the columns)."""
    if arrays[0].ndim == 2:
        return arrays[0].shape[1]
    return int(max(a.max() for a in arrays)) + 1
