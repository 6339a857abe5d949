"""Evaluating a model on a whole split: every document's logits (gathered from every rank under torchrun,
a document's windows averaged), then its metrics and loss."""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import distributed
from inputs import to_device
from metrics import classification_metrics, multi_label_metrics


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


def evaluate(model, loader, autocast, device, names: list[str], threshold: float | None = None):
    """Metrics over a whole split, one prediction per document, and its probabilities in dataset
    order. The loss is the exact mean over documents, not the last batch's or a mean of batch means.
    Single-label (threshold None): a softmax over the labels, the most probable predicted. Multi-label: a
    sigmoid per label, each label predicted at a probability of threshold or above; the loss is the
    binary cross-entropy averaged over labels, then documents (as transformers' BCEWithLogitsLoss)."""
    logits = predict(model, loader, autocast, device, len(names))
    documents = first_windows(loader.dataset)
    if threshold is None:
        labels = torch.tensor([example["label"] for example in documents])
        metrics = classification_metrics(labels.tolist(), logits.argmax(dim=-1).tolist(), names)
        return {"loss": F.cross_entropy(logits, labels).item()} | metrics, logits.softmax(dim=-1)
    labels = torch.from_numpy(np.stack([example["label"] for example in documents]))
    probabilities = logits.sigmoid()
    metrics = multi_label_metrics(labels.numpy(), (probabilities >= threshold).numpy(), names)
    return {"loss": F.binary_cross_entropy_with_logits(logits, labels).item()} | metrics, probabilities
