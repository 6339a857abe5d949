"""Classification metrics, computed the same way for every model and the baseline: single-label
(classification_metrics) and multi-label (multi_label_metrics). In both, "f1" is the macro-F1, by which
train.py keeps the best epoch and aggregate.py ranks the rows: every label counts as much as any other."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, hamming_loss, precision_recall_fscore_support

# The columns that summarise a run: these go into log.csv, the metrics files and the results tables.
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1")
MULTI_LABEL_SUMMARY_KEYS = ("subset_accuracy", "hamming_loss", "micro_f1", "samples_f1", "precision", "recall", "f1")


def summary_keys(multi_label: bool) -> tuple[str, ...]:
    return MULTI_LABEL_SUMMARY_KEYS if multi_label else SUMMARY_KEYS


def classification_metrics(labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy; macro precision/recall/F1 over the labels that occur in the gold labels or in the
    predictions; per-class scores; the confusion matrix over all labels (rows: true label, columns:
    prediction).

    A label in the gold labels but never predicted counts as 0, so a model that ignores a class is not
    flattered; a label predicted but absent from the gold labels counts too (F1 0: its predictions are
    all wrong). A label that is neither cannot be got right or wrong: counting it as 0 would cap a
    perfect classifier on a split without one of three labels at 66.67, so it is left out of the
    averages, and its per-class precision, recall and F1 are None ("absent"), with support 0."""
    label_ids = list(range(len(label_names)))
    labels, predictions = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    occurring = np.union1d(labels, predictions).tolist()
    macro = precision_recall_fscore_support(labels, predictions, labels=occurring, average="macro", zero_division=0)
    per_class = precision_recall_fscore_support(labels, predictions, labels=label_ids, average=None, zero_division=0)
    return {
        "accuracy": float((labels == predictions).mean()),
        "precision": float(macro[0]),
        "recall": float(macro[1]),
        "f1": float(macro[2]),
        "per_class": {name: class_scores(per_class, i, i in occurring) for i, name in enumerate(label_names)},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=label_ids).tolist(),
    }


def class_scores(per_class: tuple, i: int, occurs: bool) -> dict:
    """Label i's entry of precision_recall_fscore_support(average=None); None for the scores of a label
    that occurs neither in the gold labels nor in the predictions."""
    precision, recall, f1, support = (values[i] for values in per_class)
    if not occurs:
        return {"precision": None, "recall": None, "f1": None, "support": int(support)}
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}


def multi_label_metrics(labels, predictions, label_names: Sequence[str]) -> dict:
    """labels and predictions: 0/1 matrices, a row per text, a column per label. Subset accuracy (the
    whole set of labels right), Hamming loss (the share of wrong text-label decisions), micro-F1 (every
    decision pooled: common labels dominate), samples-F1 (the mean over texts of each text's F1; a text
    with no gold label and none predicted is right, 1.0), and macro precision/recall/F1 with per-label
    scores under the rule of classification_metrics: a label neither in the gold labels nor predicted in
    the split is left out of the averages, and its scores are None."""
    labels, predictions = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    occurring = np.flatnonzero(labels.any(axis=0) | predictions.any(axis=0)).tolist()
    macro = precision_recall_fscore_support(labels, predictions, labels=occurring, average="macro", zero_division=0)
    micro = precision_recall_fscore_support(labels, predictions, average="micro", zero_division=0)
    per_label = precision_recall_fscore_support(labels, predictions, average=None, zero_division=0)
    return {
        "subset_accuracy": float((labels == predictions).all(axis=1).mean()),
        "hamming_loss": float(hamming_loss(labels, predictions)),
        "micro_precision": float(micro[0]),
        "micro_recall": float(micro[1]),
        "micro_f1": float(micro[2]),
        "samples_f1": float(f1_score(labels, predictions, average="samples", zero_division=1.0)),
        "precision": float(macro[0]),
        "recall": float(macro[1]),
        "f1": float(macro[2]),
        "per_class": {name: class_scores(per_label, i, i in occurring) for i, name in enumerate(label_names)},
    }
