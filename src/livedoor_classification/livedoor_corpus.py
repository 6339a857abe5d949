"""The livedoor news corpus as download.sh extracts it: <dir>/<category>/*.txt, each file a URL, a date, a
title and the body, one category per article (prepare.py)."""

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from livedoor_classification.dataset_files import SPLITS, normalize
from livedoor_classification.splitting import assign


def parse_article(path: Path, clean: Callable[[str], str] = normalize) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    lines = text.splitlines()
    if len(lines) < 3:
        raise ValueError(f"{path}: an article needs a URL, a date and a title line, found {len(lines)} lines")
    body_lines = (clean(line) for line in lines[3:])
    return {
        "url": lines[0].strip(),
        "date": lines[1].strip(),
        "title": clean(lines[2]),
        "body": "\n".join(line for line in body_lines if line),
    }


def read_livedoor(input_dir: Path, clean: Callable[[str], str] = normalize) -> tuple[list[dict], list[str]]:
    """Every article of input_dir/<category>/*.txt, sorted by category then file name. The label is
    the category's id and "category" its name: the records of the livedoor datasets before tables."""
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir} not found: run `bash src/download.sh` first")
    categories = sorted(d.name for d in input_dir.iterdir() if d.is_dir())
    records = []
    for label, category in enumerate(categories):
        paths = [p for p in sorted((input_dir / category).glob("*.txt")) if p.name != "LICENSE.txt"]
        if not paths:  # else a label without a single example, such as text/text from two downloads at once
            raise ValueError(
                f"{input_dir / category}: a category folder with no articles (*.txt besides LICENSE.txt); "
                f"remove it, or delete {input_dir} and run `bash src/download.sh` again"
            )
        for path in paths:
            article = parse_article(path, clean)
            records.append({"id": len(records), "label": label, "category": category, "stem": path.stem} | article)
    if not records:
        raise ValueError(f"no articles found in {input_dir}/<category>/*.txt: run `bash src/download.sh` again")
    return records, categories


def split_livedoor(
    records: list[dict], seed: int, val_ratio: float = 0.1, test_ratio: float = 0.1
) -> dict[str, list[dict]]:
    """livedoor's split: its records by split, each in id order (shuffle_splits shuffles them on disk)."""
    names = sorted({r["category"] for r in records})
    index = {name: i for i, name in enumerate(names)}
    codes = assign([index[r["category"]] for r in records], names, seed, val_ratio, test_ratio)
    return {name: [r for r, c in zip(records, codes, strict=True) if c == code] for code, name in enumerate(SPLITS)}


def corpus_sha256(input_dir: Path, records: Sequence[dict]) -> str:
    """The corpus as one hash, for the manifest's sources: each article file read, in sorted order, framed
    by its relative path and byte length (as dataset_files.dataset_fingerprint frames its files), so a
    renamed or moved file changes it."""
    digest = hashlib.sha256()
    for path in sorted(input_dir / r["category"] / f"{r['stem']}.txt" for r in records):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(input_dir).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
