"""Classification metrics, computed the same way for every model and the baseline."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

# The columns that summarise a run: these go into log.csv, the metrics files and the results tables.
SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1")


def classification_metrics(labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str]) -> dict:
    """Accuracy and macro precision/recall/F1 over *all* labels (a label never predicted counts as 0,
    not as missing, so a model that ignores a class is not flattered), plus per-class scores and the
    confusion matrix (rows: true label, columns: prediction)."""
    label_ids = list(range(len(label_names)))
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    macro = precision_recall_fscore_support(labels, predictions, labels=label_ids, average="macro", zero_division=0)
    per_class = precision_recall_fscore_support(labels, predictions, labels=label_ids, average=None, zero_division=0)
    return {
        "accuracy": float((labels == predictions).mean()),
        "precision": float(macro[0]),
        "recall": float(macro[1]),
        "f1": float(macro[2]),
        "per_class": {
            name: {
                "precision": float(per_class[0][i]),
                "recall": float(per_class[1][i]),
                "f1": float(per_class[2][i]),
                "support": int(per_class[3][i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=label_ids).tolist(),
    }
