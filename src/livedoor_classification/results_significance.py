"""How sure best.csv's numbers are (aggregate.py's third step), from each row's test-predictions.jsonl, with
significance.py's bootstraps: a 95% percentile bootstrap interval over the test examples per row (Efron &
Tibshirani 1993), and per row the paired bootstrap of its macro-F1 difference from the best row of its
section on the same resampled examples (Koehn 2004), pairing examples by id. Rows of different sections
(results_columns.SECTION: other test examples) are never compared."""

import numpy as np
import pandas as pd

from livedoor_classification.results_columns import SECTION
from livedoor_classification.results_reading import Predictions, read_confidences, read_predictions
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

RESAMPLES = 1000  # bootstrap resamples of the test set: a percentile interval's ends settle by about 1,000
BOOTSTRAP_SEED = 0  # the same resamples for every row and every run of aggregate.py: the tables are reproducible
BOOTSTRAPPED = {"accuracy": accuracy, "f1": macro_f1}
MULTI_LABEL_BOOTSTRAPPED = {"subset_accuracy": subset_accuracy, "micro_f1": micro_f1, "f1": multi_label_macro_f1}


def bootstrapped(multi_label: bool) -> dict:
    """The scores that get an interval, and their bootstrap metrics; "f1" is macro-F1 for both kinds."""
    return MULTI_LABEL_BOOTSTRAPPED if multi_label else BOOTSTRAPPED


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


def with_significance(best: pd.DataFrame) -> pd.DataFrame:
    """best with significance_columns, computed within each dataset: rows of different datasets are never compared."""
    sections = best.groupby(SECTION, dropna=False, sort=False)
    columns = pd.concat([section_significance(section) for _, section in sections])
    kinds = sorted(set(best["multi_label"]))  # single-label's columns first, as they were before multi-label
    names = list(dict.fromkeys(c for multi_label in kinds for c in significance_columns(multi_label)))
    return best.join(columns.reindex(columns=names))


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
