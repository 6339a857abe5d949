"""Writing files that readers never see half-written: to a temporary name, then renamed."""

import csv
import fcntl
import glob
import io
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see half a file. The
    temporary file is created with mode 0o666 for the kernel to apply the umask (and a folder's
    default ACL) to, as for any new file, so that colleagues on a shared server can read the run; it
    is removed if anything fails, an interrupt included."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def as_a_new_file(path: Path) -> None:
    """The permissions a newly created file or folder gets (0666 or 0777 less the umask), for one that a
    library created private (mkdtemp, safetensors: 0600/0700): colleagues on a shared server can read it."""
    umask = os.umask(0)  # reading the umask means setting it: set it straight back
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def append_csv_row(path: Path, row: dict) -> None:
    """Add a row (and the header to a new file) by writing the whole file anew under a temporary name: a
    full disk leaves the rows written before, never an empty or half-written log."""
    before = ""
    if path.exists():
        with open(path, encoding="utf-8", newline="") as f:  # newline="": the csv module's \r\n as they are
            before = f.read()
    write_text(path, before + csv_text([row], header=not before))


def write_csv(path: Path, rows: list[dict]) -> None:
    """A whole CSV file at once, the header from the first row's keys."""
    write_text(path, csv_text(rows))


def csv_text(rows: list[dict], header: bool = True) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def check_writable(folder: Path) -> None:
    """Write and remove a file where `folder` will be made (its nearest existing parent), leaving nothing:
    a read-only or full output folder stops a run before minutes of loading and tokenizing, not at its
    first write. A ValueError names the folder."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing) as f:
            f.write(bytes(4096))  # a full disk takes a new file but refuses its first bytes
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ValueError(f"{existing}: cannot write here ({e.strerror})") from None


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new folder in `parent` to write into before a rename, named <prefix><host>.<pid>.<random>: whose
    it is, so that remove_stale_staging can tell one left by a killed run from one still in use."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{socket.gethostname()}.{os.getpid()}.", dir=parent))


def remove_stale_staging(parent: Path, prefix: str) -> None:
    """Remove the staging_folder()s <parent>/<prefix>... whose process has ended on this host: kill -9 (or
    the OOM killer, a power cut) runs no cleanup, and they would stay forever. A live process's, or another
    host's (whose processes we cannot see), are left alone. The prefix may begin with */ levels."""
    for path in stale_staging(parent, prefix):
        shutil.rmtree(path, ignore_errors=True)


def stale_staging(parent: Path, prefix: str) -> list[Path]:
    """The staging_folder()s <parent>/<prefix><host>.<pid>.<mkdtemp's 8 characters> of ended processes of
    this host, matched by their whole name: nothing else that happens to begin with the prefix."""
    levels, _, name_prefix = prefix.rpartition("/")
    name = re.compile(rf"{re.escape(name_prefix)}{re.escape(socket.gethostname())}\.(\d+)\.[a-z0-9_]{{8}}")
    candidates = parent.glob(f"{levels}/{glob.escape(name_prefix)}*" if levels else f"{glob.escape(name_prefix)}*")
    return [
        path
        for path in candidates
        if (match := name.fullmatch(path.name)) and path.is_dir() and not path.is_symlink()
        if not process_exists(int(match[1]))
    ]


def replace_folder(folder: Path, staging: Path) -> None:
    """Put the folder staging in the place of folder, whose old content is removed: the old folder renamed
    aside, staging renamed into place, the old one removed. POSIX cannot swap two folders in one step, so
    for a moment there is none: an exception there (Ctrl-C) puts the old one back, and after a kill there
    the next replace_folder of this folder does (put_back_aside). One swap at a time: a lock on the folder
    that holds it (rather than a lock file, which would be one more file there)."""
    with locked(folder.parent):
        put_back_aside(folder)
        aside = staging_folder(folder.parent, f".{folder.name}.old.")
        try:
            folder.rename(aside)  # onto the empty folder aside, which it replaces
        except FileNotFoundError:  # nothing to replace
            aside.rmdir()
            aside = None
        try:
            staging.rename(folder)
        except BaseException:
            if aside is not None:
                aside.rename(folder)
            raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def put_back_aside(folder: Path) -> None:
    """The old folder that a killed replace_folder left aside: back in place if nothing took it (the newest,
    should there be several), else removed."""
    asides = stale_staging(folder.parent, f".{folder.name}.old.")
    for aside in sorted(asides, key=lambda path: path.stat().st_mtime, reverse=True):
        if not folder.exists():
            aside.rename(folder)
        else:
            shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder for the block; the kernel drops it if the process dies."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
