# One configuration of run.sh's sweep: claimed, run, recorded; and the sweep's progress. Sourced by
# run.sh, which sets what these functions read: sweep_dir (<OUTPUT_ROOT>/<dataset>/.sweep), total,
# claim_timeout (seconds), launch (the train.py command), shared_args, save_model, train_args, nproc,
# runs_dir (<OUTPUT_ROOT>/<dataset>).
#
# Under sweep_dir, files only: aggregate.py takes every folder three levels down (<model>/<date>/<time>) for a run.
#   claims/<key>.<n>  held while a configuration runs, by any sweep on any machine that shares the
#                     folder: "host pid start slurm-task"; its time is refreshed every claim_timeout/5
#                     seconds (60 at most) while the run lives
#   logs/<key>.log    train.py's output when runs go to files (GPUS, WORKERS, Slurm), every attempt appended
#   ended/<key>       the last attempt that ended: exit=N seconds=N trained=0|1 host=H ended=TIME [run=RUN],
#                     RUN the complete run folder, which find_complete_runs checks instead of starting train.py
#   plan              the configurations of the sweep started last (sweep_plan), for run.sh --status
#   summary           "host pid start -" while run.sh's summary (aggregate.py) runs, for run.sh --status
#   slurm/            Slurm's output files of the jobs of run.sh --slurm
#
# Why our own claims: no well-kept tool hands out work items to independent processes on several
# machines through a shared folder alone (flock is unreliable over NFS, Slurm schedules only its own
# jobs). The claim is the one primitive that is atomic on local disks and NFS alike: an exclusive create
# (bash's noclobber is open(O_CREAT|O_EXCL)). A claim is taken over when it is stale: its process is gone
# (same host), its Slurm array task is the one now running (a requeued task), or it was not refreshed
# for claim_timeout seconds (any host). Taking over never deletes a live claim: it creates the next
# number, <key>.<n+1>, exclusively, so of two sweeps that find the same stale claim one wins.

configuration_key() {  # MODEL LR SEED: prints a file name for this configuration, the same on every machine
    local model="$1" lr="$2" seed="$3" name sum
    if [[ -d "$model" ]]; then name="$(basename "$model")"; else name="${model//\//__}"; fi  # as runs.model_dir_name
    # Everything that makes this run what it is, but not the Python's path (another machine's may differ).
    sum="$(printf '%s\n' "$nproc" "${shared_args[@]}" "$model" "$lr" "$seed" "${save_model[@]}" "${train_args[@]}" \
        | cksum)"
    name="${name}_lr${lr}_seed${seed}_${sum%% *}"
    printf '%s\n' "${name//[!A-Za-z0-9._=-]/_}"
}

baseline_key() {  # the TF-IDF baseline's claim: one per dataset, output folder and text fields
    local sum
    sum="$(printf '%s\n' "${shared_args[@]}" | cksum)"
    printf '%s\n' "tfidf-char-linear_${sum%% *}"
}

_mtime() { stat -c %Y "$1" 2>/dev/null || stat -f %m "$1" 2>/dev/null; }  # GNU, BSD
_this_task() { [[ -n "${SLURM_ARRAY_JOB_ID:-}" ]] && printf '%s\n' "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; }

claim_is_live() {  # FILE
    local host="" pid="" start="" task="" modified
    read -r host pid start task 2>/dev/null <"$1"  # empty for a moment after its create: live while fresh
    modified="$(_mtime "$1")" || return 1  # gone meanwhile
    (($(date +%s) - modified > claim_timeout)) && return 1
    [[ -n "$task" && "$task" != - && "$task" == "$(_this_task)" ]] && return 1
    if [[ "$host" == "$(uname -n)" && "$pid" =~ ^[0-9]+$ ]]; then
        kill -0 "$pid" 2>/dev/null || ps -p "$pid" >/dev/null 2>&1 || return 1
        # A process killed (-9) but not yet reaped by its new parent is a zombie: it answers both, and
        # runs nothing. A sweep started in that moment would skip the configuration, and nobody train it.
        # Its state: from /proc (Linux; the field after the command's parenthesis), else from ps (macOS).
        local state
        state="$(cat "/proc/$pid/stat" 2>/dev/null)" && state="${state##*) }" || state="$(ps -o stat= -p "$pid" 2>/dev/null)"
        [[ "$state" == Z* ]] && return 1
    fi
    return 0
}

newest_claim() {  # KEY: the highest n of its claims/<KEY>.<n>, 0 if none
    local file number newest=0
    for file in "$sweep_dir/claims/$1".*; do
        number="${file##*.}"
        [[ -e "$file" && "$number" =~ ^[0-9]+$ ]] && ((number > newest)) && newest=$number
    done
    echo "$newest"
}

claim() {  # KEY: 0 and claim_file set if this process now holds it; 1 and holder set if another does
    local key="$1" number newest
    newest="$(newest_claim "$key")"
    if ((newest > 0)) && claim_is_live "$sweep_dir/claims/$key.$newest"; then
        holder="$(cat "$sweep_dir/claims/$key.$newest" 2>/dev/null)"
        return 1
    fi
    claim_file="$sweep_dir/claims/$key.$((newest + 1))"
    local owner  # this shell's process: $BASHPID inside the ( ) below would be that short-lived subshell's
    owner="$(uname -n) $BASHPID $(date +%Y-%m-%dT%H:%M:%S) $(_this_task || echo -)"
    if ! (set -o noclobber && echo "$owner" >"$claim_file") 2>/dev/null; then
        claim_file="" holder="another sweep, a moment ago"
        return 1
    fi
    for ((number = 1; number <= newest; number++)); do  # the stale ones: nobody creates these numbers again
        rm -f "$sweep_dir/claims/$key.$number"
    done
    # While the run lives, its claim's time says so (for other hosts, which cannot see its process).
    local every=$((claim_timeout / 5))
    ((every > 60)) && every=60
    ((every < 1)) && every=1
    (
        trap 'kill $nap 2>/dev/null; exit 0' TERM
        while :; do
            sleep "$every" &
            nap=$!
            wait $nap
            touch -c "$claim_file" 2>/dev/null || exit 0
        done
    ) </dev/null >/dev/null 2>&1 &
    heartbeat=$!
    return 0
}

release() {  # the claim this process holds, if any
    [[ -n "${heartbeat:-}" ]] && kill "$heartbeat" 2>/dev/null
    [[ -n "${claim_file:-}" ]] && rm -f "$claim_file"
    heartbeat="" claim_file=""
}

run_configuration() {  # N MODEL LR SEED MODE: the run's exit status (0 when another sweep holds it)
    # MODE: terminal (train.py prints as it always has), file (to its log), slurm (to its log, and
    # USR1 or TERM stop the run, which Slurm then requeues)
    local n="$1" model="$2" lr="$3" seed="$4" mode="$5" key log start status trained=1 size=0 before after
    local finished run_dir=""  # the complete runs before; the run this one wrote or found complete
    local name="$model lr=$lr seed=$seed" runs_of_model="$runs_dir/${model//\//__}"
    [[ -d "$model" ]] && runs_of_model="$runs_dir/$(basename "$model")"
    key="$(configuration_key "$model" "$lr" "$seed")"
    log="$sweep_dir/logs/$key.log"
    if [[ -n "${complete_run[$key]:-}" ]]; then  # found by find_complete_runs, without a train.py
        echo "=== [$n/$total] $name: already complete, skipped: ${complete_run[$key]}"
        return 0
    fi
    if ! claim "$key"; then
        echo "=== [$n/$total] $name: running in another sweep ($holder); skipped here"
        return 0
    fi
    start="$(date +%s)"
    local command=("${launch[@]}" "${shared_args[@]}" --model_name "$model" --lr "$lr" --seed "$seed" --skip_if_done
        "${save_model[@]}" "${train_args[@]}")
    # Under Slurm a task may be preempted or stopped at its time limit and requeued: --resume makes the
    # requeued task continue after the last finished epoch. Off elsewhere: its state costs a write of four
    # times the model's size every epoch (BERT-base: 1.75 GB, 8-17 s here), TRAIN_ARGS can ask for it.
    [[ "$mode" == slurm ]] && command+=(--resume)
    if [[ "$mode" == terminal ]]; then
        echo "=== [$n/$total] $name"
        before="$(find "$runs_of_model" -name config.json 2>/dev/null | wc -l)"
        finished="$(find "$runs_of_model" -name test-metrics.json 2>/dev/null | sort)"
        run_child "${command[@]}"  # run.sh's: a SIGTERM to run.sh stops it
        status=$?
        after="$(find "$runs_of_model" -name config.json 2>/dev/null | wc -l)"
        ((after > before)) || trained=0
        if ((status == 0 && trained)); then  # the one run completed meanwhile, if only one (another sweep's?)
            run_dir="$(comm -13 <(echo "$finished") <(find "$runs_of_model" -name test-metrics.json | sort))"
            if [[ -n "$run_dir" && "$run_dir" != *$'\n'* ]]; then run_dir="$(dirname "$run_dir")"; else run_dir=""; fi
        fi
    else
        local where="CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
        echo "=== [$n/$total] $name: started on $(uname -n), $where (log: $log)"
        [[ -f "$log" ]] && size="$(wc -c <"$log")"
        echo "=== run.sh: $name on $(uname -n), $where, pid $BASHPID, $(date +%Y-%m-%dT%H:%M:%S): ${command[*]}" >>"$log"
        if [[ "$mode" == slurm ]]; then  # in the background, so that the trap runs while it trains
            "${command[@]}" >>"$log" 2>&1 &
            local run=$!
            local requeue=""
            trap 'kill -TERM $run 2>/dev/null' TERM        # scancel, or a preemption
            trap 'requeue=1; kill -TERM $run 2>/dev/null' USR1  # --signal: the time limit is near
            wait $run
            status=$?
            if kill -0 $run 2>/dev/null; then wait $run; status=$?; fi  # a trap ran: wait for the run's end
            if [[ -n "$requeue" ]] && ((status != 0)); then  # back in the queue, to continue (--resume)
                release
                echo "=== [$n/$total] $name: stopped before the time limit; requeued"
                scontrol requeue "$(_this_task)"
                return 143
            fi
        else
            "${command[@]}" >>"$log" 2>&1 </dev/null
            status=$?
        fi
        echo "=== run.sh: exit status $status after $(($(date +%s) - start)) s" >>"$log"
        tail -c +"$((size + 1))" "$log" | grep -q "already complete, skipped" && trained=0
        # train.py's last line names the run: "best epoch ... -> RUN" or "already complete, skipped: RUN"
        run_dir="$(tail -c +"$((size + 1))" "$log" \
            | sed -n 's/^already complete, skipped: //p; s/^best epoch .* -> //p' | tail -n 1)"
    fi
    release
    if ((status != 130 && status != 143)); then  # an interrupted run is left to do, not ended
        local ended="$sweep_dir/ended/$key"
        echo "exit=$status seconds=$(($(date +%s) - start)) trained=$trained host=$(uname -n)" \
            "ended=$(date +%Y-%m-%dT%H:%M:%S)${run_dir:+ run=$run_dir}" >"$ended.$BASHPID" \
            && mv -f "$ended.$BASHPID" "$ended"
    fi
    if [[ "$mode" != terminal ]] && ((status == 0 && trained)); then
        echo "=== [$n/$total] $name: done in $(duration $(($(date +%s) - start)))"
    elif [[ "$mode" != terminal ]] && ((status == 0)); then  # train.py found it complete (its log says where)
        echo "=== [$n/$total] $name: already complete, skipped: ${run_dir:-see $log}"
    fi
    return $status
}

declare -A complete_run=()  # KEY -> a complete run of that configuration (find_complete_runs)
find_complete_runs() {  # sets complete_run: the configurations whose run recorded in ended/ is still complete,
    # found by one Python without torch for them all (src/runs.py) rather than a train.py --skip_if_done each
    local key run dataset_path="${dataset_dir:-datasets/$dataset}" holding=""
    ((${#save_model[@]} > 0)) && holding=model
    while read -r key run; do
        complete_run[$key]="$run"
    done < <(sweep_plan | cut -d " " -f 1 | PYTHONPATH=src "${python[@]}" -m livedoor_classification.runs "$sweep_dir" "$dataset_path" "$holding")
}

duration() {  # SECONDS -> 1h02m, 3m05s, 12s
    local s="$1"
    if ((s >= 3600)); then printf '%dh%02dm\n' $((s / 3600)) $((s % 3600 / 60))
    elif ((s >= 60)); then printf '%dm%02ds\n' $((s / 60)) $((s % 60))
    else printf '%ds\n' "$s"; fi
}

sweep_plan() {  # what --status reads: the baseline's key, then "KEY MODEL LR SEED" for each configuration
    local config model lr seed
    echo "baseline $(baseline_key)"
    for config in "${configurations[@]}"; do
        read -r model lr seed <<<"$config"
        echo "$(configuration_key "$model" "$lr" "$seed") $config"
    done
}

sweep_status() {  # a sweep_plan on stdin: done, running, failed, left, time left; the baseline and summary if running
    local key model lr seed newest count=0 done=0 running=0 failed=0 left=0 trained=0 seconds=0 baseline=""
    local running_lines=() failed_lines=() exit_status run_seconds was_trained host pid start word
    while read -r key model lr seed; do
        [[ "$key" == baseline ]] && baseline="$model" && continue
        count=$((count + 1))
        newest="$(newest_claim "$key")"
        if ((newest > 0)) && claim_is_live "$sweep_dir/claims/$key.$newest"; then
            running=$((running + 1))
            read -r host pid start _ <"$sweep_dir/claims/$key.$newest"
            running_lines+=("$model lr=$lr seed=$seed: on $host (pid $pid) since $start")
            continue
        fi
        exit_status="" run_seconds=0 was_trained=0
        if [[ -f "$sweep_dir/ended/$key" ]]; then
            for word in $(<"$sweep_dir/ended/$key"); do
                case "$word" in
                    exit=*) exit_status="${word#exit=}" ;;
                    seconds=*) run_seconds="${word#seconds=}" ;;
                    trained=*) was_trained="${word#trained=}" ;;
                esac
            done
        fi
        if [[ "$exit_status" == 0 ]]; then
            done=$((done + 1))
            if [[ "$was_trained" == 1 ]]; then trained=$((trained + 1)) seconds=$((seconds + run_seconds)); fi
        elif [[ -n "$exit_status" ]]; then
            failed=$((failed + 1))
            failed_lines+=("$model lr=$lr seed=$seed: exit status $exit_status, log: $sweep_dir/logs/$key.log")
        else
            left=$((left + 1))
        fi
    done
    newest="$(newest_claim "$baseline")"
    if [[ -n "$baseline" ]] && ((newest > 0)) && claim_is_live "$sweep_dir/claims/$baseline.$newest"; then
        read -r host pid start _ <"$sweep_dir/claims/$baseline.$newest"
        running_lines+=("the TF-IDF baseline (src/baseline.py) on $host (pid $pid) since $start")
    fi
    if [[ -f "$sweep_dir/summary" ]] && claim_is_live "$sweep_dir/summary"; then  # written by run.sh's summary
        read -r host pid start _ <"$sweep_dir/summary"
        running_lines+=("the summary (src/aggregate.py) on $host (pid $pid) since $start")
    fi
    local noun=configurations
    ((count == 1)) && noun=configuration
    echo "$count $noun in $sweep_dir: $done done, $running running, $failed failed, $left left"
    ((${#running_lines[@]} > 0)) && printf '  running: %s\n' "${running_lines[@]}"
    ((failed > 0)) && printf '  failed:  %s\n' "${failed_lines[@]}"
    if ((left + running == 0)); then
        return 0
    elif ((trained == 0)); then
        echo "time left: unknown until a run has finished"
    elif ((running == 0)); then
        echo "time left: $(duration $((seconds / trained))) a run ($trained finished); nothing is running now"
    else
        # The runs in progress are taken as half done, and as many run at a time as run now.
        local remaining=$(((seconds / trained) * (2 * left + running) / 2 / running))
        echo "time left: about $(duration $remaining) ($(duration $((seconds / trained))) a run over $trained" \
            "finished, $running at a time)"
    fi
}
