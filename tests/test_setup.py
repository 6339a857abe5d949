"""Getting an environment: a script started without the dependencies says how to get them; run.sh on a
machine without an NVIDIA driver says how to skip the CUDA build."""

import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = ["train", "prepare", "predict", "baseline", "aggregate", "bench"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_python_without_the_dependencies_gets_one_line_on_how_to_get_them(script):
    # -S: this Python without its site-packages, i.e. none of the dependencies (python3 outside .venv)
    result = subprocess.run(
        [sys.executable, "-S", ROOT / "src" / f"{script}.py", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"{script}.py: error: No module named ")
    assert "bash run.sh" in result.stderr and "Set-up" in result.stderr
