"""`bash run.sh` is the whole study: from a fresh checkout to the results table, and its command line."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, NOTHING_RUNS, ROOT, fake_python, run_script
from livedoor_classification.dataset_files import dataset_fingerprint
from livedoor_classification.runs import is_complete


@pytest.fixture
def checkout(tmp_path, corpus_archive, sweep_python) -> tuple[Path, dict]:
    """A fresh copy of the repository (no data/, datasets/, outputs/) and the environment that makes
    its download.sh fetch the fixture corpus."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("run.sh", ".envrc", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    env = {
        "LIVEDOOR_URL": f"file://{corpus_archive}",
        "LIVEDOOR_EXPECTED_ARTICLES": str(ARTICLES_PER_CATEGORY * len(CATEGORIES)),
        "PYTHON": sweep_python,
        "LRS": "2e-3",
        "SEEDS": "1",
        "TRAIN_ARGS": "--epochs 1 --max_seq_len 32",
    }
    return repo, env


def test_a_failing_download_stops_before_any_run(checkout):
    repo, env = checkout
    env |= {"MODELS": "none", "LIVEDOOR_EXPECTED_ARTICLES": "7"}
    result = run_script(repo / "run.sh", env=env, check=False)
    assert result.returncode != 0 and "download.sh: error:" in result.stderr
    assert "=== [1/1]" not in result.stdout and not (repo / "outputs").exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage(flag):
    result = run_script(ROOT / "run.sh", flag, env=NOTHING_RUNS, check=False)
    assert result.returncode == 0 and result.stderr == ""
    assert "MODELS" in result.stdout and "TRAIN_ARGS" in result.stdout and "bash run.sh" in result.stdout
    # the default models, as the sweep reads them from run.sh
    models = re.search(r"DEFAULT_MODELS=\((.*?)\)", (ROOT / "run.sh").read_text(), re.S).group(1).split()
    assert len(models) == 15 and result.stdout.endswith("".join(f"  {m}\n" for m in models))


def test_an_unknown_argument_is_an_error():
    result = run_script(ROOT / "run.sh", "--models", "x", env=NOTHING_RUNS, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "unknown argument '--models'" in result.stderr


def bare_python(tmp_path: Path) -> Path:
    """This Python without its site-packages: the standard library only, none of the dependencies."""
    script = tmp_path / "bare-python"
    script.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} -S "$@"\n')
    script.chmod(0o755)
    return script


@pytest.fixture
def fresh_clone(tmp_path) -> tuple[Path, dict, Path]:
    """A checkout without .venv, and an environment in which no Python has the dependencies: run.sh's and
    tests/run.sh's environment step, without downloading gigabytes. The python3 on PATH is bare_python,
    except that `python3 -m venv DIR` makes DIR/bin/python a Python that has them (this one) and whose
    `-m pip` installs nothing and the study's scripts do nothing (but src/sweep.py, which starts them);
    both write what they were asked to the log."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("run.sh", "tests/run.sh", ".envrc", "pyproject.toml"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    log = tmp_path / "calls.log"
    venv_python = tmp_path / "venv-python"
    venv_python.write_text(
        "#!/usr/bin/env bash\n"
        f'echo ".venv/bin/python $*" >>{log}\n'
        'if [[ "$1 $2" == "-m pip" || ("$1" == src/*.py && "$1" != src/sweep.py) ]]; then exit 0; fi  # no study run\n'
        f'exec {sys.executable} "$@"\n'
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "python3 $*" >>{log}\n'
        f'if [[ "$1 $2" == "-m venv" ]]; then mkdir -p "$3/bin" && cp {venv_python} "$3/bin/python" && exit 0; fi\n'
        f'exec {bare_python(tmp_path)} "$@"\n'
    )
    for script in (venv_python, bin_dir / "python3"):
        script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",  # nothing else of this machine's: no poetry, no other python3
        "VIRTUAL_ENV": "",
        "PYTHON": "",
        "MODELS": "some/model",
        "LRS": "1e-3",
        "SEEDS": "1",
        "DATASET": str(tmp_path / "prepared"),  # a folder: run.sh leaves checking it to the scripts
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    return repo, env, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    "script, requirements", [("run.sh", "requirements.txt"), ("tests/run.sh", "requirements-dev.txt")]
)
def test_an_explicit_python_without_the_dependencies_gets_one_line_and_nothing_is_installed(
    fresh_clone, tmp_path, script, requirements
):
    repo, env, log = fresh_clone
    python = bare_python(tmp_path)
    result = run_script(repo / script, env=env | NOTHING_RUNS | {"PYTHON": str(python)}, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{script}: error: PYTHON={python} cannot import torch, transformers")
    assert f"pip install -r {requirements}" in result.stderr and "unset PYTHON" in result.stderr
    assert calls(log) == [] and not (repo / ".venv").exists()  # never installs into the Python it was given


NVIDIA_DRIVER = bool(shutil.which("nvidia-smi", path="/usr/bin:/bin")) or Path("/proc/driver/nvidia").exists()


@pytest.mark.parametrize("driver", [False, True], ids=["no-nvidia-driver", "nvidia-driver"])
def test_creating_the_venv_without_an_nvidia_driver_says_how_to_skip_the_cuda_build(fresh_clone, tmp_path, driver):
    repo, env, log = fresh_clone
    shutil.copy(ROOT / "requirements.txt", repo / "requirements.txt")
    if driver:
        (tmp_path / "bin" / "nvidia-smi").write_text("#!/usr/bin/env bash\n")
        (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    elif NVIDIA_DRIVER:
        pytest.skip("this machine has an NVIDIA driver")
    result = run_script(repo / "run.sh", cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, result.stderr
    locked = re.search(r"^torch==([^ ;]+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)[1]
    cpu_route = f"pip install torch=={locked} --index-url https://download.pytorch.org/whl/cpu"
    assert (cpu_route in result.stdout and "requirements-cpu.txt" in result.stdout) == (not driver)
    # Told, not done: the locked, hash-checked install goes ahead (as in CI, on runners without a GPU).
    assert ".venv/bin/python -m pip install --require-hashes -r requirements.txt" in calls(log)


@pytest.mark.parametrize("interrupted", [False, True], ids=["fresh-clone", "half-made-venv"])
def test_run_sh_creates_the_venv_when_no_environment_has_the_dependencies_then_runs_the_study(
    fresh_clone, tmp_path, interrupted
):
    repo, env, log = fresh_clone
    if interrupted:  # an install stopped halfway: a .venv whose Python lacks the dependencies
        (repo / ".venv" / "bin").mkdir(parents=True)
        shutil.copy(bare_python(tmp_path), repo / ".venv" / "bin" / "python")
    result = run_script(repo / "run.sh", cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, result.stderr
    action = "installing requirements.txt into .venv" if interrupted else "creating .venv from requirements.txt"
    assert result.stdout.splitlines()[0] == (
        f"run.sh: no environment with the dependencies: {action} (hash-checked; the CUDA build of torch is several GB)"
    )
    made = calls(log)
    assert made.index("python3 -m venv .venv") < made.index(
        ".venv/bin/python -m pip install --require-hashes -r requirements.txt"
    )
    studied = [c.split()[1] for c in made if " src/" in c]  # the study, in the new environment
    assert studied == ["src/sweep.py", "src/train.py", "src/baseline.py", "src/aggregate.py"]

    log.unlink()
    again = run_script(repo / "run.sh", cwd=tmp_path, env=env, check=False)  # found now: nothing installed
    assert again.returncode == 0 and "no environment" not in again.stdout
    assert not [c for c in calls(log) if "venv" in c.split()[:3] or "pip" in c]


def test_tests_run_sh_creates_the_dev_venv_then_lints_and_runs_pytest_with_its_arguments(fresh_clone, tmp_path):
    repo, env, log = fresh_clone
    (repo / "tests" / "test_one.py").write_text("def test_one():\n    pass\n")
    (repo / "tests" / "test_other.py").write_text("def test_other():\n    raise AssertionError\n")
    result = run_script(repo / "tests" / "run.sh", "-q", "tests/test_one.py", cwd=tmp_path, env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("tests/run.sh: no environment with the dependencies: creating .venv from")
    made = calls(log)
    assert "python3 -m venv .venv" in made
    assert ".venv/bin/python -m pip install --require-hashes -r requirements-dev.txt" in made
    checks = [c for c in made if "-m ruff" in c or "-m pytest" in c]
    assert checks == [
        ".venv/bin/python -m ruff check .",
        ".venv/bin/python -m ruff format --check .",
        ".venv/bin/python -P -m pytest -n auto --maxprocesses 8 --dist worksteal -q tests/test_one.py",
    ]
    assert "1 passed" in result.stdout


def test_ci_builds_its_own_venv_even_where_an_environment_has_the_dependencies(fresh_clone, tmp_path):
    """CI tests the lock as pip installs it on a clean clone, not whatever Python the runner has."""
    repo, env, log = fresh_clone
    shutil.copytree(ROOT / ".ci", repo / ".ci")
    (repo / "tests" / "test_one.py").write_text("def test_one():\n    pass\n")
    env |= {"VIRTUAL_ENV": str(Path(sys.executable).parent.parent), "CI_INSTALL_SLURM": "0"}  # active, has everything
    command = ["bash", repo / ".ci" / "run"]
    result = subprocess.run(command, cwd=tmp_path, env=os.environ | env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    made = [c for c in calls(log) if " -c " not in c]  # but the checks of what a Python has
    assert made[:2] == [
        "python3 -m venv .venv",
        ".venv/bin/python -m pip install --require-hashes -r requirements-dev.txt",
    ]
    assert made[-1] == ".venv/bin/python -P -m pytest -n auto --maxprocesses 8 --dist worksteal"  # .venv's
    assert "1 passed" in result.stdout


def test_tests_run_sh_stops_at_a_lint_error(fresh_clone, tmp_path):
    repo, env, _ = fresh_clone
    (repo / "tests" / "test_one.py").write_text("import os\n\n\ndef test_one():\n    pass\n")  # F401
    result = run_script(repo / "tests" / "run.sh", cwd=tmp_path, env=env, check=False)
    assert result.returncode != 0 and "F401" in result.stdout and "passed" not in result.stdout


def test_sweep_continues_after_a_failure_resumes_and_does_the_baseline_once_per_dataset(
    bert_dir, dataset_dir, tmp_path, sweep_python
):
    """One output folder through three sweeps (each run.sh starts Python several times): a failing run does
    not stop the sweep; a second sweep skips what is complete and runs only the seed added; and the
    baseline is done only on its own dataset, with the text fields given: a baseline of dataset A must not
    make dataset B's (A with one record fewer) look done."""
    out = tmp_path / "out"
    env = {
        "MODELS": f"{bert_dir} {tmp_path / 'missing-model'}",
        "LRS": "2e-3",
        "SEEDS": "1",
        "TRAIN_ARGS": "--epochs 1 --max_seq_len 32",
        "TEXT_FIELDS": "body title",
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(out),
        "PYTHON": sweep_python,
    }
    first = run_script(ROOT / "run.sh", env=env, check=False)  # the missing model fails: exit status 1
    assert first.returncode == 1 and "failed: the TF-IDF baseline" not in first.stderr
    assert f"1 of 2 runs failed:\n  {tmp_path / 'missing-model'} lr=2e-3 seed=1" in first.stderr
    (run_dir,) = (out / "livedoor" / bert_dir.name).glob("*/*")
    assert is_complete(run_dir)
    assert len(list(out.glob("*/tfidf-char-linear/*/*"))) == 1

    env |= {"MODELS": str(bert_dir), "SEEDS": "1 2"}  # the finished seed is skipped; only the new one runs
    started = tmp_path / "started.log"  # every Python the second sweep starts
    logging = tmp_path / "logging-python"
    logging.write_text(f'#!/usr/bin/env bash\necho "$*" >>{started}\nexec {sweep_python} "$@"\n')
    logging.chmod(0o755)
    second = run_script(ROOT / "run.sh", env=env | {"PYTHON": str(logging)})
    assert f"[1/2] {bert_dir} lr=2e-3 seed=1: already complete, skipped: {run_dir}" in second.stdout
    assert "already complete, skipped" not in second.stdout.split("[2/2]")[1].split("=== TF-IDF baseline")[0]
    trains = [line for line in started.read_text().splitlines() if line.startswith("src/train.py ")]
    assert len(trains) == 1 and "--seed 2 " in trains[0]  # no Python with torch for the complete one
    assert f"already complete, skipped: {run_dir}" in second.stdout.split("[2/2]")[0]
    assert "already complete" not in second.stdout.split("[2/2]")[1].split("=== TF-IDF baseline")[0]
    runs = sorted((out / "livedoor" / bert_dir.name).glob("*/*"))
    assert len(runs) == 2 and run_dir in runs
    (baseline_run,) = out.glob("*/tfidf-char-linear/*/*")  # not run twice either
    assert f"already complete, skipped: {baseline_run}" in second.stdout.split("=== TF-IDF baseline")[1]

    other = tmp_path / "other"  # dataset B: A with one record fewer
    shutil.copytree(dataset_dir, other)
    train = (other / "train.jsonl").read_text().splitlines(keepends=True)
    (other / "train.jsonl").write_text("".join(train[1:]))
    env |= {"MODELS": str(tmp_path / "missing-model"), "SEEDS": "1", "DATASET": str(other)}
    result = run_script(ROOT / "run.sh", env=env, check=False)  # the missing model fails: exit status 1
    assert result.returncode == 1 and "failed: the TF-IDF baseline" not in result.stderr
    baselines = sorted(out.glob("*/tfidf-char-linear/*/*"))
    assert len(baselines) == 2
    configs = [json.loads((run / "config.json").read_text()) for run in baselines]
    assert sorted(c["dataset_fingerprint"] for c in configs) == sorted(map(dataset_fingerprint, (dataset_dir, other)))
    assert all(c["text_fields"] == ["body", "title"] for c in configs)  # the order given, not the default's


@pytest.mark.parametrize("train", ["kill -INT $$", "exit 130"])
def test_a_run_ended_by_ctrl_c_stops_the_sweep(tmp_path, dataset_dir, train):
    """train.py dies of SIGINT after its one line (or a launcher reports 130): no next run, no baseline."""
    env = {
        "MODELS": "first second",
        "LRS": "1e-3",
        "SEEDS": "1",
        "PYTHON": str(fake_python(tmp_path, train)),
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    result = run_script(ROOT / "run.sh", env=env, check=False)
    assert result.returncode == 130
    assert "=== [1/2] first" in result.stdout and "[2/2]" not in result.stdout and "baseline" not in result.stdout
    assert result.stderr.strip().endswith(
        "run.sh: interrupted: the sweep stops (complete runs are kept; run again to resume)"
    )


def test_ctrl_c_stops_the_sweep_even_if_the_run_exits_otherwise(tmp_path, dataset_dir):
    """Ctrl-C reaches every process of the terminal's group: a launcher that turns it into exit status
    1 (torchrun) must not let the sweep go on to the next run."""
    started = tmp_path / "started"
    train = f"trap 'exit 1' INT\ntouch {started}\nsleep 60"
    env = {
        "MODELS": "first second",
        "LRS": "1e-3",
        "SEEDS": "1",
        "PYTHON": str(fake_python(tmp_path, train)),
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(tmp_path / "out"),
    }
    process = subprocess.Popen(
        ["bash", ROOT / "run.sh"],
        env=os.environ | env,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):
            if started.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "[2/2]" not in stdout and "baseline" not in stdout and "run.sh: interrupted" in stderr


@pytest.mark.parametrize("option", ["--dataset_dir x", "--output_root=x", "--text_fields title", "--dataset x"])
def test_train_args_that_would_split_the_study_are_refused(option):
    """The baseline and the summary read the dataset, output root and text fields from the sweep's own
    variables: the same setting given to train.py alone in TRAIN_ARGS would put its runs elsewhere."""
    result = run_script(ROOT / "run.sh", env=NOTHING_RUNS | {"TRAIN_ARGS": f"--epochs 1 {option}"}, check=False)
    name = option.split()[0].split("=")[0]
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"run.sh: error: TRAIN_ARGS gives {name}; set DATASET, OUTPUT_ROOT or TEXT_FIELDS")


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NPROC", "abc"),  # was "unbound variable", after the download
        ("NPROC", "2 3"),  # was a syntax error, then one process per run
        ("NPROC", "0"),
        ("NPROC", "-2"),
        ("NPROC", ""),
        ("SAVE_MODEL", "yes"),  # was ignored: no model kept
        ("SAVE_MODEL", "2"),
        ("MODELS", ""),  # was the 15 default models
        ("MODELS", "  "),
        ("LRS", ""),
        ("SEEDS", ""),
        ("LRS", "0"),  # was a failure of every configuration, one after another
        ("LRS", "1e-5 -3e-5"),
        ("LRS", "0.0e-3"),
        ("LRS", "3e-5,5e-5"),
        ("LRS", "fast"),
        ("SEEDS", "-1"),
        ("SEEDS", "1 2.5"),
        ("SEEDS", "4294967296"),  # above numpy's seed range
    ],
)
def test_a_bad_setting_stops_run_sh_before_anything_runs(variable, value):
    result = run_script(ROOT / "run.sh", env=NOTHING_RUNS | {variable: value}, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"run.sh: error: {variable} ")


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NPROC", "4"),
        ("NPROC", "08"),
        ("SAVE_MODEL", "0"),
        ("SAVE_MODEL", "1"),
        ("LRS", "1e-5 3E-5 .5 2. 0.001 1e+2"),
        ("SEEDS", "0 42 007 4294967295"),
        ("MODELS", " a/b  c "),
    ],
)
def test_good_settings_pass_the_checks(variable, value):
    """They get as far as the environment step: PYTHON=false is the first thing to fail."""
    result = run_script(ROOT / "run.sh", env=NOTHING_RUNS | {variable: value}, check=False)
    assert result.returncode == 1 and result.stderr.startswith("run.sh: error: PYTHON=false cannot import")
