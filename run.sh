#!/usr/bin/env bash
# The whole study in one command: fetch and prepare the corpus if needed, fine-tune every encoder x
# learning rate x seed with src/train.py, run the TF-IDF baseline (src/baseline.py), and print the
# summary table of src/aggregate.py (tables and plots in results/).
#
#   bash run.sh                   # on a fresh clone too: creates .venv if no environment has the dependencies
#   MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5" SEEDS="1 2 3" bash run.sh
#   GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh
#   NPROC=4 bash run.sh           # each run on 4 GPUs through torchrun
#   DATASET=reviews bash run.sh   # a dataset prepared with src/prepare.py --name reviews
#   DATASET=/data/tickets OUTPUT_ROOT=/scratch/runs bash run.sh   # a prepared folder anywhere, runs elsewhere
#   SAVE_MODEL=1 bash run.sh      # keep every run's best model in its folder (train.py --save_model)
#
# Environment (space-separated lists):
#   DATASET      a prepared dataset: a name (datasets/<name>/) or a folder path with a /  (default: livedoor)
#   MODELS       hub ids or local directories                 (default: the list below)
#   LRS          learning rates                               (default: 1e-5 3e-5 5e-5)
#   SEEDS        seeds                                        (default: 42)
#   OUTPUT_ROOT  where the runs go, <OUTPUT_ROOT>/<dataset>/   (default: outputs)
#   TEXT_FIELDS  the text fields of every run and the baseline (default: the dataset's, from dataset.json)
#   TRAIN_ARGS   extra arguments for every train.py run, passed as they are; the dataset, output root
#                and text fields are set with the variables above, which every script is given
#                                                             (default: none)
#   GPU          value for CUDA_VISIBLE_DEVICES               (default: unchanged)
#   NPROC        processes per run, a positive integer; > 1 launches torchrun  (default: 1)
#   PYTHON       the Python to run with, which must have the dependencies (default: the first that has
#                them of the active virtualenv's, .venv/, Poetry's env and python3; if none has them,
#                .venv is created from requirements.txt, hash-checked)
#   SAVE_MODEL   1: every run also writes its best model       (default: 0, no weights written)
#   RESULTS_DIR  aggregate.py writes to <RESULTS_DIR>/<dataset>/ (default: results/ beside OUTPUT_ROOT)
#
# A variable set to a value it cannot take (NPROC=abc, SAVE_MODEL=yes, an empty MODELS, LRS or SEEDS, a
# learning rate <= 0) stops run.sh before anything runs, with exit status 2.
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

# Every setting is checked here, before anything runs (an environment created, a corpus downloaded, hours
# of runs): a bad one used to show late or never. NPROC=abc stopped the sweep after the download,
# SAVE_MODEL=yes kept no model, MODELS="" swept the 15 defaults, LRS=0 failed each run in turn.
usage_error() {
    echo "run.sh: error: $* (see bash run.sh --help)" >&2
    exit 2
}
for name in MODELS LRS SEEDS; do  # set but empty is a mistake (MODELS="$mine" with $mine unset), not "the default"
    if [[ -n "${!name+set}" ]]; then
        read -r -a words <<<"${!name}"
        ((${#words[@]} > 0)) \
            || usage_error "$name is set but empty; give at least one value, or unset it for the default"
    fi
done
read -r -a models <<<"${MODELS-${DEFAULT_MODELS[*]}}"
read -r -a lrs <<<"${LRS-1e-5 3e-5 5e-5}"
read -r -a seeds <<<"${SEEDS-42}"
read -r -a train_args <<<"${TRAIN_ARGS:-}"
for lr in "${lrs[@]}"; do  # a decimal number as float() reads it, with a non-zero digit before any exponent
    [[ "$lr" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ && "${lr%%[eE]*}" == *[1-9]* ]] \
        || usage_error "LRS holds '$lr'; learning rates are numbers above 0, such as 3e-5"
done
for seed in "${seeds[@]}"; do  # transformers.set_seed seeds numpy too, which takes 0 to 2**32 - 1
    digits="${seed#"${seed%%[!0]*}"}"  # without leading zeros, so that the length check comes before bash's 64 bits
    [[ "$seed" =~ ^[0-9]+$ ]] && ((${#digits} <= 10 && 10#${digits:-0} <= 4294967295)) \
        || usage_error "SEEDS holds '$seed'; seeds are integers from 0 to 4294967295"
done
nproc=1
if [[ -n "${NPROC+set}" ]]; then
    [[ "$NPROC" =~ ^0*[1-9][0-9]{0,5}$ ]] \
        || usage_error "NPROC is '$NPROC'; it is a positive integer, the processes per run"
    nproc=$((10#$NPROC))
fi
[[ "${SAVE_MODEL-0}" == [01] ]] \
    || usage_error "SAVE_MODEL is '$SAVE_MODEL'; it is 1 (every run writes its best model) or 0 (none)"
[[ -n "${GPU:-}" ]] && export CUDA_VISIBLE_DEVICES="$GPU"
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error

# TRAIN_ARGS goes to train.py as it is. What the baseline and the summary must agree on comes from the
# sweep's own variables instead, so a second copy of it in TRAIN_ARGS would split the study in two.
for word in "${train_args[@]}"; do
    case "$word" in
        --dataset | --dataset_dir | --output_root | --text_fields | --dataset=* | --dataset_dir=* | \
            --output_root=* | --text_fields=*)
            usage_error "TRAIN_ARGS gives ${word%%=*}; set DATASET, OUTPUT_ROOT or TEXT_FIELDS instead" ;;
    esac
done

# The Python with the dependencies (sets `python`): $PYTHON, or whichever environment the user set up, or
# else a .venv created here from the lock. Checked now: one clear line rather than the same ImportError
# from every run of the sweep.
source src/environment.sh
find_environment run.sh requirements.txt torch transformers classopt

# The dataset every script is given. livedoor is downloaded (download.sh verifies and extracts the corpus)
# and prepared (prepare.py writes the splits) if missing: without it every run would fail the same way.
dataset="${DATASET:-livedoor}"
dataset_args=(--dataset "$dataset")  # for train.py, baseline.py and aggregate.py alike
dataset_dir=""
if [[ "$dataset" == */* ]]; then  # a prepared folder anywhere: named by its folder, as the scripts name it
    dataset_dir="$dataset"
    dataset_args=(--dataset_dir "$dataset_dir")
    dataset="$(basename "$dataset_dir")"
fi
output_root="${OUTPUT_ROOT:-outputs}"  # the scripts' default
read -r -a text_fields <<<"${TEXT_FIELDS:-}"
shared_args=("${dataset_args[@]}")
[[ -n "${OUTPUT_ROOT:-}" ]] && shared_args+=(--output_root "$OUTPUT_ROOT")
((${#text_fields[@]} > 0)) && shared_args+=(--text_fields "${text_fields[@]}")
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
[[ "${SAVE_MODEL-0}" == 1 ]] && save_model=(--save_model)
if ((nproc > 1)); then
    launch=("${python[@]}" -m torch.distributed.run --standalone --nproc_per_node "$nproc" src/train.py)
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
            "${launch[@]}" "${shared_args[@]}" --model_name "$model" --lr "$lr" --seed "$seed" --skip_if_done \
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
other_failures=()
echo "=== TF-IDF baseline"
"${python[@]}" src/baseline.py --skip_if_done "${shared_args[@]}"
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
