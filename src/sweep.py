"""The sweep of run.sh: every model x learning rate x seed through train.py, then the TF-IDF baseline and
the summary table. run.sh finds the Python environment and the corpus, then hands over to this script:

    bash run.sh                 # one run after another, in the foreground
    GPUS="0 1" bash run.sh      # one run per GPU at a time, each with its log in .sweep/logs/
    bash run.sh --status        # done, running, failed, left; bash run.sh --help for every variable

Each configuration is claimed before it runs (claims.py), so that sweeps sharing an output folder split
the work; what ended is recorded in .sweep/ (sweep_folder.py), so that a sweep started again skips what
is complete without starting train.py for it. Whether a run trained, and which run folder it wrote, is
read from the run folders themselves: the complete runs of that model with its lr and seed, before and after.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from livedoor_classification import claims, slurm_jobs, sweep_folder, sweep_settings
from livedoor_classification.paths import ROOT, dataset_folder
from livedoor_classification.runs import complete_in_sweep, model_dir_name, read_config
from livedoor_classification.sweep_settings import Configuration, Settings

STOP_MESSAGE = {
    signal.SIGINT: (130, "run.sh: interrupted: the sweep stops (complete runs are kept; run again to resume)"),
    signal.SIGTERM: (143, "run.sh: stopped (SIGTERM): the sweep stops (complete runs are kept; run again to resume)"),
}


@dataclass
class Sweep:
    """What every step of the sweep reads: the settings, where the runs go, the Python to start them with."""

    settings: Settings
    runs_dir: Path  # <OUTPUT_ROOT>/<dataset>
    sweep_dir: Path  # <OUTPUT_ROOT>/<dataset>/.sweep: claims, logs, records, shared by every sweep of the folder
    dataset_dir: Path
    python: list[str]  # PYTHON (run.sh sets it to the environment it found), which a test may stand in for
    complete: dict[str, Path]  # key -> a complete run of that configuration, found without a train.py

    @property
    def total(self) -> int:
        return len(self.settings.configurations)

    def key(self, c: Configuration) -> str:
        return sweep_folder.configuration_key(self.settings, c)

    def heading(self, c: Configuration) -> str:
        """What the sweep's lines about a configuration begin with: "=== [3/45] MODEL lr=LR seed=SEED"."""
        return f"=== [{c.number}/{self.total}] {c.name}"

    def train_command(self, c: Configuration, resume: bool) -> list[str]:
        s = self.settings
        torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(s.nproc)]
        torchrun = torchrun if s.nproc > 1 else []
        command = [*self.python, *torchrun, "src/train.py", *s.shared_args, "--model_name", c.model, "--lr", c.lr]
        command += ["--seed", c.seed, "--skip_if_done", *(["--save_model"] if s.save_model else []), *s.train_args]
        # Under Slurm a task may be preempted or stopped at its time limit and requeued: --resume makes the
        # requeued task continue after the last finished epoch. Off elsewhere: its state costs a write of four
        # times the model's size every epoch (BERT-base: 1.75 GB, 8-17 s here), TRAIN_ARGS can ask for it.
        return command + (["--resume"] if resume else [])


@dataclass(eq=False)  # a key of run_in_slots' slot_of: by identity
class Run:
    """A process the sweep started: a configuration's train.py (with its claim), the baseline or the summary."""

    process: subprocess.Popen
    claim: claims.Claim | None = None
    own_group: bool = False  # GPUS / WORKERS: a process group of its own, which Ctrl-C does not reach
    configuration: Configuration | None = None
    log: Path | None = None
    started: float = 0.0
    before: frozenset = frozenset()  # the complete runs of this configuration before it started


# Ctrl-C reaches the sweep and the run in the foreground (the terminal's process group); SIGTERM (kill,
# timeout, a container's stop) reaches the sweep alone, which passes it on as the Ctrl-C the run knows how
# to end on; runs in process groups of their own (GPUS, WORKERS) get the signal from the sweep. Either way
# the runs end first, however they end (a launcher such as torchrun may exit 1 rather than die of SIGINT),
# and then the sweep stops instead of starting the next run.
active: list[Run] = []
stopping = 0  # the signal that stops the sweep, once one came


def on_signal(signum, frame) -> None:
    global stopping
    if stopping:
        return
    stopping = signum
    for run in active:
        pass_on(signum, run)


def pass_on(signum: int, run: Run) -> None:
    """The sweep's signal, to a run: to its process group (GPUS, WORKERS), where Ctrl-C does not reach; a
    SIGTERM as the Ctrl-C the run knows how to end on (a Ctrl-C has reached it already, from the terminal)."""
    if run.own_group:
        with contextlib.suppress(ProcessLookupError):  # its group has ended meanwhile
            os.killpg(run.process.pid, signum)
    elif signum == signal.SIGTERM:
        run.process.send_signal(signal.SIGINT)


def stop_if_interrupted(status: int) -> None:
    """Once the sweep got a signal, or a run ended of Ctrl-C (130 = 128 + SIGINT, even when only the run got
    it): every run ends, its claim is released, and the sweep exits 130 (SIGINT) or 143 (SIGTERM)."""
    if status == 130 and not stopping:
        on_signal(signal.SIGINT, None)
    if not stopping:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for run in active:
        run.process.wait()
        if run.claim:
            run.claim.release()
    code, message = STOP_MESSAGE[stopping]
    print(message, file=sys.stderr)
    sys.exit(code)


def exit_status(process: subprocess.Popen) -> int:
    """As a shell reports it: 128 + the signal for a process killed by one."""
    return 128 - process.returncode if process.returncode < 0 else process.returncode


def run_in_foreground(command: list[str]) -> int:
    """A command's exit status, its output on the terminal (the baseline, the summary)."""
    stop_if_interrupted(0)
    run = Run(subprocess.Popen(command))
    active.append(run)
    run.process.wait()
    active.remove(run)
    status = exit_status(run.process)
    stop_if_interrupted(status)
    return status


def complete_runs(sweep: Sweep, c: Configuration) -> frozenset:
    """The complete runs in the model's folder whose config.json has the configuration's lr and seed."""
    found = set()
    for done in (sweep.runs_dir / model_dir_name(c.model)).glob("*/*/test-metrics.json"):
        config = read_config(done.parent)
        if config and config.get("lr") == float(c.lr) and config.get("seed") == int(c.seed):
            found.add(done.parent)
    return frozenset(found)


def start_run(sweep: Sweep, c: Configuration, mode: str, env: dict | None = None) -> Run | None:
    """A configuration's train.py started, once claimed; None if found complete or claimed elsewhere.
    mode: "terminal" (train.py prints as it always has), "file" (to its log), "slurm" (to its log, with
    --resume), "group" (to its log, in a process group of its own: GPUS, WORKERS)."""
    stop_if_interrupted(0)  # no run starts once the sweep is stopping
    heading = sweep.heading(c)
    key = sweep.key(c)
    if key in sweep.complete:
        print(f"{heading}: already complete, skipped: {sweep.complete[key]}")
        return None
    claim, holder = claims.take(sweep.sweep_dir / "claims", key, sweep.settings.claim_timeout)
    if claim is None:
        print(f"{heading}: running in another sweep ({holder}); skipped here")
        return None
    command = sweep.train_command(c, resume=mode == "slurm")
    run = Run(None, claim, mode == "group", c, None, time.time(), complete_runs(sweep, c))
    if mode == "terminal":
        print(heading)
        run.process = subprocess.Popen(command)
    else:
        run.log = sweep.sweep_dir / "logs" / f"{key}.log"
        where = f"CUDA_VISIBLE_DEVICES={(env or os.environ).get('CUDA_VISIBLE_DEVICES', 'unset')}"
        print(f"{heading}: started on {claims.HOST}, {where} (log: {run.log})")
        with open(run.log, "a") as log:
            log.write(
                f"=== run.sh: {c.name} on {claims.HOST}, {where}, pid {os.getpid()}, {now()}: {' '.join(command)}\n"
            )
            log.flush()
            run.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0 if run.own_group else None,
            )
    active.append(run)
    if stopping:  # the signal came while this run was being claimed and started: it was not there to get it
        if run.own_group:
            pass_on(stopping, run)
        else:  # the Ctrl-C it missed (the terminal's went to the processes there were), or a SIGTERM as one
            run.process.send_signal(signal.SIGINT)
    return run


def finish_run(sweep: Sweep, run: Run, status: int) -> None:
    """The claim released, the attempt recorded in .sweep/ended/ (unless interrupted: it is left to do)."""
    c, seconds = run.configuration, int(time.time() - run.started)
    run.claim.release()
    active.remove(run)
    if run.log:
        with open(run.log, "a") as log:
            log.write(f"=== run.sh: exit status {status} after {seconds} s\n")
    # Skipped (train.py --skip_if_done) if a complete run with its lr and seed was there before and no new one
    # is; the run it wrote, or the one it found complete, if only one can be it.
    after = complete_runs(sweep, c)
    trained = bool(after - run.before) or not run.before
    candidates = (after - run.before) or after
    run_dir = next(iter(candidates)) if status == 0 and len(candidates) == 1 else None
    if status not in (130, 143):
        sweep_folder.record_end(sweep.sweep_dir, sweep.key(c), status, seconds, trained, run_dir)
    heading = sweep.heading(c)
    if run.log and status == 0 and trained:
        print(f"{heading}: done in {sweep_folder.duration(seconds)}")
    elif run.log and status == 0:
        print(f"{heading}: already complete, skipped: {run_dir or f'see {run.log}'}")


def wait_and_finish(sweep: Sweep, run: Run) -> int:
    """The run's exit status once it has ended, and finish_run (unless the sweep is stopping)."""
    run.process.wait()
    status = exit_status(run.process)
    stop_if_interrupted(status)
    finish_run(sweep, run, status)
    return status


def now() -> str:
    return f"{datetime.now():%Y-%m-%dT%H:%M:%S}"


def run_one_after_another(sweep: Sweep) -> list[str]:
    """Every configuration in the foreground, printing to the terminal; the failed ones."""
    failed = []
    for c in sweep.settings.configurations:
        run = start_run(sweep, c, "terminal")
        status = 0 if run is None else wait_and_finish(sweep, run)
        if status != 0:
            failed.append(c.name)
            print(f"=== FAILED: {c.name} (continuing)", file=sys.stderr)
    return failed


def run_in_slots(sweep: Sweep) -> list[str]:
    """GPUS / WORKERS: a run at a time on each slot (its own CUDA_VISIBLE_DEVICES, CPU threads shared between
    runs without a GPU), each in a process group of its own, its output in its log; the failed ones."""
    slots, failed = list(sweep.settings.slots), []
    free, slot_of = list(slots), {}
    threads = max(1, (os.cpu_count() or 1) // (len(slots) * sweep.settings.nproc))

    def collect() -> None:  # waits for one run to end; records a failure; frees its slot
        while True:
            stop_if_interrupted(0)
            for run in list(slot_of):
                if run.process.poll() is not None:
                    status = exit_status(run.process)
                    stop_if_interrupted(status)
                    finish_run(sweep, run, status)
                    free.append(slot_of.pop(run))
                    if status != 0:
                        failed.append(run.configuration.name)
                        print(
                            f"=== FAILED: {run.configuration.name} (exit status {status}; log: {run.log}) (continuing)",
                            file=sys.stderr,
                        )
                    return
            time.sleep(0.1)

    for c in sweep.settings.configurations:
        while not free:
            collect()
        env = os.environ | {"CUDA_VISIBLE_DEVICES": free[0]}
        if not free[0] and not os.environ.get("OMP_NUM_THREADS"):  # set but empty: as unset
            env["OMP_NUM_THREADS"] = str(threads)
        run = start_run(sweep, c, "group", env)
        if run is not None:
            slot_of[run] = free.pop(0)
    while slot_of:
        collect()
    return failed


def run_slurm_task(sweep: Sweep, c: Configuration) -> int:
    """One array task: its output to its log, status lines to Slurm's file. Slurm's USR1 (--signal, two
    minutes before the time limit) stops the run, and the task puts itself back in the queue to continue
    (--resume); a TERM (scancel, a preemption) stops the run, which Slurm requeues itself (--requeue)."""
    requeue = False

    def on_slurm_signal(signum, frame) -> None:
        nonlocal requeue
        requeue = requeue or signum == signal.SIGUSR1
        for run in active:
            run.process.terminate()

    signal.signal(signal.SIGTERM, on_slurm_signal)
    signal.signal(signal.SIGUSR1, on_slurm_signal)
    run = start_run(sweep, c, "slurm")
    if run is None:
        return 0
    run.process.wait()
    status = exit_status(run.process)
    if requeue and status != 0:  # back in the queue, to continue (--resume)
        run.claim.release()
        if claims.this_task():  # an array task (a job of its own, sbatch without --array, is not requeued here)
            print(f"{sweep.heading(c)}: stopped before the time limit; requeued")
            slurm_jobs.requeue(claims.this_task())
        return 143
    finish_run(sweep, run, status)
    return status


def summary(sweep: Sweep, failed: list[str]) -> int:
    """The baseline row of the table, on the runs' dataset and text fields, and the summary over every
    complete run (also when some failed: what finished is still worth a table). The failed runs listed;
    status 1 if any. --skip_if_done compares the dataset's fingerprint, so that a baseline of another
    dataset in the same output folder does not count."""
    s, other_failures = sweep.settings, []
    print("=== TF-IDF baseline")
    # Claimed like a configuration: run once, also when two sweeps end together.
    claim, holder = claims.take(sweep.sweep_dir / "claims", sweep_folder.baseline_key(s), s.claim_timeout)
    if claim is None:
        print(f"running in another sweep ({holder}); skipped here")
    else:
        try:
            status = run_in_foreground([*sweep.python, "src/baseline.py", "--skip_if_done", *s.shared_args])
        finally:
            claim.release()
        if status != 0:
            other_failures.append("the TF-IDF baseline (src/baseline.py)")

    output_root = s.output_root or "outputs"
    results_dir = s.results_dir or str(Path(output_root).parent / "results")  # outputs/ -> results/, as aggregate.py's
    results_dir = results_dir.removeprefix("./")
    print("=== Summary")
    marker = sweep.sweep_dir / "summary"  # running, for --status
    marker.write_text(claims.owner_line())
    try:
        command = [*s.dataset_args, "--output_root", output_root, "--results_dir", results_dir]
        status = run_in_foreground([*sweep.python, "src/aggregate.py", *command])
    finally:
        marker.unlink(missing_ok=True)
    if status != 0:
        other_failures.append("the summary (src/aggregate.py)")

    if failed:
        print(
            f"{len(failed)} of {sweep.total} runs failed:", *(f"  {name}" for name in failed), sep="\n", file=sys.stderr
        )
    for failure in other_failures:
        print(f"failed: {failure}", file=sys.stderr)
    if failed or other_failures:
        return 1
    print(f"All {sweep.total} runs and the baseline complete; tables and plots in {results_dir}/{sweep.runs_dir.name}/")
    return 0


def main(settings: Settings) -> int:
    os.chdir(ROOT)  # as run.sh: a relative OUTPUT_ROOT or DATASET is the repository's
    sys.stdout.reconfigure(line_buffering=True)  # our lines and the runs' in the order they happen
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    os.environ |= {"TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    if settings.gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.gpu
    # A name (datasets/<name>/) or a prepared folder anywhere (a path with a /), named by its folder as every
    # script names it: the runs are in <OUTPUT_ROOT>/<that name>/.
    dataset_dir = dataset_folder(settings.dataset, settings.dataset if "/" in settings.dataset else None)
    runs_dir = Path(settings.output_root or "outputs") / dataset_dir.name
    python = [os.environ["PYTHON"]] if os.environ.get("PYTHON") else [sys.executable]
    sweep = Sweep(settings, runs_dir, runs_dir / ".sweep", dataset_dir, python, {})

    if settings.action == "status":  # without the sweep's variables: the sweep running or last run here
        plan = sweep_folder.plan(settings)
        if not settings.given_variables and (sweep.sweep_dir / "plan").is_file():
            plan = (sweep.sweep_dir / "plan").read_text().splitlines()
        print(*sweep_folder.status(sweep.sweep_dir, plan, settings.claim_timeout), sep="\n")
        return 0
    if "/" not in settings.dataset and not (sweep.dataset_dir / "label2id.json").is_file():
        print(
            f"run.sh: error: datasets/{settings.dataset}/ not found; prepare it first: python src/prepare.py "
            f"--input FILE --text_columns ... --label_column ... --name {settings.dataset}",
            file=sys.stderr,
        )
        return 1
    for folder in ("claims", "logs", "ended"):
        (sweep.sweep_dir / folder).mkdir(parents=True, exist_ok=True)
    if settings.action in ("sweep", "slurm"):  # for --status, which may be given no variables
        sweep_folder.write_plan(sweep.sweep_dir, settings)

    if settings.action == "summary":
        keys = {c.name: sweep.key(c) for c in settings.configurations}
        return summary(sweep, [name for name, key in keys.items() if sweep_folder.failed(sweep.sweep_dir, key)])
    if settings.action == "configuration":  # one array task (or a configuration by hand): to its log
        c = settings.configurations[settings.number - 1]
        if os.environ.get("SLURM_JOB_ID"):
            return run_slurm_task(sweep, c)
        run = start_run(sweep, c, "file")
        return 0 if run is None else wait_and_finish(sweep, run)
    if settings.action == "slurm":
        left = [c.number for c in settings.configurations if not sweep_folder.succeeded(sweep.sweep_dir, sweep.key(c))]
        slurm_jobs.submit(sweep.sweep_dir, runs_dir.name, left, sweep.total, settings.nproc)
        return 0
    # Found complete by what an earlier sweep recorded, by one Python for them all rather than a train.py each.
    keys = [sweep.key(c) for c in settings.configurations]
    sweep.complete = complete_in_sweep(sweep.sweep_dir, sweep.dataset_dir, "model" if settings.save_model else "", keys)
    failed = run_in_slots(sweep) if settings.slots else run_one_after_another(sweep)
    return summary(sweep, failed)


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(sweep_settings.help_text(os.environ), end="")
        sys.exit(0)
    try:
        settings = sweep_settings.read(sys.argv[1:], dict(os.environ))
    except sweep_settings.SettingError as e:
        print(f"run.sh: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(settings))
