"""The labels of a dataset on its way in (prepare.py): what is refused (a single label, a label too rare to
split, a label with no training row), and what is only a warning (names that NFKC or number formatting
make alike, a label that a given val or test file lacks). A refusal is a one-line ValueError."""

import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from livedoor_classification.dataset_files import SPLITS


def warn(message: str) -> None:
    print(f"prepare.py: warning: {message}", file=sys.stderr)


def listed(names: Sequence[str]) -> str:
    """'a' and 'b', or 'a', 'b' and 'c'."""
    quoted = [repr(name) for name in names]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def check_two_labels(names: Sequence[str], source: Path, rows: str = "row has label") -> None:
    if len(names) < 2:
        raise ValueError(f"{source}: every {rows} {names[0]!r}: a classifier needs at least two labels")


def check_class_sizes(labels: Sequence[int], names: Sequence[str], source: Path) -> None:
    for name, n in sorted(Counter(names[label] for label in labels).items()):
        if n < len(SPLITS):
            raise ValueError(
                f"{source}: label {name!r} has {n} row(s): a label needs at least {len(SPLITS)}, "
                "one each for train, val and test; add rows or drop the label"
            )


def check_train_has_every_label(counts: dict[str, Counter], names: Sequence[str]) -> None:
    """Only very large ratios can leave a label of 3 or more rows without a training row."""
    for name in sorted(names):
        if not counts["train"][name]:
            raise ValueError(f"label {name!r} gets no training row: lower --val_ratio/--test_ratio")


def check_labels_occur_in_train(counts: dict[str, Counter], paths: dict[str, Path]) -> None:
    """Files given as --train/--val/--test: every label of val and test must occur in train."""
    for split in ("val", "test"):
        if unseen := sorted(set(counts[split]) - set(counts["train"])):
            raise ValueError(
                f"{paths[split]}: label {unseen[0]!r} ({counts[split][unseen[0]]} rows) does not occur in "
                f"{paths['train']}; a model cannot learn a label it never sees"
            )


def number_twins(names: Sequence[str]) -> list[list[str]]:
    """Groups of label names that are one number written differently ("1", "1.0", "01"), each sorted.
    They are not merged: "1" and "1.0" may be two codes, and which is meant only the user knows."""
    by_value: dict[Decimal, list[str]] = {}
    for name in names:
        try:
            value = Decimal(name)
        except InvalidOperation:
            continue
        if value.is_finite():  # NaN equals nothing, and a signalling NaN cannot even be hashed
            by_value.setdefault(value, []).append(name)
    return [sorted(group) for _, group in sorted(by_value.items()) if len(group) > 1]


def warn_number_twins(names: Sequence[str], source: Path) -> None:
    advice = "they stay separate labels; if they are one, write them alike"
    for group in number_twins(names):
        warn(f"{source}: labels {listed(group)} differ only in number formatting: {advice}")


def width_folded(text: str) -> str:
    """Full-width letters and half-width kana as their usual forms: the folding NFKC is asked for, which
    merges two spellings of a label without a warning (the other foldings, "Ⅱ" into "II", do warn)."""
    folded = "".join(
        unicodedata.normalize("NFKC", c) if unicodedata.decomposition(c).startswith(("<wide>", "<narrow>")) else c
        for c in text
    )
    return unicodedata.normalize("NFC", folded)  # ｶﾞ is two characters: カ and a combining voiced mark, then ガ


def warn_merged_spellings(spellings: dict[str, set[str]], source: Path) -> None:
    """spellings: each label name, cleaned, with the names as written (spaces stripped) that became it."""
    for name, written in sorted(spellings.items()):
        if len({width_folded(spelling) for spelling in written}) > 1:  # "Ⅱ" and "II", "①" and "1"
            warn(
                f"{source}: labels {listed(sorted(written))} are one label, {name!r}, once NFKC-normalized; "
                "give --no_normalize to keep them apart"
            )


def warn_missing_labels(counts: dict[str, Counter], paths: dict[str, Path]) -> None:
    """A label train has but val or test lacks is allowed (a rare label in a given test set), but its
    scores on that split cannot be measured. metrics.py leaves it out of that split's macro averages,
    unless a model predicts it there (then it counts, with F1 0: every such prediction is wrong)."""
    for split in ("val", "test"):
        why = f"its {split} scores cannot be measured; {split}'s macro averages leave it out unless predicted"
        for name in sorted(set(counts["train"]) - set(counts[split])):
            warn(f"label {name!r} of {paths['train']} has no example in {paths[split]}: {why}")
