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
#   GPUS="0 1 2 3" bash run.sh    # one run per GPU at a time (with NPROC=2: one per pair of GPUs)
#   WORKERS=2 bash run.sh         # two runs at a time without GPUs
#   bash run.sh --status          # the sweep's progress: done, running, failed, left, time left
#   SBATCH_PARTITION=gpu bash run.sh --slurm   # submit it to Slurm: a job array, then the summary job
#
# Arguments: none (run the sweep here), or one of
#   --status           print how many configurations are done, running, failed and left, and the time left;
#                      without the sweep's variables, of the sweep that runs or last ran in the output folder
#   --slurm            submit the configurations not done yet as a Slurm job array (one per task, NPROC GPUs
#                      each through --gres=gpu:NPROC unless SBATCH_GRES or SBATCH_GPUS* is set; sbatch's own
#                      SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, ... are honoured), and the
#                      baseline and summary as a job that starts after it (afterany)
#   --configuration N  run the Nth configuration only (what each array task runs)
#   --summary          the baseline and the summary only (what the job after the array runs)
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
#   GPUS         GPUs to spread the sweep over: one run at a time on each group of NPROC of them, each with
#                its own CUDA_VISIBLE_DEVICES, its output in a log file per configuration (default: unset)
#   WORKERS      runs at a time without GPUs, CPU threads shared between them; with GPU, on that GPU
#                                                             (default: unset, one at a time)
#   CLAIM_TIMEOUT  seconds after which a claim that its sweep stopped refreshing is taken over (default: 600)
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
# sweep (exit status 130), not just the run in progress, and every run of GPUS or WORKERS; so does a
# SIGTERM to run.sh (kill, timeout, a container's stop; exit status 143).
# Several sweeps on one output folder (on one machine, or on several sharing the folder) split the work:
# each configuration is claimed before it starts (src/sweep.sh), and one claimed elsewhere is skipped.
set -uo pipefail  # no -e: a failed run is recorded and the sweep goes on
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 1

interrupted() {  # [SIGNAL]: INT (Ctrl-C, the default) or TERM
    if [[ "${1:-INT}" == TERM ]]; then
        echo "run.sh: stopped (SIGTERM): the sweep stops (complete runs are kept; run again to resume)" >&2
        exit 143
    fi
    echo "run.sh: interrupted: the sweep stops (complete runs are kept; run again to resume)" >&2
    exit 130
}
# Ctrl-C reaches run.sh and the run in progress (the terminal's process group); SIGTERM (kill, timeout, a
# container's stop) reaches run.sh alone, which passes it on as the Ctrl-C the run knows how to end on.
# Either way the run in progress ends first, however it ends (a launcher such as torchrun may exit 1
# rather than die of SIGINT), and then the sweep stops instead of starting the next run.
on_signal() {  # SIGNAL
    [[ -z "${child:-}" ]] && interrupted "$1"  # between runs, or after a foreground command such as pip
    signalled="$1"
    [[ "$1" == TERM ]] && kill -INT "$child" 2>/dev/null
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
stop_if_interrupted() {  # $1: a run's exit status; 130 = 128 + SIGINT, even when only the run got the signal
    (($1 == 130)) && interrupted
    return 0
}
run_child() {  # COMMAND...: its exit status, as if run in the foreground. It runs in the background, waited
    # for, because bash runs a trap (on_signal's, for SIGTERM) only once a foreground command has ended;
    # with SIGINT restored, which bash ignores in background commands, so that Ctrl-C still reaches it.
    local status
    signalled=""
    (trap - INT; exec "$@") &
    child=$!
    wait "$child"
    status=$?
    # A trap ended the wait, not the command: the sweep stops once the command has ended. (Polled: a second
    # wait for it hangs now and then in bash 5.2 when it ends during the trap.)
    while [[ -n "$signalled" ]] && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
    child=""
    [[ -n "$signalled" ]] && interrupted "$signalled"
    return "$status"
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
action=sweep
case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    --status | --slurm | --summary) action="${1#--}" ;;
    --configuration)
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] \
            || { echo "run.sh: error: --configuration takes a number, 1 for the first configuration" >&2; exit 2; }
        action=configuration ;;
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
slots=()  # where runs go at the same time: a CUDA_VISIBLE_DEVICES each; none: one run after another
if [[ -n "${GPUS+set}" ]]; then
    read -r -a gpus <<<"$GPUS"
    for gpu in "${gpus[@]}"; do
        [[ "$gpu" =~ ^[0-9]+$|^(GPU|MIG)-[A-Za-z0-9/-]+$ ]] \
            || usage_error "GPUS holds '$gpu'; it lists GPU numbers (or UUIDs) as nvidia-smi shows them, such as GPUS=\"0 1 2 3\""
    done
    ((${#gpus[@]} > 0 && ${#gpus[@]} % nproc == 0)) \
        || usage_error "GPUS lists ${#gpus[@]} GPUs, not a multiple of NPROC=$nproc: each run takes NPROC of them"
    [[ -z "${GPU:-}" ]] || usage_error "GPU and GPUS are both set; GPUS alone spreads the sweep over GPUs"
    [[ -z "${WORKERS+set}" ]] || usage_error "WORKERS and GPUS are both set; GPUS runs one run per GPU, WORKERS without GPUs"
    for ((i = 0; i < ${#gpus[@]}; i += nproc)); do
        group="${gpus[*]:i:nproc}"
        slots+=("${group// /,}")
    done
fi
if [[ -n "${WORKERS+set}" ]]; then
    [[ "$WORKERS" =~ ^0*[1-9][0-9]{0,3}$ ]] \
        || usage_error "WORKERS is '$WORKERS'; it is a positive integer, the runs at a time without GPUs"
    for ((i = 0; i < 10#$WORKERS; i++)); do slots+=("${GPU:-}"); done  # no GPU, or GPU's shared by them all
fi
claim_timeout="${CLAIM_TIMEOUT-600}"
[[ "$claim_timeout" =~ ^0*[1-9][0-9]{0,8}$ ]] \
    || usage_error "CLAIM_TIMEOUT is '$claim_timeout'; it is a positive number of seconds"
claim_timeout=$((10#$claim_timeout))
if ((${#slots[@]} > 0)) && ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
    usage_error "GPUS and WORKERS need bash 5.1 or newer (wait -n -p); this is $BASH_VERSION"
fi
if [[ "$action" == slurm ]]; then
    command -v sbatch >/dev/null 2>&1 \
        || usage_error "--slurm needs sbatch, which is not on PATH: run it on a Slurm login node (module load slurm?)"
    [[ -z "${GPU:-}${GPUS+set}${WORKERS+set}" ]] \
        || usage_error "GPU, GPUS and WORKERS are for one machine; under --slurm each run gets NPROC GPUs from Slurm"
fi
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

# The dataset every script is given, and where the runs go.
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
save_model=()
[[ "${SAVE_MODEL-0}" == 1 ]] && save_model=(--save_model)

# The configurations, "MODEL LR SEED", numbered from 1 in this order by every sweep, array task and --status.
configurations=()
for model in "${models[@]}"; do
    for lr in "${lrs[@]}"; do
        for seed in "${seeds[@]}"; do
            configurations+=("$model $lr $seed")
        done
    done
done
total=${#configurations[@]}
runs_dir="$output_root/$dataset"
sweep_dir="$runs_dir/.sweep"  # claims, logs and what ended, shared by every sweep on this output folder
source src/sweep.sh
if [[ "$action" == status ]]; then
    # Without the sweep's own variables: the sweep running or last run in this output folder, as it recorded
    # its plan, rather than the default study.
    if [[ -z "${MODELS+s}${LRS+s}${SEEDS+s}${TRAIN_ARGS+s}${NPROC+s}${SAVE_MODEL+s}${TEXT_FIELDS+s}" \
        && -f "$sweep_dir/plan" ]]; then
        sweep_status <"$sweep_dir/plan"
    else
        sweep_plan | sweep_status
    fi
    exit 0
fi
if [[ "$action" == configuration ]] && (($2 > total)); then
    usage_error "--configuration $2: the sweep has $total configuration$( ((total == 1)) || echo s)"
fi

# The Python with the dependencies (sets `python`): $PYTHON, or whichever environment the user set up, or
# else a .venv created here from the lock. Checked now: one clear line rather than the same ImportError
# from every run of the sweep.
source src/environment.sh
find_environment run.sh requirements.txt torch transformers classopt

# livedoor is downloaded (download.sh verifies and extracts the corpus) and prepared (prepare.py writes the
# splits) if missing: without it every run would fail the same way.
if [[ -z "$dataset_dir" && ! -f "datasets/$dataset/label2id.json" ]]; then
    if [[ "$dataset" != livedoor ]]; then
        echo "run.sh: error: datasets/$dataset/ not found; prepare it first:" \
            "python src/prepare.py --input FILE --text_columns ... --label_column ... --name $dataset" >&2
        exit 1
    fi
    echo "=== No datasets/livedoor/: downloading and preparing the livedoor news corpus"
    if [[ ! -d data/text ]]; then
        run_child bash src/download.sh || exit 1
    fi
    run_child "${python[@]}" src/prepare.py || exit 1
fi

if ((nproc > 1)); then
    launch=("${python[@]}" -m torch.distributed.run --standalone --nproc_per_node "$nproc" src/train.py)
else
    launch=("${python[@]}" src/train.py)
fi
mkdir -p "$sweep_dir/claims" "$sweep_dir/logs" "$sweep_dir/ended" || exit 1
if [[ "$action" == sweep || "$action" == slurm ]]; then  # for --status, which may be given no variables
    sweep_plan >"$sweep_dir/plan.$$" && mv -f "$sweep_dir/plan.$$" "$sweep_dir/plan"
fi
trap release EXIT  # a claim held when run.sh ends, however it ends

failed_configurations() {  # the configurations whose last attempt failed, from sweep_dir/ended
    local config model lr seed record
    for config in "${configurations[@]}"; do
        read -r model lr seed <<<"$config"
        record="$sweep_dir/ended/$(configuration_key "$model" "$lr" "$seed")"
        [[ -f "$record" && "$(<"$record")" != exit=0\ * ]] && echo "$model lr=$lr seed=$seed"
    done
}

# The baseline row of the table, on the runs' dataset and text fields, and the summary over every complete
# run (also when some failed: what finished is still worth a table). The failed runs listed; status 1 if any.
summary() {  # FAILED...: the configurations that failed
    local other_failures=() status results_dir
    # --skip_if_done compares the dataset's fingerprint, so that a baseline of another dataset in the same
    # output folder does not count.
    echo "=== TF-IDF baseline"
    if claim "$(baseline_key)"; then  # once, also when two sweeps end together
        run_child "${python[@]}" src/baseline.py --skip_if_done "${shared_args[@]}"
        status=$?
        release
        stop_if_interrupted "$status"
        ((status == 0)) || other_failures+=("the TF-IDF baseline (src/baseline.py)")
    else
        echo "running in another sweep ($holder); skipped here"
    fi

    results_dir="${RESULTS_DIR:-$(dirname "$output_root")/results}"  # outputs/ -> results/, as aggregate.py's defaults
    results_dir="${results_dir#./}"
    echo "=== Summary"
    echo "$(uname -n) $BASHPID $(date +%Y-%m-%dT%H:%M:%S) -" >"$sweep_dir/summary"  # running, for --status
    run_child "${python[@]}" src/aggregate.py "${dataset_args[@]}" --output_root "$output_root" --results_dir "$results_dir"
    status=$?
    rm -f "$sweep_dir/summary"
    stop_if_interrupted "$status"
    ((status == 0)) || other_failures+=("the summary (src/aggregate.py)")

    if (($# > 0)); then
        echo "$# of $total runs failed:" >&2
        printf '  %s\n' "$@" >&2
    fi
    if ((${#other_failures[@]} > 0)); then
        printf 'failed: %s\n' "${other_failures[@]}" >&2
    fi
    if (($# + ${#other_failures[@]} > 0)); then
        exit 1
    fi
    echo "All $total runs and the baseline complete; tables and plots in $results_dir/$dataset/"
}

case "$action" in
    summary)
        mapfile -t failed < <(failed_configurations)
        summary "${failed[@]}"
        exit 0 ;;
    configuration)  # one array task: its output goes to its log, status lines to Slurm's file
        read -r model lr seed <<<"${configurations[$2 - 1]}"
        run_configuration "$2" "$model" "$lr" "$seed" "$([[ -n "${SLURM_JOB_ID:-}" ]] && echo slurm || echo file)"
        exit ;;
    slurm)
        source src/slurm.sh
        submit_sweep
        exit ;;
esac

find_complete_runs
failed=()
if ((${#slots[@]} == 0)); then  # one run after another, in the foreground, printing to the terminal
    for ((n = 1; n <= total; n++)); do
        read -r model lr seed <<<"${configurations[n - 1]}"
        run_configuration "$n" "$model" "$lr" "$seed" terminal
        status=$?
        stop_if_interrupted "$status"
        if ((status != 0)); then
            failed+=("$model lr=$lr seed=$seed")
            echo "=== FAILED: $model lr=$lr seed=$seed (continuing)" >&2
        fi
    done
else
    # One worker per slot, each in a process group of its own (set -m), so that Ctrl-C, which reaches run.sh
    # alone, is passed on to every run (stop_workers); bash's wait -n collects whichever ends first.
    declare -A slot_of number_of
    free=("${slots[@]}")
    threads=$(($(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) / (${#slots[@]} * nproc)))
    stop_workers() {  # SIGNAL: to every run still going, then wait for them
        local pid
        trap '' INT TERM
        for pid in "${!slot_of[@]}"; do kill -"$1" -- -"$pid" 2>/dev/null; done
        wait
        interrupted "$1"
    }
    trap 'stop_workers INT' INT
    trap 'stop_workers TERM' TERM
    collect() {  # waits for one worker to end; records a failure; frees its slot
        local pid status
        wait -n -p pid "${!slot_of[@]}"
        status=$?
        [[ -n "${pid:-}" ]] || return 0
        free+=("${slot_of[$pid]}")
        ((status == 130)) && stop_workers INT  # a run that got Ctrl-C stops the sweep, as without workers
        if ((status != 0)); then
            read -r model lr seed <<<"${configurations[number_of[$pid] - 1]}"
            failed+=("$model lr=$lr seed=$seed")
            echo "=== FAILED: $model lr=$lr seed=$seed (exit status $status; log:" \
                "$sweep_dir/logs/$(configuration_key "$model" "$lr" "$seed").log) (continuing)" >&2
        fi
        unset "slot_of[$pid]" "number_of[$pid]"
    }
    for ((n = 1; n <= total; n++)); do
        while ((${#free[@]} == 0)); do collect; done
        slot="${free[0]}"
        free=("${free[@]:1}")
        read -r model lr seed <<<"${configurations[n - 1]}"
        set -m
        (
            trap release EXIT
            export CUDA_VISIBLE_DEVICES="$slot"
            [[ -z "$slot" && -z "${OMP_NUM_THREADS:-}" ]] && export OMP_NUM_THREADS=$((threads > 0 ? threads : 1))
            run_configuration "$n" "$model" "$lr" "$seed" file
        ) </dev/null &
        slot_of[$!]="$slot"
        number_of[$!]=$n
        set +m
    done
    while ((${#slot_of[@]} > 0)); do collect; done
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
fi
summary "${failed[@]}"
