"""Turn the livedoor corpus, or a table of your own, into NFKC-normalized JSONL splits.

    python src/prepare.py              # data/text/ (livedoor) -> datasets/livedoor/
    python src/prepare.py --seed 0 --output_dir datasets/livedoor-seed0
    python src/prepare.py --input datasets/reviews.csv --text_columns text --label_column rating --name reviews
    python src/prepare.py --train a.jsonl --val b.jsonl --test c.jsonl --text_columns title body --name tickets

Every dataset lands in datasets/<name>/ as train.jsonl, val.jsonl, test.jsonl (livedoor adds all.jsonl),
label2id.json (label names sorted, ids 0..n-1) and dataset.json, a manifest: the sources and their
SHA-256, text fields, label column, normalization, seed, ratios, counts per split and label, and the
fingerprint that train.py records (dataset_files.dataset_fingerprint of the files written). A failed run
leaves the previous dataset, or none: everything is written into a temporary folder, swapped in last.

The split of one table (or of livedoor) is 8:1:1 by default (--val_ratio, --test_ratio), stratified
by label: val gets floor(N x val_ratio) rows in all, shared out over the labels in proportion to their
size, and likewise test; train the rest. Each label needs at least 3 rows, one per split, and a dataset
at least two labels. The split depends only on the input and the seed (rows in file order, livedoor's
files in sorted order, never the filesystem's listing order; Python's own seeded shuffle, which does not
change across numpy versions), so the same input and seed give byte-identical files on any machine.
Each split file is written in a seeded shuffled order (all.jsonl in id order), so that its first lines
are a sample of all of it. Files given as --train/--val/--test are kept as they are, order included;
every label of val and test must occur in train, and a label of train that val or test lacks is a warning.

Tables: .csv, .tsv (header line first) or .jsonl (an object per line), UTF-8 with or without a BOM.
One text column, or two as a sentence pair; the label column holds names (strings, or integers, whose
names are their decimal strings). A record is {"id": the table's own "id" column if it has one, else
the 0-based row number in its file; each text column under its own name; "label": the label NAME}.
The table's own ids must be unique (across --train/--val/--test too). Text and label names are
NFKC-normalized and stripped unless --no_normalize, so "良い " and "良い" are one label; names that are
one number written differently ("1", "1.0", "01") stay separate labels, with a warning.
A table is read twice and never held in memory: pass 1 checks every row and keeps only its label (and
a hash of its own id, if it has one, to refuse a repeated one), the split is drawn from the labels, pass
2 writes each row to its split's file, and each file's lines are shuffled by their offsets.

Another layout: write one function that takes a path and yields (line number, row dict) pairs, and
register it by file extension in READERS; the columns are then named with --text_columns/--label_column.
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import csv
import glob
import hashlib
import json
import random
import shutil
import sys
import time
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from classopt import classopt, config

from livedoor_classification.dataset_files import (
    SPLITS,
    as_written,
    dataset_fingerprint,
    normalize,
    write_jsonl,
    write_label2id,
)
from livedoor_classification.files import as_a_new_file, remove_stale_staging, replace_folder, staging_folder
from livedoor_classification.paths import ROOT
from livedoor_classification.splitting import assign, assign_multi_label
from livedoor_classification.tables import read_table, reader_for

LIVEDOOR = "livedoor"
RECORD_KEYS = ("id", "label")  # what a record has besides its text columns
# train.py's default model, spelled out in the closing hint so that the command shows where to change it
DEFAULT_MODEL = "tohoku-nlp/bert-base-japanese-v3"
# Texts of a whole article in one CSV field exceed the csv module's default limit of 128 KiB.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    input_dir: Path = config(default=ROOT / "data" / "text", help="livedoor corpus: <dir>/<category>/*.txt")
    input: Path | None = config(default=None, type=Path, help="one table to split: .csv, .tsv or .jsonl")
    train: Path | None = config(default=None, type=Path, help="a table already split off: the training rows")
    val: Path | None = config(default=None, type=Path, help="with --train: the validation rows")
    test: Path | None = config(default=None, type=Path, help="with --train: the test rows")
    text_columns: list[str] | None = config(
        default=None, nargs="+", type=str, help="a table's text column, or two as a sentence pair; unset: text"
    )
    label_column: str | None = config(default=None, type=str, help="a table's label column; unset: label")
    name: str | None = config(default=None, type=str, help="datasets/<name>/; unset: livedoor or --output_dir's name")
    output_dir: Path | None = config(default=None, type=Path, help="where the dataset goes; unset: datasets/<name>")
    seed: int = config(default=42, help="seed of the stratified split")
    val_ratio: float = config(default=0.1, help="share of the rows that go to val")
    test_ratio: float = config(default=0.1, help="share of the rows that go to test")
    no_normalize: bool = config(
        default=False, help="no NFKC: tables' text and labels as written (livedoor lines still stripped)"
    )
    multi_label: bool = config(
        default=False, help="a table's label column holds a list of labels per row (a JSON list in JSONL), or none"
    )
    label_separator: str | None = config(
        default=None, type=str, help="CSV/TSV: the character between a row's labels, e.g. ';' (implies --multi_label)"
    )


def warn(message: str) -> None:
    print(f"prepare.py: warning: {message}", file=sys.stderr)


def listed(names: Sequence[str]) -> str:
    """'a' and 'b', or 'a', 'b' and 'c'."""
    quoted = [repr(name) for name in names]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


# --- livedoor: <dir>/<category>/*.txt, a URL, a date, a title and the body per file ---


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


# --- tables: a reader per file extension, each yielding (line number, row dict) ---


def table_records(
    path: Path, args: Args, clean, id_hashes: array | None = None, spellings: dict[str, set[str]] | None = None
) -> Iterator[dict]:
    """The records of a table, each checked; an error names the file and line. Given id_hashes and
    spellings (pass 1), the hash of each of the table's own ids is appended to id_hashes, for
    check_unique_ids, and each label name's spellings as written (spaces stripped) are kept in spellings."""
    text_columns, label_column = args.text_columns, args.label_column
    # multi-label: the names between separators, or a JSON list ("": a string is a single name)
    separator = (args.label_separator or "") if args.multi_label else None
    for row_number, (line, row) in enumerate(read_table(path)):
        try:
            record = table_record(row, row_number, text_columns, label_column, clean, separator)
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {e}") from None
        if id_hashes is not None and "id" in row:
            id_hashes.append(hash(id_key(row["id"])))
        if spellings is not None and isinstance(record["label"], str):  # multi-label: one label per name
            spellings.setdefault(record["label"], set()).add(str(row[label_column]).strip())
        yield record


def id_key(value) -> str:
    # As JSON, the way the record writes it: 1 and "1" are two ids (and 1 and true, equal in Python, too).
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def check_unique_ids(paths: Sequence[Path], id_hashes: array) -> None:
    """Every own id of the tables (each one's hash, from pass 1) must occur once. Pass 1 keeps 8 bytes
    an id, not the ids: a million ids as strings took 85 MB, more than all the rest of prepare.py. A
    hash that repeats, a repeated id or (rarely) two ids with one hash, is looked up in the files again,
    to tell which and to name both lines."""
    if len(id_hashes) < 2:
        return
    ordered = np.sort(np.frombuffer(id_hashes, dtype=np.int64))  # a million hashes: 8 MB, as Python ints 40
    if not (repeated := set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())):
        return
    first: dict[str, tuple[Path, int]] = {}
    for path in paths:
        for line, row in read_table(path):
            if "id" not in row or hash(key := id_key(row["id"])) not in repeated:
                continue
            if key not in first:
                first[key] = (path, line)
                continue
            first_path, first_line = first[key]
            # `is`, not ==: one file given as both --val and --test is two sources, named as such
            if first_path is path:
                where = f"{path}: id {row['id']!r} on lines {first_line} and {line}"
            else:
                where = f"id {row['id']!r} on {first_path}:{first_line} and {path}:{line}"
            raise ValueError(f"{where}: every row needs an id of its own; drop the repeated row or renumber it")


def table_record(
    row: dict, row_number: int, text_columns: Sequence[str], label_column: str, clean, separator: str | None = None
) -> dict:
    for column, option in [(c, "--text_columns") for c in text_columns] + [(label_column, "--label_column")]:
        if column not in row:
            existing = ", ".join(map(str, row))
            raise ValueError(f"no column {column!r} (the columns are: {existing}); give {option}")
    record = {"id": row.get("id", row_number)}
    for column in text_columns:
        text = row[column]
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{column!r} is {type(text).__name__} {text!r}, not text")
        text = clean(text or "")
        if not text.strip():
            raise ValueError(f"empty text in column {column!r}; fill it in or drop the row")
        record[column] = text
    label = row[label_column]
    if separator is not None:
        record["label"] = label_set(label, label_column, clean, separator)
        return record
    if isinstance(label, list):
        raise ValueError(f"label {label!r} in column {label_column!r} is a list: give --multi_label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, str | int)):
        raise ValueError(f"label {label!r} in column {label_column!r} is neither a name nor an integer")
    # A name, cleaned as the text is ("良い " and "良い" are one label): label ids are given by label2id.json alone
    name = "" if label is None else clean(str(label))
    if not name.strip():
        raise ValueError(f"empty label in column {label_column!r}; fill it in or drop the row")
    record["label"] = name
    return record


def label_set(value, label_column: str, clean, separator: str) -> list[str]:
    """A multi-label row's labels: a JSON list, or a string of names with the separator between them
    ("" for JSON lists, where a string is one name); none at all (null, [], "") is an answer too. Each
    name cleaned as the text is; empty names (a trailing separator) and repeats dropped; sorted."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(separator) if separator else [value]
    if not isinstance(value, list):
        raise ValueError(f"labels {value!r} in column {label_column!r}: give a list of names (JSON) or a string")
    names = set()
    for name in value:
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise ValueError(f"label {name!r} in column {label_column!r} is neither a name nor an integer")
        names.add(clean(str(name)))
    return sorted(name for name in names if name.strip())


# --- the split: the same stratified, seeded draw for livedoor and tables ---


def check_two_labels(names: Sequence[str], source: Path, rows: str = "row has label") -> None:
    if len(names) < 2:
        raise ValueError(f"{source}: every {rows} {names[0]!r}: a classifier needs at least two labels")


def number_twins(names: Sequence[str]) -> list[list[str]]:
    """Groups of label names that are one number written differently ("1", "1.0", "01"), each sorted.
    They are not merged: "1" and "1.0" may be two codes, and which is meant only the user knows."""
    by_value: dict[Decimal, list[str]] = {}
    for name in names:
        try:
            value = Decimal(name)
        except InvalidOperation:
            continue
        if value.is_finite():  # NaN equals nothing, and a signalling NaN cannot even be hashed
            by_value.setdefault(value, []).append(name)
    return [sorted(group) for _, group in sorted(by_value.items()) if len(group) > 1]


def warn_number_twins(names: Sequence[str], source: Path) -> None:
    advice = "they stay separate labels; if they are one, write them alike"
    for group in number_twins(names):
        warn(f"{source}: labels {listed(group)} differ only in number formatting: {advice}")


def check_class_sizes(labels: Sequence[int], names: Sequence[str], source: Path) -> None:
    for name, n in sorted(Counter(names[label] for label in labels).items()):
        if n < len(SPLITS):
            raise ValueError(
                f"{source}: label {name!r} has {n} row(s): a label needs at least {len(SPLITS)}, "
                "one each for train, val and test; add rows or drop the label"
            )


def split_counts(labels: Sequence[int], names: Sequence[str], codes: Sequence[int]) -> dict[str, Counter]:
    pairs = Counter(zip(codes, labels, strict=True))
    counts = {split: Counter() for split in SPLITS}
    for (code, label), n in pairs.items():
        counts[SPLITS[code]][names[label]] = n
    return counts


def label_set_counts(label_sets: Sequence, names: Sequence[str]) -> tuple[Counter, dict]:
    """Of some multi-label rows: the rows of each label (a row counts once for each of its labels), and,
    for dataset.json, the rows in all and those without any label."""
    counts = Counter(names[label] for labels in label_sets for label in labels)
    return counts, {"rows": len(label_sets), "no_label": sum(not labels for labels in label_sets)}


def multi_label_counts(label_sets: Sequence, names: Sequence[str], codes: Sequence[int]) -> tuple[dict, dict]:
    """label_set_counts per split, the rows' splits given by their codes."""
    counts, rows = {}, {}
    for code, split in enumerate(SPLITS):
        in_split = [labels for labels, c in zip(label_sets, codes, strict=True) if c == code]
        counts[split], rows[split] = label_set_counts(in_split, names)
    return counts, rows


def check_train_has_every_label(counts: dict[str, Counter], names: Sequence[str]) -> None:
    """Only very large ratios can leave a label of 3 or more rows without a training row."""
    for name in sorted(names):
        if not counts["train"][name]:
            raise ValueError(f"label {name!r} gets no training row: lower --val_ratio/--test_ratio")


def split(records: list[dict], seed: int, val_ratio: float = 0.1, test_ratio: float = 0.1) -> dict[str, list[dict]]:
    """livedoor's split: its records by split, each in id order (shuffle_splits shuffles them on disk)."""
    names = sorted({r["category"] for r in records})
    index = {name: i for i, name in enumerate(names)}
    codes = assign([index[r["category"]] for r in records], names, seed, val_ratio, test_ratio)
    return {name: [r for r, c in zip(records, codes, strict=True) if c == code] for code, name in enumerate(SPLITS)}


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


# --- writing: into a staging folder, swapped in when complete ---


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


DATASET_FILES = {"all.jsonl", "train.jsonl", "val.jsonl", "test.jsonl", "label2id.json", "dataset.json"}


def check_replaceable(output_dir: Path) -> None:
    """The output folder is replaced whole: only ever a dataset prepare.py wrote, never a folder that
    holds anything else (the input table, notes, other datasets)."""
    if not output_dir.exists():
        return
    names = {p.name for p in output_dir.iterdir()} if output_dir.is_dir() else {None}
    if "label2id.json" not in names or not names <= DATASET_FILES:
        raise ValueError(
            f"--output_dir {output_dir} exists and is not a dataset prepare.py wrote: it would be replaced "
            "whole; choose a new folder (default: datasets/<name>)"
        )


def jsonl_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"  # as data.write_jsonl writes each record


def open_split_files(staging: Path) -> list:
    return [open(staging / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") for name in SPLITS]


def names_of(label, names: Sequence[str]) -> str | list[str]:
    """A row's label as pass 1 keeps it (a code, or a tuple of codes for multi-label) as its record has it."""
    return names[label] if isinstance(label, int) else sorted(names[code] for code in label)


def rows_again(path: Path, args: Args, clean, labels: Sequence, names: Sequence[str]) -> Iterator[dict]:
    """Pass 2: the records of path once more, checked to be the rows pass 1 saw."""
    count = 0
    for count, record in enumerate(table_records(path, args, clean), start=1):
        if count > len(labels) or record["label"] != names_of(labels[count - 1], names):
            raise ValueError(f"{path} changed while prepare.py was reading it: run it again")
        yield record
    if count != len(labels):
        raise ValueError(f"{path} changed while prepare.py was reading it: run it again")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(folder: Path, paths: Sequence[Path]) -> str:
    """A folder source as one hash: each file read, in sorted order, framed by its relative path and
    byte length (as dataset_files.dataset_fingerprint frames its files), so a renamed or moved file changes it."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
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


def ratios(args: Args) -> dict[str, float]:
    return {"val": args.val_ratio, "test": args.test_ratio}


# --- the three ways in: livedoor, one table, tables already split ---


def prepare_livedoor(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str]]:
    clean = str.strip if args.no_normalize else normalize  # article lines are stripped either way
    records, categories = read_livedoor(args.input_dir, clean)
    check_two_labels(categories, args.input_dir, rows="article is in category")
    check_class_sizes([r["label"] for r in records], categories, args.input_dir)
    splits = split(records, args.seed, args.val_ratio, args.test_ratio)
    counts = {name: Counter(r["category"] for r in rs) for name, rs in splits.items()}
    paths = [args.input_dir / r["category"] / f"{r['stem']}.txt" for r in records]
    about = {
        "name": args.name,
        "sources": [{"path": shown(args.input_dir), "sha256": folder_sha256(args.input_dir, paths)}],
        "text_fields": ["title", "body"],
        "label_column": "category",
        "normalize": not args.no_normalize,
        "seed": args.seed,
        "ratios": ratios(args),
    }
    with staged(output_dir) as staging:
        write_jsonl(staging / "all.jsonl", records)
        for name, split_records in splits.items():
            write_jsonl(staging / f"{name}.jsonl", split_records)
        shuffle_splits(staging, args.seed)
        write_label2id(staging / "label2id.json", {c: i for i, c in enumerate(categories)})
        write_manifest(staging, about, counts)
    return counts, categories


def width_folded(text: str) -> str:
    """Full-width letters and half-width kana as their usual forms: the folding NFKC is asked for, which
    merges two spellings of a label without a warning (the other foldings, "Ⅱ" into "II", do warn)."""
    folded = "".join(
        unicodedata.normalize("NFKC", c) if unicodedata.decomposition(c).startswith(("<wide>", "<narrow>")) else c
        for c in text
    )
    return unicodedata.normalize("NFC", folded)  # ｶﾞ is two characters: カ and a combining voiced mark, then ガ


def scan(path: Path, args: Args, clean, id_hashes: array) -> tuple[Sequence, list[str]]:
    """Pass 1: check every row of path and keep only its label, as a code into the names returned
    (in order of first appearance), and the hash of its own id, if it has one, in id_hashes. A
    multi-label row's labels are kept as a tuple of codes (about 60 bytes a row, not 4: fine for the
    sizes of multi-label datasets)."""
    codes: dict[str, int] = {}
    labels = [] if args.multi_label else array("I")
    spellings: dict[str, set[str]] = {}
    for record in table_records(path, args, clean, id_hashes, spellings):
        if args.multi_label:
            labels.append(tuple(codes.setdefault(name, len(codes)) for name in record["label"]))
        else:
            labels.append(codes.setdefault(record["label"], len(codes)))
    if not labels:
        raise ValueError(f"{path}: no rows, only a header or nothing")
    if args.multi_label and not codes:
        raise ValueError(f"{path}: no row has a label; a multi-label dataset needs labelled rows to learn from")
    for name, written in sorted(spellings.items()):
        if len({width_folded(spelling) for spelling in written}) > 1:  # "Ⅱ" and "II", "①" and "1"
            warn(
                f"{path}: labels {listed(sorted(written))} are one label, {name!r}, once NFKC-normalized; "
                "give --no_normalize to keep them apart"
            )
    return labels, list(codes)


def table_about(args: Args, sources: list[dict], seed: int | None, split_ratios) -> dict:
    return {
        "name": args.name,
        "sources": sources,
        "text_fields": list(args.text_columns),
        "label_column": args.label_column,
        "normalize": not args.no_normalize,
        "seed": seed,
        "ratios": split_ratios,
        **({"multi_label": True, "label_separator": args.label_separator} if args.multi_label else {}),
    }


def prepare_table(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str], dict | None]:
    clean = as_written if args.no_normalize else normalize
    id_hashes = array("q")
    labels, names = scan(args.input, args, clean, id_hashes)
    check_unique_ids([args.input], id_hashes)
    del id_hashes  # pass 2 does not need them
    check_two_labels(names, args.input)
    warn_number_twins(names, args.input)
    rows = None
    if args.multi_label:  # any label with a row can be split: how rare a label may be, only the user knows
        codes = assign_multi_label(labels, len(names), args.seed, args.val_ratio, args.test_ratio)
        counts, rows = multi_label_counts(labels, names, codes)
        warn_missing_labels(counts, {split: Path(f"{split}.jsonl") for split in SPLITS})
    else:
        check_class_sizes(labels, names, args.input)
        codes = assign(labels, names, args.seed, args.val_ratio, args.test_ratio)
        counts = split_counts(labels, names, codes)
    check_train_has_every_label(counts, names)
    about = table_about(args, [{"path": shown(args.input), "sha256": file_sha256(args.input)}], args.seed, ratios(args))
    with staged(output_dir) as staging:
        files = open_split_files(staging)
        try:
            for row, record in enumerate(rows_again(args.input, args, clean, labels, names)):
                files[codes[row]].write(jsonl_line(record))
        finally:
            for f in files:
                f.close()
        shuffle_splits(staging, args.seed)
        write_label2id(staging / "label2id.json", {name: i for i, name in enumerate(sorted(names))})
        write_manifest(staging, about, counts, rows)
    return counts, sorted(names), rows


def prepare_pre_split(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str], dict | None]:
    clean = as_written if args.no_normalize else normalize
    paths = {"train": args.train, "val": args.val, "test": args.test}
    scanned = {}
    for split, path in paths.items():
        # Ids must be unique within a file, where they pair a record with its prediction; across files
        # they may repeat (files exported with per-file row numbers as ids).
        id_hashes = array("q")
        scanned[split] = scan(path, args, clean, id_hashes)
        check_unique_ids([path], id_hashes)
    counts, rows = {}, ({} if args.multi_label else None)
    for split, (labels, names) in scanned.items():
        if args.multi_label:
            counts[split], rows[split] = label_set_counts(labels, names)
        else:
            counts[split] = Counter(names[label] for label in labels)
    for split in ("val", "test"):
        if unseen := sorted(set(counts[split]) - set(counts["train"])):
            raise ValueError(
                f"{paths[split]}: label {unseen[0]!r} ({counts[split][unseen[0]]} rows) does not occur in "
                f"{paths['train']}; a model cannot learn a label it never sees"
            )
    check_two_labels(sorted(counts["train"]), paths["train"])
    warn_number_twins(sorted(counts["train"]), paths["train"])
    warn_missing_labels(counts, paths)
    sources = [{"path": shown(path), "sha256": file_sha256(path), "split": split} for split, path in paths.items()]
    about = table_about(args, sources, None, "pre-split")
    with staged(output_dir) as staging:
        for split, path in paths.items():
            with open(staging / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as f:
                for record in rows_again(path, args, clean, *scanned[split]):
                    f.write(jsonl_line(record))
        names = sorted(counts["train"])
        write_label2id(staging / "label2id.json", {name: i for i, name in enumerate(names)})
        write_manifest(staging, about, counts, rows)
    return counts, names, rows


def warn_missing_labels(counts: dict[str, Counter], paths: dict[str, Path]) -> None:
    """A label train has but val or test lacks is allowed (a rare label in a given test set), but its
    scores on that split cannot be measured. metrics.py leaves it out of that split's macro averages,
    unless a model predicts it there (then it counts, with F1 0: every such prediction is wrong)."""
    for split in ("val", "test"):
        why = f"its {split} scores cannot be measured; {split}'s macro averages leave it out unless predicted"
        for name in sorted(set(counts["train"]) - set(counts[split])):
            warn(f"label {name!r} of {paths['train']} has no example in {paths[split]}: {why}")


def resolve(args: Args) -> Path:
    """Check the options together, fill in the table defaults, and return the output folder."""
    pre_split = {"--train": args.train, "--val": args.val, "--test": args.test}
    if args.input and any(pre_split.values()):
        raise ValueError("give --input (one table, split here) or --train/--val/--test (split already), not both")
    if any(pre_split.values()) and not all(pre_split.values()):
        raise ValueError(
            f"--train, --val and --test go together: {next(k for k, v in pre_split.items() if not v)} is missing"
        )
    if not (args.val_ratio > 0 and args.test_ratio > 0 and args.val_ratio + args.test_ratio < 1):
        raise ValueError("--val_ratio and --test_ratio must be above 0, and together below 1")
    tables = [args.input] if args.input else [p for p in pre_split.values() if p]
    args.multi_label = args.multi_label or args.label_separator is not None
    if not tables:
        if args.text_columns or args.label_column or args.multi_label:
            raise ValueError(
                "--text_columns, --label_column, --multi_label and --label_separator are for tables "
                "(--input or --train/--val/--test); livedoor has one category per article"
            )
        args.name = args.name or (args.output_dir.name if args.output_dir else LIVEDOOR)
    else:
        check_table_options(args, tables)
    if not args.name or args.name in (".", "..") or "/" in args.name or "\\" in args.name:
        raise ValueError(f"--name {args.name!r}: give a plain folder name, such as reviews")
    return args.output_dir or ROOT / "datasets" / args.name


def check_table_options(args: Args, tables: list[Path]) -> None:
    for path in tables:
        reader_for(path)
        if not path.is_file():
            raise ValueError(f"{path} not found")
    args.text_columns = args.text_columns or ["text"]
    args.label_column = args.label_column or "label"
    if args.label_separator is not None and len(args.label_separator) != 1:
        raise ValueError(f"--label_separator {args.label_separator!r}: give one character, such as ';' or '|'")
    if args.multi_label and args.label_separator is None and any(p.suffix.lower() != ".jsonl" for p in tables):
        raise ValueError("--multi_label with a CSV or TSV table: give --label_separator, the character between labels")
    if len(args.text_columns) > 2 or len(set(args.text_columns)) < len(args.text_columns):
        raise ValueError(f"--text_columns {' '.join(args.text_columns)}: give one column, or two as a sentence pair")
    if clash := set(args.text_columns) & {*RECORD_KEYS, args.label_column}:
        raise ValueError(
            f"--text_columns: {sorted(clash)[0]!r} cannot be a text column: it is the label column "
            "or a key of every record (id, label)"
        )
    if not args.name and not args.output_dir:
        raise ValueError("a table needs --name: the dataset goes to datasets/<name>/")
    args.name = args.name or args.output_dir.name


def print_summary(counts: dict[str, Counter], names: list[str], rows: dict | None = None) -> None:
    """Rows per label and split; multi-label (rows given): then the rows without a label, and the rows
    in all, fewer than the sum above them, since a row counts once for each of its labels."""
    lines = [(label, [counts[name][label] for name in SPLITS]) for label in names]
    if rows:
        lines.append(("(no label)", [rows[name]["no_label"] for name in SPLITS]))
        lines.append(("rows", [rows[name]["rows"] for name in SPLITS]))
    else:
        lines.append(("total", [sum(counts[name].values()) for name in SPLITS]))
    width = max(display_width(label) for label, _ in lines)
    print(pad("label", width) + " " + " ".join(f"{name:>6}" for name in SPLITS) + f" {'all':>6}")
    for label, row in lines:
        print(pad(label, width) + " " + " ".join(f"{n:>6}" for n in row) + f" {sum(row):>6}")


def display_width(text: str) -> int:
    # Japanese label names take two terminal columns per character: pad by columns, not characters.
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def main(args: Args) -> None:
    output_dir = None
    try:
        output_dir = resolve(args)
        rows = None
        if args.input:
            counts, names, rows = prepare_table(args, output_dir)
        elif args.train:
            counts, names, rows = prepare_pre_split(args, output_dir)
        else:
            counts, names = prepare_livedoor(args, output_dir)
    except ValueError as e:
        sys.exit(f"prepare.py: error: {e}")
    except OSError as e:  # a read-only or full disk, a file where a folder should be
        where = output_dir or args.output_dir or "the output folder"
        remedy = "give --output_dir (or --name) a folder you may write to, on a disk with room"
        sys.exit(f"prepare.py: error: cannot write {where} ({e.strerror or e}): {remedy}")
    except KeyboardInterrupt:  # staged() has removed its staging folder; dies_of_sigint ends the process
        print(f"\nprepare.py: interrupted; {output_dir or 'the dataset'} is as it was before", file=sys.stderr)
        raise
    print_summary(counts, names, rows)
    files = "{all,train,val,test}" if not (args.input or args.train) else "{train,val,test}"
    print(f"Wrote {output_dir}/{files}.jsonl, label2id.json and dataset.json")
    option = f"--dataset {output_dir.name}"
    if output_dir.parent != ROOT / "datasets":
        option = f"--dataset_dir {output_dir}"
    # No --text_fields: train.py reads them from dataset.json
    print(f"Train on it: python src/train.py {option} --model_name {DEFAULT_MODEL}")


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args))
