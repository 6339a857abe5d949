"""How the scripts find their modules: from any directory, always their own checkout's, and nothing of the
repository on sys.path to shadow an installed package (our datasets/ folder vs Hugging Face `datasets`)."""

import ast
import os
import resource
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_script

SCRIPTS = ["train.py", "prepare.py", "baseline.py", "aggregate.py", "bench.py", "predict.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_from_any_directory_without_pythonpath_within_seconds(script, tmp_path):
    """Imports sit at the top of every script, so --help pays for importing torch: seconds, never more
    than 15 (issue #21). One process per script checks both. Counted in CPU seconds, which the other
    tests running beside it on the same cores do not stretch (its wall time, alone: 4 s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_script(ROOT / "src" / script, "--help", cwd=tmp_path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 15, script
    assert result.stdout.startswith("usage: ") and "(default: " in result.stdout  # every option's default


def test_a_second_checkout_runs_its_own_code(tmp_path):
    """Checkout B's script must import B's modules even when checkout A's are on the path."""
    other = tmp_path / "checkout-b"
    shutil.copytree(ROOT / "src", other / "src")
    env = {"PYTHONPATH": str(ROOT / "src")}  # A's modules, as an editable install of A would put them
    result = subprocess.run(
        [sys.executable, other / "src" / "train.py", "--help"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env=os.environ | env,
    )
    assert result.returncode == 0, result.stderr
    assert str(other / "outputs") in result.stdout.replace("\n", "").replace(" ", "")  # --output_root's default


@pytest.mark.parametrize("name", ["datasets", "outputs", "tests", "src"])
def test_the_repository_folders_are_not_importable_in_the_project_environment(name, tmp_path):
    """`import datasets` must be Hugging Face `datasets` or ModuleNotFoundError, never our folder."""
    code = f"import importlib.util as u; spec = u.find_spec({name!r}); print(spec.origin if spec else 'absent')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True, capture_output=True, env=env)
    found = result.stdout.strip()
    assert found == "absent" or (found not in ("None", "") and not found.startswith(str(ROOT)))


ENTRY_POINTS = {"prepare", "train", "predict", "baseline", "aggregate", "bench", "sweep"}


def test_entry_points_never_import_one_another():
    """What scripts share lives in modules with one job each (issue #21): a script is never a library."""
    for script in sorted(ENTRY_POINTS):
        tree = ast.parse((ROOT / "src" / f"{script}.py").read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not (imported & ENTRY_POINTS), f"{script}.py imports {sorted(imported & ENTRY_POINTS)}"


def test_pip_install_e_installs_the_package_alone_under_its_own_name(tmp_path):
    """`pip install -e .` (issue #29) in a fresh virtual environment: the shared package imports from any
    directory, and nothing else of the repository does: no generic top-level module (metrics, files, cli, ...)
    and no script (train, prepare, ...) lands in the user's environment. --no-deps: the package's own files
    are the question here, not its dependencies. Needs the package index for the build backend (setuptools)."""
    # A copy of what the install reads, so that the build's metadata (livedoor_classification.egg-info) is
    # written there, not into the checkout.
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, checkout / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    # pip from this environment, run for the new one (--python): no second copy of pip to install.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "-e", checkout],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0 and "setuptools" in install.stderr and "No matching distribution" in install.stderr:
        pytest.skip("no package index here to fetch the build backend (setuptools) from")
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def importable(module: str) -> bool:  # found, whether or not its own imports (numpy, torch) would succeed
        code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        return subprocess.run([python, "-c", code], cwd=elsewhere).returncode == 0

    assert importable("livedoor_classification.metrics")
    assert subprocess.run([python, "-c", "import livedoor_classification.paths"], cwd=elsewhere).returncode == 0
    shared = sorted(p.stem for p in (checkout / "src" / "livedoor_classification").glob("*.py") if p.stem != "__init__")
    scripts = sorted(p.stem for p in (checkout / "src").glob("*.py"))
    assert "metrics" in shared and "train" in scripts
    assert [name for name in shared + scripts if importable(name)] == []
