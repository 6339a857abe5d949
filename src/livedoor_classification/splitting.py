"""The split into train, val and test: stratified by label, seeded, the same bytes on every machine;
and the rows of each label in each split that it gives."""

import math
import random
from array import array
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from livedoor_classification.dataset_files import SPLITS


def allocate(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over the categories in proportion to their counts (largest remainder method),
    so that the held-out sets have exactly `total` articles and every category its fair share. A
    category whose share rounds to 0 still gets one (taken from the largest share, while one has
    more than one): a label absent from val or test would cap macro-F1 below 100 whatever the model
    does. livedoor's categories are all large: its shares, and its split, are unchanged."""
    n = sum(counts.values())
    quotas = {c: counts[c] * total // n for c in counts}
    by_remainder = sorted(counts, key=lambda c: (-(counts[c] * total % n), c))
    for category in by_remainder[: total - sum(quotas.values())]:
        quotas[category] += 1
    for category in sorted(c for c in counts if quotas[c] == 0):
        largest = max(sorted(quotas), key=quotas.get)
        if quotas[largest] <= 1:
            break  # fewer held-out rows than labels: some label must be missing (--val_ratio is tiny)
        quotas[largest] -= 1
        quotas[category] = 1
    return quotas


def held_out(n: int, ratio: float) -> int:
    # The ratio as the decimal written (0.1 is 1/10, not the binary float just above it), so that the
    # default takes exactly n // 10 rows, as livedoor's split always has.
    return math.floor(n * Fraction(str(ratio)))


def assign(labels: Sequence[int], names: Sequence[str], seed: int, val_ratio: float, test_ratio: float) -> bytearray:
    """The split of every row as a code (an index into SPLITS), from the rows' labels alone: a byte
    per row and an array of row numbers per label, so that a million rows take a few megabytes. Each
    label's rows, in file order, are shuffled by one generator, labels in name order; the first go to
    val, the next to test, the rest to train."""
    rows_of: dict[str, array] = {}
    for row, label in enumerate(labels):
        rows_of.setdefault(names[label], array("q")).append(row)
    counts = {name: len(rows) for name, rows in rows_of.items()}
    val = allocate(counts, held_out(len(labels), val_ratio))
    test = allocate(counts, held_out(len(labels), test_ratio))
    rng = random.Random(seed)
    codes = bytearray(len(labels))  # 0: train
    for name in sorted(rows_of):
        rows = rows_of[name]
        rng.shuffle(rows)  # the same permutation as shuffling a list of rows of that length
        for row in rows[: val[name]]:
            codes[row] = SPLITS.index("val")
        for row in rows[val[name] : val[name] + test[name]]:
            codes[row] = SPLITS.index("test")
    return codes


def assign_multi_label(
    label_sets: Sequence[Sequence[int]], num_labels: int, seed: int, val_ratio: float, test_ratio: float
) -> bytearray:
    """The split of every row of a multi-label table as a code (an index into SPLITS), by iterative
    stratification (Sechidis, Tsoumakas and Vlahavas 2011, "On the Stratification of Multi-label Data"):
    the label with the fewest rows still unassigned goes first, each of its rows (in seeded random
    order) to the split that most lacks that label, measured against its share of it; ties go to the
    split that most lacks the row's labels together (our addition: on the test fixture it halved the worst
    deviation of a label's count), then to the one with more room left (the paper's), then by the seeded
    generator. Rare labels are placed while every split
    still has room, so each label's share of every split is kept as closely as the data allows. Rows
    without a label fill the room left. As assign() does: val and test get exactly floor(N x ratio) rows
    (a split that is full takes no more rows), the generator is Python's own, and the arithmetic exact
    (fractions), so the same input and seed give the same split on every machine.

    Written here rather than taken from a library: scikit-multilearn's IterativeStratification and
    iterative-stratification's MultilabelStratifiedShuffleSplit draw with numpy, do not keep the split
    sizes exact, and hold a dense rows x labels matrix."""
    n = len(label_sets)
    val, test = held_out(n, val_ratio), held_out(n, test_ratio)
    room = [n - val - test, val, test]  # rows each split still takes, in SPLITS order
    rows_of: list[list[int]] = [[] for _ in range(num_labels)]
    for row, labels in enumerate(label_sets):
        for label in labels:
            rows_of[label].append(row)
    # wanted[label][split]: how many more rows with that label the split should get, to have its share
    wanted = [[Fraction(len(rows) * size, n) for size in room] for rows in rows_of]
    left = [len(rows) for rows in rows_of]  # rows with the label not yet assigned
    codes = bytearray(n)
    assigned = bytearray(n)
    rng = random.Random(seed)
    while any(left):
        label = min((count, label) for label, count in enumerate(left) if count)[1]
        rows = [row for row in rows_of[label] if not assigned[row]]
        rng.shuffle(rows)
        for row in rows:
            open_splits = [s for s in range(len(SPLITS)) if room[s]]
            want = {s: (wanted[label][s], sum(wanted[o][s] for o in label_sets[row]), room[s]) for s in open_splits}
            code = rng.choice([s for s in open_splits if want[s] == max(want.values())])
            codes[row], assigned[row] = code, 1
            room[code] -= 1
            for other in label_sets[row]:
                wanted[other][code] -= 1
                left[other] -= 1
    unlabelled = [row for row in range(n) if not assigned[row]]
    rng.shuffle(unlabelled)
    for row in unlabelled:
        code = max(range(len(SPLITS)), key=lambda s: room[s])  # the most room left; ties: train, val, test
        codes[row] = code
        room[code] -= 1
    return codes


def split_counts(labels: Sequence[int], names: Sequence[str], codes: Sequence[int]) -> dict[str, Counter]:
    """The rows of each label in each split, the rows' splits given by their codes (assign's)."""
    pairs = Counter(zip(codes, labels, strict=True))
    counts = {split: Counter() for split in SPLITS}
    for (code, label), n in pairs.items():
        counts[SPLITS[code]][names[label]] = n
    return counts


def label_set_counts(label_sets: Sequence, names: Sequence[str]) -> tuple[Counter, dict]:
    """Of some multi-label rows: the rows of each label (a row counts once for each of its labels), and,
    for dataset.json, the rows in all and those without any label."""
    counts = Counter(names[label] for labels in label_sets for label in labels)
    return counts, {"rows": len(label_sets), "no_label": sum(not labels for labels in label_sets)}


def multi_label_counts(label_sets: Sequence, names: Sequence[str], codes: Sequence[int]) -> tuple[dict, dict]:
    """label_set_counts per split, the rows' splits given by their codes (assign_multi_label's)."""
    counts, rows = {}, {}
    for code, split in enumerate(SPLITS):
        in_split = [labels for labels, c in zip(label_sets, codes, strict=True) if c == code]
        counts[split], rows[split] = label_set_counts(in_split, names)
    return counts, rows
