"""A stage killed with kill -9 runs no cleanup: its staging folder (prepare.py's dataset, download.sh's
extraction, train.py --save_model's model) stays. The next run of that stage removes it, but never the
staging folder of a run that is still going."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_dirs, run_script, train_argv, train_run
from livedoor_classification import files

# A stage run in a process of its own, stopped inside its staging folder: STOP=kill dies there of
# SIGKILL (as kill -9 or the OOM killer), STOP=wait stays there, alive, until the test kills it.
STOPPED_IN_STAGING = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import {module}
import {where}
def stop(*args, **kwargs):
    Path(os.environ["STARTED"]).touch()
    if os.environ["STOP"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
{where}.{function} = stop
{module}.main({module}.Args.from_args(sys.argv[2:]))
"""


def stopped_in_staging(tmp_path: Path, module: str, function: str, stop: str, *argv, where=None) -> subprocess.Popen:
    """where: the module whose function stops, if not the stage's own (train.py's model folder: saved_model)."""
    started = tmp_path / f"started-{stop}"
    code = STOPPED_IN_STAGING.format(module=module, function=function, where=where or module)
    env = os.environ | {"STARTED": str(started), "STOP": stop, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "src"), *map(str, argv)], env=env)
    for _ in range(1200):
        if started.exists() or process.poll() is not None:
            break
        time.sleep(0.05)
    assert started.exists(), f"{module}.py ended before its staging folder"
    if stop == "kill":
        assert process.wait(timeout=30) == -signal.SIGKILL
    return process


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_prepare_removes_the_staging_folder_of_a_killed_run_but_not_of_a_live_one(corpus_dir, tmp_path):
    output = tmp_path / "datasets" / "livedoor"
    argv = ("--input_dir", corpus_dir, "--output_dir", output)
    live = stopped_in_staging(tmp_path, "prepare", "write_manifest", "wait", *argv)
    try:
        (running,) = hidden(output.parent)
        stopped_in_staging(tmp_path, "prepare", "write_manifest", "kill", *argv)
        assert len(hidden(output.parent)) == 2
        run_script(ROOT / "src" / "prepare.py", *argv)
        assert (output / "dataset.json").exists()
        assert hidden(output.parent) == [running]  # which that run will swap into place or remove itself
    finally:
        live.kill()
        live.wait()


def test_download_removes_the_extraction_of_a_killed_run(tmp_path, corpus_archive):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    shutil.copy(ROOT / "src" / "download.sh", repo / "src" / "download.sh")
    started, bin_dir = tmp_path / "started", tmp_path / "bin"
    bin_dir.mkdir()
    extracting = f'if [[ "$1" == -xzf ]]; then touch {started}; sleep 60; fi\n'  # stops there, until killed
    (bin_dir / "tar").write_text(f'#!/usr/bin/env bash\n{extracting}exec {shutil.which("tar")} "$@"\n')
    (bin_dir / "tar").chmod(0o755)
    env = {
        "LIVEDOOR_URL": f"file://{corpus_archive}",
        "LIVEDOOR_EXPECTED_ARTICLES": str(ARTICLES_PER_CATEGORY * len(CATEGORIES)),
    }
    command = ["bash", str(repo / "src" / "download.sh")]
    slow = os.environ | env | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    process = subprocess.Popen(command, env=slow, start_new_session=True, stdout=subprocess.DEVNULL)
    for _ in range(600):
        if started.exists():
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # download.sh and its tar: kill -9
    process.wait()
    assert [name for name in hidden(repo / "data") if name.startswith(".extract.")]
    result = run_script(repo / "src" / "download.sh", env=env)
    assert "Corpus ready" in result.stdout
    assert sorted(p.name for p in (repo / "data").iterdir()) == [".download.lock", "ldcc-20140209.tar.gz", "text"]


def test_train_removes_the_model_staging_folder_of_a_killed_run(bert_dir, dataset_dir, tmp_path):
    options = ["--save_model", "--epochs", "1", "--max_seq_len", "32", "--max_train_samples", "16"]
    options += ["--max_eval_samples", "8"]
    argv = train_argv(bert_dir, dataset_dir, tmp_path, *options)
    killed = stopped_in_staging  # while writing <run>/model
    killed(tmp_path, "train", "as_a_new_file", "kill", *argv, where="livedoor_classification.saved_model")
    assert list(tmp_path.glob("*/*/*/*/.model*"))
    earlier = tmp_path / "livedoor" / "m" / "2026-11-01" / "09-00-00.000000" / ".model.tmp"  # an earlier version's
    earlier.mkdir(parents=True)
    train_run(bert_dir, dataset_dir, tmp_path, *options)  # the next run, in this process
    assert not list(tmp_path.glob("*/*/*/*/.model*"))
    assert len([run for run in run_dirs(tmp_path) if (run / "model").is_dir()]) == 1


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_swap_interrupted_between_its_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    """Ctrl-C after the old set went aside and before the new one took its place lost both."""
    folder, staging = tmp_path / "results", files.staging_folder(tmp_path, ".results.")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (staging / "best.csv").write_text("new")
    rename = Path.rename

    def interrupted_second_rename(self, target):
        if self == staging:
            raise KeyboardInterrupt
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted_second_rename)
    with pytest.raises(KeyboardInterrupt):
        files.replace_folder(folder, staging)
    assert (folder / "notes.txt").read_text() == "mine"
    monkeypatch.undo()
    files.replace_folder(folder, staging)
    assert sorted(p.name for p in folder.iterdir()) == ["best.csv"]
    assert hidden(tmp_path) == []  # nothing aside, nothing staged


def test_a_swap_killed_between_its_renames_is_finished_by_the_next_one(tmp_path):
    """kill -9 there left the old set aside under a dead process's name, which the next run removed as debris."""
    host, folder = socket.gethostname(), tmp_path / "results"
    aside = tmp_path / f".results.old.{host}.{dead_pid()}.abcd_123"
    aside.mkdir()
    (aside / "notes.txt").write_text("mine")
    staging = files.staging_folder(tmp_path, ".results.")
    files.replace_folder(folder, staging)  # the old set back in place first, then replaced as usual
    assert list(folder.iterdir()) == [] and not aside.exists()
    # with no run after it, the folder is back where a reader looks for it as soon as anything stages there
    aside.mkdir()
    (aside / "notes.txt").write_text("mine")
    shutil.rmtree(folder)
    files.put_back_aside(folder)
    assert (folder / "notes.txt").read_text() == "mine"


def test_only_this_hosts_staging_folders_of_ended_processes_are_removed(tmp_path):
    host, dead = socket.gethostname(), dead_pid()
    removed = [f".data.{host}.{dead}.abcd_123"]
    kept = [
        f".data.{host}.{os.getpid()}.abcd_123",  # a live process's
        f".data.elsewhere-{host}.{dead}.abcd_123",  # another host's: its processes cannot be seen from here
        f".data.{host}.{dead}.notes-of-mine",  # not a name staging_folder makes
        ".data.old",
    ]
    for name in removed + kept:
        (tmp_path / name).mkdir()
    (tmp_path / f".data.{host}.{dead}.abcdefgh").symlink_to(tmp_path / kept[0])  # a link is never followed
    files.remove_stale_staging(tmp_path, ".data.")
    assert hidden(tmp_path) == sorted(kept + [f".data.{host}.{dead}.abcdefgh"])


def test_prepare_removes_a_day_old_staging_folder_of_an_earlier_version(tmp_path):
    """Before staging folders were named after their process, mkdtemp named them alone: .livedoor.XXXXXXXX."""
    import prepare

    earlier, recent = tmp_path / ".livedoor.k2j4_9xa", tmp_path / ".livedoor.q8r7w3zz"
    for folder in (earlier, recent):
        folder.mkdir()
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(earlier, (day_and_a_bit, day_and_a_bit))
    with prepare.staged(tmp_path / "livedoor") as staging:
        (staging / "label2id.json").write_text("{}")
    assert hidden(tmp_path) == [recent.name]  # a recent one may be a live run's of that version
