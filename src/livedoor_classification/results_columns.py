"""The columns of aggregate.py's tables (all.csv: a row per run; best.csv: a row per model and settings), and
how a value reads in a table, a plot or a message: the words that every results_* module shares."""

from pathlib import Path

import numpy as np
import pandas as pd

from livedoor_classification.paths import ROOT
from livedoor_classification.runs import IDENTITY

SHORT_FINGERPRINT = 12  # hex digits of a dataset fingerprint shown in tables and plots

# all.csv's names for some identity keys (the values used, not the arguments); the rest keep theirs.
COLUMNS = {
    "model_name": "model",
    "global_batch_size": "batch_size",
    "max_seq_len_used": "max_seq_len",
    "precision_used": "precision",
}
IDENTITY_COLUMNS = [COLUMNS.get(key, key) for key in IDENTITY]
# A row of best.csv: runs of one dataset, model and settings, across learning rates and seeds.
SETTINGS = [c for c in IDENTITY_COLUMNS if c not in ("dataset_fingerprint", "model", "lr", "seed")]
ROW_COLUMNS = ["dataset_fingerprint", "model", *SETTINGS]
# A table compares rows tested on the same examples: one dataset, and the same --max_eval_samples subset (a
# smoke test's 10 examples would otherwise make it the best row, or leave the full runs unpaired with it).
# multi_label follows from the fingerprint; it is a key too so that a table never has two kinds of columns.
SECTION = ["dataset_fingerprint", "max_eval_samples", "multi_label"]

# A smoke test's subsets (train.py --max_train_samples, --max_eval_samples), named in its row and under its table.
SUBSETS = {"max_train_samples": "training example", "max_eval_samples": "val and test example"}
SMOKE_TEST = "smoke test"


def written(table: pd.DataFrame) -> pd.DataFrame:
    """A table as all.csv or best.csv holds it: multi_label only where some row is."""
    return table if table["multi_label"].any() else table.drop(columns="multi_label")


def is_smoke_test(row) -> bool:
    return any(not pd.isna(row[column]) for column in SUBSETS)


def cell(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def lr_text(lr) -> str:
    """Every learning rate in one notation, 3e-05 beside 1e-03 (Python writes 3e-05 beside 0.001)."""
    return "–" if pd.isna(lr) else np.format_float_scientific(lr, trim="-", exp_digits=2)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def is_local(model: str) -> bool:
    """A path, never a Hub id: it starts with "." or "/" (train.py records local models resolved; older
    runs may not), or names a folder of this checkout. Judged without the working directory, so that
    the tables are the same wherever aggregate.py runs."""
    return model.startswith((".", "/", "~")) or (ROOT / model).is_dir()


def short_name(model: str) -> str:
    """A hub id as is; a local model folder by its name, not by a path on one machine."""
    return Path(model).name if is_local(model) else model
