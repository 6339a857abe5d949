"""A stage killed with kill -9 runs no cleanup: its staging folder (prepare.py's dataset, download.sh's
extraction, train.py --save_model's model) stays. The next run of that stage removes it, but never the
staging folder of a run that is still going."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import train
from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_dirs, run_script

# A stage run in a process of its own, stopped inside its staging folder: STOP=kill dies there of
# SIGKILL (as kill -9 or the OOM killer), STOP=wait stays there, alive, until the test kills it.
STOPPED_IN_STAGING = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import {module}
def stop(*args, **kwargs):
    Path(os.environ["STARTED"]).touch()
    if os.environ["STOP"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
{module}.{function} = stop
{module}.main({module}.Args.from_args(sys.argv[2:]))
"""


def stopped_in_staging(tmp_path: Path, module: str, function: str, stop: str, *argv) -> subprocess.Popen:
    started = tmp_path / f"started-{stop}"
    code = STOPPED_IN_STAGING.format(module=module, function=function)
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
    argv = ["--model_name", bert_dir, "--dataset_dir", dataset_dir, "--output_root", tmp_path, "--save_model"]
    argv += ["--epochs", "1", "--max_seq_len", "32", "--max_train_samples", "16", "--max_eval_samples", "8"]
    stopped_in_staging(tmp_path, "train", "as_a_new_file", "kill", *argv)  # while writing <run>/model
    assert list(tmp_path.glob("*/*/*/*/.model*"))
    train.main(train.Args.from_args(list(map(str, argv))))  # the next run, in this process
    assert not list(tmp_path.glob("*/*/*/*/.model*"))
    assert len([run for run in run_dirs(tmp_path) if (run / "model").is_dir()]) == 1
