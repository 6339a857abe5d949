"""`bash run.sh` is the whole study: from a fresh checkout to the results table, and its command line."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_script

# For the tests that must stop before anything runs: with these, a run.sh that went on anyway would
# fail at once instead of sweeping the default models.
NOTHING_RUNS = {"PYTHON": "false", "MODELS": "none", "LRS": "1", "SEEDS": "1"}


@pytest.fixture
def checkout(tmp_path, corpus_archive) -> tuple[Path, dict]:
    """A fresh copy of the repository (no data/, datasets/, outputs/) and the environment that makes
    its download.sh fetch the fixture corpus."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("run.sh", ".envrc", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    env = {
        "LIVEDOOR_URL": f"file://{corpus_archive}",
        "LIVEDOOR_EXPECTED_ARTICLES": str(ARTICLES_PER_CATEGORY * len(CATEGORIES)),
        "PYTHON": sys.executable,
        "LRS": "2e-3",
        "SEEDS": "1",
        "TRAIN_ARGS": "--epochs 1 --max_seq_len 32",
    }
    return repo, env


def test_run_sh_goes_from_nothing_to_the_results_table(checkout, bert_dir):
    repo, env = checkout
    env["MODELS"] = str(bert_dir)
    first = run_script(repo / "run.sh", cwd=repo.parent, env=env)
    assert (repo / "data" / "text").is_dir() and (repo / "datasets" / "livedoor" / "label2id.json").is_file()
    table = (repo / "results" / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert any(bert_dir.name in row for row in rows) and any("tfidf-char-logreg" in row for row in rows)
    assert "tfidf-char-logreg" in first.stdout.split("=== Summary")[1]  # the table is printed at the end
    runs = sorted((repo / "outputs").glob("*/*/*"))
    assert len(runs) == 2

    again = run_script(repo / "run.sh", cwd=repo.parent, env=env)  # resumes: nothing is run twice
    assert "already complete, skipped" in again.stdout and "TF-IDF baseline: already complete" in again.stdout
    assert sorted((repo / "outputs").glob("*/*/*")) == runs


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


def test_an_unknown_argument_is_an_error():
    result = run_script(ROOT / "run.sh", "--models", "x", env=NOTHING_RUNS, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "unknown argument '--models'" in result.stderr


def test_a_python_without_the_dependencies_gets_one_line_on_how_to_install(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)  # sees no site-packages
    env = NOTHING_RUNS | {"PYTHON": str(bare / "bin" / "python")}
    result = run_script(ROOT / "run.sh", env=env, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "poetry install" in result.stderr and "pip install -r requirements.txt" in result.stderr
