"""Writing a prepared dataset folder (prepare.py; dataset_files.py reads it): everything goes into a staging
folder beside it, swapped in whole when complete; the split files in a seeded shuffled order; dataset.json,
the manifest, last. An interrupted or failed run leaves the previous dataset or none, never a partial one."""

import glob
import hashlib
import json
import random
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from livedoor_classification.dataset_files import SPLITS, dataset_fingerprint
from livedoor_classification.files import as_a_new_file, remove_stale_staging, replace_folder, staging_folder
from livedoor_classification.paths import ROOT

WRITTEN_FILES = {"all.jsonl", "train.jsonl", "val.jsonl", "test.jsonl", "label2id.json", "dataset.json"}


@contextmanager
def staged(output_dir: Path) -> Iterator[Path]:
    """A fresh temporary folder beside output_dir for the body to write into, moved into place only
    when the body has finished: an interrupted or failed run leaves the previous dataset or none,
    never a partial one."""
    check_replaceable(output_dir)  # before anything is written
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir.parent, f".{output_dir.name}.")  # a killed run's (kill -9 skips the except)
    for left in output_dir.parent.glob(f".{glob.escape(output_dir.name)}.{'?' * 8}"):  # by versions before it,
        if left.is_dir() and time.time() - left.stat().st_mtime > 24 * 3600:  # named by mkdtemp alone: by age
            shutil.rmtree(left, ignore_errors=True)
    staging = staging_folder(output_dir.parent, f".{output_dir.name}.")
    as_a_new_file(staging)  # mkdtemp makes it 0700
    try:
        yield staging
        replace_folder(output_dir, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_replaceable(output_dir: Path) -> None:
    """The output folder is replaced whole: only ever a dataset prepare.py wrote, never a folder that
    holds anything else (the input table, notes, other datasets)."""
    if not output_dir.exists():
        return
    names = {p.name for p in output_dir.iterdir()} if output_dir.is_dir() else {None}
    if "label2id.json" not in names or not names <= WRITTEN_FILES:
        raise ValueError(
            f"--output_dir {output_dir} exists and is not a dataset prepare.py wrote: it would be replaced "
            "whole; choose a new folder (default: datasets/<name>)"
        )


def write_split_files(staging: Path, records: Iterable[dict], codes: Sequence[int]) -> None:
    """Each record to the file of its split (codes[i], an index into SPLITS, is record i's), streamed."""
    files = [open(staging / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") for name in SPLITS]
    try:
        for record, code in zip(records, codes, strict=True):
            files[code].write(json.dumps(record, ensure_ascii=False) + "\n")  # as dataset_files.write_jsonl does
    finally:
        for f in files:
            f.close()


def shuffle_splits(staging: Path, seed: int) -> None:
    """Put the lines of the split files just written in a seeded shuffled order. In id or file order,
    the first thousand lines of livedoor's train.jsonl were two categories, and of a table sorted by
    label one label: what `head` shows, and what train.py --max_train_samples takes. The generator is
    one of its own, so the split that assign() draws is unchanged; it is seeded with a string, which
    Random hashes with SHA-512: the same order on every machine, whatever PYTHONHASHSEED."""
    rng = random.Random(f"write order {seed}")
    for name in SPLITS:
        shuffle_lines(staging / f"{name}.jsonl", rng)


def shuffle_lines(path: Path, rng: random.Random) -> None:
    """Rewrite a file with its lines in an order drawn from rng, holding only where each line starts
    (8 bytes a line, not the lines): pass 2 streams a table, and so must this."""
    starts = array("q", [0])
    with open(path, "rb") as f:
        for line in f:  # lines end at b"\n" alone: json.dumps escapes any line break inside a record
            starts.append(starts[-1] + len(line))
    order = array("q", range(len(starts) - 1))
    rng.shuffle(order)
    shuffled = path.with_name(f"{path.name}.shuffled")
    # Unbuffered: one read of exactly the line, where a buffered file would read 8 KiB after each seek
    with open(path, "rb", buffering=0) as source, open(shuffled, "wb") as target:
        for i in order:
            source.seek(starts[i])
            target.write(source.read(starts[i + 1] - starts[i]))
    shuffled.replace(path)


def source(path: Path, **more) -> dict:
    """A source of the dataset as the manifest records it: its path (relative to the repository when
    inside it, else absolute) and the SHA-256 of its bytes."""
    return {"path": shown(path), "sha256": file_sha256(path), **more}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def shown(path: Path) -> str:
    """A path as the manifest records it: relative to the repository when inside it, else absolute."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def write_manifest(staging: Path, about: dict, counts: dict[str, Counter], rows: dict | None = None) -> None:
    """dataset.json: how the dataset was made (about), what it holds (multi-label: rows per split, and
    those without a label, besides each label's rows), and the fingerprint that runs record, computed
    over the split files and label2id.json just written (not over dataset.json)."""
    manifest = about | {
        "counts": {split: dict(sorted(counts[split].items())) for split in SPLITS},
        **({"rows": rows} if rows else {}),
        "fingerprint": dataset_fingerprint(staging),
    }
    (staging / "dataset.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
