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
import platform
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


def recorded_args(args) -> dict:
    """A script's arguments as config.json records them (paths absolute, as strings)."""
    return {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in vars(args).items()}


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETION_FILE).is_file() and (run_dir / "config.json").is_file()


def provenance(**library_versions: str | None) -> dict:
    """What config.json records of where a run came from: versions, git commit and start time."""
    return {
        "versions": {"python": platform.python_version(), **library_versions},
        "git_commit": git_commit(),
        "start_time": datetime.now().isoformat(timespec="seconds"),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def read_run(run_dir: Path) -> dict:
    """config.json, val-metrics.json and test-metrics.json of a complete run; ValueError if any is
    missing or not valid JSON (a crashed run, or a file damaged after the fact)."""
    if not is_complete(run_dir):
        raise ValueError(f"{run_dir}: incomplete (no {COMPLETION_FILE}): crashed, interrupted or still running")
    files = {}
    for name in ("config", "val-metrics", "test-metrics"):
        try:
            files[name] = json.loads((run_dir / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{run_dir / f'{name}.json'}: unreadable ({e})") from None
    return files


def find_complete_run(output_root: Path, model_name: str, settings: dict) -> Path | None:
    """A complete run of this model whose config.json holds exactly these settings."""
    for config_path in sorted((output_root / model_dir_name(model_name)).glob("*/*/config.json")):
        try:
            config = read_run(config_path.parent)["config"]
        except ValueError:
            continue
        if all(config.get(key) == value for key, value in settings.items()):
            return config_path.parent
    return None
