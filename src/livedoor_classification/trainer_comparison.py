"""bench.py's trainer section: train.py against transformers' Trainer (trainer_reference.py) on the same model,
data, batch size, length, epochs, learning rate, warmup and precision, each in a process of its own, in
alternating rounds (ours first in odd rounds, the Trainer first in even ones), so that a machine that speeds
up or slows down over the minutes favours neither side.

Per round and side: the process's wall seconds (start-up, tokenization, training, evaluation, testing), the
seconds per optimizer step and the tokens per second of training (the epochs' own seconds, validation
included on both sides), the peak resident memory, and the test accuracy and macro-F1. The ratio is ours over
the Trainer's wall seconds, per round; the summary row gives the median of each figure and the ratio's range.
"""

import json
import statistics
import sys
from pathlib import Path

from livedoor_classification.hardware import resolve_device, resolve_precision
from livedoor_classification.paths import ROOT
from livedoor_classification.train_process import cold_compile, read_run, run_measured, train_command


def ours(model_dir: str, dataset_dir: Path, output: Path, settings: dict, precision: str, compiled: bool) -> dict:
    options = {"model_name": model_dir, "dataset_dir": dataset_dir, "precision": precision, "compile": compiled}
    command = train_command(output, **options, **settings)
    seconds, peak_mib = run_measured("train.py", command, cold_compile(output))
    run = read_run(output)
    train_seconds = sum(row["epoch_seconds"] + row["val_seconds"] for row in run["log"])
    tokens = sum(row["train_tokens_per_s"] * row["epoch_seconds"] for row in run["log"])
    steps = run["config"]["total_steps"]
    test = run["test-metrics"]
    return row("train.py", seconds, train_seconds, steps, tokens, peak_mib, test["accuracy"], test["f1"])


def trainer(model_dir: str, dataset_dir: Path, output: Path, settings: dict, precision: str, compiled: bool) -> dict:
    result_file = output / "trainer.json"
    output.mkdir(parents=True)
    options = {"model_name": model_dir, "dataset_dir": dataset_dir, "output": result_file, "precision": precision}
    # -P: the working directory stays off sys.path, where our datasets/ folder would shadow Hugging Face `datasets`
    # (which the Trainer imports when it finds it).
    command = [sys.executable, "-P", "-m", "livedoor_classification.trainer_reference"]
    command += [f"--{key}={value}" for key, value in (options | settings).items()] + ["--compile"] * compiled
    env = cold_compile(output) | {"PYTHONPATH": str(ROOT / "src")}  # the package, as the scripts find it beside them
    seconds, peak_mib = run_measured("the Trainer", command, env)
    result = json.loads(result_file.read_text())
    return row(
        "Trainer",
        seconds,
        result["train_seconds"],
        result["steps"],
        result["train_tokens"],
        peak_mib,
        result["test_accuracy"],
        result["test_f1"],
    )


def row(side, seconds, train_seconds, steps, tokens, peak_mib, accuracy, f1) -> dict:
    """steps and train_tokens say that both sides trained on the same: the optimizer steps, and the tokens of
    the training texts as cut to max_seq_len (each side's own count: log.csv's rate x seconds, the masks' ones)."""
    return {
        "side": side,
        "steps": steps,
        "train_tokens": round(tokens),
        "wall_s": seconds,
        "ms_per_step": 1000 * train_seconds / steps,
        "train_tokens_per_s": tokens / train_seconds,
        "peak_rss_mib": peak_mib,
        "test_accuracy": accuracy,
        "test_f1": f1,
    }


def compare(model_dir: str, dataset_dir: Path, workdir: Path, precisions: list[str], rounds: int, settings: dict):
    """A row per round and side, and a summary row per precision: train.py's settings (epochs, batch_size,
    eval_batch_size, max_seq_len, lr, warmup_ratio, seed) as given to both; "auto" as train.py resolves it on this
    machine, for both; "compile": that precision, with train.py --compile and the Trainer's torch_compile=True."""
    rows, summaries = [], []
    device = resolve_device("auto", 0)
    for requested in precisions:
        compiled = requested == "compile"
        precision, _ = resolve_precision("auto" if compiled else requested, device)
        label = f"compile ({precision})" if compiled else precision  # the pair's name in the table
        pairs = []
        for number in range(1, rounds + 1):
            sides = {"train.py": ours, "Trainer": trainer}
            order = ["train.py", "Trainer"] if number % 2 else ["Trainer", "train.py"]
            measured = {}
            for side in order:
                output = workdir / f"{requested}-{number}-{side}"
                measured[side] = sides[side](model_dir, dataset_dir, output, settings, precision, compiled)
                rows.append({"precision": label, "round": number} | measured[side])
            pairs.append(measured)
        ratios = [pair["train.py"]["wall_s"] / pair["Trainer"]["wall_s"] for pair in pairs]
        summary = {"precision": label, "rounds": rounds, "ratio_median": statistics.median(ratios)}
        summary |= {"ratio_min": min(ratios), "ratio_max": max(ratios)}
        for side in ("train.py", "Trainer"):
            for key in ("wall_s", "ms_per_step", "train_tokens_per_s", "peak_rss_mib", "test_accuracy"):
                summary[f"{side}_{key}"] = statistics.median(pair[side][key] for pair in pairs)
        summaries.append(summary)
    return rows, summaries
