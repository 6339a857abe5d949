# Submitting run.sh's sweep to Slurm (bash run.sh --slurm); sourced by run.sh after its checks, with the
# configurations, sweep_dir, nproc and dataset set. Slurm does the scheduling: a job array with one
# configuration per task (each runs `bash run.sh --configuration N`), and the baseline and summary as a
# job that starts once every task has ended, however it ended (afterany: `bash run.sh --summary`).
#
# What a site adds goes through sbatch's own input variables, which every sbatch call here reads:
# SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, SBATCH_TIMELIMIT, SBATCH_CONSTRAINT, SBATCH_MEM_PER_GPU, ...
# The jobs inherit the submitting shell's environment (sbatch's default, --export=ALL): load modules and
# activate the Python environment before submitting.
#
#   --requeue              a preempted task (or one on a node that failed) goes back to the queue
#   --signal B:USR1@120    two minutes before its time limit, a task stops its run and requeues itself
# Either way the task's run continues after its last finished epoch: every Slurm task runs train.py with
# --resume (sweep.sh), as a requeued task is the case it exists for.

array_of_left() {  # the numbers of the configurations not done (sweep_dir/ended), as ranges: 1-3,7
    local n config model lr seed record ranges="" first=0 last=0
    for ((n = 1; n <= total + 1; n++)); do
        if ((n <= total)); then
            read -r model lr seed <<<"${configurations[n - 1]}"
            record="$sweep_dir/ended/$(configuration_key "$model" "$lr" "$seed")"
            if [[ ! -f "$record" || "$(<"$record")" != exit=0\ * ]]; then
                ((first == 0)) && first=$n
                last=$n
                continue
            fi
        fi
        if ((first > 0)); then
            ranges+="${ranges:+,}$first$( ((last > first)) && echo "-$last")"
            first=0
        fi
    done
    echo "$ranges"
}

submit_sweep() {
    local array gres=() job summary_job name="sweep-$dataset" here
    here="$(printf %q "$PWD/run.sh")"
    mkdir -p "$sweep_dir/slurm" || exit 1
    array="$(array_of_left)"
    # GPUs per task: NPROC of them, unless the site's variables already ask for GPUs.
    [[ -z "${SBATCH_GRES:-}${SBATCH_GPUS:-}${SBATCH_GPUS_PER_TASK:-}${SBATCH_GPUS_PER_NODE:-}" ]] \
        && gres=(--gres "gpu:$nproc")
    local dependency=()
    if [[ -n "$array" ]]; then
        job="$(sbatch --parsable --job-name "$name" --array "$array" "${gres[@]}" --requeue --signal B:USR1@120 --open-mode append \
            --output "$sweep_dir/slurm/%A_%a.out" --wrap "exec bash $here --configuration \$SLURM_ARRAY_TASK_ID")" \
            || { echo "run.sh: error: sbatch could not submit the job array (its message is above)" >&2; exit 1; }
        job="${job%%;*}"  # "id;cluster" on a multi-cluster site
        dependency=(--dependency "afterany:$job")
        echo "=== submitted job array $job: configurations $array of $total (logs: $sweep_dir/slurm/)"
    else
        echo "=== all $total configurations are done; submitting the summary only"
    fi
    summary_job="$(sbatch --parsable --job-name "$name-summary" "${dependency[@]}" \
        --output "$sweep_dir/slurm/%j-summary.out" --wrap "exec bash $here --summary")" \
        || { echo "run.sh: error: sbatch could not submit the summary job (its message is above)" >&2; exit 1; }
    echo "=== submitted job ${summary_job%%;*}: the baseline and the summary, after the array" \
        "(watch: squeue --me; bash run.sh --status with the same variables)"
}
