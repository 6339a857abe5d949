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


def run_train(output: Path, **options) -> tuple[dict, float]:
    """Run train.py in a process of its own with these options (True: a flag) and --output_root output.
    Returns its run folder's config.json, val- and test-metrics.json and log.csv (a dict of floats per
    epoch), and the process's wall seconds (start-up, tokenization, training and evaluation). Its
    stdout (a line per epoch) goes to ours; its stderr is kept for the error if it fails."""
    command = [sys.executable, str(ROOT / "src" / "train.py"), "--output_root", str(output)]
    for option, value in options.items():
        if value is True:
            command.append(f"--{option}")
        elif value is not False:
            command += [f"--{option}", *map(str, value if isinstance(value, list) else [value])]
    # A cold start for --compile: inductor's on-disk cache would otherwise hold an earlier run's kernels.
    environment = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(output.with_name(f"{output.name}-inductor-cache"))}
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        last_line = ([line for line in finished.stderr.splitlines() if line.strip()] or ["(no message)"])[-1]
        raise RuntimeError(f"train.py exited with status {finished.returncode}: {last_line}")
    (config_file,) = output.glob("*/*/*/*/config.json")  # <dataset>/<model>/<date>/<time>/
    run_dir = config_file.parent
    run = {
        name: json.loads((run_dir / f"{name}.json").read_text()) for name in ("config", "val-metrics", "test-metrics")
    }
    with open(run_dir / "log.csv", newline="") as f:
        run["log"] = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]
    return run, seconds
