"""Collect every complete run of a dataset (outputs/<dataset>/) into tables and plots (results/<dataset>/).

    python src/aggregate.py                     # livedoor: outputs/livedoor/ -> results/livedoor/
    python src/aggregate.py --dataset reviews   # outputs/reviews/ -> results/reviews/

    results/<dataset>/
        all.csv                 one row per run: its dataset, settings, and val and test metrics
        best.csv                per model and settings: the learning rate with the best mean validation
                                macro-F1 across seeds, its test metrics as mean and std across seeds,
                                their 95% bootstrap intervals, and the difference from the best row
        results.md              best.csv as Markdown tables in %, one section per dataset fingerprint
        test_f1.png             test macro-F1 per row of best.csv, with its 95% bootstrap interval as error bars
        val_f1_per_epoch.png    validation macro-F1 per epoch of each row's chosen run
        confusion_matrix_<fingerprint>.png, per_class_<fingerprint>.csv
                                the best row's chosen run (first 12 digits of the dataset's fingerprint);
                                multi-label: per_class_<fingerprint>.csv only (per label)
        reliability_<fingerprint>.png
                                a reliability diagram per row's chosen run: test probabilities before and
                                after temperature scaling (calibration.py)

The set is written into a staging folder beside results/<dataset>/, which then takes its place: a kill
or a full disk mid-write leaves the previous set, never a new best.csv beside an old results.md. Files
of an older set are not carried over (a confusion matrix of a dataset no longer in the table); any other
file in the folder is. A smoke test's row (train.py --max_train_samples, --max_eval_samples) says so.
Names that users chose (labels, model and dataset names) are written as given, escaped for the format:
a CSV cell that a spreadsheet would run as a formula gets a ' in front; in results.md, | [ ] and HTML are
escaped.

Runs count together only if they share a dataset (by fingerprint) and every setting that changes
results (runs.IDENTITY): a run with more epochs, another max_seq_len or batch size is another row,
never averaged with the others nor replacing them, and the settings that tell rows apart are shown.
The learning rate is chosen on validation only: choosing it by test scores would report an
optimistic number. Parameter counts come from each run's config.json; nothing is downloaded.

Every run's prediction files are checked against its config.json (a line per example) and its
metrics files (accuracy and macro-F1 recomputed from the lines): a run whose files disagree (a
truncated copy, an edited file) is skipped with a line saying why, as is a run with an unreadable file.

How sure the numbers are (significance.py), from each run's test-predictions.jsonl: a 95% percentile
bootstrap interval over the test examples per row (Efron & Tibshirani 1993), and per row the paired
bootstrap of its macro-F1 difference from the best row of its dataset on the same resampled examples
(Koehn 2004), pairing examples by id.

Calibration (calibration.py): each row's expected calibration error (ECE) on test, recomputed from its
runs' test-predictions.jsonl (a run whose metrics file says another is skipped, as above), with its 95%
bootstrap interval over the same resamples, and the ECE of the model's own probabilities before the
temperature scaling that train.py fits on val (test-metrics.json's "uncalibrated"; the baseline has its
own temperature, fitted on train, and no "before").

Multi-label runs (config.json's "multi_label": a list of labels per text) get their own columns:
subset accuracy, Hamming loss, micro-, samples- and macro-averaged scores, intervals for subset
accuracy, micro-F1 and macro-F1, and per-label scores instead of a confusion matrix. A section is one
dataset fingerprint, and the fingerprint covers the label lists, so single- and multi-label runs never
share a table; rows still rank, and learning rates are still chosen, by macro-F1.
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import contextlib
import errno
import html
import itertools
import json
import math
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib.pyplot as plt

# Japanese class and model names need a font with kana and kanji; matplotlib's default has none and
# draws boxes. matplotlib-fontja ships IPAexGothic (kana, kanji and Latin) and makes it the default
# when imported: the same font on every machine, nothing to install on the system.
import matplotlib_fontja  # noqa: F401
import numpy as np
import pandas as pd
from classopt import classopt, config
from matplotlib.ticker import MaxNLocator

from livedoor_classification import calibration
from livedoor_classification.files import (
    as_a_new_file,
    remove_stale_staging,
    replace_folder,
    staging_folder,
    write_text,
)
from livedoor_classification.metrics import classification_metrics, multi_label_metrics, summary_keys
from livedoor_classification.paths import ROOT
from livedoor_classification.runs import IDENTITY, read_run, run_identity
from livedoor_classification.significance import (
    accuracy,
    bootstrap_ci,
    bootstrap_ece,
    macro_f1,
    micro_f1,
    multi_label_macro_f1,
    paired_bootstrap,
    subset_accuracy,
)


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args(cli.DatasetOptions):  # --dataset, --dataset_dir, --output_root: whose runs to collect
    results_dir: Path = config(default=ROOT / "results", help="the tables and plots go to <results_dir>/<dataset>/")


HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
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
ALWAYS_SHOWN = ["epochs", "max_seq_len", "batch_size"]  # in results.md, whether they vary or not
HEADERS = {
    "epochs": "Epochs",
    "max_seq_len": "Max len",
    "batch_size": "Batch",
    "text_fields": "Text fields",
    "truncation": "Truncation",
    "head_tokens": "Head tokens",
    "windows": "Windows",
    "window_stride": "Stride",
    "class_weights": "Class weights",
    "threshold": "Threshold",
    "patience": "Patience",
}
SCORE_HEADERS = {
    "accuracy": "Accuracy",
    "subset_accuracy": "Subset accuracy",
    "hamming_loss": "Hamming loss",
    "micro_f1": "Micro-F1",
    "samples_f1": "Samples-F1",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
}
RESAMPLES = 1000  # bootstrap resamples of the test set: a percentile interval's ends settle by about 1,000
BOOTSTRAP_SEED = 0  # the same resamples for every row and every run of aggregate.py: the tables are reproducible
BOOTSTRAPPED = {"accuracy": accuracy, "f1": macro_f1}
MULTI_LABEL_BOOTSTRAPPED = {"subset_accuracy": subset_accuracy, "micro_f1": micro_f1, "f1": multi_label_macro_f1}


def bootstrapped(multi_label: bool) -> dict:
    """The scores that get an interval, and their bootstrap metrics; "f1" is macro-F1 for both kinds."""
    return MULTI_LABEL_BOOTSTRAPPED if multi_label else BOOTSTRAPPED


# Test ECE recomputed from the prediction files (the probabilities as scaled), and before scaling, and the NLL
# after and before, as the metrics file reports them (before: train.py's runs); in all.csv, and best.csv as mean
# and std, after the scores.
CALIBRATION_KEYS = ("ece", "ece_uncalibrated", "nll", "nll_uncalibrated")


def significance_columns(multi_label: bool) -> list[str]:
    """best.csv's, after the scores."""
    return [
        *(f"test_{key}_ci_{end}" for key in [*bootstrapped(multi_label), "ece"] for end in ("low", "high")),
        *("f1_vs_best", "f1_vs_best_low", "f1_vs_best_high", "differs_from_best", "bootstrap_note"),
    ]


# Why a row has no interval or comparison: best.csv's bootstrap_note, and "<models>: <note>." in results.md.
SEEDS_DIFFER = "no 95% CI and no comparison with the best row, as the seeds were tested on different examples"
OTHER_EXAMPLES = "not compared with the best row, as tested on other test examples (by id) than the best row"
BEST_UNPAIRED = "not compared with the best row, as the best row has no 95% CI (its note says why)"
ABSENT = "absent: not in the test split and never predicted; no scores, and not in the macro averages."
NO_CONFUSION_MATRIX = (
    "No confusion matrix: a text may have several labels or none, so a prediction has no one gold label to be"
    " confused with; the per-label scores above say which labels are missed (recall) and which are given wrongly"
    " (precision)."
)
# Recomputed from each prediction file and compared with its metrics file. Both come from the same
# predictions, so they agree to the last bits; 1e-6 leaves room for another order of summation.
CHECKED = {"accuracy": "accuracy", "f1": "macro-F1"}
MULTI_LABEL_CHECKED = {"subset_accuracy": "subset accuracy", "micro_f1": "micro-F1", "f1": "macro-F1"}
TOLERANCE = 1e-6
# write_predictions writes a line's probabilities (a number per class: most of the line, and of the
# time to parse it) after its id and labels: a line is cut here and only its start parsed.
PROBABILITIES = ', "probabilities": {'
# A confusion matrix grows with its classes and writes its counts in the cells up to ANNOTATED_CLASSES
# classes (20 inches), and names its rows and columns up to NAMED_CLASSES.
ANNOTATED_CLASSES = 30
NAMED_CLASSES = 100
# A smoke test's subsets (train.py --max_train_samples, --max_eval_samples), named in its row and under its table.
SUBSETS = {"max_train_samples": "training example", "max_eval_samples": "val and test example"}
SMOKE_TEST = "smoke test"

# A spreadsheet runs a cell that starts with one of these as a formula, whatever the CSV's author meant
# (OWASP, "CSV Injection"): a label or a model name such as =HYPERLINK(...) would. Such a cell of text
# gets a ' in front, which spreadsheets show as text; a number such as -0.5 is no formula and stays.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

# What aggregate.py writes in results/<dataset>/ (section_file's names, and write_text's temporary names of
# them), by the whole name: the set that each run replaces whole. Whatever else the folder holds (someone's
# notes, their own per_class_notes.csv) is carried into the new set.
SECTION_NAME = rf"([0-9a-f]{{{SHORT_FINGERPRINT}}}|unrecorded)(_eval\d+)?"  # section_file's part of a name
RESULT_FILE = re.compile(
    r"all\.csv|best\.csv|results\.md|test_f1\.png|val_f1_per_epoch\.png"
    rf"|(confusion_matrix|reliability)_{SECTION_NAME}\.png|per_class_{SECTION_NAME}\.csv"
)
TEMPORARY_FILE = re.compile(r"\.(.+)\.[0-9a-f]{16}\.tmp")  # files.write_text's


def run_row(run_dir: Path) -> dict:
    files = read_run(run_dir)
    config, val, test = files["config"], files["val-metrics"], files["test-metrics"]
    log = read_log(run_dir)
    check_predictions(run_dir, "val", config, val)
    check_predictions(run_dir, "test", config, test)
    dataset_dir = config.get("dataset_dir")
    multi_label = bool(config.get("multi_label", False))
    return {
        "dataset": Path(dataset_dir).name if dataset_dir else None,
        **{COLUMNS.get(key, key): setting(value) for key, value in run_identity(config).items()},
        "best_epoch": val["best_epoch"],
        **{f"val_{key}": val[key] for key in summary_keys(multi_label)},
        **{f"test_{key}": test[key] for key in summary_keys(multi_label)},
        "test_ece": checked_ece(run_dir, test),
        "test_ece_uncalibrated": test.get("uncalibrated", {}).get("ece", math.nan),  # none: the baseline, older runs
        "test_nll": test.get("nll", math.nan),
        "test_nll_uncalibrated": test.get("uncalibrated", {}).get("nll", math.nan),
        "temperature": config.get("temperature", math.nan),
        "num_parameters": config["num_parameters"],
        "train_seconds": float(log["epoch_seconds"].sum()),
        "run_dir": str(run_dir),
        "multi_label": multi_label,  # all.csv's only where some run is (written)
    }


def setting(value):
    """A list (text_fields, c_values) as one cell, space-separated as on the command line."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else value


def read_log(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "log.csv"
    try:
        log = pd.read_csv(path)
    except (OSError, ValueError) as e:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise ValueError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
    if "epoch_seconds" not in log:
        raise ValueError(f"{path}: unreadable (no epoch_seconds column)")
    return log


def check_predictions(run_dir: Path, split: str, config: dict, reported: dict) -> None:
    """ValueError naming the split's prediction file if it has another number of lines than config.json's
    num_examples, or its accuracy or macro-F1 (multi-label: subset accuracy, micro- and macro-F1) differ
    from <split>-metrics.json, or it has lists of labels where config.json's multi_label says one label
    (or the reverse): the intervals and per-class scores would describe other predictions than the
    table's scores. Every run folder that train.py and baseline.py write has both; one without (an older
    version's) is named, not guessed at."""
    path = run_dir / f"{split}-predictions.jsonl"
    if not path.is_file() or "num_examples" not in config:
        missing = path.name if not path.is_file() else "config.json's num_examples"
        raise ValueError(f"{run_dir}: no {missing} (a run of an older version of this code): train it again")
    predictions = read_predictions(str(run_dir)) if split == "test" else read_prediction_file(path)
    lines, expected = len(predictions.gold), config["num_examples"][split]
    # Files edited or cut short; or a run of a version that averaged macro-F1 over every label, also one a
    # split lacks and no model predicted (the rule now leaves such a label out): its table row would mislead.
    remedy = "the files disagree (edited, cut short, or written by an older version): train it again"
    if lines != expected:
        raise ValueError(
            f"{path}: {plural(lines, 'line')}, but config.json says {plural(expected, f'{split} example')} ({remedy})"
        )
    multi_label = bool(config.get("multi_label", False))
    if predictions.multi_label != multi_label:
        found = "lists of labels" if predictions.multi_label else "one label a line"
        raise ValueError(f"{path}: {found}, but config.json says multi_label {str(multi_label).lower()} ({remedy})")
    recomputed = scores(predictions, predictions.predicted[0])
    for key, name in (MULTI_LABEL_CHECKED if multi_label else CHECKED).items():
        ours, theirs = recomputed[key], float(reported[key])
        if not abs(ours - theirs) <= TOLERANCE:
            raise ValueError(
                f"{path}: {name} {ours:.6f} from its lines, but {split}-metrics.json says {theirs:.6f} ({remedy})"
            )


def checked_ece(run_dir: Path, reported: dict) -> float:
    """The test ECE recomputed from test-predictions.jsonl; ValueError naming the file if test-metrics.json
    says another (the reliability diagram and the interval come from the file). A run that predates
    calibration has none to compare with."""
    ece = float(calibration.errors(*read_confidences(str(run_dir)))[0].mean())
    if "ece" in reported and not abs(ece - float(reported["ece"])) <= TOLERANCE:
        path = run_dir / "test-predictions.jsonl"
        remedy = "the files disagree (edited, or written by an older version): train it again"
        theirs = float(reported["ece"])
        raise ValueError(f"{path}: ECE {ece:.6f} from its lines, but test-metrics.json says {theirs:.6f} ({remedy})")
    return ece


def collect_runs(output_root: Path) -> pd.DataFrame:
    rows = []
    for run_dir in sorted(p for p in output_root.glob("*/*/*") if p.is_dir()):
        try:
            rows.append(run_row(run_dir))
        except ValueError as e:
            print(f"skipped {e}")
        except (KeyError, TypeError, OSError) as e:  # TypeError: a metric that is not a number
            print(f"skipped {run_dir}: unreadable ({e!r})")
    if not rows:
        raise ValueError(f"no complete runs under {output_root}: run src/train.py or run.sh first")
    return drop_repeated(integers_as_integers(pd.DataFrame(rows), rows))


def written(table: pd.DataFrame) -> pd.DataFrame:
    """A table as all.csv or best.csv holds it: multi_label only where some row is."""
    return table if table["multi_label"].any() else table.drop(columns="multi_label")


def integers_as_integers(runs: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """A column that one run lacks (the baseline has no epochs) would turn float, and all.csv would
    say 2.0 epochs: columns of whole numbers become pandas' nullable Int64 instead."""
    for column in runs.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            runs[column] = runs[column].astype("Int64")
    return runs


def drop_repeated(runs: pd.DataFrame) -> pd.DataFrame:
    """Of runs with one identity (dataset and every setting), keep the newest: folder names sort by time."""
    repeated = runs.duplicated(IDENTITY_COLUMNS, keep="last")
    newest = runs.groupby(IDENTITY_COLUMNS, dropna=False, sort=False)["run_dir"].transform("last")
    for old, new in zip(runs.loc[repeated, "run_dir"], newest[repeated], strict=True):
        print(f"skipped {old}: {new} is a newer run of the same dataset and settings")
    runs = runs[~repeated]
    return runs.sort_values(["dataset_fingerprint", "model", "lr", "seed"], na_position="first", kind="stable")


def choose_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """A row per dataset, model and settings: the learning rate with the best mean validation F1."""
    rows = []
    for (*_, multi_label), group in runs.groupby([*ROW_COLUMNS, "multi_label"], dropna=False, sort=False):
        mean_val_f1 = group.groupby("lr", dropna=False)["val_f1"].mean()  # the baseline's lr is NaN
        lr = mean_val_f1.idxmax()
        chosen = group[group["lr"].isna()] if pd.isna(lr) else group[group["lr"] == lr]
        row = {"dataset": ", ".join(sorted(group["dataset"].dropna().unique()))}
        row |= {column: chosen[column].iloc[0] for column in ROW_COLUMNS}
        row |= {"lr": lr, "seeds": len(chosen), "val_f1_mean": mean_val_f1.max()}
        for key in (*summary_keys(multi_label), *CALIBRATION_KEYS):
            row[f"test_{key}_mean"] = chosen[f"test_{key}"].mean()
            row[f"test_{key}_std"] = chosen[f"test_{key}"].std(ddof=1) if len(chosen) > 1 else math.nan
        row["num_parameters"] = chosen["num_parameters"].iloc[0]
        row["chosen_run"] = chosen.loc[chosen["val_f1"].idxmax(), "run_dir"]
        row["chosen_seed"] = chosen.loc[chosen["val_f1"].idxmax(), "seed"]
        row["seed_runs"] = tuple(chosen["run_dir"])  # for the bootstrap; not written to best.csv
        row["multi_label"] = multi_label
        rows.append(row)
    best = pd.DataFrame(rows).astype(runs[[*ROW_COLUMNS, "num_parameters"]].dtypes.to_dict())
    order = [*SECTION, "test_f1_mean"]
    ascending = [True] * len(SECTION) + [False]
    return best.sort_values(order, ascending=ascending, na_position="first", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Predictions:
    """A row's test predictions, from its runs' test-predictions.jsonl."""

    ids: tuple[str, ...]  # each example's id as JSON text: 1 and "1" stay apart
    names: tuple[str, ...]  # the label names, in id order
    gold: np.ndarray  # label ids; multi-label: a 0/1 (bool) matrix, a row per text and a column per label
    predicted: np.ndarray  # as gold, for each seed (seeds x examples, or seeds x texts x labels)

    @property
    def multi_label(self) -> bool:
        return self.gold.ndim == 2


def scores(predictions: Predictions, predicted: np.ndarray) -> dict:
    """metrics.py's scores of one seed's predictions."""
    if predictions.multi_label:
        return multi_label_metrics(predictions.gold, predicted, predictions.names)
    return classification_metrics(predictions.gold, predicted, predictions.names)


def multi_hot(lists: list, label_id: dict[str, int]) -> np.ndarray:
    """Lists of label names as a 0/1 (bool) matrix, a row per list; TypeError for an entry not a list."""
    rows, columns = [], []
    for row, names in enumerate(lists):
        if not isinstance(names, list):
            raise TypeError(f"{names!r} where the first line has a list of labels")
        columns += [label_id[name] for name in names]
        rows += [row] * len(names)
    matrix = np.zeros((len(lists), len(label_id)), dtype=bool)
    matrix[rows, columns] = True
    return matrix


@cache  # each run's is read to check it, then again for its row's intervals and the per-class table
def read_predictions(run_dir: str) -> Predictions:
    """One run's test predictions (its run_row has checked them); ValueError naming the file if unreadable."""
    return read_prediction_file(Path(run_dir) / "test-predictions.jsonl")


def read_prediction_file(path: Path) -> Predictions:
    """A <split>-predictions.jsonl, a line at a time (with a probability per class and line, the file of
    a large test set with many classes takes gigabytes); ValueError naming the file if unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = (line for line in f if line.strip())
            first = next(lines, None)
            if first is None:
                raise ValueError("no lines")
            names = tuple(json.loads(first)["probabilities"])
            label_id = {name: i for i, name in enumerate(names)}
            examples = [without_probabilities(line) for line in itertools.chain([first], lines)]
        ids = tuple(json.dumps(example["id"]) for example in examples)
        if isinstance(examples[0]["label"], list):  # multi-label
            gold = multi_hot([example["label"] for example in examples], label_id)
            predicted = multi_hot([example["predicted"] for example in examples], label_id)[None]
        else:
            gold = np.array([label_id[example["label"]] for example in examples])
            predicted = np.array([[label_id[example["predicted"]] for example in examples]])
    except (OSError, ValueError, LookupError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise ValueError(f"{path}: unreadable ({e!r})") from None
    return Predictions(ids, names, gold, predicted)


@cache  # read to check the run's ECE, then for its row's interval and diagram
def read_confidences(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """calibration.confidence_and_outcome of a run's test-predictions.jsonl (read_predictions has checked its
    lines): the predicted label's probability and whether it is right (multi-label: every label's, and
    whether the text has it); ValueError naming the file if unreadable."""
    predictions, path = read_predictions(run_dir), Path(run_dir) / "test-predictions.jsonl"
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line)["probabilities"] for line in f if line.strip()]
        probabilities = np.array([[row[name] for name in predictions.names] for row in rows], dtype=np.float64)
    except (OSError, ValueError, LookupError, TypeError) as e:
        raise ValueError(f"{path}: unreadable ({e!r})") from None
    return calibration.confidence_and_outcome(probabilities, predictions.predicted[0], predictions.gold)


def without_probabilities(line: str) -> dict:
    """A prediction line's id, label and predicted, parsing the line only up to its probabilities where it
    is laid out as write_predictions writes it (ending in "}}": a line cut short is parsed whole, and is
    unreadable), else all of it. In valid JSON a quote after ", " opens a string, so the first
    PROBABILITIES is a key; it is the line's own only if what comes before it, closed, is an object
    with the three keys."""
    head, found, _ = line.partition(PROBABILITIES)
    if found and line.rstrip().endswith("}}"):
        try:
            example = json.loads(head + "}")
        except ValueError:  # the key of an object nested in the line
            example = None
        if isinstance(example, dict) and {"id", "label", "predicted"} <= example.keys():
            return example
    return json.loads(line)


def row_predictions(run_dirs: tuple[str, ...]) -> Predictions:
    """The seeds' predictions of one row, on the same examples; ValueError with the reason otherwise."""
    seeds = [read_predictions(run_dir) for run_dir in run_dirs]
    first = seeds[0]
    for other in seeds[1:]:
        if other.ids != first.ids or other.names != first.names or not np.array_equal(other.gold, first.gold):
            raise ValueError(SEEDS_DIFFER)
    return Predictions(first.ids, first.names, first.gold, np.vstack([seed.predicted for seed in seeds]))


def aligned(row: Predictions, reference: Predictions) -> np.ndarray:
    """row's predictions (seeds x examples) in reference's example order and label ids (multi-label: its
    label columns): examples are matched by id, never by position. ValueError(OTHER_EXAMPLES) unless both
    have the same examples with the same gold labels (runs of another dataset, or another split of it)."""
    position = {example_id: i for i, example_id in enumerate(row.ids)}
    if (
        len(position) != len(row.ids)
        or sorted(row.ids) != sorted(reference.ids)
        or set(row.names) != set(reference.names)
        or row.multi_label != reference.multi_label
    ):
        raise ValueError(OTHER_EXAMPLES)
    order = [position[example_id] for example_id in reference.ids]
    if row.multi_label:
        columns = [row.names.index(name) for name in reference.names]
        if not np.array_equal(row.gold[order][:, columns], reference.gold):
            raise ValueError(OTHER_EXAMPLES)
        return row.predicted[:, order][:, :, columns]
    relabel = np.array([reference.names.index(name) for name in row.names])
    if not np.array_equal(relabel[row.gold[order]], reference.gold):
        raise ValueError(OTHER_EXAMPLES)
    return relabel[row.predicted[:, order]]


def intervals(predictions: Predictions) -> dict:
    """The 95% bootstrap interval of test accuracy and macro-F1 (multi-label: subset accuracy, micro-F1
    and macro-F1), averaged over seeds per resample."""
    columns = {}
    for key, metric in bootstrapped(predictions.multi_label).items():
        low, high = bootstrap_ci(
            predictions.gold,
            predictions.predicted,
            metric,
            RESAMPLES,
            BOOTSTRAP_SEED,
            num_labels=len(predictions.names),
        )
        columns |= {f"test_{key}_ci_low": low, f"test_{key}_ci_high": high}
    return columns


def ece_interval(run_dirs: tuple[str, ...]) -> dict:
    """The 95% bootstrap interval of the test ECE, averaged over seeds per resample, as intervals()."""
    seeds = [read_confidences(run_dir) for run_dir in run_dirs]
    low, high = bootstrap_ece([c for c, _ in seeds], [o for _, o in seeds], RESAMPLES, BOOTSTRAP_SEED)
    return {"test_ece_ci_low": low, "test_ece_ci_high": high}


def versus_best(row: Predictions, best: Predictions | None) -> dict:
    """The row's macro-F1 minus the best row's on the same test examples, by paired bootstrap."""
    if best is None:
        raise ValueError(BEST_UNPAIRED)
    metric = bootstrapped(best.multi_label)["f1"]
    difference = paired_bootstrap(
        best.gold, best.predicted, aligned(row, best), metric, RESAMPLES, BOOTSTRAP_SEED, num_labels=len(best.names)
    )
    return {
        "f1_vs_best": difference.difference,
        "f1_vs_best_low": difference.low,
        "f1_vs_best_high": difference.high,
        "differs_from_best": difference.excludes_zero,
    }


def section_significance(section: pd.DataFrame) -> pd.DataFrame:
    """One dataset's rows: intervals, and each row against the best (by mean test macro-F1)."""
    predictions, notes = {}, {}
    for index, run_dirs in section["seed_runs"].items():
        try:
            predictions[index] = row_predictions(run_dirs)
        except ValueError as e:
            notes[index] = str(e)
    best_index = section["test_f1_mean"].idxmax()
    rows = {}
    for index in section.index:
        row = {}
        if index in predictions:
            row |= intervals(predictions[index]) | ece_interval(section.loc[index, "seed_runs"])
        if index in predictions and index != best_index:
            try:
                row |= versus_best(predictions[index], predictions.get(best_index))
            except ValueError as e:
                notes[index] = str(e)
        rows[index] = row | {"bootstrap_note": notes.get(index, "")}
    return pd.DataFrame.from_dict(rows, orient="index")


def with_significance(best: pd.DataFrame) -> pd.DataFrame:
    """best with significance_columns, computed within each dataset: rows of different datasets are never compared."""
    sections = best.groupby(SECTION, dropna=False, sort=False)
    columns = pd.concat([section_significance(section) for _, section in sections])
    kinds = sorted(set(best["multi_label"]))  # single-label's columns first, as they were before multi-label
    names = list(dict.fromkeys(c for multi_label in kinds for c in significance_columns(multi_label)))
    return best.join(columns.reindex(columns=names))


def varying_settings(best: pd.DataFrame) -> list[str]:
    """The settings beyond ALWAYS_SHOWN that tell rows apart: more than one value among the rows that
    record them, or recorded in some rows of a model and not in others (an older run)."""
    varying = []
    for column in SETTINGS:
        recorded = best[column].notna()
        if column not in ALWAYS_SHOWN and (
            best.loc[recorded, column].nunique() > 1 or (recorded.groupby(best["model"]).nunique() > 1).any()
        ):
            varying.append(column)
    return varying


def cell(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def lr_text(lr) -> str:
    """Every learning rate in one notation, 3e-05 beside 1e-03 (Python writes 3e-05 beside 0.001)."""
    return "–" if pd.isna(lr) else np.format_float_scientific(lr, trim="-", exp_digits=2)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def markdown_text(value) -> str:
    """A user's text (a label, a model or dataset name) in results.md as it is, not as Markdown: < > & as
    HTML entities (no HTML), | escaped (it would end a table cell), [ ] escaped (no link), a backslash
    escaped first, a line break as a space (it would end a table row)."""
    text = re.sub(r"([\\|\[\]])", r"\\\1", html.escape(cell(value), quote=False))
    return " ".join(text.splitlines())


def spreadsheet_cell(value):
    """A CSV cell that a spreadsheet opens as text, never runs as a formula (FORMULA_START)."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(table: pd.DataFrame) -> str:
    """A table as CSV: its text cells safe to open in a spreadsheet, its learning rates as lr_text writes them."""
    table = table.copy()
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):  # bool is numeric to pandas
            table[column] = table[column].map(spreadsheet_cell)
    if "lr" in table:
        table["lr"] = [None if pd.isna(lr) else lr_text(lr) for lr in table["lr"]]
    return table.to_csv(index=False)


def is_local(model: str) -> bool:
    """A path, never a Hub id: it starts with "." or "/" (train.py records local models resolved; older
    runs may not), or names a folder of this checkout. Judged without the working directory, so that
    the tables are the same wherever aggregate.py runs."""
    return model.startswith((".", "/", "~")) or (ROOT / model).is_dir()


def short_name(model: str) -> str:
    """A hub id as is; a local model folder by its name, not by a path on one machine."""
    return Path(model).name if is_local(model) else model


def model_cell(row: dict) -> str:
    """The model's name (a Hub id links to its page), and whether the row is a smoke test."""
    model = row["model"]
    if HUB_ID.match(model) and not is_local(model):
        name = f"[{model}](https://huggingface.co/{model})"
    else:
        name = markdown_text(short_name(model))
    return name + (f" ({SMOKE_TEST})" if is_smoke_test(row) else "")


def is_smoke_test(row) -> bool:
    return any(not pd.isna(row[column]) for column in SUBSETS)


def percent(mean: float, std: float) -> str:
    return f"{mean * 100:.2f}" if math.isnan(std) else f"{mean * 100:.2f} ± {std * 100:.2f}"


def interval(low: float, high: float, signed: bool = False) -> str:
    if pd.isna(low):
        return "–"
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"[{number.format(low * 100)}, {number.format(high * 100)}]"


def versus_best_cell(row: dict, is_best: bool) -> str:
    """The F1 difference from the best row in points and its interval, marked "≈ best" when the interval
    includes 0 (not distinguishable from the best on this test set)."""
    if is_best:
        return "best"
    if pd.isna(row["f1_vs_best"]):
        return "–"
    low, high = row["f1_vs_best_low"], row["f1_vs_best_high"]
    difference = f"{row['f1_vs_best'] * 100:+.2f} {interval(low, high, signed=True)}"
    return difference if row["differs_from_best"] else f"{difference} ≈ best"


def parameters(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def dataset_heading(section: pd.DataFrame) -> str:
    names = ", ".join(sorted({n for names in section["dataset"] for n in names.split(", ") if n})) or "dataset"
    names = markdown_text(names)
    fingerprint = section["dataset_fingerprint"].iloc[0]
    subset = section["max_eval_samples"].iloc[0]
    subset = "" if pd.isna(subset) else f", {plural(int(subset), SUBSETS['max_eval_samples'])} (--max_eval_samples)"
    if pd.isna(fingerprint):
        return f"## {names} (dataset fingerprint not recorded{subset})"
    return f"## {names} (dataset {fingerprint[:SHORT_FINGERPRINT]}{subset})"


def markdown_table(section: pd.DataFrame, classes: pd.DataFrame | None = None) -> str:
    """One dataset's rows: the settings that tell rows apart as columns, those shared under the table,
    how sure the scores are, and the best row's scores per class (classes, from class_scores)."""
    shown = ALWAYS_SHOWN + varying_settings(section)
    multi_label = bool(section["multi_label"].iloc[0])
    keys, with_intervals = summary_keys(multi_label), bootstrapped(multi_label)
    header = [
        "Model",
        "LR",
        *(HEADERS.get(c, c) for c in shown),
        "Params",
        *(SCORE_HEADERS[k] for k in keys),
        *(f"{SCORE_HEADERS[k]} 95% CI" for k in with_intervals),
        "F1 vs best",
        *("ECE", "ECE 95% CI", "ECE unscaled"),
    ]
    rule = "|---" * (2 + len(shown)) + "|--:" * (5 + len(keys) + len(with_intervals)) + "|"  # scores right-aligned
    lines = [dataset_heading(section), "", "| " + " | ".join(header) + " |", rule]
    best_index = section["test_f1_mean"].idxmax()
    for index, row in zip(section.index, section.to_dict("records"), strict=True):
        scores = [percent(row[f"test_{k}_mean"], row[f"test_{k}_std"]) for k in keys]
        scores += [interval(row[f"test_{k}_ci_low"], row[f"test_{k}_ci_high"]) for k in with_intervals]
        scores.append(versus_best_cell(row, index == best_index))
        scores += calibration_cells(row)
        cells = [model_cell(row), lr_text(row["lr"]), *(markdown_text(row[c]) for c in shown)]
        lines.append("| " + " | ".join([*cells, parameters(row["num_parameters"]), *scores]) + " |")
    hidden = [c for c in SETTINGS if c not in shown and section[c].notna().any()]  # one value in every row
    shared = [f"{c} {markdown_text(section[c].dropna().iloc[0])}" for c in hidden]
    seeds = sorted(set(section["seeds"]))
    what = MULTI_LABEL_SCORES if multi_label else "macro precision, recall and F1"
    lines += [
        "",
        f"Test scores in % ({what}), {'/'.join(map(str, seeds))} seed{'' if seeds == [1] else 's'} per row: "
        "mean ± standard deviation across seeds, at the learning rate (LR) with the best mean validation macro-F1. "
        f"Settings of every row that records them: {', '.join(shared) or 'none'}.",
        "",
        f"95% CI: percentile bootstrap over the test examples ({plural(RESAMPLES, 'resample')}; "
        "Efron & Tibshirani 1993); "
        "a row of several seeds scores every seed on the same resample and averages them, so the interval is "
        "the test sample's uncertainty of the mean (the ± is the seeds' spread). F1 vs best: macro-F1 points "
        "minus the best row's (best mean test macro-F1), with the 95% interval of a paired bootstrap on the same "
        "resampled examples, matched by id (Koehn 2004); ≈ best: the interval includes 0, the two are not "
        "distinguishable on this test set.",
        "",
        "ECE: expected calibration error of the test probabilities in % (15 equal-width bins of confidence; lower "
        "is better; docs/statistics.md), as the prediction files give them: temperature-scaled with the T that "
        "train.py fitted on val (the baseline: its own probabilities, an SVM's scaled with a T fitted on train), "
        "mean ± std across seeds, with its 95% bootstrap interval; ECE unscaled: the model's own probabilities. "
        "On a few hundred test texts ECE is biased upwards (a bin of few texts has a noisy accuracy).",
        "",
        f"![Reliability diagrams]({reliability_file(section.iloc[0])})",
        *notes(section),
    ]
    if classes is not None:
        lines += ["", *per_class_table(section.loc[best_index], classes)]
    return "\n".join(lines) + "\n"


MULTI_LABEL_SCORES = (
    "subset accuracy: texts with every label right; Hamming loss: wrong text-label decisions, lower is better; "
    "micro-F1: every decision pooled; samples-F1: each text's F1, averaged; macro precision, recall and F1: "
    "each label's, averaged"
)


def notes(section: pd.DataFrame) -> list[str]:
    """A line per reason some rows lack an interval or a comparison, naming those rows, and a line per smoke test."""
    named = section[section["bootstrap_note"].fillna("") != ""]
    lines = [
        f"{', '.join(markdown_text(short_name(m)) for m in group['model'])}: {note}."
        for note, group in named.groupby("bootstrap_note", sort=False)
    ]
    lines += [smoke_test_note(row) for row in section.to_dict("records") if is_smoke_test(row)]
    return ["", *lines] if lines else []  # a paragraph of its own


def smoke_test_note(row: dict) -> str:
    subsets = [f"{plural(int(row[c]), noun)} (--{c})" for c, noun in SUBSETS.items() if not pd.isna(row[c])]
    return (
        f"{markdown_text(short_name(row['model']))} ({SMOKE_TEST}): {', '.join(subsets)}; "
        "the scores of a subset, not of the dataset."
    )


def calibration_cells(row: dict) -> list[str]:
    """ECE in % (mean ± std across seeds), its interval, and the ECE before scaling ("–" where none)."""
    unscaled = row["test_ece_uncalibrated_mean"]
    return [
        percent(row["test_ece_mean"], row["test_ece_std"]),
        interval(row["test_ece_ci_low"], row["test_ece_ci_high"]),
        "–" if pd.isna(unscaled) else percent(unscaled, row["test_ece_uncalibrated_std"]),
    ]


def per_class_table(best_row: pd.Series, classes: pd.DataFrame) -> list[str]:
    """The best row's per-class scores; multi-label: per label, and no confusion matrix (it says why)."""
    model = markdown_text(short_name(best_row["model"]))
    run = f"{model}, lr {lr_text(best_row['lr'])}, seed {cell(best_row['chosen_seed'])}"
    kind = "Label" if best_row["multi_label"] else "Class"
    lines = [
        f"Per {kind.lower()} on test, in %: the best row's run with the best validation macro-F1 ({run}).",
        "",
        f"| {kind} | Precision | Recall | F1 | Support |",
        "|---|--:|--:|--:|--:|",
    ]
    for c in classes.to_dict("records"):
        scores = [class_score(c[key]) for key in ("precision", "recall", "f1")]
        lines.append(f"| {markdown_text(c['class'])} | {' | '.join(scores)} | {c['support']} |")
    if classes["f1"].isna().any():
        lines += ["", ABSENT]
    if best_row["multi_label"]:
        return [*lines, "", NO_CONFUSION_MATRIX]
    return [*lines, "", f"![Confusion matrix]({confusion_file(best_row)})"]


def class_score(value: float) -> str:
    """A per-class score in %; metrics.classification_metrics gives a class absent from the split and
    never predicted none (NaN in the table)."""
    return "absent" if pd.isna(value) else f"{value * 100:.2f}"


def section_file(row, prefix: str, suffix: str) -> str:
    """A file of one dataset's section, named by its fingerprint as in the section's heading."""
    fingerprint, subset = row["dataset_fingerprint"], row["max_eval_samples"]
    name = "unrecorded" if pd.isna(fingerprint) else fingerprint[:SHORT_FINGERPRINT]
    return f"{prefix}_{name}{'' if pd.isna(subset) else f'_eval{int(subset)}'}{suffix}"


def confusion_file(row) -> str:
    return section_file(row, "confusion_matrix", ".png")


def reliability_file(row) -> str:
    return section_file(row, "reliability", ".png")


def class_scores(best_row: pd.Series) -> tuple[pd.DataFrame, np.ndarray | None, tuple[str, ...]]:
    """Per-class (multi-label: per-label) precision, recall, F1 and support, the confusion matrix (None
    for multi-label) and the class names of the best row's chosen run (the seed with the best
    validation macro-F1)."""
    predictions = read_predictions(best_row["chosen_run"])
    metrics = scores(predictions, predictions.predicted[0])
    table = pd.DataFrame([{"class": name, **values} for name, values in metrics["per_class"].items()])
    matrix = metrics.get("confusion_matrix")
    return table, None if matrix is None else np.array(matrix), predictions.names


# Names in plots are drawn with parse_math=False: matplotlib would read $...$ in a label or model name as a
# formula (mathtext), and one such as "$5 \frac$" would fail the whole results.


def confusion_figure(matrix: np.ndarray, names: tuple[str, ...], title: str) -> plt.Figure:
    """Counts, rows the true class and columns the predicted one: the diagonal is what is right. With
    many classes the counts (beyond ANNOTATED_CLASSES) and the names (beyond NAMED_CLASSES) are left
    out (the ticks are then class ids): they would not be legible, and 1,000 classes' counts would be a
    million texts to draw."""
    size = max(4.5, 0.6 * min(len(names), ANNOTATED_CLASSES) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    if len(names) <= NAMED_CLASSES:
        positions = range(len(names))
        ax.set_xticks(positions, names, rotation=45, ha="right", parse_math=False)
        ax.set_yticks(positions, names, parse_math=False)
    if len(names) <= ANNOTATED_CLASSES:
        for (true, predicted), count in np.ndenumerate(matrix):
            dark = count > matrix.max() / 2
            ax.text(predicted, true, str(count), ha="center", va="center", color="white" if dark else "black")
    by_id = "" if len(names) <= NAMED_CLASSES else " (id)"
    ax.set_xlabel(f"predicted class{by_id}")
    ax.set_ylabel(f"true class{by_id}")
    ax.set_title(title, fontsize="medium", parse_math=False)
    return fig


def reliability_figure(section: pd.DataFrame) -> plt.Figure:
    """A reliability diagram per row's chosen run (the seed with the best validation macro-F1): the accuracy of
    each bin of test confidences against its mean confidence, after temperature scaling (from the prediction
    file) and before (the run's test-metrics.json; train.py's runs). The diagonal is perfect calibration;
    points below it are over-confident. Multi-label: every label's probabilities pooled."""
    columns = min(3, len(section))
    rows = math.ceil(len(section) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    titles = [
        f"{label(model, details)}, seed" for model, details in zip(section["model"], row_details(section), strict=True)
    ]
    for ax, row, title in zip(axes.flat, section.to_dict("records"), titles, strict=False):
        after = calibration.reliability(*read_confidences(row["chosen_run"]))
        metrics = json.loads((Path(row["chosen_run"]) / "test-metrics.json").read_text(encoding="utf-8"))
        before = metrics.get("uncalibrated", {}).get("reliability")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        shown = "prediction file, after scaling" if before else "prediction file"  # the baseline's: its own
        curves = [(shown, after, "tab:blue")] + ([("before scaling", before, "tab:orange")] if before else [])
        for name, bins, color in curves:
            points = [(c, a) for c, a in zip(bins["confidence"], bins["accuracy"], strict=True) if c is not None]
            ax.plot(*zip(*points, strict=True), marker="o", color=color, label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        title = textwrap.fill(f"{title} {cell(row['chosen_seed'])}", 48)  # within its panel's width
        ax.set_title(title, fontsize="small", parse_math=False)
        ax.set_xlabel("confidence (mean of a bin)" + (", labels pooled" if row["multi_label"] else ""))
        ax.set_ylabel("accuracy in the bin")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(section) :]:
        ax.set_visible(False)
    return fig


def row_details(best: pd.DataFrame) -> list[list[str]]:
    """For plot labels: each row's dataset and settings, where rows differ in them (a setting a row
    does not have, such as the baseline's epochs, is left out), and whether it is a smoke test."""
    differing = [c for c in ALWAYS_SHOWN if best[c].nunique() > 1] + varying_settings(best)
    several_datasets = best["dataset_fingerprint"].nunique(dropna=False) > 1
    details = []
    for row in best.to_dict("records"):
        shown = [f"{HEADERS.get(c, c).lower()} {cell(row[c])}" for c in differing if not pd.isna(row[c])]
        if several_datasets:
            shown.insert(0, f"{row['dataset']} {cell(row['dataset_fingerprint'])[:SHORT_FINGERPRINT]}")
        details.append([*shown, SMOKE_TEST] if is_smoke_test(row) else shown)
    return details


def label(model: str, details: list[str]) -> str:
    return short_name(model) + (f" ({', '.join(details)})" if details else "")


def f1_figure(best: pd.DataFrame) -> plt.Figure:
    """Each row's mean test macro-F1, with the 95% bootstrap interval of the table (a row without one has no
    error bar; results.md says why). The bars start at 0: their lengths compare as the scores do."""
    labels = [label(model, details) for model, details in zip(best["model"], row_details(best), strict=True)]
    width = max(8, 5 + 0.08 * max(map(len, labels)))  # room for the longest label beside the bars
    fig, ax = plt.subplots(figsize=(width, 0.4 * len(best) + 1.2))
    positions = np.arange(len(best))[::-1]  # the best row on top
    mean, low, high = (best[f"test_f1_{key}"].to_numpy(dtype=float) * 100 for key in ("mean", "ci_low", "ci_high"))
    ax.barh(positions, mean)
    shown = ~np.isnan(low)
    if shown.any():  # a percentile interval may, rarely, leave out the mean itself: no negative length
        below, above = np.clip(mean - low, 0, None)[shown], np.clip(high - mean, 0, None)[shown]
        ax.errorbar(mean[shown], positions[shown], xerr=[below, above], fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(positions, labels, parse_math=False)  # positions, not names: two rows of one model, two bars
    ax.set_xlabel("test macro-F1 (%), mean over seeds; error bars: 95% bootstrap interval")
    ax.set_xlim(0, 100)
    return fig


def val_f1_per_epoch_figure(best: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    for row, details in zip(best.itertuples(), row_details(best), strict=True):
        log = pd.read_csv(Path(row.chosen_run) / "log.csv")
        if "train_loss" in log:  # fine-tuned runs; the baseline's rows are values of C, not epochs
            lr = f"lr {lr_text(row.lr)}"
            ax.plot(log["epoch"], log["val_f1"] * 100, marker=".", label=label(row.model, [*details, lr]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1 (%)")
    for text in ax.legend(fontsize="small").get_texts():
        text.set_parse_math(False)
    return fig


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def section_report(section: pd.DataFrame, results_dir: Path) -> str:
    """One dataset's table, with the best row's per-class CSV and confusion matrix written beside it."""
    best_row = section.loc[section["test_f1_mean"].idxmax()]
    save(reliability_figure(section), results_dir / reliability_file(best_row))
    classes, matrix, names = class_scores(best_row)
    write_text(results_dir / section_file(best_row, "per_class", ".csv"), csv_text(classes))
    if matrix is not None:
        title = f"{short_name(best_row['model'])}, seed {cell(best_row['chosen_seed'])}: test"
        save(confusion_figure(matrix, names, title), results_dir / confusion_file(best_row))
    return markdown_table(section, classes)


def write_results(runs: pd.DataFrame, best: pd.DataFrame, results_dir: Path) -> str:
    """The tables and plots, as a set that replaces results_dir whole (staged): a full disk or a kill
    mid-write leaves the previous set, never a new best.csv beside an old results.md. results.md's text
    is returned."""
    with staged(results_dir) as folder:
        write_text(folder / "all.csv", csv_text(written(runs)))
        write_text(folder / "best.csv", csv_text(written(best.drop(columns="seed_runs"))))
        save(f1_figure(best), folder / "test_f1.png")
        save(val_f1_per_epoch_figure(best), folder / "val_f1_per_epoch.png")
        sections = best.groupby(SECTION, dropna=False, sort=False)  # different test examples: never one table
        report = "\n".join(section_report(section, folder) for _, section in sections)
        write_text(folder / "results.md", report)
    return report


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """A new folder to write a set into, which then replaces `folder` whole, or is removed if the writing
    fails. It is made beside `folder` (the same disk: renaming moves nothing) as files.staging_folder
    names it, after this process, with whatever `folder` holds beside a result set (RESULT_FILE) copied in."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
    with contextlib.suppress(FileExistsError):  # made meanwhile by another aggregate.py; a file: reported below
        folder.parent.mkdir(parents=True)
    prefix = f".{folder.name}."
    remove_stale_staging(folder.parent, prefix)  # a killed aggregate.py's (kill -9 skips the except below)
    staging = staging_folder(folder.parent, prefix)
    try:
        as_a_new_file(staging)  # mkdtemp makes it private; the results are for colleagues to read
        carry_over(folder, staging)
        yield staging
        replace_folder(folder, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def carry_over(folder: Path, staging: Path) -> None:
    """Copy into staging what folder holds that aggregate.py does not write (RESULT_FILE): someone's notes
    stay; an older set's files (a confusion matrix of a dataset no longer in the table) do not."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        temporary = TEMPORARY_FILE.fullmatch(entry.name)
        if RESULT_FILE.fullmatch(temporary[1] if temporary else entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staging / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, staging / entry.name, follow_symlinks=False)


def main(args: Args) -> None:
    # One dataset's runs, one dataset's results: tables of two datasets never mix. Absolute from here
    # on: all.csv's run folders read the same from whatever directory this runs in.
    args.resolve_dataset()
    output_root, results_dir = (args.output_root / args.dataset).resolve(), (args.results_dir / args.dataset).resolve()
    read_predictions.cache_clear()  # the files may have changed since an earlier call in this process
    read_confidences.cache_clear()
    try:
        runs = collect_runs(output_root)
    except ValueError as e:
        sys.exit(f"aggregate.py: error: {e}")
    best = with_significance(choose_lr(runs))
    try:
        report = write_results(runs, best, results_dir)
    except OSError as e:  # a full disk, a read-only folder, a file where the folder would be
        remedy = "give --results_dir a folder you may write to, on a disk with room"
        sys.exit(f"aggregate.py: error: cannot write the results to {results_dir} ({e.strerror or e}): {remedy}")
    print(report)
    datasets = best["dataset_fingerprint"].nunique(dropna=False)
    print(f"{plural(len(runs), 'run')}, {plural(len(best), 'row')}, {plural(datasets, 'dataset')} -> {results_dir}")


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args))
