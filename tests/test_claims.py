"""Claim files (claims.py): how sweeps sharing an output folder split the work, as units. The real sweeps
that rely on them: tests/test_sweep_parallel.py."""

import os
import subprocess
import time
from pathlib import Path

from livedoor_classification import claims

HOST = os.uname().nodename


def write_claim(path: Path, host: str = HOST, pid: int | None = None, task: str = "-", age: float = 0) -> Path:
    path.write_text(f"{host} {os.getpid() if pid is None else pid} 2026-11-30T00:00:00 {task}\n")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def gone_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_claim_is_an_exclusive_create_that_names_its_holder(tmp_path):
    claim, holder = claims.take(tmp_path, "key", 600)
    assert claim is not None and holder == "" and claim.path == tmp_path / "key.1"
    host, pid, start, task = (tmp_path / "key.1").read_text().split()
    assert (host, int(pid), task) == (HOST, os.getpid(), "-") and start.startswith("20")
    again, holder = claims.take(tmp_path, "key", 600)  # live: this process holds it
    assert again is None and holder.startswith(f"{HOST} {os.getpid()} ")
    claim.release()
    assert list(tmp_path.iterdir()) == []
    assert claims.take(tmp_path, "key", 600)[0] is not None  # free again


def test_a_claim_whose_process_is_gone_is_taken_over_by_the_next_number(tmp_path):
    write_claim(tmp_path / "key.1", pid=gone_pid())
    claim, _ = claims.take(tmp_path, "key", 600)
    assert claim.path == tmp_path / "key.2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.2"]  # the stale one removed: nobody makes it again
    claim.release()


def test_of_two_sweeps_that_find_the_same_stale_claim_one_wins(tmp_path, monkeypatch):
    """Both saw key.1 stale; the other created key.2 first: this one's exclusive create fails."""
    write_claim(tmp_path / "key.1", pid=gone_pid())
    write_claim(tmp_path / "key.2")
    monkeypatch.setattr(claims, "newest", lambda folder, key: 1)
    claim, holder = claims.take(tmp_path, "key", 600)
    assert claim is None and holder == "another sweep, a moment ago"
    assert (tmp_path / "key.2").read_text().split()[1] == str(os.getpid())  # the winner's claim untouched


def test_a_claim_of_a_killed_process_not_yet_reaped_is_stale(tmp_path):
    """A sweep killed with -9 leaves its processes as zombies until their new parent reaps them, and a
    zombie still answers `kill -0` and `ps -p`: a sweep started in that moment took the claim for live
    and skipped its configuration, which then nobody trained."""
    zombie = subprocess.Popen(["true"])  # exits at once; not waited for, so a zombie of this process
    deadline = time.monotonic() + 60
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        assert not claims.is_live(write_claim(tmp_path / "zombie", pid=zombie.pid), 600)
        assert claims.is_live(write_claim(tmp_path / "alive", pid=os.getpid()), 600)
    finally:
        zombie.wait()


def test_a_claim_not_refreshed_for_the_timeout_is_stale_on_any_host(tmp_path):
    assert claims.is_live(write_claim(tmp_path / "fresh", host="another-host", pid=4242), 600)
    assert not claims.is_live(write_claim(tmp_path / "silent", host="another-host", pid=4242, age=7200), 600)
    assert not claims.is_live(write_claim(tmp_path / "mine", age=700), 600)  # even this live process's
    write_claim(tmp_path / "key.1", host="another-host", pid=4242, age=7200)
    claim, _ = claims.take(tmp_path, "key", 600)
    assert claim.path.name == "key.2"
    claim.release()


def test_a_claim_just_created_and_still_empty_is_live_while_fresh(tmp_path):
    (tmp_path / "key.1").touch()
    assert claims.is_live(tmp_path / "key.1", 600)
    assert claims.take(tmp_path, "key", 600)[0] is None


def test_the_claim_of_the_slurm_array_task_now_running_is_stale(tmp_path, monkeypatch):
    """A requeued task finds its own claim of before the requeue (same job and task id) and takes it over."""
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert claims.this_task() == "77_3"
    assert not claims.is_live(write_claim(tmp_path / "requeued", host="node-1", pid=4242, task="77_3"), 600)
    assert claims.is_live(write_claim(tmp_path / "other-task", host="node-1", pid=4242, task="77_4"), 600)
    claim, _ = claims.take(tmp_path, "key", 600)
    assert claim.path.read_text().split()[3] == "77_3"  # the task, for its own requeue to recognise
    claim.release()


def test_a_held_claim_is_refreshed_until_released(tmp_path):
    claim, _ = claims.take(tmp_path, "key", 5)  # refreshed every second (timeout / 5)
    os.utime(claim.path, (time.time() - 4, time.time() - 4))
    deadline = time.monotonic() + 10
    while time.time() - claim.path.stat().st_mtime > 2:
        assert time.monotonic() < deadline, "not refreshed"
        time.sleep(0.1)
    claim.release()
    claim.heartbeat.join(timeout=5)
    assert not claim.heartbeat.is_alive() and not claim.path.exists()
