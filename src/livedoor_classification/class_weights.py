"""--class_weights balanced: a weight per label from the training documents' labels, so that rare labels
weigh up in the loss (train.py's train_epoch: the cross-entropy's class weights, or each label's positive
weight in a multi-label binary cross-entropy); config.json records them by label name."""

import numpy as np
from sklearn.utils.class_weight import compute_class_weight


def balanced(labels: np.ndarray, names: list[str], multi_label: bool, of_a_subset: bool = False) -> dict[str, float]:
    """From label ids (or multi-hot rows), by label name. Single-label: n / (classes x n_c), scikit-learn's
    "balanced" (King and Zeng 2001), so that every class weighs as much in the loss as in a balanced set.
    Multi-label: each label's negatives per positive, the pos_weight that PyTorch's BCEWithLogitsLoss documents,
    so that its positives weigh as much as its negatives. of_a_subset: the labels are --max_train_samples'."""
    positives = labels.sum(axis=0) if multi_label else np.bincount(labels, minlength=len(names))
    if missing := [name for name, n in zip(names, positives, strict=True) if n == 0]:
        where = " (of --max_train_samples)" if of_a_subset else ""
        raise ValueError(f"--class_weights balanced: label {missing[0]!r} has no training example{where}")
    if multi_label:
        weights = (len(labels) - positives) / positives
    else:
        weights = compute_class_weight("balanced", classes=np.arange(len(names)), y=labels)
    return dict(zip(names, weights.tolist(), strict=True))  # label name -> weight, in label id order
