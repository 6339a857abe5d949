"""Whether a run's probabilities mean what they say: calibration errors, and temperature scaling.

A model is calibrated when, of the texts it gives probability 0.8, 80% are right. Fine-tuned transformers
tend to be over-confident (Guo et al. 2017, "On Calibration of Modern Neural Networks"; Desai and Durrett
2020), which matters to anyone who thresholds a probability ("send the uncertain ones to a human").

Expected calibration error (ECE; Naeini et al. 2015, Guo et al. 2017): the confidences are put in BINS
equal-width bins of [0, 1], and ECE = sum over bins B of |B|/n * |accuracy(B) - mean confidence(B)|; the
maximum calibration error (MCE) is the largest gap of a non-empty bin. Single-label: a text's confidence
is the probability of its predicted label, right when that is the gold label. Multi-label: each label's
probability on each text, right when the text has the label (torchmetrics' binary calibration error), per
label and averaged over labels. 15 bins, as Guo et al. and torchmetrics' CalibrationError (norm="l1" is
ECE, "max" MCE); a bin is [k/15, (k+1)/15), the last one closed at 1, as torchmetrics' bucketize puts them.

Temperature scaling (Guo et al. 2017): softmax(logits / T) (multi-label: a sigmoid each), with one T > 0
fitted on the validation split's logits by minimising their mean negative log-likelihood (NLL). Dividing
every logit by one positive number keeps their order, so the most probable label never changes (and a
sigmoid's 0.5 stays at logit 0); T > 1 softens over-confident probabilities, T < 1 sharpens timid ones.
"""

import numpy as np
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, log_softmax

BINS = 15
EDGES = np.linspace(0.0, 1.0, BINS + 1)
# The range of T searched: a model whose val NLL keeps falling as T shrinks (every val text right and far
# apart) stops at the bound instead of making every probability exactly 0 or 1.
TEMPERATURES = (0.01, 100.0)


def nll(logits, labels, multi_label: bool) -> float:
    """The mean negative log-likelihood of the labels under softmax(logits) (multi-label: each label's binary
    cross-entropy under its sigmoid, averaged over labels and texts), in float64 from the logits: no
    probability rounds to 0 on the way."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if multi_label:
        return float(-np.mean(labels * log_expit(logits) + (1 - labels) * log_expit(-logits)))
    return float(-log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels, multi_label: bool) -> float:
    """The T of least NLL of softmax(logits / T) (multi-label: sigmoids). The NLL is convex in 1/T, so it has
    one minimum in log T, which a bounded scalar search finds; log T makes halving and doubling T alike."""
    logits = np.asarray(logits, dtype=np.float64)

    def loss(log_t: float) -> float:
        return nll(logits / np.exp(log_t), labels, multi_label)

    found = minimize_scalar(loss, bounds=np.log(TEMPERATURES), method="bounded", options={"xatol": 1e-7})
    return float(np.exp(found.x))


def confidence_and_outcome(probabilities, predicted, labels) -> tuple[np.ndarray, np.ndarray]:
    """What is binned, a column per label (single-label: one column): the predicted label's probability and
    whether it is the gold label; multi-label (labels a 0/1 matrix), every label's probability and whether
    the text has it. `predicted` is the label ids predicted (single-label; ignored for multi-label)."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if labels.ndim == 2:
        return probabilities, labels.astype(np.float64)
    predicted = np.asarray(predicted, dtype=int)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    return confidence[:, None], (predicted == labels).astype(np.float64)[:, None]


def binned(confidence: np.ndarray, outcome: np.ndarray, counts: np.ndarray | None = None) -> tuple:
    """Per row of counts (how often each text is drawn: a bootstrap resample; None: each text once), per label
    and bin (rows x labels x BINS): the texts, their confidences summed and their outcomes summed. One sparse
    product for every row: each text-label pair falls in one (label, bin) cell."""
    texts, labels = confidence.shape
    counts = np.ones((1, texts)) if counts is None else counts
    bins = np.clip(np.searchsorted(EDGES, confidence, side="right") - 1, 0, BINS - 1)
    cells = (np.arange(labels) * BINS + bins).ravel()
    rows = np.repeat(np.arange(texts), labels)

    def summed(values: np.ndarray) -> np.ndarray:
        matrix = sparse.csr_array((values.ravel(), (rows, cells)), shape=(texts, labels * BINS))
        return (counts @ matrix).reshape(len(counts), labels, BINS)

    return summed(np.ones(confidence.size)), summed(confidence), summed(outcome)


def errors(confidence: np.ndarray, outcome: np.ndarray, counts: np.ndarray | None = None) -> tuple:
    """ECE and MCE, per row of counts and per label (rows x labels each)."""
    size, confidence_sum, outcome_sum = binned(confidence, outcome, counts)
    gap = np.abs(outcome_sum - confidence_sum)  # |B| x |accuracy(B) - confidence(B)|
    ece = gap.sum(axis=2) / size.sum(axis=2)
    mce = np.divide(gap, size, out=np.zeros_like(gap), where=size > 0).max(axis=2)
    return ece, mce


def report(probabilities, predicted, labels, names=None) -> dict:
    """ECE and MCE (multi-label: averaged over labels, and per label by name), and the reliability diagram's
    bins (reliability). `probabilities` are those a prediction file shows, so that the ECE recomputed from
    the file is this one."""
    confidence, outcome = confidence_and_outcome(probabilities, predicted, labels)
    ece, mce = (values[0] for values in errors(confidence, outcome))
    result = {"ece": float(ece.mean()), "mce": float(mce.mean()), "reliability": reliability(confidence, outcome)}
    if np.ndim(labels) == 2:
        per_label = zip(names, ece, mce, strict=True)
        result["per_label"] = {name: {"ece": float(e), "mce": float(m)} for name, e, m in per_label}
    return result


def reliability(confidence: np.ndarray, outcome: np.ndarray) -> dict:
    """A reliability diagram's bins, every label's column pooled: texts, mean confidence and accuracy per bin
    (None where empty). A calibrated model's points lie on the diagonal."""
    size, confidence_sum, outcome_sum = (v[0, 0] for v in binned(confidence.reshape(-1, 1), outcome.reshape(-1, 1)))
    bins = zip(size, confidence_sum, outcome_sum, strict=True)
    means = [(None, None) if n == 0 else (float(c / n), float(o / n)) for n, c, o in bins]
    return {
        "bins": BINS,
        "count": size.astype(int).tolist(),
        "confidence": [c for c, _ in means],
        "accuracy": [a for _, a in means],
    }
