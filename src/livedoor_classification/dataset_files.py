"""A prepared dataset on disk, as prepare.py writes it and every later stage reads it:

    datasets/<name>/{train,val,test}.jsonl   a JSON object per line: text fields, "label", "id"
                                             ("label": a list of names in a multi-label dataset)
    datasets/<name>/label2id.json            label name -> id 0..n-1
    datasets/<name>/dataset.json             the manifest: sources, text fields, counts, fingerprint

Nothing here imports torch, so prepare.py stays light (tens of MB for a million-row table).
"""

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def jsonl_rows(path: Path, remedy: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line, streamed; a bad line is a one-line ValueError
    naming the file and line, ending with the remedy. A byte-order mark is tolerated."""
    with open(path, encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({e.msg}){remedy}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object per line{remedy}")
            yield line_number, row


def read_jsonl(path: Path) -> list[dict]:
    """A prepared split: its records, in order."""
    return [row for _, row in jsonl_rows(path, "; run `python src/prepare.py` again")]


def write_label2id(path: Path, label2id: dict[str, int]) -> None:
    path.write_text(json.dumps(label2id, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_label2id(dataset_dir: Path) -> dict[str, int]:
    path = dataset_dir / "label2id.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: run `python src/prepare.py` first (or give --dataset_dir)")
    try:
        label2id = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}); run `python src/prepare.py` again") from None
    if not isinstance(label2id, dict) or sorted(label2id.values()) != list(range(len(label2id))):
        raise ValueError(f"{path}: must map each label name to a distinct id 0..n-1")
    return label2id


def dataset_manifest(dataset_dir: Path) -> dict:
    """The manifest prepare.py wrote (dataset.json); {} for a dataset without one (made by hand, or
    by an older prepare.py), which is then taken to be livedoor's: title and body, NFKC-normalized."""
    path = dataset_dir / "dataset.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not valid JSON; run `python src/prepare.py` again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("text_fields", []), list):
        raise ValueError(f"{path}: no readable text_fields; run `python src/prepare.py` again")
    return manifest


def label_names(label2id: dict[str, int]) -> list[str]:
    """Label names in id order: index i is the name of id i, whatever order label2id.json lists them in."""
    return sorted(label2id, key=label2id.get)


def label_id(label, label2id: dict[str, int]) -> int | None:
    """The one rule for a record's label. A string is a label name. An integer is an id, unless the
    label names are themselves integers (star ratings {"1": 0, ..., "5": 4}): then it is a name too,
    so that rating 1 is never read as id 1. None if the label is neither."""
    if isinstance(label, str):
        return label2id.get(label)
    if not isinstance(label, int) or isinstance(label, bool):
        return None
    if all(name.lstrip("-").isdigit() for name in label2id):
        return label2id.get(str(label))
    return label if 0 <= label < len(label2id) else None


def load_split(
    dataset_dir: Path, split: str, label2id: dict[str, int], text_fields: Sequence[str], multi_label: bool
) -> list[dict]:
    """Records of <dataset_dir>/<split>.jsonl, checked: the text fields are strings and each label is
    known (see label_id). The labels are replaced by their ids; in a multi-label dataset (the manifest's multi_label)
    the list of labels by a multi-hot vector, float32, 1.0 at each label's id: the targets of a binary
    cross-entropy per label, and of scikit-learn's multi-label metrics."""
    path = dataset_dir / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} not found: run `python src/prepare.py` first (or give --dataset_dir)")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path} is empty: every split needs at least one example")
    import numpy as np  # here, not above: prepare.py and the sweep's --status read this module without numpy

    for line_number, record in enumerate(records, start=1):
        for field in text_fields:
            if not isinstance(record.get(field), str):
                known = ", ".join(k for k, v in record.items() if isinstance(v, str))
                raise ValueError(f"{path}:{line_number}: no text field {field!r} (text fields here: {known})")
        label = record.get("label")
        if multi_label and not isinstance(label, list):
            raise ValueError(f"{path}:{line_number}: label {label!r} is not a list, as a multi-label dataset's are")
        ids = [label_id(name, label2id) for name in (label if multi_label else [label])]
        if None in ids:
            unknown = label[ids.index(None)] if multi_label else label
            raise ValueError(f"{path}:{line_number}: label {unknown!r} is not in label2id.json")
        if multi_label:
            record["label"] = np.zeros(len(label2id), dtype=np.float32)
            record["label"][ids] = 1.0
        else:
            record["label"] = ids[0]
    return records


def normalize(text: str) -> str:
    # NFKC folds full-width letters/digits to ASCII, half-width katakana to full-width, and the
    # full-width space U+3000 to a plain space, which strip() then removes from both ends.
    return unicodedata.normalize("NFKC", text).strip()


def as_written(text: str) -> str:
    return text


DATASET_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "label2id.json")  # what a run reads, in a fixed order


def dataset_fingerprint(dataset_dir: Path) -> str:
    """SHA-256 (64 hex digits) of the files a run reads, in DATASET_FILES order, each framed by its
    name and byte length: bytes moved from one file to the next change it, the folder's name and
    place do not. aggregate.py shows the first 12 digits."""
    digest = hashlib.sha256()
    for name in DATASET_FILES:
        path = dataset_dir / name
        try:
            with open(path, "rb") as f:
                digest.update(f"{name}\0{os.fstat(f.fileno()).st_size}\0".encode())
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ValueError(f"{path} not found: run `python src/prepare.py` first (or give --dataset_dir)") from None
        except OSError as e:
            raise ValueError(f"{path}: unreadable ({e.strerror})") from None
    return digest.hexdigest()


SPLITS = ("train", "val", "test")  # a row's split code is its index here


class PreparedDataset:
    """A prepared dataset folder, opened once: a stage builds one in main() and asks it everything, so the
    folder's files are each read once (the manifest, label2id) and its fingerprint hashed once a run.

        dataset = PreparedDataset(args.dataset_dir)   # ValueError (one line) if label2id.json is missing or bad
        dataset.label2id, dataset.names, dataset.text_fields, dataset.multi_label, dataset.normalize
        dataset.fingerprint                           # SHA-256 of the files a run reads, computed on first use
        dataset.split("train", text_fields)           # the records, checked, labels as ids (load_split)
        dataset.split_size("train")                   # its examples, without parsing them
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.name = self.folder.name
        self.manifest = dataset_manifest(self.folder)
        self.label2id = load_label2id(self.folder)
        self.names = label_names(self.label2id)  # index i: the name of label id i
        self.text_fields: list[str] = self.manifest.get("text_fields", ["title", "body"])  # as livedoor's
        # Whether a text has a list of labels (any number, none included) rather than exactly one.
        self.multi_label = bool(self.manifest.get("multi_label", False))
        # How prepare.py cleaned the texts (NFKC, stripped), which predict.py must do to a new text as well.
        self.normalize = bool(self.manifest.get("normalize", True))
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = dataset_fingerprint(self.folder)
        return self._fingerprint

    def split(self, split: str, text_fields: Sequence[str] | None = None) -> list[dict]:
        return load_split(self.folder, split, self.label2id, text_fields or self.text_fields, self.multi_label)

    def split_size(self, split: str) -> float:
        """The examples of a split (its non-blank lines, as split() reads them); infinite if it cannot be read
        now, which split() then reports."""
        try:
            with open(self.folder / f"{split}.jsonl", encoding="utf-8-sig") as f:
                return sum(1 for line in f if line.strip())
        except (OSError, UnicodeDecodeError):
            return float("inf")
