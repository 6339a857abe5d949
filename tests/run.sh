#!/usr/bin/env bash
# The checks CI runs, in one command from any directory: ruff check, ruff format --check, then pytest with
# the arguments given, from the repository root with .envrc loaded.
#
#   bash tests/run.sh                                  # the linter, the formatter's check, the whole suite
#   bash tests/run.sh -q tests/test_sweep.py -k help   # pytest's own arguments, passed as they are
#   bash tests/run.sh -n 0 tests/test_train.py         # in one process (a debugger, print output)
#
# It runs in the first environment that has the dependencies and pytest and ruff: $PYTHON if set (an
# error if it lacks them), else the active virtualenv's, .venv/, Poetry's env, python3. If none has
# them, .venv is created from requirements-dev.txt, hash-checked (src/environment.sh, shared with run.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source src/environment.sh
find_environment tests/run.sh requirements-dev.txt torch transformers classopt pytest ruff
source .envrc

# Through the environment's Python rather than whatever ruff and pytest come first on PATH. -P: the
# repository root stays off sys.path (our datasets/ folder must never be what `import datasets` finds).
"$python" -m ruff check .
"$python" -m ruff format --check .
# -n auto: one test at a time per core (pytest-xdist), at most 8; worksteal: an idle worker takes tests
# queued on a busy one, so a long test does not leave a core idle at the end. A later -n in "$@" wins.
parallel=(-n auto --maxprocesses 8 --dist worksteal)
if ! "$python" -c "import xdist" >/dev/null 2>&1; then
    echo "tests/run.sh: no pytest-xdist here: the tests run in one process (pip install -r requirements-dev.txt for one per core)"
    parallel=()
fi
"$python" -P -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
