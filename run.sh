#!/usr/bin/env bash
# The whole study in one command: fetch and prepare the corpus if needed, fine-tune every encoder x
# learning rate x seed with src/train.py, run the TF-IDF baseline (src/baseline.py), and print the
# summary table of src/aggregate.py (tables and plots in results/).
#
#   bash run.sh
#   MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5" SEEDS="1 2 3" bash run.sh
#   GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh
#   NPROC=4 bash run.sh           # each run on 4 GPUs through torchrun
#
# Environment (space-separated lists):
#   MODELS       hub ids or local directories                 (default: the list below)
#   LRS          learning rates                               (default: 1e-5 3e-5 5e-5)
#   SEEDS        seeds                                        (default: 42)
#   TRAIN_ARGS   extra arguments for every train.py run; its --dataset_dir and --output_root are
#                also used by the baseline and aggregate.py   (default: none)
#   GPU          value for CUDA_VISIBLE_DEVICES               (default: unchanged)
#   NPROC        processes per run; > 1 launches torchrun     (default: 1)
#   PYTHON       the Python to run with                       (default: the active virtualenv's, then
#                                                              .venv/, then Poetry's env, then python3)
#   RESULTS_DIR  where aggregate.py writes tables and plots   (default: results/, or beside the
#                                                              --output_root that TRAIN_ARGS gives)
#
# Without datasets/livedoor/, the corpus is downloaded (src/download.sh, which honours LIVEDOOR_URL)
# and split (src/prepare.py) first; a failure there stops everything.
# Resumable: a configuration that already has a complete run in the output folder is skipped
# (train.py --skip_if_done), and so is the baseline, so an interrupted sweep continues where it
# stopped. A failing run does not stop the sweep: the table covers the runs that completed, the
# failed configurations are listed at the end, and the exit status is 1.
set -uo pipefail  # no -e: a failed run is recorded and the sweep goes on
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

usage() {  # the comment above, without its '#'
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]##*/}"
}
case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: error: unknown argument '$1' (configure with environment variables; see bash run.sh --help)" >&2
       exit 2 ;;
esac

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
read -r -a models <<<"${MODELS:-${DEFAULT_MODELS[*]}}"
read -r -a lrs <<<"${LRS:-1e-5 3e-5 5e-5}"
read -r -a seeds <<<"${SEEDS:-42}"
read -r -a train_args <<<"${TRAIN_ARGS:-}"
[[ -n "${GPU:-}" ]] && export CUDA_VISIBLE_DEVICES="$GPU"
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error

train_arg() {  # the value TRAIN_ARGS gives for --$1 (as --$1 VALUE or --$1=VALUE; the last one wins, as in argparse)
    local i value=""
    for ((i = 0; i < ${#train_args[@]}; i++)); do
        case "${train_args[i]}" in
            "--$1") value="${train_args[i + 1]:-}" ;;
            "--$1="*) value="${train_args[i]#*=}" ;;
        esac
    done
    echo "$value"
}

# The Python that has the dependencies: whichever of these the user set up.
if [[ -n "${PYTHON:-}" ]]; then
    python=("$PYTHON")
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    python=("$VIRTUAL_ENV/bin/python")
elif [[ -x .venv/bin/python ]]; then
    python=(.venv/bin/python)
elif command -v poetry >/dev/null 2>&1 && [[ -n "$(poetry env info -p 2>/dev/null)" ]]; then
    python=(poetry run python)
else
    python=(python3)
fi
# One clear line now rather than the same ImportError from every run of the sweep.
if ! "${python[@]}" -c "import torch, transformers, classopt" >/dev/null 2>&1; then
    echo "run.sh: error: ${python[*]} cannot import torch, transformers and classopt; install the dependencies" \
        "with \`poetry install\`, or \`python -m venv .venv && .venv/bin/pip install -r requirements.txt\`" >&2
    exit 1
fi

# The data, unless TRAIN_ARGS brings its own: download.sh verifies and extracts the corpus,
# prepare.py writes the splits. Without them every run would fail the same way.
dataset_dir="$(train_arg dataset_dir)"
if [[ -z "$dataset_dir" && ! -f datasets/livedoor/label2id.json ]]; then
    echo "=== No datasets/livedoor/: downloading and preparing the livedoor news corpus"
    if [[ ! -d data/text ]]; then
        bash src/download.sh || exit 1
    fi
    "${python[@]}" src/prepare.py || exit 1
fi

if ((${NPROC:-1} > 1)); then
    launch=("${python[@]}" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" src/train.py)
else
    launch=("${python[@]}" src/train.py)
fi

failed=()
total=$((${#models[@]} * ${#lrs[@]} * ${#seeds[@]}))
n=0
for model in "${models[@]}"; do
    for lr in "${lrs[@]}"; do
        for seed in "${seeds[@]}"; do
            n=$((n + 1))
            echo "=== [$n/$total] $model lr=$lr seed=$seed"
            if ! "${launch[@]}" --model_name "$model" --lr "$lr" --seed "$seed" --skip_if_done "${train_args[@]}"; then
                failed+=("$model lr=$lr seed=$seed")
                echo "=== FAILED: $model lr=$lr seed=$seed (continuing)" >&2
            fi
        done
    done
done

# The baseline row of the table, once per output folder: it takes seconds and has no settings swept.
output_root="$(train_arg output_root)"
baseline_args=()
[[ -n "$dataset_dir" ]] && baseline_args+=(--dataset_dir "$dataset_dir")
[[ -n "$output_root" ]] && baseline_args+=(--output_root "$output_root")
output_root="${output_root:-outputs}"  # train.py's default
other_failures=()
if compgen -G "$output_root/tfidf-char-logreg/*/*/test-metrics.json" >/dev/null; then
    echo "=== TF-IDF baseline: already complete, skipped"
else
    echo "=== TF-IDF baseline"
    "${python[@]}" src/baseline.py "${baseline_args[@]}" || other_failures+=("the TF-IDF baseline (src/baseline.py)")
fi

# The summary over every complete run, also when some failed: what finished is still worth a table.
results_dir="${RESULTS_DIR:-$(dirname "$output_root")/results}"  # outputs/ -> results/, as aggregate.py's defaults
results_dir="${results_dir#./}"
echo "=== Summary"
"${python[@]}" src/aggregate.py --output_root "$output_root" --results_dir "$results_dir" \
    || other_failures+=("the summary (src/aggregate.py)")

if ((${#failed[@]} > 0)); then
    echo "${#failed[@]} of $total runs failed:" >&2
    printf '  %s\n' "${failed[@]}" >&2
fi
if ((${#other_failures[@]} > 0)); then
    printf 'failed: %s\n' "${other_failures[@]}" >&2
fi
if ((${#failed[@]} + ${#other_failures[@]} > 0)); then
    exit 1
fi
echo "All $total runs and the baseline complete; tables and plots in $results_dir/"
