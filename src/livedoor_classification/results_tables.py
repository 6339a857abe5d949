"""results.md and the CSV files as text (aggregate.py's tables): a Markdown table per section of best.csv, with
the settings that tell its rows apart as columns, how sure each score is, and the best row's scores per
class. Names that users chose (labels, model and dataset names) are written as given, escaped for the
format: a CSV cell that a spreadsheet would run as a formula gets a ' in front; in results.md, | [ ] and
HTML are escaped."""

import html
import math
import re

import pandas as pd

from livedoor_classification import results_significance
from livedoor_classification.metrics import summary_keys
from livedoor_classification.results_columns import (
    SETTINGS,
    SHORT_FINGERPRINT,
    SMOKE_TEST,
    SUBSETS,
    cell,
    is_local,
    is_smoke_test,
    lr_text,
    plural,
    short_name,
)
from livedoor_classification.results_folder import confusion_file, reliability_file

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # a Hugging Face Hub id (org/name): its cell links to its page
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
    "lora_r": "LoRA r",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "lora_target_modules": "LoRA layers",
    "lora_4bit": "4-bit",
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
ABSENT = "absent: not in the test split and never predicted; no scores, and not in the macro averages."
NO_CONFUSION_MATRIX = (
    "No confusion matrix: a text may have several labels or none, so a prediction has no one gold label to be"
    " confused with; the per-label scores above say which labels are missed (recall) and which are given wrongly"
    " (precision)."
)

# A spreadsheet runs a cell that starts with one of these as a formula, whatever the CSV's author meant
# (OWASP, "CSV Injection"): a label or a model name such as =HYPERLINK(...) would. Such a cell of text
# gets a ' in front, which spreadsheets show as text; a number such as -0.5 is no formula and stays.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def markdown_table(section: pd.DataFrame, classes: pd.DataFrame | None = None) -> str:
    """One dataset's rows: the settings that tell rows apart as columns, those shared under the table,
    how sure the scores are, and the best row's scores per class (classes, from class_scores)."""
    shown = ALWAYS_SHOWN + varying_settings(section)
    multi_label = bool(section["multi_label"].iloc[0])
    keys, with_intervals = summary_keys(multi_label), results_significance.bootstrapped(multi_label)
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
        lines.append("| " + " | ".join([*cells, parameters_cell(row), *scores]) + " |")
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
        f"95% CI: percentile bootstrap over the test examples ({plural(results_significance.RESAMPLES, 'resample')}; "
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


def dataset_heading(section: pd.DataFrame) -> str:
    names = ", ".join(sorted({n for names in section["dataset"] for n in names.split(", ") if n})) or "dataset"
    names = markdown_text(names)
    fingerprint = section["dataset_fingerprint"].iloc[0]
    subset = section["max_eval_samples"].iloc[0]
    subset = "" if pd.isna(subset) else f", {plural(int(subset), SUBSETS['max_eval_samples'])} (--max_eval_samples)"
    if pd.isna(fingerprint):
        return f"## {names} (dataset fingerprint not recorded{subset})"
    return f"## {names} (dataset {fingerprint[:SHORT_FINGERPRINT]}{subset})"


def model_cell(row: dict) -> str:
    """The model's name (a Hub id links to its page), and whether the row is a smoke test."""
    model = row["model"]
    if HUB_ID.match(model) and not is_local(model):
        name = f"[{model}](https://huggingface.co/{model})"
    else:
        name = markdown_text(short_name(model))
    return name + (f" ({SMOKE_TEST})" if is_smoke_test(row) else "")


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


def calibration_cells(row: dict) -> list[str]:
    """ECE in % (mean ± std across seeds), its interval, and the ECE before scaling ("–" where none)."""
    unscaled = row["test_ece_uncalibrated_mean"]
    return [
        percent(row["test_ece_mean"], row["test_ece_std"]),
        interval(row["test_ece_ci_low"], row["test_ece_ci_high"]),
        "–" if pd.isna(unscaled) else percent(unscaled, row["test_ece_uncalibrated_std"]),
    ]


def parameters(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def parameters_cell(row: dict) -> str:
    """The model's parameters, and beside them those it trained where that is fewer (train.py --lora)."""
    total, trained = row["num_parameters"], row["trainable_parameters"]
    return parameters(total) if trained >= total else f"{parameters(total)} ({parameters(trained)} trained)"


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
