"""run.sh on every GPU of a machine (GPUS, WORKERS), sweeps sharing an output folder through claims, and
--status: real sweeps of the tiny BERT, on the CPU."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ANSWER_IMPORT_CHECK, NOTHING_RUNS, ROOT, fake_python, run_dirs, run_script, tiny_sweep


def start(env: dict, *args: str) -> subprocess.Popen:
    """run.sh in a session of its own, as from a terminal: Ctrl-C is a SIGINT to its process group."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false") | env
    environment.pop("PYTHONPATH", None)
    environment.pop("OMP_NUM_THREADS", None)  # conftest's: WORKERS divides the cores itself when it is unset
    return subprocess.Popen(
        ["bash", ROOT / "run.sh", *args],
        env=environment,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc), deepest last."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_session(session: int) -> None:
    """kill -9 of every process of a session (a sweep started in one of its own), as a machine going down.
    Listed and killed again until none is left: a process can start a child between a listing and the
    kill (a train.py started then would outlive the sweep and finish its run). A process the sweep put in
    a process group of its own (its workers) is still in its session."""
    while True:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":  # state, ppid, pgrp, session; not a zombie
                alive.append(int(stat.parent.name))
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # ended between the listing and the kill
                pass


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_sweeps_at_once_split_the_work_and_take_over_stale_claims(tmp_path, dataset_dir, bert_dir, sweep_python):
    out = tmp_path / "out"
    env = tiny_sweep(bert_dir, dataset_dir, out, sweep_python)
    claims = out / "livedoor" / ".sweep" / "claims"

    # A sweep killed outright (kill -9, a machine that went down) leaves its two claims behind.
    killed = start(env | {"WORKERS": "2"})
    wait_for(lambda: len(list(claims.glob("*"))) == 2 or killed.poll() is not None)
    kill_session(killed.pid)
    killed_out, killed_err = killed.communicate()
    assert len(list(claims.glob("*"))) == 2, killed_out + killed_err
    first, second = sorted(claims.glob("*"))
    assert first.read_text().split()[0] == os.uname().nodename  # host pid start: its process is gone now
    second.write_text("another-host 4242 2026-01-01T00:00:00 -\n")  # on another machine, silent for 2 hours
    os.utime(second, (time.time() - 7200, time.time() - 7200))

    # Two sweeps at once on the same folder: one over two "GPUs" (none here: train.py uses the CPU), one
    # as a single-GPU user runs it.
    gpus = start(env | {"GPUS": "0 1"})
    plain = start(env)
    (gpus_out, gpus_err), (plain_out, plain_err) = gpus.communicate(timeout=300), plain.communicate(timeout=300)
    assert gpus.returncode == 0, gpus_out + gpus_err
    assert plain.returncode == 0, plain_out + plain_err

    runs = [r for r in run_dirs(out) if r.parent.parent.name == bert_dir.name]
    seeds = sorted(int(re.search(r'"seed": (\d+)', (r / "config.json").read_text())[1]) for r in runs)
    # every configuration trained exactly once, both stale claims taken over
    assert seeds == [1, 2], f"{gpus_out}{gpus_err}\n---\n{plain_out}{plain_err}"
    assert len(list((out / "livedoor" / "tfidf-char-linear").glob("*/*"))) == 1
    assert list(claims.glob("*")) == []
    started = re.findall(r"started on .*, CUDA_VISIBLE_DEVICES=(\S*) \(log: (\S+)\)", gpus_out)
    for device, log in started:  # a run per GPU, and its own log
        assert device in ("0", "1") and f"CUDA_VISIBLE_DEVICES={device}," in Path(log).read_text()
    assert "skipped here" in gpus_out + plain_out  # each saw a configuration the other held

    status = run_script(ROOT / "run.sh", "--status", env=env)
    assert status.stdout.splitlines()[0].endswith(": 2 done, 0 running, 0 failed, 0 left")


def test_gpus_in_groups_of_nproc_and_the_failed_runs_listed(tmp_path, dataset_dir):
    """GPUS="0 1 2 3" NPROC=2: two torchrun launches at a time, on 0,1 and 2,3. A PYTHON whose torchrun
    prints what it was given (and fails for the model "bad"), and whose baseline and summary do nothing."""
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f"{ANSWER_IMPORT_CHECK}"
        'case "$1 $2" in\n'
        '    "-m torch.distributed.run")\n'
        '        echo "torchrun $* on CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"; sleep 1\n'
        '        [[ "$*" == *"--model_name bad"* ]] && { echo "no such model" >&2; exit 3; }; exit 0 ;;\n'
        '    "src/baseline.py "* | "src/aggregate.py "*) exit 0 ;;\n'
        "esac\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    env = {
        "MODELS": "good bad",
        "LRS": "1e-3",
        "SEEDS": "1",
        "PYTHON": str(python),
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        "GPUS": "0 1 2 3",
        "NPROC": "2",
    }
    result = run_script(ROOT / "run.sh", env=env, check=False)
    assert result.returncode == 1, result.stderr
    assert "=== [1/2] good lr=1e-3 seed=1: done in" in result.stdout
    assert result.stderr.endswith("1 of 2 runs failed:\n  bad lr=1e-3 seed=1\n")
    assert sorted(re.findall(r"\] (\w+) lr=.*CUDA_VISIBLE_DEVICES=(\S+) ", result.stdout)) == [
        ("bad", "2,3"),
        ("good", "0,1"),
    ]
    bad_log = Path(re.search(r"log: (\S+\.log)\)", result.stderr)[1])
    assert "--nproc_per_node 2" in bad_log.read_text() and "no such model" in bad_log.read_text()
    assert "on CUDA_VISIBLE_DEVICES=2,3" in bad_log.read_text()  # what the launched process saw
    status = run_script(ROOT / "run.sh", "--status", env=env).stdout
    assert ": 1 done, 0 running, 1 failed, 0 left" in status
    assert f"bad lr=1e-3 seed=1: exit status 3, log: {bad_log}" in status


def test_ctrl_c_stops_every_worker(tmp_path, dataset_dir):
    """Ctrl-C reaches run.sh alone (its workers have process groups of their own): it stops them all."""
    started = tmp_path / "started"
    started.mkdir()
    train = f"echo $$ >{started}/$$\nsleep 60"
    env = {
        "MODELS": "first second third",
        "LRS": "1e-3",
        "SEEDS": "1",
        "PYTHON": str(fake_python(tmp_path, train)),
        "DATASET": str(dataset_dir),
        "OUTPUT_ROOT": str(tmp_path / "out"),
        "WORKERS": "2",
    }
    process = start(env)
    try:
        wait_for(lambda: len(list(started.iterdir())) == 2 or process.poll() is not None)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        for pid in descendants(process.pid):
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "[3/3]" not in stdout and "baseline" not in stdout and "run.sh: interrupted" in stderr
    for pid in (int(p.name) for p in started.iterdir()):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert list((tmp_path / "out" / "livedoor" / ".sweep" / "claims").iterdir()) == []


@pytest.mark.parametrize(
    "variables",
    [
        {"GPUS": "abc"},
        {"GPUS": "0,1"},
        {"GPUS": "0 1 2", "NPROC": "2"},
        {"GPUS": "0", "GPU": "1"},
        {"WORKERS": "0"},
        {"WORKERS": "two"},
        {"WORKERS": "2", "GPUS": "0 1"},
        {"CLAIM_TIMEOUT": "soon"},
    ],
)
def test_a_bad_parallel_setting_is_one_line_and_status_2(variables):
    result = run_script(ROOT / "run.sh", env=NOTHING_RUNS | variables, check=False)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert re.match(rf"run.sh: error: ({'|'.join(variables)}) ", result.stderr), result.stderr


def test_slurm_without_sbatch_is_one_line_and_status_2(tmp_path):
    bin_dir = tmp_path / "bin"  # bash and what run.sh needs before its checks (python3 runs them), but no Slurm
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(), bin_dir / tool)
    # The interpreter itself, not whatever `python3` is on PATH (a pyenv shim needs more of PATH than this).
    os.symlink(os.path.realpath(sys.executable), bin_dir / "python3")
    env = os.environ | NOTHING_RUNS | {"PATH": str(bin_dir)}
    result = subprocess.run([bin_dir / "bash", ROOT / "run.sh", "--slurm"], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("run.sh: error: --slurm needs sbatch, which is not on PATH")


def session_processes(session: int) -> list[str]:
    """The command lines of the live processes of a session (not zombies)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(command)
    return found


def test_sigterm_stops_the_sweep_and_its_runs(tmp_path, dataset_dir, bert_dir, sweep_python):
    """kill <run.sh's pid> (a container stop, timeout) stops its run as Ctrl-C does: none trains on alone.
    (With WORKERS or GPUS, run.sh stops its workers' process groups itself.)"""
    env = tiny_sweep(bert_dir, dataset_dir, tmp_path / "out", sweep_python)
    process = start(env)
    try:
        wait_for(lambda: any("src/train.py" in c for c in session_processes(process.pid)) or process.poll() is not None)
        process.send_signal(signal.SIGTERM)  # to run.sh alone
        stdout, stderr = process.communicate(timeout=30)
        wait_for(lambda: not session_processes(process.pid), seconds=10)
    finally:
        kill_session(process.pid)
    assert process.returncode == 143, stderr
    assert "=== TF-IDF baseline" not in stdout and "run.sh: stopped" in stderr
    assert list((tmp_path / "out" / "livedoor" / ".sweep" / "claims").iterdir()) == []
    again = run_script(ROOT / "run.sh", env=env | {"WORKERS": "1"})  # continues: both runs, baseline, summary
    assert "All 2 runs and the baseline complete" in again.stdout
    # Runs that went to a log are found complete by what the sweep recorded, without a train.py each.
    third = run_script(ROOT / "run.sh", env=env)
    assert third.stdout.count(": already complete, skipped: ") == 2, third.stdout


def test_status_without_the_variables_follows_the_sweep_of_that_folder_through_its_phases(tmp_path, dataset_dir):
    """--status with only the output folder's variables: the sweep running there (not the default study),
    its configurations, then its baseline and its summary while they run."""
    gate = tmp_path / "gate"
    gate.mkdir()
    python = tmp_path / "python"
    python.write_text(  # "first" trains at once; every other phase waits for the test's go
        f"#!/usr/bin/env bash\n{ANSWER_IMPORT_CHECK}"
        'case "$*" in\n'
        '    "src/train.py "*"--model_name first "*) exit 0 ;;\n'
        "    src/train.py*) phase=train ;;\n"
        "    src/baseline.py*) phase=baseline ;;\n"
        "    src/aggregate.py*) phase=summary ;;\n"
        f'    *) exec {sys.executable} "$@" ;;\n'
        "esac\n"
        f"touch {gate}/$phase; until [[ -e {gate}/$phase.go ]]; do sleep 0.05; done\n"
    )
    python.chmod(0o755)
    folder = {"DATASET": str(dataset_dir), "OUTPUT_ROOT": str(tmp_path / "out")}
    process = start(folder | {"MODELS": "first second", "LRS": "1e-3", "SEEDS": "1", "PYTHON": str(python)})
    try:
        statuses = []
        for phase in ("train", "baseline", "summary"):
            wait_for(lambda phase=phase: (gate / phase).exists() or process.poll() is not None)
            statuses.append(run_script(ROOT / "run.sh", "--status", env=folder).stdout)
            (gate / f"{phase}.go").touch()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        kill_session(process.pid)
    assert process.returncode == 0, stderr
    sweep_dir = tmp_path / "out" / "livedoor" / ".sweep"
    assert statuses[0].startswith(f"2 configurations in {sweep_dir}: 1 done, 1 running, 0 failed, 0 left\n")
    assert "  running: second lr=1e-3 seed=1: on " in statuses[0]
    assert "  running: the TF-IDF baseline (src/baseline.py) on " in statuses[1]
    assert "  running: the summary (src/aggregate.py) on " in statuses[2]
    status = run_script(ROOT / "run.sh", "--status", env=folder).stdout
    assert status == f"2 configurations in {sweep_dir}: 2 done, 0 running, 0 failed, 0 left\n"


@pytest.mark.parametrize("own_group", [False, True], ids=["one-after-another", "workers"])
def test_a_signal_while_a_run_is_being_started_still_reaches_that_run(tmp_path, monkeypatch, own_group):
    """The window between the sweep's last look at its signal and the run's start (claiming it, reading the
    model's complete runs): a SIGTERM that lands there must reach the new run too, not leave the sweep waiting
    for a whole training run with signals ignored (found in review)."""
    import sweep
    from livedoor_classification.sweep_settings import read

    settings = read([], {"MODELS": "m", "LRS": "1", "SEEDS": "1", "DEFAULT_MODEL_LIST": "m"})
    train = "exec sleep 30"  # whether the signal finds bash or sleep, its default action ends the run
    runs_dir = tmp_path / "outputs" / "livedoor"
    (runs_dir / ".sweep" / "claims").mkdir(parents=True)
    (runs_dir / ".sweep" / "logs").mkdir()
    python = fake_python(tmp_path, train)
    run_sweep = sweep.Sweep(settings, runs_dir, runs_dir / ".sweep", tmp_path, [str(python)], {})

    def signal_meanwhile(*args):  # as if SIGTERM arrived while the run was being started
        sweep.on_signal(signal.SIGTERM, None)
        return frozenset()

    monkeypatch.setattr(sweep, "complete_runs", signal_meanwhile)
    monkeypatch.setattr(sweep, "active", [])
    monkeypatch.setattr(sweep, "stopping", 0)
    start = time.monotonic()
    run = sweep.start_run(run_sweep, settings.configurations[0], "group" if own_group else "terminal")
    run.process.wait(timeout=20)
    run.claim.release()
    expected = signal.SIGTERM if own_group else signal.SIGINT  # a SIGTERM passed on as Ctrl-C to a foreground run
    assert time.monotonic() - start < 10 and run.process.returncode == -expected


def test_status_needs_no_environment_only_a_python(tmp_path):
    """--status reads .sweep/ alone: it answers from any machine that sees the folder, with a Python of the
    standard library only (no torch, numpy or classopt there), and creates no environment (found in review:
    it had come to need the dependencies, and would have created .venv on a fresh login node)."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    env = {"PYTHON": str(bare / "bin" / "python"), "OUTPUT_ROOT": str(tmp_path / "outputs")}
    env |= {"MODELS": "a b", "LRS": "1e-5", "SEEDS": "1"}
    result = run_script(ROOT / "run.sh", "--status", env=env)
    assert (
        result.stdout.splitlines()[0]
        == f"2 configurations in {tmp_path}/outputs/livedoor/.sweep: 0 done, 0 running, 0 failed, 2 left"
    )
    assert result.stderr == ""
