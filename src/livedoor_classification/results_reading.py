"""A run folder read and checked (aggregate.py's first step): collect_runs makes all.csv's table, a row per
complete run, and read_predictions gives a run's test predictions for the intervals and per-class scores.

Every run's prediction files are checked against its config.json (a line per example) and its metrics
files (accuracy and macro-F1 recomputed from the lines): a run whose files disagree (a truncated copy,
an edited file) is skipped with a line saying why, as is a run with an unreadable file."""

import itertools
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from livedoor_classification import calibration
from livedoor_classification.metrics import classification_metrics, multi_label_metrics, summary_keys
from livedoor_classification.results_columns import COLUMNS, IDENTITY_COLUMNS, plural
from livedoor_classification.runs import read_run, run_identity

# Recomputed from each prediction file and compared with its metrics file. Both come from the same
# predictions, so they agree to the last bits; 1e-6 leaves room for another order of summation.
CHECKED = {"accuracy": "accuracy", "f1": "macro-F1"}
MULTI_LABEL_CHECKED = {"subset_accuracy": "subset accuracy", "micro_f1": "micro-F1", "f1": "macro-F1"}
TOLERANCE = 1e-6
# write_predictions writes a line's probabilities (a number per class: most of the line, and of the
# time to parse it) after its id and labels: a line is cut here and only its start parsed.
PROBABILITIES = ', "probabilities": {'


def collect_runs(output_root: Path) -> pd.DataFrame:
    """all.csv's table: a row per complete run under output_root (<model>/<date>/<time>/), the newest of runs
    with one identity; a run that is unreadable or whose files disagree is skipped with a line saying why.
    ValueError if none is left."""
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


def run_row(run_dir: Path) -> dict:
    """A run's row of all.csv: its dataset and settings (runs.IDENTITY, by all.csv's names), val and test
    scores, calibration, size and training time; ValueError naming the file if its files disagree."""
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
        # train.py --lora trains part of them; runs before it (and the baseline) trained all
        "trainable_parameters": config.get("trainable_parameters", config["num_parameters"]),
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


# A run's prediction files: read for the checks above, and the test split's again (cached) for the intervals
# (results_significance), the reliability diagrams and the per-class table.


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


def class_scores(best_row: pd.Series) -> tuple[pd.DataFrame, np.ndarray | None, tuple[str, ...]]:
    """Per-class (multi-label: per-label) precision, recall, F1 and support, the confusion matrix (None
    for multi-label) and the class names of the best row's chosen run (the seed with the best
    validation macro-F1)."""
    predictions = read_predictions(best_row["chosen_run"])
    metrics = scores(predictions, predictions.predicted[0])
    table = pd.DataFrame([{"class": name, **values} for name, values in metrics["per_class"].items()])
    matrix = metrics.get("confusion_matrix")
    return table, None if matrix is None else np.array(matrix), predictions.names
