"""train.py --resume: a run killed between epochs (SIGKILL, as a time limit or preemption ends it) and run
again ends exactly where a run never interrupted does."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from conftest import ROOT, run_dirs, run_script, train_argv, train_run
from livedoor_classification import resume
from livedoor_classification.runs import COMPLETION_FILE

SMALL = ["--max_seq_len", "32", "--batch_size", "8", "--lr", "3e-3", "--precision", "fp32", "--epochs", "4"]
SMALL += ["--max_train_samples", "64", "--max_eval_samples", "24", "--seed", "7", "--patience", "3"]


def argv(bert_dir, dataset_dir, output_root) -> list[str]:
    return train_argv(bert_dir, dataset_dir, output_root, *SMALL, "--resume", "--tensorboard")


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
    timed = [i for i, name in enumerate(lines[0]) if "seconds" in name or "_per_s" in name or "memory" in name]
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


def test_a_run_resumed_from_a_version_with_fewer_log_columns_keeps_one_header(tmp_path):
    """A killed run's log.csv from before a column was added (peak_memory_mib): the rows after it are not
    appended under the old header, which pandas (aggregate.py) and csv readers would refuse or misread."""
    import pandas as pd

    from livedoor_classification.epoch_log import EpochLog

    old = [{"epoch": 1, "train_loss": 0.9}]
    log = EpochLog(tmp_path, old, tensorboard=False)
    log.add({"epoch": 2, "train_loss": 0.5, "peak_memory_mib": 100.0})
    table = pd.read_csv(tmp_path / "log.csv")
    assert table.columns.tolist() == ["epoch", "train_loss", "peak_memory_mib"]
    assert table["train_loss"].tolist() == [0.9, 0.5] and table["peak_memory_mib"].isna().tolist() == [True, False]


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
    train_run(bert_dir, dataset_dir, tmp_path, *SMALL, "--resume", "--epochs", "1")
    (run_dir,) = run_dirs(tmp_path)
    (run_dir / COMPLETION_FILE).unlink()  # as if killed ...
    (run_dir / resume.STATE_FILE).write_bytes(b"cut short")  # ... while a state was half-copied
    options = [*argv(bert_dir, dataset_dir, tmp_path), "--epochs", "1"]
    result = in_process(train, *options, check_args=train.check_args)
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1 and error.startswith("train.py: error:")
    assert f"{run_dir / resume.STATE_FILE}: unreadable" in result.stderr and "delete it" in result.stderr


def test_a_disk_that_fills_while_saving_the_state_is_one_line(own_filesystem, bert_dir, dataset_dir, in_process):
    """torch.save's own file writer reports a full disk as a RuntimeError ("unexpected pos ...", or
    "PytorchStreamWriter failed writing file ...") that names no cause: the user gets the cause, in one line."""
    small = own_filesystem(size="64k")  # config.json and log.csv fit; the weights in resume.pt do not
    result = in_process(train, *argv(bert_dir, dataset_dir, small)[:-1], "--epochs", "1", check_args=train.check_args)
    (run_dir,) = run_dirs(small)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after the notice that no GPU was found
    assert line == f"train.py: error: {run_dir}: No space left on device; the run is incomplete (no {COMPLETION_FILE})"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "log.csv"]  # no resume.pt, whole or partial


def test_a_state_write_that_fails_leaves_the_previous_state_whole(tmp_path, monkeypatch):
    """torch's file writer failing as it does without an OSError to pass on (its message of torch 2.x): an
    OSError that train.py reports in one line, no partial file, and the previous epoch's state as it was."""
    cpu = torch.device("cpu")
    resume.save(tmp_path, {"epoch": 1}, cpu)
    before = (tmp_path / resume.STATE_FILE).read_bytes()

    def save_on_a_full_disk(obj, f, *args, **kwargs):
        half = b"PK\x03\x04 half a state"
        Path(f).write_bytes(half) if isinstance(f, str | os.PathLike) else f.write(half)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed\nframe #0: c10::ThrowEnforceNotMet(...)"
        )

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with pytest.raises(
        OSError,
        match=r"^resume\.pt: not written \(PytorchStreamWriter failed writing file data/0: file write failed\)$",
    ):
        resume.save(tmp_path, {"epoch": 2}, cpu)
    assert [p.name for p in tmp_path.iterdir()] == [resume.STATE_FILE]
    assert (tmp_path / resume.STATE_FILE).read_bytes() == before


def test_other_settings_name_the_run_not_continued_and_how_it_differs(tmp_path):
    runs_dir = tmp_path / "livedoor"
    planned = {"model_name": "m", "lr": 3e-5, "seed": 1, "dataset_fingerprint": "f", "world_size": 1, "batch_size": 16}
    planned |= {"text_fields": ["title", "body"], "max_seq_len": 512, "precision": "auto"}

    def run_folder(time_name: str, config: dict, complete=False, state=True):
        folder = runs_dir / "m" / "2026-11-30" / time_name
        folder.mkdir(parents=True)
        resolved = {"global_batch_size": config["batch_size"], "max_seq_len_used": 510, "precision_used": "bf16"}
        (folder / "config.json").write_text(json.dumps(config | resolved))
        (folder / resume.STATE_FILE).write_bytes(b"state") if state else None
        (folder / COMPLETION_FILE).write_text("{}") if complete else None
        return folder

    assert resume.not_continued(runs_dir, "m", planned) is None  # nothing there
    run_folder("09-00-00.000000", planned | {"max_seq_len": 128})
    other = run_folder("10-00-00.000000", planned | {"text_fields": ["body"], "batch_size": 8})
    run_folder("11-00-00.000000", planned | {"max_seq_len": 64}, complete=True)  # done: nothing to continue
    run_folder("12-00-00.000000", planned | {"max_seq_len": 64}, state=False)  # killed before its first epoch
    # Another learning rate or seed is another configuration of a sweep, e.g. a Slurm array task training now.
    run_folder("13-00-00.000000", planned | {"lr": 5e-5, "batch_size": 8})
    run_folder("14-00-00.000000", planned | {"seed": 2, "batch_size": 8})
    notice = resume.not_continued(runs_dir, "m", planned)
    assert notice.startswith(f"notice: --resume: {other} is not continued, it was started with other settings: ")
    assert "--text_fields body (now title body)" in notice and "global batch size 8 (now 16)" in notice
    assert "--lr" not in notice and "seed" not in notice and "max_seq_len" not in notice
    assert notice.endswith("; a new run starts (the same command with those settings continues that one)")
    assert "\n" not in notice


def test_a_resume_with_other_settings_says_which_run_it_does_not_continue(bert_dir, dataset_dir, tmp_path, in_process):
    options = [*argv(bert_dir, dataset_dir, tmp_path), "--epochs", "1"]
    train_run(bert_dir, dataset_dir, tmp_path, *SMALL, "--resume", "--tensorboard", "--epochs", "1")
    (interrupted,) = run_dirs(tmp_path)
    (interrupted / COMPLETION_FILE).unlink()  # as if killed after its first epoch
    (interrupted / resume.STATE_FILE).write_bytes(b"its state")
    result = in_process(train, *options, "--max_seq_len", "24", check_args=train.check_args)
    assert result.returncode == 0
    (notice,) = [line for line in result.stderr.splitlines() if "--resume" in line]
    assert (
        notice.startswith(f"notice: --resume: {interrupted} is not continued") and "--max_seq_len 32 (now 24)" in notice
    )
    fresh = [run_dir for run_dir in run_dirs(tmp_path) if run_dir != interrupted]
    assert len(fresh) == 1 and (fresh[0] / COMPLETION_FILE).is_file()  # the new run, complete
    assert (interrupted / resume.STATE_FILE).read_bytes() == b"its state"  # the other one left as it was
