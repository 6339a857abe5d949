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

import math
import sys
from pathlib import Path

import pandas as pd
from classopt import classopt, config

from livedoor_classification.files import write_text
from livedoor_classification.metrics import summary_keys
from livedoor_classification.paths import ROOT
from livedoor_classification.results_columns import ROW_COLUMNS, SECTION, cell, plural, short_name, written
from livedoor_classification.results_folder import confusion_file, reliability_file, section_file, staged
from livedoor_classification.results_plots import (
    confusion_figure,
    f1_figure,
    reliability_figure,
    save,
    val_f1_per_epoch_figure,
)
from livedoor_classification.results_reading import class_scores, collect_runs, read_confidences, read_predictions
from livedoor_classification.results_significance import with_significance
from livedoor_classification.results_tables import csv_text, markdown_table


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args(cli.DatasetOptions):  # --dataset, --dataset_dir, --output_root: whose runs to collect
    results_dir: Path = config(default=ROOT / "results", help="the tables and plots go to <results_dir>/<dataset>/")


# Test ECE recomputed from the prediction files (the probabilities as scaled), and before scaling, and the NLL
# after and before, as the metrics file reports them (before: train.py's runs); in all.csv, and best.csv as mean
# and std, after the scores.
CALIBRATION_KEYS = ("ece", "ece_uncalibrated", "nll", "nll_uncalibrated")


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
        row["trainable_parameters"] = chosen["trainable_parameters"].iloc[0]
        row["chosen_run"] = chosen.loc[chosen["val_f1"].idxmax(), "run_dir"]
        row["chosen_seed"] = chosen.loc[chosen["val_f1"].idxmax(), "seed"]
        row["seed_runs"] = tuple(chosen["run_dir"])  # for the bootstrap; not written to best.csv
        row["multi_label"] = multi_label
        rows.append(row)
    best = pd.DataFrame(rows).astype(runs[[*ROW_COLUMNS, "num_parameters", "trainable_parameters"]].dtypes.to_dict())
    order = [*SECTION, "test_f1_mean"]
    ascending = [True] * len(SECTION) + [False]
    return best.sort_values(order, ascending=ascending, na_position="first", kind="stable").reset_index(drop=True)


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


def main(args: Args) -> None:
    # One dataset's runs, one dataset's results: tables of two datasets never mix. Absolute from here
    # on: all.csv's run folders read the same from whatever directory this runs in.
    args.resolve_dataset()
    output_root, results_dir = (args.output_root / args.dataset).resolve(), (args.results_dir / args.dataset).resolve()
    read_predictions.cache_clear()  # the files may have changed since an earlier call in this process
    read_confidences.cache_clear()
    try:
        runs = collect_runs(output_root)  # all.csv: a row per complete run, its files checked (results_reading)
    except ValueError as e:
        sys.exit(f"aggregate.py: error: {e}")
    best = choose_lr(runs)  # best.csv: a row per model and settings, at the lr chosen on validation
    best = with_significance(best)  # how sure: 95% intervals, and each row against the best (results_significance)
    try:
        report = write_results(runs, best, results_dir)  # tables (results_tables) and plots (results_plots)
    except OSError as e:  # a full disk, a read-only folder, a file where the folder would be
        remedy = "give --results_dir a folder you may write to, on a disk with room"
        sys.exit(f"aggregate.py: error: cannot write the results to {results_dir} ({e.strerror or e}): {remedy}")
    print(report)
    datasets = best["dataset_fingerprint"].nunique(dropna=False)
    print(f"{plural(len(runs), 'run')}, {plural(len(best), 'row')}, {plural(datasets, 'dataset')} -> {results_dir}")


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args))
