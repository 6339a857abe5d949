"""A user's table (tables.read_table: CSV, TSV, JSONL) as the records of a dataset, each row checked, read
twice and never held in memory (prepare.py): pass 1, scan(), keeps only each row's label (and a hash of its
own id, for check_unique_ids); pass 2, rows_again(), yields the records to write, checked to be the rows
pass 1 saw. An error names the file and line."""

import json
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livedoor_classification.label_checks import warn_merged_spellings
from livedoor_classification.tables import read_table


@dataclass(frozen=True)
class RecordFormat:
    """How a table's rows become records: {"id", each text column under its own name, "label"}."""

    text_columns: Sequence[str]  # one, or two as a sentence pair
    label_column: str
    clean: Callable[[str], str]  # dataset_files.normalize (NFKC, stripped), or as_written
    # None: one label name a row. Multi-label: the character between a row's names, or "" for a JSON list
    # (where a string is a single name).
    separator: str | None = None

    @property
    def multi_label(self) -> bool:
        return self.separator is not None


def table_records(
    path: Path, fmt: RecordFormat, id_hashes: array | None = None, spellings: dict[str, set[str]] | None = None
) -> Iterator[dict]:
    """The records of a table, each checked; an error names the file and line. Given id_hashes and
    spellings (pass 1), the hash of each of the table's own ids is appended to id_hashes, for
    check_unique_ids, and each label name's spellings as written (spaces stripped) are kept in spellings."""
    for row_number, (line, row) in enumerate(read_table(path)):
        try:
            record = table_record(row, row_number, fmt)
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {e}") from None
        if id_hashes is not None and "id" in row:
            id_hashes.append(hash(id_key(row["id"])))
        if spellings is not None and isinstance(record["label"], str):  # multi-label: one label per name
            spellings.setdefault(record["label"], set()).add(str(row[fmt.label_column]).strip())
        yield record


def table_record(row: dict, row_number: int, fmt: RecordFormat) -> dict:
    label_column = fmt.label_column
    for column, option in [(c, "--text_columns") for c in fmt.text_columns] + [(label_column, "--label_column")]:
        if column not in row:
            existing = ", ".join(map(str, row))
            raise ValueError(f"no column {column!r} (the columns are: {existing}); give {option}")
    record = {"id": row.get("id", row_number)}
    for column in fmt.text_columns:
        text = row[column]
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{column!r} is {type(text).__name__} {text!r}, not text")
        text = fmt.clean(text or "")
        if not text.strip():
            raise ValueError(f"empty text in column {column!r}; fill it in or drop the row")
        record[column] = text
    label = row[label_column]
    if fmt.multi_label:
        record["label"] = label_set(label, label_column, fmt.clean, fmt.separator)
        return record
    if isinstance(label, list):
        raise ValueError(f"label {label!r} in column {label_column!r} is a list: give --multi_label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, str | int)):
        raise ValueError(f"label {label!r} in column {label_column!r} is neither a name nor an integer")
    # A name, cleaned as the text is ("良い " and "良い" are one label): label ids are given by label2id.json alone
    name = "" if label is None else fmt.clean(str(label))
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


def scan(path: Path, fmt: RecordFormat, id_hashes: array) -> tuple[Sequence, list[str]]:
    """Pass 1: check every row of path and keep only its label, as a code into the names returned
    (in order of first appearance), and the hash of its own id, if it has one, in id_hashes. A
    multi-label row's labels are kept as a tuple of codes (about 60 bytes a row, not 4: fine for the
    sizes of multi-label datasets)."""
    codes: dict[str, int] = {}
    labels = [] if fmt.multi_label else array("I")
    spellings: dict[str, set[str]] = {}
    for record in table_records(path, fmt, id_hashes, spellings):
        if fmt.multi_label:
            labels.append(tuple(codes.setdefault(name, len(codes)) for name in record["label"]))
        else:
            labels.append(codes.setdefault(record["label"], len(codes)))
    if not labels:
        raise ValueError(f"{path}: no rows, only a header or nothing")
    if fmt.multi_label and not codes:
        raise ValueError(f"{path}: no row has a label; a multi-label dataset needs labelled rows to learn from")
    warn_merged_spellings(spellings, path)
    return labels, list(codes)


def names_of(label, names: Sequence[str]) -> str | list[str]:
    """A row's label as pass 1 keeps it (a code, or a tuple of codes for multi-label) as its record has it."""
    return names[label] if isinstance(label, int) else sorted(names[code] for code in label)


def rows_again(path: Path, fmt: RecordFormat, labels: Sequence, names: Sequence[str]) -> Iterator[dict]:
    """Pass 2: the records of path once more, checked to be the rows pass 1 saw."""
    count = 0
    for count, record in enumerate(table_records(path, fmt), start=1):
        if count > len(labels) or record["label"] != names_of(labels[count - 1], names):
            raise ValueError(f"{path} changed while prepare.py was reading it: run it again")
        yield record
    if count != len(labels):
        raise ValueError(f"{path} changed while prepare.py was reading it: run it again")
