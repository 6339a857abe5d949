#!/usr/bin/env bash
# Sweep encoders x learning rates x seeds with src/train.py, then summarise with src/aggregate.py.
#
#   bash run.sh
#   MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5" SEEDS="1 2 3" bash run.sh
#   GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh
#   NPROC=4 bash run.sh           # each run on 4 GPUs through torchrun
#
# Environment (space-separated lists):
#   MODELS      hub ids or local directories                  (default: the list below)
#   LRS         learning rates                                (default: 1e-5 3e-5 5e-5)
#   SEEDS       seeds                                         (default: 42)
#   TRAIN_ARGS  extra arguments for every train.py run        (default: none)
#   GPU         value for CUDA_VISIBLE_DEVICES                (default: unchanged)
#   NPROC       processes per run; > 1 launches torchrun      (default: 1)
#
# Resumable: a configuration that already has a complete run in the output folder is skipped
# (train.py --skip_if_done), so an interrupted sweep continues where it stopped. A failing run does
# not stop the sweep; the failed configurations are listed at the end and the exit status is 1.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

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

PYTHON="${PYTHON:-python}"
if (( ${NPROC:-1} > 1 )); then
    launch=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" src/train.py)
else
    launch=("$PYTHON" src/train.py)
fi

failed=()
total=$(( ${#models[@]} * ${#lrs[@]} * ${#seeds[@]} ))
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

if (( ${#failed[@]} > 0 )); then
    echo "${#failed[@]} of $total runs failed:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "All $total runs complete. Summarise them with: python src/aggregate.py"
