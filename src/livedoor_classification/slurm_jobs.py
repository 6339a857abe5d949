"""Submitting the sweep to Slurm (bash run.sh --slurm). Slurm does the scheduling: a job array with one
configuration per task (each runs `bash run.sh --configuration N`), and the baseline and summary as a job
that starts once every task has ended, however it ended (afterany: `bash run.sh --summary`).

What a site adds goes through sbatch's own input variables, which every sbatch call here reads:
SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, SBATCH_TIMELIMIT, SBATCH_CONSTRAINT, SBATCH_MEM_PER_GPU, ...
The jobs inherit the submitting shell's environment (sbatch's default, --export=ALL): load modules and
activate the Python environment before submitting.

  --requeue              a preempted task (or one on a node that failed) goes back to the queue
  --signal B:USR1@120    two minutes before its time limit, a task stops its run and requeues itself
Either way the task's run continues after its last finished epoch: every Slurm task runs train.py with
--resume (src/sweep.py), as a requeued task is the case it exists for.

Why sbatch through subprocess rather than submitit: a task here is `bash run.sh --configuration N`, a
command that finds its own environment and claims its configuration as every sweep does, not a pickled
Python function; and sbatch's own variables are what sites already use to add their settings.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from livedoor_classification.paths import ROOT
from livedoor_classification.sweep_folder import ranges

GPU_VARIABLES = ("SBATCH_GRES", "SBATCH_GPUS", "SBATCH_GPUS_PER_TASK", "SBATCH_GPUS_PER_NODE")


def sbatch(command: list[str], what: str) -> str:
    """The job's id ("id;cluster" on a multi-cluster site); sbatch's own message and exit 1 if it fails."""
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        print(f"run.sh: error: sbatch could not submit {what} (its message is above)", file=sys.stderr)
        sys.exit(1)
    return result.stdout.strip().split(";")[0]


def submit(sweep_dir: Path, dataset: str, left: list[int], total: int, nproc: int) -> None:
    """The configurations numbered `left` as a job array, then the summary job after it."""
    logs, name, here = sweep_dir / "slurm", f"sweep-{dataset}", shlex.quote(str(ROOT / "run.sh"))
    logs.mkdir(exist_ok=True)
    # GPUs per task: NPROC of them, unless the site's variables already ask for GPUs.
    gres = [] if any(os.environ.get(v) for v in GPU_VARIABLES) else ["--gres", f"gpu:{nproc}"]
    dependency = []
    if left:
        array = ranges(left)
        command = ["sbatch", "--parsable", "--job-name", name, "--array", array, *gres, "--requeue"]
        command += ["--signal", "B:USR1@120", "--open-mode", "append", "--output", f"{logs}/%A_%a.out"]
        job = sbatch(command + ["--wrap", f"exec bash {here} --configuration $SLURM_ARRAY_TASK_ID"], "the job array")
        dependency = ["--dependency", f"afterany:{job}"]
        print(f"=== submitted job array {job}: configurations {array} of {total} (logs: {logs}/)")
    else:
        print(f"=== all {total} configurations are done; submitting the summary only")
    command = ["sbatch", "--parsable", "--job-name", f"{name}-summary", *dependency]
    command += ["--output", f"{logs}/%j-summary.out", "--wrap", f"exec bash {here} --summary"]
    job = sbatch(command, "the summary job")
    print(
        f"=== submitted job {job}: the baseline and the summary, after the array"
        " (watch: squeue --me; bash run.sh --status with the same variables)"
    )


def requeue(task: str) -> None:
    """This array task back in the queue (scontrol requeue), to continue where its run stopped."""
    subprocess.run(["scontrol", "requeue", task])
