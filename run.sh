#!/usr/bin/env bash
# The whole study in one command: fetch and prepare the corpus if needed, fine-tune every encoder x
# learning rate x seed with src/train.py, run the TF-IDF baseline (src/baseline.py), and print the
# summary table of src/aggregate.py (tables and plots in results/).
#
#   bash run.sh
#   MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5" SEEDS="1 2 3" bash run.sh
#   GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh
#   NPROC=4 bash run.sh           # each run on 4 GPUs through torchrun
#   DATASET=reviews bash run.sh   # a dataset prepared with src/prepare.py --name reviews
#   SAVE_MODEL=1 bash run.sh      # keep every run's best model in its folder (train.py --save_model)
#
# Environment (space-separated lists):
#   DATASET      a prepared dataset, datasets/<name>/         (default: livedoor)
#   MODELS       hub ids or local directories                 (default: the list below)
#   LRS          learning rates                               (default: 1e-5 3e-5 5e-5)
#   SEEDS        seeds                                        (default: 42)
#   TRAIN_ARGS   extra arguments for every train.py run; its --dataset_dir, --output_root and
#                --text_fields are also used by the baseline, its --output_root by aggregate.py
#                                                             (default: none)
#   GPU          value for CUDA_VISIBLE_DEVICES               (default: unchanged)
#   NPROC        processes per run; > 1 launches torchrun     (default: 1)
#   PYTHON       the Python to run with                       (default: the active virtualenv's, then
#                                                              .venv/, then Poetry's env, then python3)
#   SAVE_MODEL   1: every run also writes its best model       (default: no weights written)
#   RESULTS_DIR  aggregate.py writes to <RESULTS_DIR>/<dataset>/ (default: results/, or beside the
#                                                              --output_root that TRAIN_ARGS gives)
#
# Without datasets/livedoor/, the corpus is downloaded (src/download.sh, which honours LIVEDOOR_URL)
# and split (src/prepare.py) first; a failure there stops everything. Another DATASET must have been
# prepared with src/prepare.py.
# Resumable: a configuration that already has a complete run of the same dataset in the output
# folder is skipped (train.py and baseline.py --skip_if_done), so an interrupted sweep continues
# where it stopped. A failing run does not stop the sweep: the table covers the runs that completed,
# the failed configurations are listed at the end, and the exit status is 1. Ctrl-C stops the whole
# sweep (exit status 130), not just the run in progress.
set -uo pipefail  # no -e: a failed run is recorded and the sweep goes on
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

interrupted() {
    echo "run.sh: interrupted: the sweep stops (complete runs are kept; run again to resume)" >&2
    exit 130
}
# Ctrl-C reaches run.sh too: bash runs this once the run in progress has ended, however it ended (a
# launcher such as torchrun may exit 1 rather than die of SIGINT), instead of starting the next run.
trap interrupted INT
stop_if_interrupted() {  # $1: a run's exit status; 130 = 128 + SIGINT, even when only the run got the signal
    (($1 == 130)) && interrupted
    return 0
}

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
usage() {  # the comment above, without its '#', and the default models
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]##*/}"
    echo
    echo "Default MODELS (${#DEFAULT_MODELS[@]}):"
    printf '  %s\n' "${DEFAULT_MODELS[@]}"
}
case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: error: unknown argument '$1' (configure with environment variables; see bash run.sh --help)" >&2
       exit 2 ;;
esac

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

train_arg_values() {  # the values TRAIN_ARGS gives for --$1 with nargs="+" (each on a line; the last occurrence wins)
    local i values=()
    for ((i = 0; i < ${#train_args[@]}; i++)); do
        case "${train_args[i]}" in
            "--$1")
                values=()
                while ((i + 1 < ${#train_args[@]})) && [[ "${train_args[i + 1]}" != -* ]]; do
                    values+=("${train_args[i + 1]}")
                    i=$((i + 1))
                done ;;
            "--$1="*) values=("${train_args[i]#*=}") ;;
        esac
    done
    ((${#values[@]} > 0)) && printf '%s\n' "${values[@]}"
    return 0
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
dataset="$(train_arg dataset)"  # TRAIN_ARGS="--dataset X" counts as DATASET=X
dataset="${dataset:-${DATASET:-livedoor}}"
dataset_dir="$(train_arg dataset_dir)"
dataset_args=(--dataset "$dataset")  # for train.py, baseline.py and aggregate.py alike
[[ -n "$dataset_dir" ]] && dataset_args+=(--dataset_dir "$dataset_dir") && dataset="$(basename "$dataset_dir")"
if [[ -z "$dataset_dir" && ! -f "datasets/$dataset/label2id.json" ]]; then
    if [[ "$dataset" != livedoor ]]; then
        echo "run.sh: error: datasets/$dataset/ not found; prepare it first:" \
            "python src/prepare.py --input FILE --text_columns ... --label_column ... --name $dataset" >&2
        exit 1
    fi
    echo "=== No datasets/livedoor/: downloading and preparing the livedoor news corpus"
    if [[ ! -d data/text ]]; then
        bash src/download.sh || exit 1
    fi
    "${python[@]}" src/prepare.py || exit 1
fi

save_model=()
[[ "${SAVE_MODEL:-0}" == 1 ]] && save_model=(--save_model)
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
            "${launch[@]}" "${dataset_args[@]}" --model_name "$model" --lr "$lr" --seed "$seed" --skip_if_done \
                "${save_model[@]}" "${train_args[@]}"
            status=$?
            stop_if_interrupted "$status"
            if ((status != 0)); then
                failed+=("$model lr=$lr seed=$seed")
                echo "=== FAILED: $model lr=$lr seed=$seed (continuing)" >&2
            fi
        done
    done
done

# The baseline row of the table, on the runs' dataset and text fields: it takes seconds and has no
# settings swept. --skip_if_done compares the dataset's fingerprint, so that a baseline of another
# dataset in the same output folder does not count.
output_root="$(train_arg output_root)"
mapfile -t text_fields < <(train_arg_values text_fields)
baseline_args=(--skip_if_done "${dataset_args[@]}")
[[ -n "$output_root" ]] && baseline_args+=(--output_root "$output_root")
((${#text_fields[@]} > 0)) && baseline_args+=(--text_fields "${text_fields[@]}")
output_root="${output_root:-outputs}"  # train.py's default
other_failures=()
echo "=== TF-IDF baseline"
"${python[@]}" src/baseline.py "${baseline_args[@]}"
status=$?
stop_if_interrupted "$status"
((status == 0)) || other_failures+=("the TF-IDF baseline (src/baseline.py)")

# The summary over every complete run, also when some failed: what finished is still worth a table.
results_dir="${RESULTS_DIR:-$(dirname "$output_root")/results}"  # outputs/ -> results/, as aggregate.py's defaults
results_dir="${results_dir#./}"
echo "=== Summary"
"${python[@]}" src/aggregate.py "${dataset_args[@]}" --output_root "$output_root" --results_dir "$results_dir"
status=$?
stop_if_interrupted "$status"
((status == 0)) || other_failures+=("the summary (src/aggregate.py)")

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
echo "All $total runs and the baseline complete; tables and plots in $results_dir/$dataset/"
