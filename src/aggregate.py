"""Collect every complete run under outputs/ into tables and plots under results/.

    python src/aggregate.py

    results/all.csv                 one row per run: its dataset, settings, and val and test metrics
    results/best.csv                per model and settings: the learning rate with the best mean validation
                                    macro-F1 across seeds, and its test metrics as mean and std across seeds
    results/results.md              best.csv as Markdown tables in %, one section per dataset
    results/test_f1.png             test macro-F1 per row of best.csv, with the std across seeds as error bars
    results/val_f1_per_epoch.png    validation macro-F1 per epoch of each row's chosen run

Runs count together only if they share a dataset (by fingerprint) and every setting that changes
results (runs.IDENTITY): a run with more epochs, another max_seq_len or batch size is another row,
never averaged with the others nor replacing them, and the settings that tell rows apart are shown.
The learning rate is chosen on validation only: choosing it by test scores would report an
optimistic number. Parameter counts come from each run's config.json; nothing is downloaded.
"""

from pathlib import Path

from classopt import classopt, config

import cli
from runs import ROOT


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    output_root: Path = config(default=ROOT / "outputs", help="where train.py and baseline.py wrote their runs")
    results_dir: Path = config(default=ROOT / "results", help="where the tables and plots go")


if __name__ == "__main__":
    ARGS = Args.from_args()  # before pandas and matplotlib are imported: --help answers at once

import math
import re
import sys

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from metrics import SUMMARY_KEYS
from runs import IDENTITY, read_run, run_identity

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SHORT_FINGERPRINT = 12  # hex digits of a dataset fingerprint shown in tables and plots

# all.csv's names for some identity keys (the values used, not the arguments); the rest keep theirs.
COLUMNS = {"model_name": "model", "global_batch_size": "batch_size", "max_seq_len_used": "max_seq_len",
           "precision_used": "precision"}  # fmt: skip
IDENTITY_COLUMNS = [COLUMNS.get(key, key) for key in IDENTITY]
# A row of best.csv: runs of one dataset, model and settings, across learning rates and seeds.
SETTINGS = [c for c in IDENTITY_COLUMNS if c not in ("dataset_fingerprint", "model", "lr", "seed")]
ROW_COLUMNS = ["dataset_fingerprint", "model", *SETTINGS]
ALWAYS_SHOWN = ["epochs", "max_seq_len", "batch_size"]  # in results.md, whether they vary or not
HEADERS = {"epochs": "Epochs", "max_seq_len": "Max len", "batch_size": "Batch", "text_fields": "Text fields"}


def run_row(run_dir: Path) -> dict:
    files = read_run(run_dir)
    config, val, test = files["config"], files["val-metrics"], files["test-metrics"]
    log = read_log(run_dir)
    dataset_dir = config.get("dataset_dir")
    return {
        "dataset": Path(dataset_dir).name if dataset_dir else None,
        **{COLUMNS.get(key, key): setting(value) for key, value in run_identity(config).items()},
        "best_epoch": val["best_epoch"],
        **{f"val_{key}": val[key] for key in SUMMARY_KEYS},
        **{f"test_{key}": test[key] for key in SUMMARY_KEYS},
        "num_parameters": config["num_parameters"],
        "train_seconds": float(log["epoch_seconds"].sum()),
        "run_dir": str(run_dir),
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


def collect_runs(output_root: Path) -> pd.DataFrame:
    rows = []
    for run_dir in sorted(p for p in output_root.glob("*/*/*") if p.is_dir()):
        try:
            rows.append(run_row(run_dir))
        except ValueError as e:
            print(f"skipped {e}")
        except (KeyError, OSError) as e:
            print(f"skipped {run_dir}: unreadable ({e!r})")
    if not rows:
        raise ValueError(f"no complete runs under {output_root}: run src/train.py or run.sh first")
    return drop_repeated(integers_as_integers(pd.DataFrame(rows), rows))


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
    for _, group in runs.groupby(ROW_COLUMNS, dropna=False, sort=False):
        mean_val_f1 = group.groupby("lr", dropna=False)["val_f1"].mean()  # the baseline's lr is NaN
        lr = mean_val_f1.idxmax()
        chosen = group[group["lr"].isna()] if pd.isna(lr) else group[group["lr"] == lr]
        row = {"dataset": ", ".join(sorted(group["dataset"].dropna().unique()))}
        row |= {column: chosen[column].iloc[0] for column in ROW_COLUMNS}
        row |= {"lr": lr, "seeds": len(chosen), "val_f1_mean": mean_val_f1.max()}
        for key in SUMMARY_KEYS:
            row[f"test_{key}_mean"] = chosen[f"test_{key}"].mean()
            row[f"test_{key}_std"] = chosen[f"test_{key}"].std(ddof=1) if len(chosen) > 1 else math.nan
        row["num_parameters"] = chosen["num_parameters"].iloc[0]
        row["chosen_run"] = chosen.loc[chosen["val_f1"].idxmax(), "run_dir"]
        rows.append(row)
    best = pd.DataFrame(rows).astype(runs[[*ROW_COLUMNS, "num_parameters"]].dtypes.to_dict())
    order = ["dataset_fingerprint", "test_f1_mean"]
    return best.sort_values(order, ascending=[True, False], na_position="first", kind="stable").reset_index(drop=True)


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


def short_name(model: str) -> str:
    """A hub id as is; a local model folder by its name, not by a path on one machine."""
    path = Path(model)
    return path.name if path.is_absolute() or path.is_dir() else model


def model_cell(model: str) -> str:
    if HUB_ID.match(model) and not Path(model).exists():
        return f"[{model}](https://huggingface.co/{model})"
    return short_name(model)


def percent(mean: float, std: float) -> str:
    return f"{mean * 100:.2f}" if math.isnan(std) else f"{mean * 100:.2f} ± {std * 100:.2f}"


def parameters(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def dataset_heading(section: pd.DataFrame) -> str:
    names = ", ".join(sorted({n for names in section["dataset"] for n in names.split(", ") if n})) or "dataset"
    fingerprint = section["dataset_fingerprint"].iloc[0]
    if pd.isna(fingerprint):
        return f"## {names} (dataset fingerprint not recorded)"
    return f"## {names} (dataset {fingerprint[:SHORT_FINGERPRINT]})"


def markdown_table(section: pd.DataFrame) -> str:
    """One dataset's rows: the settings that tell rows apart as columns, those shared under the table."""
    shown = ALWAYS_SHOWN + varying_settings(section)
    header = ["Model", "LR", *(HEADERS.get(c, c) for c in shown), "Params", "Accuracy", "Precision", "Recall", "F1"]
    rule = "|---" * (2 + len(shown)) + "|--:" * 5 + "|"  # scores right-aligned
    lines = [dataset_heading(section), "", "| " + " | ".join(header) + " |", rule]
    for row in section.to_dict("records"):
        scores = [percent(row[f"test_{k}_mean"], row[f"test_{k}_std"]) for k in SUMMARY_KEYS]
        cells = [model_cell(row["model"]), cell(row["lr"]), *(cell(row[c]) for c in shown)]
        lines.append("| " + " | ".join([*cells, parameters(row["num_parameters"]), *scores]) + " |")
    hidden = [c for c in SETTINGS if c not in shown and section[c].notna().any()]  # one value in every row
    shared = [f"{c} {cell(section[c].dropna().iloc[0])}" for c in hidden]
    seeds = sorted(set(section["seeds"]))
    lines += [
        "",
        f"Test scores in % (macro precision, recall and F1), {'/'.join(map(str, seeds))} seed(s) per row: "
        "mean ± standard deviation across seeds, at the learning rate (LR) with the best mean validation macro-F1. "
        f"Settings of every row that records them: {', '.join(shared) or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def markdown_report(best: pd.DataFrame) -> str:
    """A section per dataset fingerprint: scores on different data are never in one table."""
    sections = best.groupby("dataset_fingerprint", dropna=False, sort=False)
    return "\n".join(markdown_table(section) for _, section in sections)


def row_details(best: pd.DataFrame) -> list[list[str]]:
    """For plot labels: each row's dataset and settings, where rows differ in them (a setting a row
    does not have, such as the baseline's epochs, is left out)."""
    differing = [c for c in ALWAYS_SHOWN if best[c].nunique() > 1] + varying_settings(best)
    several_datasets = best["dataset_fingerprint"].nunique(dropna=False) > 1
    details = []
    for row in best.to_dict("records"):
        shown = [f"{HEADERS.get(c, c).lower()} {cell(row[c])}" for c in differing if not pd.isna(row[c])]
        if several_datasets:
            shown.insert(0, f"{row['dataset']} {cell(row['dataset_fingerprint'])[:SHORT_FINGERPRINT]}")
        details.append(shown)
    return details


def label(model: str, details: list[str]) -> str:
    return short_name(model) + (f" ({', '.join(details)})" if details else "")


def f1_figure(best: pd.DataFrame) -> plt.Figure:
    labels = [label(model, details) for model, details in zip(best["model"], row_details(best), strict=True)]
    width = max(8, 5 + 0.08 * max(map(len, labels)))  # room for the longest label beside the bars
    fig, ax = plt.subplots(figsize=(width, 0.4 * len(best) + 1.2))
    positions = range(len(best))[::-1]  # the best row on top
    ax.barh(positions, best["test_f1_mean"] * 100, xerr=best["test_f1_std"].fillna(0) * 100, capsize=3)
    ax.set_yticks(positions, labels)  # positions, not names: two rows of one model stay two bars
    ax.set_xlabel("test macro-F1 (%)")
    ax.set_xlim(max(0, best["test_f1_mean"].min() * 100 - 10), 100)
    return fig


def val_f1_per_epoch_figure(best: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    for row, details in zip(best.itertuples(), row_details(best), strict=True):
        log = pd.read_csv(Path(row.chosen_run) / "log.csv")
        if "train_loss" in log:  # fine-tuned runs; the baseline's rows are values of C, not epochs
            ax.plot(log["epoch"], log["val_f1"] * 100, marker=".", label=label(row.model, [*details, f"lr {row.lr:g}"]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1 (%)")
    ax.legend(fontsize="small")
    return fig


def save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(args: Args) -> None:
    try:
        runs = collect_runs(args.output_root)
    except ValueError as e:
        sys.exit(f"aggregate.py: error: {e}")
    best = choose_lr(runs)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.results_dir / "all.csv", index=False)
    best.to_csv(args.results_dir / "best.csv", index=False)
    report = markdown_report(best)
    (args.results_dir / "results.md").write_text(report, encoding="utf-8")
    save(f1_figure(best), args.results_dir / "test_f1.png")
    save(val_f1_per_epoch_figure(best), args.results_dir / "val_f1_per_epoch.png")
    print(report)
    datasets = best["dataset_fingerprint"].nunique(dropna=False)
    print(f"{len(runs)} runs, {len(best)} rows, {datasets} dataset(s) -> {args.results_dir}")


if __name__ == "__main__":
    main(ARGS)
