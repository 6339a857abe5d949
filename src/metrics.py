"""Classification metrics, computed the same way for every model and the baseline."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

# The columns that summarise a run: these go into log.csv, the metrics files and the results tables.
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1")


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
