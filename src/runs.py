"""Run folders under outputs/: where a run writes its config, log and metrics, and how to tell a
finished run from one that crashed or is still going.

    outputs/<model name, "/" as "__">/<YYYY-MM-DD>/<HH-MM-SS.ffffff>/
        config.json        written first: arguments and what was resolved from them
        log.csv            a row per epoch, appended as training goes
        val-metrics.json   the best epoch's weights on the validation split
        test-metrics.json  written last: a run is complete exactly when this file exists

Every JSON file is written to a temporary name and renamed, so a file that exists is whole.
"""

import csv
import json
import os
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPLETION_FILE = "test-metrics.json"


def model_dir_name(model_name: str) -> str:
    """A hub id like tohoku-nlp/bert-base-japanese-v3 becomes tohoku-nlp__bert-base-japanese-v3; a
    local directory is named by its last component."""
    path = Path(model_name)
    return path.name if path.is_dir() else model_name.strip("/").replace("/", "__")


def create_run_dir(output_root: Path, model_name: str) -> Path:
    """A fresh folder named by the current time; exist_ok=False so that two runs started in the
    same microsecond (a sweep on several GPUs) cannot share one."""
    while True:
        now = datetime.now()
        run_dir = output_root / model_dir_name(model_name) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S.%f")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue


def write_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def append_csv_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETION_FILE).is_file() and (run_dir / "config.json").is_file()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
