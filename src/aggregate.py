"""Collect every complete run under outputs/ into tables and plots under results/.

    python src/aggregate.py

    results/all.csv                 one row per run
    results/best.csv                per model: the learning rate with the best mean validation macro-F1
                                    across seeds, and its test metrics as mean and std across seeds
    results/results.md              the Markdown table of best.csv, in %
    results/test_f1.png             test macro-F1 per model, with the std across seeds as error bars
    results/val_f1_per_epoch.png    validation macro-F1 per epoch of each model's chosen run

The learning rate is chosen on validation only: choosing it by test scores would report an
optimistic number. Parameter counts come from each run's config.json; nothing is downloaded.
"""

import math
import re
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from classopt import classopt, config

from metrics import SUMMARY_KEYS
from runs import ROOT, read_run

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@classopt(default_long=True)
class Args:
    output_root: Path = config(default=ROOT / "outputs", help="where train.py and baseline.py wrote their runs")
    results_dir: Path = config(default=ROOT / "results", help="where the tables and plots go")


def run_row(run_dir: Path) -> dict:
    files = read_run(run_dir)
    config, val, test = files["config"], files["val-metrics"], files["test-metrics"]
    log = pd.read_csv(run_dir / "log.csv")
    return {
        "model": config["model_name"],
        "lr": config.get("lr"),
        "seed": config.get("seed"),
        "batch_size": config.get("batch_size"),
        "epochs": config.get("epochs"),
        "max_seq_len": config.get("max_seq_len_used"),
        "precision": config.get("precision_used"),
        "best_epoch": val["best_epoch"],
        **{f"val_{key}": val[key] for key in SUMMARY_KEYS},
        **{f"test_{key}": test[key] for key in SUMMARY_KEYS},
        "num_parameters": config["num_parameters"],
        "train_seconds": float(log["epoch_seconds"].sum()),
        "run_dir": str(run_dir),
    }


def collect_runs(output_root: Path) -> pd.DataFrame:
    rows = []
    for run_dir in sorted(p for p in output_root.glob("*/*/*") if p.is_dir()):
        try:
            rows.append(run_row(run_dir))
        except (ValueError, KeyError, OSError, pd.errors.ParserError) as e:
            print(f"skipped {e}" if isinstance(e, ValueError) else f"skipped {run_dir}: unreadable ({e!r})")
    if not rows:
        raise ValueError(f"no complete runs under {output_root}: run src/train.py or run.sh first")
    runs = pd.DataFrame(rows)
    # Folder names sort by time: of runs repeating one configuration, keep the newest.
    duplicated = runs.duplicated(["model", "lr", "seed"], keep="last")
    for run_dir in runs.loc[duplicated, "run_dir"]:
        print(f"skipped {run_dir}: a newer run has the same model, lr and seed")
    return runs[~duplicated].sort_values(["model", "lr", "seed"], na_position="first").reset_index(drop=True)


def choose_lr(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model, group in runs.groupby("model", sort=False):
        mean_val_f1 = group.groupby("lr", dropna=False)["val_f1"].mean()  # the baseline's lr is NaN
        lr = mean_val_f1.idxmax()
        chosen = group[group["lr"].isna()] if pd.isna(lr) else group[group["lr"] == lr]
        row = {"model": model, "lr": lr, "seeds": len(chosen), "val_f1_mean": mean_val_f1.max()}
        for key in SUMMARY_KEYS:
            row[f"test_{key}_mean"] = chosen[f"test_{key}"].mean()
            row[f"test_{key}_std"] = chosen[f"test_{key}"].std(ddof=1) if len(chosen) > 1 else math.nan
        row["num_parameters"] = chosen["num_parameters"].iloc[0]
        row["chosen_run"] = chosen.loc[chosen["val_f1"].idxmax(), "run_dir"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values("test_f1_mean", ascending=False).reset_index(drop=True)


def percent(mean: float, std: float) -> str:
    return f"{mean * 100:.2f}" if math.isnan(std) else f"{mean * 100:.2f} ± {std * 100:.2f}"


def parameters(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def markdown_table(best: pd.DataFrame) -> str:
    lines = ["| Model | Params | Accuracy | Precision | Recall | F1 |", "|---|--:|--:|--:|--:|--:|"]
    for row in best.itertuples():
        name = row.model
        if HUB_ID.match(name) and not Path(name).exists():
            name = f"[{name}](https://huggingface.co/{name})"
        scores = [percent(getattr(row, f"test_{k}_mean"), getattr(row, f"test_{k}_std")) for k in SUMMARY_KEYS]
        lines.append(f"| {name} | {parameters(row.num_parameters)} | " + " | ".join(scores) + " |")
    seeds = sorted(set(best["seeds"]))
    lines.append("")
    lines.append(
        f"Test scores in % (macro precision, recall and F1), {'/'.join(map(str, seeds))} seed(s) per model: "
        "mean ± standard deviation across seeds, at the learning rate with the best mean validation macro-F1."
    )
    return "\n".join(lines) + "\n"


def plot_test_f1(best: pd.DataFrame, path: Path) -> None:
    ordered = best.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(best) + 1.2))
    ax.barh(ordered["model"], ordered["test_f1_mean"] * 100, xerr=ordered["test_f1_std"].fillna(0) * 100, capsize=3)
    ax.set_xlabel("test macro-F1 (%)")
    ax.set_xlim(max(0, ordered["test_f1_mean"].min() * 100 - 10), 100)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_val_f1_per_epoch(best: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in best.itertuples():
        log = pd.read_csv(Path(row.chosen_run) / "log.csv")
        if "train_loss" in log:  # fine-tuned runs; the baseline's rows are values of C, not epochs
            ax.plot(log["epoch"], log["val_f1"] * 100, marker=".", label=f"{row.model} (lr {row.lr:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation macro-F1 (%)")
    ax.legend(fontsize="small")
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
    (args.results_dir / "results.md").write_text(markdown_table(best), encoding="utf-8")
    plot_test_f1(best, args.results_dir / "test_f1.png")
    plot_val_f1_per_epoch(best, args.results_dir / "val_f1_per_epoch.png")
    print(markdown_table(best))
    print(f"{len(runs)} runs of {len(best)} models -> {args.results_dir}")


if __name__ == "__main__":
    main(Args.from_args())
