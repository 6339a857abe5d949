"""Turn the extracted livedoor corpus (data/text/) into NFKC-normalized JSONL splits.

    python src/prepare.py                # data/text -> datasets/livedoor/{all,train,val,test}.jsonl
    python src/prepare.py --seed 0 --output_dir datasets/livedoor-seed0

The split is 8:1:1, stratified by category: val and test each get floor(N/10) articles, train the
rest. It depends only on the input and the seed (files are read in sorted order, never in the
filesystem's listing order, and the shuffle uses Python's own seeded generator, which does not change
across numpy versions), so the same corpus and seed give byte-identical files on any machine.
"""

import random
import shutil
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

from classopt import classopt, config

import cli
from data import write_jsonl, write_label2id

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "val", "test")


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    input_dir: Path = config(default=ROOT / "data" / "text", help="extracted corpus: <dir>/<category>/*.txt")
    output_dir: Path = config(default=ROOT / "datasets" / "livedoor", help="where the JSONL splits go")
    seed: int = config(default=42, help="seed of the stratified split")


def normalize(text: str) -> str:
    # NFKC folds full-width letters/digits to ASCII, half-width katakana to full-width, and the
    # full-width space U+3000 to a plain space, which strip() then removes from both ends.
    return unicodedata.normalize("NFKC", text).strip()


def parse_article(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    lines = text.splitlines()
    if len(lines) < 3:
        raise ValueError(f"{path}: an article needs a URL, a date and a title line, found {len(lines)} lines")
    body_lines = (normalize(line) for line in lines[3:])
    return {
        "url": lines[0].strip(),
        "date": lines[1].strip(),
        "title": normalize(lines[2]),
        "body": "\n".join(line for line in body_lines if line),
    }


def read_corpus(input_dir: Path) -> tuple[list[dict], list[str]]:
    """Every article of input_dir/<category>/*.txt, sorted by category then file name."""
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir} not found: run `bash src/download.sh` first")
    categories = sorted(d.name for d in input_dir.iterdir() if d.is_dir())
    records = []
    for label, category in enumerate(categories):
        for path in sorted((input_dir / category).glob("*.txt")):
            if path.name == "LICENSE.txt":
                continue
            article = parse_article(path)
            records.append({"id": len(records), "label": label, "category": category, "stem": path.stem} | article)
    if not records:
        raise ValueError(f"no articles found in {input_dir}/<category>/*.txt: run `bash src/download.sh` again")
    return records, categories


def allocate(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over the categories in proportion to their counts (largest remainder method),
    so that the held-out sets have exactly `total` articles and every category its fair share."""
    n = sum(counts.values())
    quotas = {c: counts[c] * total // n for c in counts}
    by_remainder = sorted(counts, key=lambda c: (-(counts[c] * total % n), c))
    for category in by_remainder[: total - sum(quotas.values())]:
        quotas[category] += 1
    return quotas


def split(records: list[dict], seed: int) -> dict[str, list[dict]]:
    by_category: dict[str, list[dict]] = {}
    for record in records:
        by_category.setdefault(record["category"], []).append(record)
    held_out = allocate({c: len(rs) for c, rs in by_category.items()}, len(records) // 10)
    rng = random.Random(seed)
    splits = {name: [] for name in SPLITS}
    for category in sorted(by_category):
        shuffled = by_category[category][:]
        rng.shuffle(shuffled)
        k = held_out[category]
        splits["val"] += shuffled[:k]
        splits["test"] += shuffled[k : 2 * k]
        splits["train"] += shuffled[2 * k :]
    return {name: sorted(rs, key=lambda r: r["id"]) for name, rs in splits.items()}


def write_dataset(output_dir: Path, records: list[dict], splits: dict, categories: list[str]) -> None:
    """Write into a fresh temporary directory and move it into place only when every file is there:
    an interrupted run leaves either the previous dataset or none, never a partial one."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        write_jsonl(staging / "all.jsonl", records)
        for name, split_records in splits.items():
            write_jsonl(staging / f"{name}.jsonl", split_records)
        write_label2id(staging / "label2id.json", {c: i for i, c in enumerate(categories)})
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output_dir.rename(old)
            shutil.rmtree(old)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def print_summary(splits: dict[str, list[dict]], categories: list[str]) -> None:
    counts = {name: Counter(r["category"] for r in rs) for name, rs in splits.items()}
    width = max(len(c) for c in categories + ["total"])
    print(f"{'category':<{width}} " + " ".join(f"{name:>6}" for name in SPLITS) + f" {'all':>6}")
    for category in categories:
        row = [counts[name][category] for name in SPLITS]
        print(f"{category:<{width}} " + " ".join(f"{n:>6}" for n in row) + f" {sum(row):>6}")
    totals = [len(splits[name]) for name in SPLITS]
    print(f"{'total':<{width}} " + " ".join(f"{n:>6}" for n in totals) + f" {sum(totals):>6}")


def main(args: Args) -> None:
    try:
        records, categories = read_corpus(args.input_dir)
        splits = split(records, args.seed)
        write_dataset(args.output_dir, records, splits, categories)
    except (ValueError, OSError) as e:
        sys.exit(f"prepare.py: error: {e}")
    except KeyboardInterrupt:  # write_dataset has removed its staging folder
        sys.exit(f"\nprepare.py: interrupted; {args.output_dir} is as it was before")
    print_summary(splits, categories)
    print(f"Wrote {args.output_dir}/{{all,train,val,test}}.jsonl and label2id.json")


if __name__ == "__main__":
    main(Args.from_args())
