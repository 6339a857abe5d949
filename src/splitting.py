"""The split into train, val and test: stratified by label, seeded, the same bytes on every machine."""

import math
import random
from array import array
from collections.abc import Sequence
from fractions import Fraction

from dataset_files import SPLITS


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
