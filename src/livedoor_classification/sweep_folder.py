"""What a sweep (src/sweep.py) keeps beside its runs, in <OUTPUT_ROOT>/<dataset>/.sweep/, and what it tells:
the configurations done, running, failed and left (run.sh --status).

Files only: aggregate.py takes every folder three levels down (<model>/<date>/<time>) for a run.
    claims/<key>.<n>  held while a configuration runs, by any sweep on any machine that shares the folder (claims.py)
    logs/<key>.log    train.py's output when runs go to files (GPUS, WORKERS, Slurm), every attempt appended
    ended/<key>       the last attempt that ended: exit=N seconds=N trained=0|1 host=H ended=TIME [run=RUN],
                      RUN the complete run folder, which runs.complete_in_sweep checks instead of starting train.py
    plan              the configurations of the sweep started last, for run.sh --status
    summary           "host pid start -" while the summary (aggregate.py) runs, for run.sh --status
    slurm/            Slurm's output files of the jobs of run.sh --slurm

A configuration's key stands for everything that makes its run what it is (but not the Python's path:
another machine's may differ), the same on every machine: <model>_lr<LR>_seed<SEED>_<checksum>.
"""

from datetime import datetime
from pathlib import Path

from livedoor_classification import claims
from livedoor_classification.files import write_text
from livedoor_classification.runs import model_dir_name
from livedoor_classification.sweep_settings import Configuration, Settings


def cksum(data: bytes) -> int:
    """POSIX cksum's CRC (the keys' checksum since the sweep was a bash script: old sweep folders still match)."""
    crc = 0
    length = len(data)
    data += length.to_bytes(max(1, (length.bit_length() + 7) // 8), "little") if length else b""
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        crc &= 0xFFFFFFFF
    return ~crc & 0xFFFFFFFF


def lines(*words: str) -> bytes:
    return "".join(f"{word}\n" for word in words).encode()


def configuration_key(settings: Settings, c: Configuration) -> str:
    save_model = ["--save_model"] if settings.save_model else []
    words = [str(settings.nproc), *settings.shared_args, c.model, c.lr, c.seed, *save_model, *settings.train_args]
    name = f"{model_dir_name(c.model)}_lr{c.lr}_seed{c.seed}_{cksum(lines(*words))}"
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._=-") else "_" for ch in name)


def baseline_key(settings: Settings) -> str:
    """The TF-IDF baseline's claim: one per dataset, output folder and text fields."""
    return f"tfidf-char-linear_{cksum(lines(*settings.shared_args))}"


def plan(settings: Settings) -> list[str]:
    """The baseline's key, then "KEY MODEL LR SEED" for each configuration: what --status reads."""
    lines = [f"baseline {baseline_key(settings)}"]
    return lines + [f"{configuration_key(settings, c)} {c.model} {c.lr} {c.seed}" for c in settings.configurations]


def write_plan(sweep_dir: Path, settings: Settings) -> None:
    write_text(sweep_dir / "plan", "".join(f"{line}\n" for line in plan(settings)))


def record_end(sweep_dir: Path, key: str, status: int, seconds: int, trained: bool, run_dir: Path | None) -> None:
    now = datetime.now()
    record = f"exit={status} seconds={seconds} trained={int(trained)} host={claims.HOST} ended={now:%Y-%m-%dT%H:%M:%S}"
    write_text(sweep_dir / "ended" / key, record + (f" run={run_dir}" if run_dir else "") + "\n")


def ended(sweep_dir: Path, key: str) -> dict[str, str]:
    """The last attempt's record: {"exit": ..., "seconds": ..., "trained": ...}; {} if none ended."""
    try:
        words = (sweep_dir / "ended" / key).read_text().split()
    except OSError:
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word)


def succeeded(sweep_dir: Path, key: str) -> bool:
    return ended(sweep_dir, key).get("exit") == "0"


def failed(sweep_dir: Path, key: str) -> bool:
    return ended(sweep_dir, key).get("exit", "0") != "0"


def ranges(numbers: list[int]) -> str:
    """1 2 3 7 -> "1-3,7": a Slurm --array."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def duration(seconds: int) -> str:
    """1h02m, 3m05s, 12s"""
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def running_line(path: Path) -> str:
    host, pid, start = (path.read_text().split() + ["", "", ""])[:3]
    return f"on {host} (pid {pid}) since {start}"


def status(sweep_dir: Path, plan: list[str], timeout: int) -> list[str]:
    """A plan's lines ("baseline KEY", then "KEY MODEL LR SEED"): done, running, failed, left, the time left;
    the baseline and the summary if running."""
    claims_dir = sweep_dir / "claims"
    count = done = left = trained = seconds = 0
    running, failures, baseline = [], [], ""
    for line in plan:
        key, model, lr, seed = (line.split() + ["", "", ""])[:4]
        if key == "baseline":
            baseline = model
            continue
        count += 1
        if claims.holder(claims_dir, key, timeout) is not None:
            running.append(
                f"{model} lr={lr} seed={seed}: {running_line(claims_dir / f'{key}.{claims.newest(claims_dir, key)}')}"
            )
            continue
        record = ended(sweep_dir, key)
        if record.get("exit") == "0":
            done += 1
            if record.get("trained") == "1":
                trained, seconds = trained + 1, seconds + int(record.get("seconds", 0))
        elif record.get("exit"):
            failures.append(
                f"{model} lr={lr} seed={seed}: exit status {record['exit']}, log: {sweep_dir}/logs/{key}.log"
            )
        else:
            left += 1
    active = len(running)
    if baseline and claims.holder(claims_dir, baseline, timeout) is not None:
        path = claims_dir / f"{baseline}.{claims.newest(claims_dir, baseline)}"
        running.append(f"the TF-IDF baseline (src/baseline.py) {running_line(path)}")
    if claims.is_live(sweep_dir / "summary", timeout):  # written while the summary runs
        running.append(f"the summary (src/aggregate.py) {running_line(sweep_dir / 'summary')}")
    noun = "configuration" if count == 1 else "configurations"
    report = [f"{count} {noun} in {sweep_dir}: {done} done, {active} running, {len(failures)} failed, {left} left"]
    report += [f"  running: {line}" for line in running] + [f"  failed:  {line}" for line in failures]
    if left + active == 0:
        return report
    if trained == 0:
        return report + ["time left: unknown until a run has finished"]
    each = seconds // trained
    if active == 0:
        return report + [f"time left: {duration(each)} a run ({trained} finished); nothing is running now"]
    # The runs in progress are taken as half done, and as many run at a time as run now.
    remaining = each * (2 * left + active) // 2 // active
    return report + [
        f"time left: about {duration(remaining)} ({duration(each)} a run over {trained} finished, {active} at a time)"
    ]
