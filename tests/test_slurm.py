"""bash run.sh --slurm against a real Slurm: munged, slurmctld and slurmd started here on localhost (a
single-node cluster of this machine's CPUs, configured in a temporary folder), a small sweep of the tiny
BERT submitted as a job array and its summary as the dependent job. .ci/run installs Slurm; elsewhere
the test is skipped when the binaries are absent."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, fake_python, run_dirs, run_script, tiny_sweep

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture
def slurm(tmp_path_factory) -> dict:
    """A running single-node Slurm; the environment that points sbatch, squeue, ... at it."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # daemons, off a user's PATH
    found = {name: shutil.which(name, path=search) for name in DAEMONS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} not found; .ci/run installs slurm-wlm and munge)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root (CI runs as root)")
    folder = tmp_path_factory.mktemp("slurm")
    folder.chmod(0o755)  # munged's socket must be reachable
    host = socket.gethostname().split(".")[0]
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    key = folder / "munge.key"
    subprocess.run([found["mungekey"], "--create", f"--keyfile={key}"], check=True, capture_output=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        f"ClusterName=sweeptest\nSlurmctldHost={host}(127.0.0.1)\n"
        f"SlurmctldPort={free_port()}\nSlurmdPort={free_port()}\n"
        f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={folder / 'munge.socket'}\n"
        "SlurmUser=root\nSlurmdUser=root\n"
        f"StateSaveLocation={folder / 'state'}\nSlurmdSpoolDir={folder / 'spool'}\n"
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}\nSlurmdPidFile={folder / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={folder / 'slurmctld.log'}\nSlurmdLogFile={folder / 'slurmd.log'}\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
        "AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\nMpiDefault=none\n"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nReturnToService=2\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    )
    env = {"SLURM_CONF": str(conf)}
    environment = os.environ | env
    munge = [f"--key-file={key}", f"--socket={folder / 'munge.socket'}"]
    munge += [f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}"]
    munge += [f"--seed-file={folder / 'munged.seed'}"]
    daemons = [subprocess.Popen([found["munged"], "-F", "--force", *munge], stderr=subprocess.DEVNULL)]
    try:
        wait_for(lambda: (folder / "munge.socket").exists(), 10, "munged")
        daemons.append(subprocess.Popen([found["slurmctld"], "-D", "-i"], env=environment, stderr=subprocess.DEVNULL))
        daemons.append(
            subprocess.Popen([found["slurmd"], "-D", "-N", host], env=environment, stderr=subprocess.DEVNULL)
        )

        def idle() -> bool:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=environment, capture_output=True, text=True)
            return state.stdout.strip() == "idle"

        wait_for(idle, 30, "slurmd to register")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=environment, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def queue_empty(env: dict) -> bool:
    result = subprocess.run(["squeue", "-h"], env=os.environ | env, capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == ""


def test_a_sweep_submitted_to_slurm_gives_the_table_and_a_resubmission_runs_only_what_is_left(
    slurm, tmp_path, dataset_dir, bert_dir, sweep_python
):
    out = tmp_path / "out"
    # no GPUs on this cluster: SBATCH_GRES keeps NPROC's --gres=gpu:1 out
    env = slurm | tiny_sweep(bert_dir, dataset_dir, out, sweep_python) | {"SBATCH_GRES": "none"}
    submitted = run_script(ROOT / "run.sh", "--slurm", env=env)
    print(submitted.stdout)
    array = re.search(r"submitted job array (\d+): configurations 1-2 of 2", submitted.stdout)[1]
    assert re.search(r"submitted job (\d+): the baseline and the summary, after the array", submitted.stdout)
    wait_for(lambda: queue_empty(env), 300, "the jobs to end")

    logs = out / "livedoor" / ".sweep" / "slurm"
    for log in sorted(logs.iterdir()):
        print(f"--- {log.name}\n{log.read_text()}")
    for task in (1, 2):
        assert ": done in" in (logs / f"{array}_{task}.out").read_text()
    (summary,) = logs.glob("*-summary.out")
    assert "All 2 runs and the baseline complete" in summary.read_text()
    table = (tmp_path / "results" / "livedoor" / "results.md").read_text()
    assert bert_dir.name in table and "tfidf-char-linear" in table
    runs = run_dirs(out)
    assert len(runs) == 3  # two configurations and the baseline
    for run in runs:  # every Slurm task trains with --resume, and a complete run keeps no state
        config = json.loads((run / "config.json").read_text())
        assert config.get("resume", True) is True and not (run / "resume.pt").exists()
    assert sum("resume" in json.loads((run / "config.json").read_text()) for run in runs) == 2  # not the baseline

    # The same command again, after configuration 2's record is lost (as after a cancelled task): only it
    # is submitted, and train.py --skip_if_done finds its run complete.
    (record,) = (out / "livedoor" / ".sweep" / "ended").glob("*seed2_*")
    record.unlink()
    again = run_script(ROOT / "run.sh", "--slurm", env=env)
    print(again.stdout)
    assert "configurations 2 of 2" in again.stdout
    wait_for(lambda: queue_empty(env), 300, "the jobs to end")
    assert run_dirs(out) == runs
    assert ": 2 done, 0 running, 0 failed, 0 left" in run_script(ROOT / "run.sh", "--status", env=env).stdout


@pytest.mark.parametrize("signal_name", ["USR1", "TERM"])
def test_an_array_task_stops_its_run_on_slurms_signal_and_requeues_itself_before_the_time_limit(
    tmp_path, dataset_dir, signal_name
):
    """--signal B:USR1@120: the task stops its run and puts itself back in the queue (scontrol requeue), to
    continue with --resume; a TERM (scancel, a preemption) stops the run, which Slurm requeues itself
    (--requeue). Either way the attempt is not recorded as ended: the configuration is left to do. No
    cluster needed: the task's environment, and an scontrol that writes what it was asked."""
    started, asked = tmp_path / "started", tmp_path / "scontrol.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/usr/bin/env bash\necho "$*" >>{asked}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": str(fake_python(tmp_path, f"touch {started}\nexec sleep 60")),
        "MODELS": "m",
        "LRS": "1e-3",
        "SEEDS": "1",
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        "SLURM_JOB_ID": "78",
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_ARRAY_TASK_ID": "1",
    }
    task = subprocess.Popen(
        ["bash", ROOT / "run.sh", "--configuration", "1"], env=env, text=True, stdout=subprocess.PIPE
    )
    try:
        wait_for(lambda: started.exists() or task.poll() is not None, 60, "the run to start")
        task.send_signal(getattr(signal, f"SIG{signal_name}"))  # to the batch shell, as Slurm's B: sends it
        stdout, _ = task.communicate(timeout=30)
    finally:
        if task.poll() is None:
            task.kill()
    sweep_dir = tmp_path / "out" / "livedoor" / ".sweep"
    assert task.returncode == 143, stdout
    (log,) = (sweep_dir / "logs").iterdir()
    assert "--resume" in log.read_text()  # every Slurm task's run continues where the last one stopped
    assert list((sweep_dir / "claims").iterdir()) == [] and list((sweep_dir / "ended").iterdir()) == []
    if signal_name == "USR1":
        assert "=== [1/1] m lr=1e-3 seed=1: stopped before the time limit; requeued" in stdout
        assert asked.read_text() == "requeue 77_1\n"
    else:
        assert "requeued" not in stdout and not asked.exists()
