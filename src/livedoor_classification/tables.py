"""Reading a user's CSV, TSV or JSONL file row by row, with its line numbers (prepare.py, predict.py)."""

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

from livedoor_classification.dataset_files import jsonl_rows


def read_csv(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    """Rows of a CSV file with a header line. csv.reader rather than DictReader, which would pad a short
    row with None and hide a long one's extra fields: a row must have as many fields as the header."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file: the first line must name the columns")
            if duplicates := sorted({c for c in header if header.count(c) > 1}):
                raise ValueError(f"{path}:1: column {duplicates[0]!r} appears twice in the header; rename one")
            line = reader.line_num + 1  # where the next row starts (a quoted field may span lines)
            for fields in reader:
                if fields and len(fields) != len(header):
                    raise ValueError(
                        f"{path}:{line}: {len(fields)} fields where the header has {len(header)}; "
                        f"quote a text that contains {delimiter!r} or a line break"
                    )
                if fields:  # a blank line
                    yield line, dict(zip(header, fields, strict=True))
                line = reader.line_num + 1
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def read_tsv(path: Path) -> Iterator[tuple[int, dict]]:
    return read_csv(path, delimiter="\t")


READERS = {".csv": read_csv, ".tsv": read_tsv, ".jsonl": jsonl_rows}


def reader_for(path: Path) -> Callable[[Path], Iterator[tuple[int, dict]]]:
    if path.suffix.lower() not in READERS:
        known = ", ".join(READERS)
        raise ValueError(f"{path}: unknown extension {path.suffix!r}: give a {known} file (or add a reader to READERS)")
    return READERS[path.suffix.lower()]


def read_table(path: Path) -> Iterator[tuple[int, dict]]:
    """The rows of a table, streamed, by its extension's reader; a file that is not UTF-8 is one error."""
    try:
        yield from reader_for(path)(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason}); save it as UTF-8") from None
