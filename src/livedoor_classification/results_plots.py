"""aggregate.py's figures: test macro-F1 per row of best.csv with its 95% bootstrap interval, validation macro-F1
per epoch, a confusion matrix, and reliability diagrams before and after temperature scaling. Each
function returns a figure; save() writes it and closes it."""

import json
import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt

# Japanese class and model names need a font with kana and kanji; matplotlib's default has none and
# draws boxes. matplotlib-fontja ships IPAexGothic (kana, kanji and Latin) and makes it the default
# when imported: the same font on every machine, nothing to install on the system.
import matplotlib_fontja  # noqa: F401
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from livedoor_classification import calibration
from livedoor_classification.results_columns import (
    SHORT_FINGERPRINT,
    SMOKE_TEST,
    cell,
    is_smoke_test,
    lr_text,
    short_name,
)
from livedoor_classification.results_reading import read_confidences
from livedoor_classification.results_tables import ALWAYS_SHOWN, HEADERS, varying_settings

# A confusion matrix grows with its classes and writes its counts in the cells up to ANNOTATED_CLASSES
# classes (20 inches), and names its rows and columns up to NAMED_CLASSES.
ANNOTATED_CLASSES = 30
NAMED_CLASSES = 100

# Names in plots are drawn with parse_math=False: matplotlib would read $...$ in a label or model name as a
# formula (mathtext), and one such as "$5 \frac$" would fail the whole results.


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


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
