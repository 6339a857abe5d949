#!/usr/bin/env bash
# The whole study in one command: find the Python environment, fetch and prepare the livedoor corpus if it
# is missing, fine-tune every model x learning rate x seed (src/train.py), then run the TF-IDF baseline
# (src/baseline.py) and print the summary table (src/aggregate.py; tables and plots in results/).
#
#   bash run.sh                                 # the study below; on a fresh clone too (it creates .venv)
#   SEEDS="1 2 3" LRS="3e-5" bash run.sh        # a variable changes the study: bash run.sh --help lists them
#   GPUS="0 1 2 3" bash run.sh                  # one run per GPU at a time (WORKERS=2: two without GPUs)
#   bash run.sh --status                        # done, running, failed, left, and the time left
#   SBATCH_PARTITION=gpu bash run.sh --slurm    # a Slurm job array, then the summary job (sbatch's own
#                                               # SBATCH_ACCOUNT, SBATCH_TIMELIMIT, SBATCH_GRES, ... honoured)
#
# The variables (space-separated lists) and their defaults: MODELS (the 15 below), LRS, SEEDS (below);
# DATASET=livedoor, OUTPUT_ROOT=outputs, TEXT_FIELDS (the dataset's), TRAIN_ARGS (none), GPU, NPROC=1,
# GPUS, WORKERS, CLAIM_TIMEOUT=600, PYTHON, SAVE_MODEL=0, RESULTS_DIR (results/ beside OUTPUT_ROOT).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

DEFAULT_MODELS=(
    tohoku-nlp/bert-base-japanese-v3
    tohoku-nlp/bert-large-japanese-v2
    tohoku-nlp/bert-base-japanese-char-v3
    tohoku-nlp/bert-large-japanese-char-v2
    studio-ousia/luke-japanese-base-lite
    studio-ousia/luke-japanese-large-lite
    studio-ousia/mluke-base-lite
    FacebookAI/xlm-roberta-base
    FacebookAI/xlm-roberta-large
    google-bert/bert-base-multilingual-cased
    sbintuitions/modernbert-ja-130m
    sbintuitions/modernbert-ja-310m
    llm-jp/llm-jp-modernbert-base
    globis-university/deberta-v3-japanese-base
    ku-nlp/deberta-v3-base-japanese
)
export DEFAULT_MODEL_LIST="${DEFAULT_MODELS[*]}" DEFAULT_LRS="1e-5 3e-5 5e-5" DEFAULT_SEEDS="42"

# 1. Every variable is checked before anything runs (a bad one: one line, exit status 2), and --help, by any
#    Python 3.10+: the module needs the standard library only, as the environment may not exist yet. (With no
#    Python at all, src/sweep.py checks them once the environment step has made one.)
new_enough='import sys; sys.exit(sys.version_info < (3, 10))'  # the syntax of our modules
for checker in ${PYTHON:+"$PYTHON"} python3 python ""; do [[ -z "$checker" ]] || "$checker" -c "$new_enough" 2>/dev/null && break; done
[[ -z "$checker" ]] || PYTHONPATH=src "$checker" -m livedoor_classification.sweep_settings "$@" || exit
[[ -n "$checker" && ("${1:-}" == -h || "${1:-}" == --help) ]] && exit 0
# --status reads only .sweep/ (standard library too): from any machine that sees the folder, no environment needed.
[[ -n "$checker" && "${1:-}" == --status ]] && exec "$checker" src/sweep.py --status

# Ctrl-C (exit status 130) or a SIGTERM (kill, timeout, a container's stop: 143) stops the step in progress,
# then run.sh. A step runs in the background, waited for, because bash runs a trap only between commands.
child=""
stop() {  # MESSAGE STATUS [SIGNAL for the step]
    [[ -n "$child" && -n "${3:-}" ]] && kill "-$3" "$child" 2>/dev/null
    while [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
    echo "run.sh: $1: the sweep stops (complete runs are kept; run again to resume)" >&2
    exit "$2"
}
trap 'stop interrupted 130' INT
trap 'stop "stopped (SIGTERM)" 143 INT' TERM  # passed on as the Ctrl-C the step knows how to end on
step() {  # COMMAND...: its exit status; Ctrl-C still reaches it (bash ignores SIGINT in background commands)
    (trap - INT; exec "$@") &
    child=$!
    wait "$child"
    local status=$?
    child=""
    return "$status"
}

# 2. The Python with the dependencies (src/environment.sh): $PYTHON, the active virtualenv's, .venv/, Poetry's,
#    python3, or else a .venv created here from the lock. Every script of the study runs in it.
source src/environment.sh
find_environment run.sh requirements.txt torch transformers classopt
export PYTHON="$python"

# 3. The corpus, if datasets/livedoor/ is missing: downloaded (src/download.sh, which honours LIVEDOOR_URL)
#    and split into train, val and test (src/prepare.py). Another DATASET is prepared with src/prepare.py first.
if [[ "${DATASET:-livedoor}" == livedoor && ! -f datasets/livedoor/label2id.json && "${1:-}" != --status ]]; then
    echo "=== No datasets/livedoor/: downloading and preparing the livedoor news corpus"
    if [[ ! -d data/text ]]; then step bash src/download.sh || exit 1; fi
    step "$python" src/prepare.py || exit 1
fi

# 4. Fine-tune every model x lr x seed (src/train.py --skip_if_done: what is complete is skipped), then the
#    TF-IDF baseline and the summary; a failed run is listed at the end (exit status 1). src/sweep.py is the
#    machinery: runs on several GPUS or WORKERS, sweeps sharing the output folder, --status, --slurm.
exec "$python" src/sweep.py "$@"
