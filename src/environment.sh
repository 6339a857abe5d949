# The Python environment of run.sh, tests/run.sh and .ci/run, found or created in one place so that they
# agree. Sourced (not run) from the repository root; defines two functions and sets nothing else.
#
#   find_environment NAME REQUIREMENTS MODULE...
#       Sets `python` to the first Python that imports every MODULE: $PYTHON if set, else the active
#       virtualenv's, .venv/, Poetry's environment, python3. A $PYTHON without them is an error: the user
#       chose it, and we never install into someone's Python. When none of the others has them, .venv is
#       created (or completed) from REQUIREMENTS, hash-checked, and used; on a machine without an NVIDIA
#       driver it first says how to install torch's CPU build instead (README, Set-up).
#   create_environment NAME REQUIREMENTS
#       python3 -m venv .venv, then pip installs REQUIREMENTS into it with --require-hashes.
#
# NAME begins every message ("run.sh: error: ..."); a failure prints one line and exits 1.

_environment_error() { echo "$1: error: ${*:2}" >&2; exit 1; }  # NAME MESSAGE...

create_environment() {
    local name="$1" requirements="$2" version
    command -v python3 >/dev/null 2>&1 \
        || _environment_error "$name" "no python3 on PATH to create .venv with; install Python 3.11 or newer"
    # transformers 5 needs 3.11: an older python3 would make a .venv in which pip skips every package
    # (the lock's markers say python_version >= "3.11") and say nothing.
    version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || version="?"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
        || _environment_error "$name" "python3 is Python $version; the dependencies need 3.11 or newer" \
            "(put one first on PATH as python3, or set PYTHON to a Python that has them)"
    python3 -m venv .venv \
        || _environment_error "$name" "python3 -m venv .venv failed (on Debian and Ubuntu: apt install python3-venv)"
    # --require-hashes: every file pip downloads must match the lock's hash (the requirements files are
    # poetry.lock exported with hashes), so .venv gets exactly the locked packages.
    .venv/bin/python -m pip install --require-hashes -r "$requirements" \
        || _environment_error "$name" "pip could not install $requirements into .venv (its message is above); run again to complete it"
}

find_environment() {
    local name="$1" requirements="$2" modules="${*:3}" listed="${*:3:$# - 3}" candidate version
    modules="${modules// /, }" listed="${listed:+${listed// /, } and }${!#}"  # torch, transformers and classopt
    if [[ -n "${PYTHON:-}" ]]; then
        python="$PYTHON"
        "$python" -c "import $modules" >/dev/null 2>&1 && return 0
        _environment_error "$name" "PYTHON=$PYTHON cannot import $listed; install them into it" \
            "(pip install -r $requirements), or unset PYTHON to use .venv/ (created if need be)"
    fi
    # Whichever environment the user set up, in this order; the first with the dependencies wins.
    for candidate in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" .venv/bin/python \
        "$(command -v poetry >/dev/null 2>&1 && poetry env info -e 2>/dev/null)" python3; do
        python="$candidate"
        [[ -n "$python" ]] && "$python" -c "import $modules" >/dev/null 2>&1 && return 0
    done

    # None has them: a fresh clone, or a .venv whose install was interrupted (pip completes it).
    local action="creating .venv from $requirements"
    [[ -e .venv ]] && action="installing $requirements into .venv"
    echo "$name: no environment with the dependencies: $action (hash-checked; the CUDA build of torch is several GB)"
    if [[ ! -e /proc/driver/nvidia ]] && ! command -v nvidia-smi >/dev/null 2>&1; then  # told, not taken: not hash-locked
        version="$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' requirements.txt 2>/dev/null)" || version=""
        echo "$name: no NVIDIA driver here: torch's CPU build avoids the CUDA build's 6.3 GB. To take it, stop this" \
            "(Ctrl-C) and run: python3 -m venv .venv && .venv/bin/python -m pip install torch${version:+==$version}" \
            "--index-url https://download.pytorch.org/whl/cpu && .venv/bin/python -m pip install -r requirements-cpu.txt" \
            "(README, Set-up); then this command again"
    fi
    create_environment "$name" "$requirements"
    python=.venv/bin/python
    "$python" -c "import $modules" >/dev/null 2>&1 \
        || _environment_error "$name" ".venv cannot import $listed although $requirements installed; delete .venv and run again"
}
