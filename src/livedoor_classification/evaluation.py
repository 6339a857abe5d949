"""Evaluating a model on a whole split: every document's logits (gathered from every rank under torchrun,
a document's windows averaged), then its metrics and loss; at a run's end, with temperature-scaled
probabilities and their calibration (split_metrics, calibration.py)."""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from livedoor_classification import distributed
from livedoor_classification.inputs import to_device
from livedoor_classification.runs import as_written, write_predictions

# metrics (scikit-learn) and calibration (SciPy) are imported where metrics are made, not above: predict.py
# needs only the logits (predict), and those imports were 2-3 s of its start (measured with cProfile).


def average_windows(logits: torch.Tensor, documents: Sequence[int]) -> torch.Tensor:
    """One row of logits per document: the mean over its windows' rows (documents[i] is row i's
    document, 0..n-1). Averaging logits rather than probabilities weighs a confident window more.
    With one window per document, the rows come back unchanged, bit for bit."""
    index = torch.as_tensor(documents, dtype=torch.long)
    count = int(index.max()) + 1 if len(index) else 0
    sums = torch.zeros(count, logits.shape[1], dtype=logits.dtype).index_add_(0, index, logits)
    return sums / torch.bincount(index, minlength=count).unsqueeze(1).to(logits.dtype)


def first_windows(examples: Sequence[dict]) -> list[dict]:
    """One example per document (its first window), in document order: their ids and labels are the
    documents'."""
    return [e for i, e in enumerate(examples) if i == 0 or e["document"] != examples[i - 1]["document"]]


@torch.inference_mode()
def predict(model, loader, autocast, device, num_labels: int) -> torch.Tensor:
    """Every document's logits, in dataset order, on the CPU. Under DDP each rank predicts its own
    batches and the logits of all ranks are gathered (as tensors, on the device), so that every
    example counts exactly once and every rank holds the same result; then each document's windows
    are averaged (with --windows, a document's windows may have been on different ranks)."""
    model.eval()
    logits = []
    for batch in loader:
        inputs = {k: v for k, v in to_device(batch, device).items() if k != "labels"}
        with autocast():
            logits.append(model(**inputs).logits.float())
    # The dataset index of each of this rank's examples, in the order its batches came (length-sorted).
    order = torch.tensor([i for batch in loader.batch_sampler for i in batch], dtype=torch.long, device=device)
    logits = torch.cat(logits) if logits else torch.empty(0, num_labels, device=device)  # a rank may have none
    logits = distributed.gather(logits)[distributed.gather(order).argsort()]  # to dataset order
    return average_windows(logits.cpu(), [example["document"] for example in loader.dataset])


def calibrated_evaluation(
    model, loaders: dict, autocast, device, names: list[str], threshold: float | None, val_logits=None
):
    """A run's last evaluation, of its best epoch: val's and test's metrics, each with its probabilities,
    temperature-scaled (calibration.py): one T fitted on the val logits (every rank fits the same T on the
    same gathered logits), never on test. val_logits: the best epoch's, as its evaluation computed them (the
    same weights give the same logits: predicting val again would cost a pass over it for nothing)."""
    from livedoor_classification.calibration import fit_temperature

    if val_logits is None:  # a run resumed from a resume.pt written before val logits were kept in it
        val_logits = predict(model, loaders["val"], autocast, device, len(names))
    logits = {"val": val_logits, "test": predict(model, loaders["test"], autocast, device, len(names))}
    temperature = fit_temperature(logits["val"], gold_labels(loaders["val"].dataset), threshold is not None)
    val = split_metrics(logits["val"], loaders["val"].dataset, names, threshold, temperature)
    test = split_metrics(logits["test"], loaders["test"].dataset, names, threshold, temperature)
    return val, test


def write_document_predictions(path, examples: Sequence[dict], probabilities, names: list[str], threshold) -> None:
    """<split>-predictions.jsonl (runs.write_predictions): a line per document, with its first window's id and
    label."""
    documents = first_windows(examples)
    ids, labels = [e["id"] for e in documents], [e["label"] for e in documents]
    write_predictions(path, ids, labels, probabilities.numpy(), names, threshold)


def gold_labels(examples: Sequence[dict]) -> np.ndarray:
    """A label id per document (multi-label: a 0/1 row each), in dataset order."""
    return np.stack([example["label"] for example in first_windows(examples)])


def split_metrics(logits: torch.Tensor, examples, names: list[str], threshold: float | None, temperature=None):
    """The metrics of a split's logits, and its probabilities. The loss is the exact mean over documents,
    not the last batch's or a mean of batch means. Single-label (threshold None): a softmax over the labels,
    the most probable predicted. Multi-label: a sigmoid per label, each label predicted at a probability of
    threshold or above; the loss is the binary cross-entropy averaged over labels, then documents (as
    transformers' BCEWithLogitsLoss). With a temperature (the run's last evaluation), the probabilities are
    those of logits / temperature, in float64, the predictions made from them (single-label: the same; a
    label at 0.5: the same), and the metrics hold their calibration and that of the logits as they are
    ("uncalibrated"), so that users see what the scaling bought (calibration.py)."""
    from livedoor_classification import calibration
    from livedoor_classification.metrics import classification_metrics, multi_label_metrics

    labels = torch.from_numpy(gold_labels(examples))
    scaled = logits if temperature is None else logits.double() / temperature
    probabilities = scaled.sigmoid() if threshold is not None else scaled.softmax(dim=-1)
    if threshold is None:
        predicted = probabilities.argmax(dim=-1)
        metrics = classification_metrics(labels.tolist(), predicted.tolist(), names)
        metrics = {"loss": F.cross_entropy(logits, labels).item()} | metrics
    else:
        predicted = probabilities >= threshold
        metrics = multi_label_metrics(labels.numpy(), predicted.numpy(), names)
        metrics = {"loss": F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype)).item()} | metrics
    if temperature is None:
        return metrics, probabilities
    uncalibrated = logits.double().sigmoid() if threshold is not None else logits.double().softmax(dim=-1)
    multi_label, outcome = threshold is not None, (predicted.numpy(), labels.numpy(), names)
    # the calibration of the probabilities as the prediction files write them (as_written)
    before = calibration.report(as_written(uncalibrated.numpy()), *outcome)
    before["nll"] = calibration.nll(logits, labels, multi_label)
    after = calibration.report(as_written(probabilities.numpy()), *outcome)
    after["nll"] = calibration.nll(scaled, labels, multi_label)
    return metrics | after | {"temperature": temperature, "uncalibrated": before}, probabilities
