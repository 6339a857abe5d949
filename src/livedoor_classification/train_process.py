"""train.py run as a user runs it, in a process of its own, and the run folder it wrote read back.

bench.py measures training this way rather than by calling train.py's functions: its numbers then describe
what train.py does (its start-up, data loading and logging included), not a copy of it.

    run, seconds = run_train(output, model_name=model_dir, dataset_dir=data, epochs=2, compile=True)
    run["config"], run["val-metrics"], run["test-metrics"], run["log"]   # log: log.csv, a dict per epoch
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from livedoor_classification.paths import ROOT


def train_command(output: Path, **options) -> list[str]:
    """train.py's command line with these options (True: a flag) and --output_root output."""
    command = [sys.executable, str(ROOT / "src" / "train.py"), "--output_root", str(output)]
    for option, value in options.items():
        if value is True:
            command.append(f"--{option}")
        elif value is not False:
            command += [f"--{option}", *map(str, value if isinstance(value, list) else [value])]
    return command


def read_run(output: Path) -> dict:
    """The one run folder under output: its config.json, val- and test-metrics.json, and log.csv (a dict of floats
    per epoch)."""
    (config_file,) = output.glob("*/*/*/*/config.json")  # <dataset>/<model>/<date>/<time>/
    run_dir = config_file.parent
    run = {
        name: json.loads((run_dir / f"{name}.json").read_text()) for name in ("config", "val-metrics", "test-metrics")
    }
    with open(run_dir / "log.csv", newline="") as f:
        run["log"] = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]
    return run


def run_measured(name: str, command: list[str], env: dict | None = None) -> tuple[float, float]:
    """A command (called name in its error) run to its end: its wall seconds and its peak resident memory in MiB
    (the process's own, from wait4, not the largest of every child so far that getrusage gives). A failure is a
    RuntimeError naming the last line of its stderr."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    with process.stderr:
        stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        last_line = ([line for line in stderr.splitlines() if line.strip()] or ["(no message)"])[-1]
        raise RuntimeError(f"{name} exited with status {process.returncode}: {last_line}")
    return seconds, usage.ru_maxrss / 1024  # kilobytes on Linux


def cold_compile(output: Path) -> dict:
    """The environment of a process writing to output: inductor's on-disk cache of its own, so that a compiled run
    compiles from nothing, as a user's first run does, rather than reuse an earlier run's kernels."""
    return os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(output.with_name(f"{output.name}-inductor-cache"))}


def run_train(output: Path, **options) -> tuple[dict, float]:
    """Run train.py in a process of its own with these options (True: a flag) and --output_root output.
    Returns its run folder's config.json, val- and test-metrics.json and log.csv (a dict of floats per
    epoch), and the process's wall seconds (start-up, tokenization, training and evaluation). Its
    stdout (a line per epoch) goes to ours; its stderr is kept for the error if it fails."""
    command = train_command(output, **options)
    start = time.perf_counter()
    finished = subprocess.run(command, env=cold_compile(output), stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        last_line = ([line for line in finished.stderr.splitlines() if line.strip()] or ["(no message)"])[-1]
        raise RuntimeError(f"train.py exited with status {finished.returncode}: {last_line}")
    return read_run(output), seconds
