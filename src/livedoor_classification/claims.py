"""Claim files: how sweeps that share an output folder (on one machine, or on several sharing the folder)
split the work. A configuration is claimed before it runs, and one claimed elsewhere is skipped.

    <sweep folder>/claims/<key>.<n>   "host pid start slurm-task", held while the configuration runs; its
                                      time is refreshed every timeout/5 seconds (60 at most) while it lives

Why our own claims: no well-kept tool hands out work items to independent processes on several machines
through a shared folder alone (flock is unreliable over NFS, Slurm schedules only its own jobs). A claim is
the one primitive that is atomic on local disks and NFS alike: an exclusive create (O_CREAT | O_EXCL).
A claim is taken over when it is stale: its process is gone or a zombie (same host), its Slurm array task
is the one now running (a requeued task), or it was not refreshed for `timeout` seconds (any host).
Taking over never deletes a live claim: it creates the next number, <key>.<n+1>, exclusively, so of two
sweeps that find the same stale claim one wins.

The standard library only (like sweep_settings.py).
"""

import os
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

HOST = os.uname().nodename


def this_task() -> str | None:
    """The Slurm array task this process runs in ("JOB_TASK"), if any."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return None


def owner_line() -> str:
    """What a claim (or the summary's marker) holds: host pid start slurm-task."""
    return f"{HOST} {os.getpid()} {datetime.now():%Y-%m-%dT%H:%M:%S} {this_task() or '-'}\n"


def is_zombie(pid: int) -> bool:
    """A process killed (-9) but not yet reaped by its new parent answers kill -0 and runs nothing: a sweep
    started in that moment would skip its configuration, and nobody train it. Its state from /proc (Linux:
    the field after the command's parenthesis), else from ps (macOS)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        ps = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        state = ps.stdout.strip()
    return state.startswith("Z")


def is_live(path: Path, timeout: int) -> bool:
    """Whether the claim (or marker) at path is held by a sweep that still runs."""
    try:
        words = path.read_text().split()  # empty for a moment after its create: live while fresh
        modified = path.stat().st_mtime
    except OSError:  # gone meanwhile
        return False
    if time.time() - modified > timeout:
        return False
    host, pid, _, task = (words + ["", "", "", ""])[:4]
    if task not in ("", "-") and task == this_task():
        return False
    if host == HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            pass
        return not is_zombie(int(pid))
    return True


def newest(claims_dir: Path, key: str) -> int:
    """The highest n of claims_dir/<key>.<n>, 0 if none."""
    numbers = [int(p.suffix[1:]) for p in claims_dir.glob(f"{key}.*") if p.suffix[1:].isdigit()]
    return max(numbers, default=0)


def holder(claims_dir: Path, key: str, timeout: int, number: int | None = None) -> str | None:
    """The owner line of the live claim of key, if there is one; number: its newest, if already looked up."""
    number = newest(claims_dir, key) if number is None else number
    path = claims_dir / f"{key}.{number}"
    if number and is_live(path, timeout):
        try:
            return path.read_text().strip()
        except OSError:  # released this moment
            return ""
    return None


class Claim:
    """A claim this process holds, refreshed by a thread until released."""

    def __init__(self, path: Path, timeout: int):
        self.path, self.stop = path, threading.Event()
        every = max(1, min(60, timeout // 5))
        self.heartbeat = threading.Thread(target=self.refresh, args=(every,), daemon=True)
        self.heartbeat.start()

    def refresh(self, every: int) -> None:
        """While the run lives, its claim's time says so (for other hosts, which cannot see its process)."""
        while not self.stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self.stop.set()
        self.path.unlink(missing_ok=True)


def take(claims_dir: Path, key: str, timeout: int) -> tuple[Claim | None, str]:
    """(the claim, "") if this process now holds key; (None, who holds it) if another sweep does."""
    number = newest(claims_dir, key)
    if number and (held := holder(claims_dir, key, timeout, number)) is not None:
        return None, held
    path = claims_dir / f"{key}.{number + 1}"
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None, "another sweep, a moment ago"
    with os.fdopen(descriptor, "w") as f:
        f.write(owner_line())
    for stale in range(1, number + 1):  # nobody creates these numbers again
        (claims_dir / f"{key}.{stale}").unlink(missing_ok=True)
    return Claim(path, timeout), ""
