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
register it by file extension in READERS (livedoor_classification/tables.py); the columns are then named
with --text_columns/--label_column.
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import csv
import sys
import unicodedata
from array import array
from collections import Counter
from pathlib import Path

from classopt import classopt, config

from livedoor_classification.dataset_files import SPLITS, as_written, normalize, write_jsonl, write_label2id
from livedoor_classification.dataset_writing import (
    shown,
    shuffle_splits,
    source,
    staged,
    write_manifest,
    write_split_files,
)
from livedoor_classification.label_checks import (
    check_class_sizes,
    check_labels_occur_in_train,
    check_train_has_every_label,
    check_two_labels,
    warn_missing_labels,
    warn_number_twins,
)
from livedoor_classification.livedoor_corpus import corpus_sha256, read_livedoor, split_livedoor
from livedoor_classification.paths import ROOT
from livedoor_classification.splitting import (
    assign,
    assign_multi_label,
    label_set_counts,
    multi_label_counts,
    split_counts,
)
from livedoor_classification.table_records import RecordFormat, check_unique_ids, rows_again, scan
from livedoor_classification.tables import reader_for

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


# --- the options, checked together ---


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


# --- the three ways in: livedoor, one table, tables already split ---


def prepare_livedoor(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str]]:
    clean = str.strip if args.no_normalize else normalize  # article lines are stripped either way
    records, categories = read_livedoor(args.input_dir, clean)
    check_two_labels(categories, args.input_dir, rows="article is in category")
    check_class_sizes([r["label"] for r in records], categories, args.input_dir)
    splits = split_livedoor(records, args.seed, args.val_ratio, args.test_ratio)
    counts = {name: Counter(r["category"] for r in rs) for name, rs in splits.items()}
    about = {
        "name": args.name,
        "sources": [{"path": shown(args.input_dir), "sha256": corpus_sha256(args.input_dir, records)}],
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


def prepare_table(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str], dict | None]:
    fmt = record_format(args)
    id_hashes = array("q")
    labels, names = scan(args.input, fmt, id_hashes)  # pass 1: every row checked, its label kept
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
    about = table_about(args, [source(args.input)], args.seed, ratios(args))
    with staged(output_dir) as staging:
        write_split_files(staging, rows_again(args.input, fmt, labels, names), codes)  # pass 2
        shuffle_splits(staging, args.seed)
        write_label2id(staging / "label2id.json", {name: i for i, name in enumerate(sorted(names))})
        write_manifest(staging, about, counts, rows)
    return counts, sorted(names), rows


def prepare_pre_split(args: Args, output_dir: Path) -> tuple[dict[str, Counter], list[str], dict | None]:
    fmt = record_format(args)
    paths = {"train": args.train, "val": args.val, "test": args.test}
    scanned = {}
    for split, path in paths.items():
        # Ids must be unique within a file, where they pair a record with its prediction; across files
        # they may repeat (files exported with per-file row numbers as ids).
        id_hashes = array("q")
        scanned[split] = scan(path, fmt, id_hashes)
        check_unique_ids([path], id_hashes)
    counts, rows = {}, ({} if args.multi_label else None)
    for split, (labels, names) in scanned.items():
        if args.multi_label:
            counts[split], rows[split] = label_set_counts(labels, names)
        else:
            counts[split] = Counter(names[label] for label in labels)
    check_labels_occur_in_train(counts, paths)
    check_two_labels(sorted(counts["train"]), paths["train"])
    warn_number_twins(sorted(counts["train"]), paths["train"])
    warn_missing_labels(counts, paths)
    about = table_about(args, [source(path, split=split) for split, path in paths.items()], None, "pre-split")
    with staged(output_dir) as staging:
        for split, path in paths.items():  # as given, order included
            write_jsonl(staging / f"{split}.jsonl", rows_again(path, fmt, *scanned[split]))
        names = sorted(counts["train"])
        write_label2id(staging / "label2id.json", {name: i for i, name in enumerate(names)})
        write_manifest(staging, about, counts, rows)
    return counts, names, rows


def record_format(args: Args) -> RecordFormat:
    clean = as_written if args.no_normalize else normalize
    # multi-label: the names between separators, or a JSON list ("": a string is a single name)
    separator = (args.label_separator or "") if args.multi_label else None
    return RecordFormat(args.text_columns, args.label_column, clean, separator)


def table_about(args: Args, sources: list[dict], seed: int | None, split_ratios) -> dict:
    """What dataset.json says of a table's dataset, besides its counts and fingerprint."""
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


def ratios(args: Args) -> dict[str, float]:
    return {"val": args.val_ratio, "test": args.test_ratio}


# --- what it wrote, and what to do next ---


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
