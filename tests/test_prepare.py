"""prepare.py: normalization, the stratified seeded split, determinism and its errors."""

import json
import shutil
from collections import Counter

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, run_script, write_corpus
from data import read_jsonl
from prepare import Args, allocate, main, normalize


def prepare(input_dir, output_dir, seed=42):
    main(Args(input_dir=input_dir, output_dir=output_dir, seed=seed))


def test_normalize_known_strings():
    assert normalize("　ＡＢＣ１２３ｶﾀｶﾅ　") == "ABC123カタカナ"
    assert normalize(" 全角　スペース ") == "全角 スペース"
    assert normalize("①ﾊﾟｿｺﾝ") == "1パソコン"


def test_records_are_parsed_and_normalized(dataset_dir):
    record = read_jsonl(dataset_dir / "all.jsonl")[0]
    assert set(record) == {"id", "label", "category", "stem", "url", "date", "title", "body"}
    assert record["category"] == "dokujo-tsushin" and record["stem"] == "dokujo-tsushin-6000000"
    assert record["url"] == "http://news.livedoor.com/article/detail/7000000/"
    assert record["date"] == "2012-09-18T18:23:00+0900"
    assert record["title"] == "【結婚】第12回 NEWS0 ニュース"
    # blank and space-only lines dropped, each line stripped, full-width text folded
    assert record["body"] == "結婚の今日です。\n恋愛と独女の話題、ABC0番。カタカナ も。\n今日結婚最新。"
    raw = (dataset_dir / "all.jsonl").read_text(encoding="utf-8")
    assert "結婚" in raw and "\\u" not in raw  # UTF-8, not ASCII-escaped


def test_label2id_sorted_categories(dataset_dir):
    label2id = json.loads((dataset_dir / "label2id.json").read_text())
    assert label2id == {name: i for i, name in enumerate(sorted(CATEGORIES))}
    for record in read_jsonl(dataset_dir / "all.jsonl"):
        assert label2id[record["category"]] == record["label"]


def test_splits_disjoint_cover_all_and_stratified(dataset_dir):
    records = read_jsonl(dataset_dir / "all.jsonl")
    splits = {name: read_jsonl(dataset_dir / f"{name}.jsonl") for name in ("train", "val", "test")}
    ids = {name: {r["id"] for r in rs} for name, rs in splits.items()}
    assert sum(len(s) for s in ids.values()) == len(records) == len(CATEGORIES) * ARTICLES_PER_CATEGORY
    assert set().union(*ids.values()) == {r["id"] for r in records}
    assert len(splits["val"]) == len(splits["test"]) == len(records) // 10
    for name in ("val", "test"):  # 20 articles per category: 2 each in val and test
        assert Counter(r["category"] for r in splits[name]) == {c: 2 for c in CATEGORIES}


def test_allocation_matches_the_full_corpus():
    counts = {  # the real corpus: 7,367 articles
        "dokujo-tsushin": 870, "it-life-hack": 870, "kaden-channel": 864, "livedoor-homme": 511,
        "movie-enter": 870, "peachy": 842, "smax": 870, "sports-watch": 900, "topic-news": 770,
    }  # fmt: skip
    quotas = allocate(counts, sum(counts.values()) // 10)
    assert sum(quotas.values()) == 736
    assert all(abs(quotas[c] - counts[c] / 10) < 1 for c in counts)


def test_same_seed_byte_identical_other_seed_differs(corpus_dir, tmp_path):
    for name, seed in (("a", 42), ("b", 42), ("c", 7)):
        prepare(corpus_dir, tmp_path / name, seed)
    for file in ("all.jsonl", "train.jsonl", "val.jsonl", "test.jsonl", "label2id.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "val.jsonl").read_bytes() != (tmp_path / "c" / "val.jsonl").read_bytes()


def test_split_does_not_depend_on_listing_order(corpus_dir, tmp_path):
    # the same articles written in the reverse order get other inode/listing orders
    copy = tmp_path / "copy"
    for category_dir in sorted(corpus_dir.iterdir(), reverse=True):
        if category_dir.is_dir():
            (copy / category_dir.name).mkdir(parents=True)
            for path in sorted(category_dir.iterdir(), reverse=True):
                shutil.copy(path, copy / category_dir.name / path.name)
    prepare(corpus_dir, tmp_path / "a")
    prepare(copy, tmp_path / "b")
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()


def test_cli_prints_summary(corpus_dir, tmp_path):
    result = run_script("src/prepare.py", "--input_dir", corpus_dir, "--output_dir", tmp_path / "out")
    assert "sports-watch" in result.stdout
    assert "total" in result.stdout and "144" in result.stdout and "180" in result.stdout


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", "run `bash src/download.sh` first"),
        ("empty", "no articles found"),
        ("short", "needs a URL, a date and a title line"),
        ("binary", "not valid UTF-8"),
    ],
)
def test_errors_name_the_problem_and_write_nothing(tmp_path, breakage, message):
    corpus = write_corpus(tmp_path / "corpus", articles_per_category=2)
    bad = corpus / "smax" / "smax-6000000.txt"
    if breakage == "missing":
        shutil.rmtree(corpus)
    elif breakage == "empty":
        for path in corpus.glob("*/*.txt"):
            path.unlink() if path.name != "LICENSE.txt" else None
    elif breakage == "short":
        bad.write_text("http://example.com/\n2012-01-01\n", encoding="utf-8")
    else:
        bad.write_bytes(b"http://x/\n2012\ntitle\n" + b"\xff\xfe body")
    result = run_script("src/prepare.py", "--input_dir", corpus, "--output_dir", tmp_path / "out", check=False)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    if breakage in ("short", "binary"):
        assert "smax-6000000.txt" in result.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_failed_rerun_keeps_the_previous_dataset(corpus_dir, tmp_path):
    prepare(corpus_dir, tmp_path / "out")
    before = (tmp_path / "out" / "train.jsonl").read_bytes()
    result = run_script(
        "src/prepare.py", "--input_dir", tmp_path / "nowhere", "--output_dir", tmp_path / "out", check=False
    )
    assert result.returncode != 0
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == before
