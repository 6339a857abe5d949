"""train.py --resume: a run killed between epochs (SIGKILL, as a time limit or preemption ends it) and run
again ends exactly where a run never interrupted does."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import resume
import train
from conftest import ROOT, run_dirs, run_script
from runs import COMPLETION_FILE

SMALL = ["--max_seq_len", "32", "--batch_size", "8", "--lr", "3e-3", "--precision", "fp32", "--epochs", "4"]
SMALL += ["--max_train_samples", "64", "--max_eval_samples", "24", "--seed", "7", "--patience", "3"]


def argv(bert_dir, dataset_dir, output_root) -> list[str]:
    paths = ["--model_name", bert_dir, "--dataset_dir", dataset_dir, "--output_root", output_root]
    return [*map(str, paths), *SMALL, "--resume", "--tensorboard"]


def saved_epoch(run_dir) -> int:
    try:
        return torch.load(run_dir / resume.STATE_FILE, weights_only=True)["epoch"]
    except (OSError, RuntimeError, EOFError):  # not there yet
        return 0


def kill_after_first_epoch(command: list[str], output_root) -> None:
    """Start train.py, and SIGKILL it as soon as its state after epoch 1 is on disk."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (runs := run_dirs(output_root)) and saved_epoch(runs[0]) >= 1:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()


def comparable_log(run_dir) -> list[list[str]]:
    """log.csv without the columns that time the run."""
    lines = [line.split(",") for line in (run_dir / "log.csv").read_text().splitlines()]
    timed = [i for i, name in enumerate(lines[0]) if "seconds" in name or "_per_s" in name]
    return [[value for i, value in enumerate(line) if i not in timed] for line in lines]


def test_a_killed_run_continues_to_the_result_of_an_uninterrupted_run(bert_dir, dataset_dir, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    kill_after_first_epoch([str(ROOT / "src" / "train.py"), *argv(bert_dir, dataset_dir, killed)], killed)
    (run_dir,) = run_dirs(killed)
    assert not (run_dir / COMPLETION_FILE).exists()
    assert 1 <= saved_epoch(run_dir) < 4  # killed between epochs, before the end

    # Each run in a process of its own, as the killed one: in this process, earlier tests may have changed
    # torch's global settings (threads, matmul precision), and the numbers with them.
    again = run_script(ROOT / "src" / "train.py", *argv(bert_dir, dataset_dir, killed))  # the same command again
    assert f"resuming {run_dir} after epoch" in again.stdout
    assert run_dirs(killed) == [run_dir]  # continued in its folder, not a new one
    run_script(ROOT / "src" / "train.py", *argv(bert_dir, dataset_dir, whole))  # never interrupted
    (uninterrupted,) = run_dirs(whole)

    for name in ("val-metrics.json", "test-metrics.json", "val-predictions.jsonl", "test-predictions.jsonl"):
        assert (run_dir / name).read_text() == (uninterrupted / name).read_text(), name
    assert comparable_log(run_dir) == comparable_log(uninterrupted)  # one row per epoch, none twice
    for folder in (run_dir, uninterrupted):
        assert not (folder / resume.STATE_FILE).exists()  # a complete run keeps no state
    assert len(json.loads((run_dir / "config.json").read_text())["resumed_at"]) == 1
    # --tensorboard: the curves as TensorBoard reads them are log.csv's, each epoch once, across the kill
    # One event file, rewritten by the resumed run: two would be read in name order, not in time order
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    log = list(csv.DictReader((run_dir / "log.csv").open()))
    for tag, column in [
        ("loss/train", "train_loss"),
        ("loss/val", "val_loss"),
        ("f1/val", "val_f1"),
        ("lr/max", "max_lr"),
    ]:
        points = [(point.step, point.value) for point in board.Scalars(tag)]
        assert points == [(int(row["epoch"]), pytest.approx(float(row[column]), rel=1e-6)) for row in log], tag


def test_only_an_incomplete_run_of_the_same_settings_is_resumed(tmp_path):
    runs_dir = tmp_path / "livedoor"
    planned = {"model_name": "m", "lr": 3e-5, "seed": 1, "dataset_fingerprint": "f", "world_size": 1, "batch_size": 16}

    def run_folder(time_name: str, config: dict, complete=False, state=True):
        folder = runs_dir / "m" / "2026-11-30" / time_name
        folder.mkdir(parents=True)
        resolved = config | {"global_batch_size": 16, "max_seq_len_used": None, "precision_used": None}
        (folder / "config.json").write_text(json.dumps(resolved))
        if state:
            (folder / resume.STATE_FILE).write_bytes(b"state")
        if complete:
            (folder / COMPLETION_FILE).write_text("{}")
        return folder

    run_folder("10-00-00.000000", planned)
    newest = run_folder("11-00-00.000000", planned)
    run_folder("12-00-00.000000", planned | {"lr": 5e-5})  # other settings
    run_folder("13-00-00.000000", planned, complete=True)  # done
    run_folder("14-00-00.000000", planned, state=False)  # killed before its first epoch ended
    assert resume.find_resumable_run(runs_dir, "m", planned) == newest
    assert resume.find_resumable_run(runs_dir, "m", planned | {"seed": 2}) is None


def test_an_unreadable_state_is_one_line(bert_dir, dataset_dir, tmp_path, in_process):
    train.main(train.Args.from_args(argv(bert_dir, dataset_dir, tmp_path)[:-1] + ["--epochs", "1"]))
    (run_dir,) = run_dirs(tmp_path)
    (run_dir / COMPLETION_FILE).unlink()  # as if killed ...
    (run_dir / resume.STATE_FILE).write_bytes(b"cut short")  # ... while a state was half-copied
    options = [*argv(bert_dir, dataset_dir, tmp_path), "--epochs", "1"]
    result = in_process(train, *options, check_args=train.check_args)
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and error.startswith("train.py: error:")
    assert f"{run_dir / resume.STATE_FILE}: unreadable" in result.stderr and "delete it" in result.stderr
