"""prepare.py: normalization, the stratified seeded split, determinism and its errors; livedoor and tables."""

import hashlib
import inspect
import json
import os
import shutil
from collections import Counter

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_script, write_corpus
from livedoor_classification.dataset_files import dataset_fingerprint, load_label2id, load_split, normalize, read_jsonl
from livedoor_classification.splitting import allocate
from livedoor_classification.tables import read_table
from prepare import Args, main


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
        "dokujo-tsushin": 870,
        "it-life-hack": 870,
        "kaden-channel": 864,
        "livedoor-homme": 511,
        "movie-enter": 870,
        "peachy": 842,
        "smax": 870,
        "sports-watch": 900,
        "topic-news": 770,
    }
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
        ("empty", "a category folder with no articles"),
        ("no-categories", "no articles found"),
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
    elif breakage == "no-categories":
        for folder in [p for p in corpus.iterdir() if p.is_dir()]:
            shutil.rmtree(folder)
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


def test_livedoor_manifest(dataset_dir, corpus_dir):
    manifest = json.loads((dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "livedoor" and manifest["label_column"] == "category"
    assert manifest["text_fields"] == ["title", "body"] and manifest["normalize"] is True
    assert manifest["seed"] == 42 and manifest["ratios"] == {"val": 0.1, "test": 0.1}
    [source] = manifest["sources"]
    assert source["path"] == str(corpus_dir.resolve()) and len(source["sha256"]) == 64
    assert manifest["counts"]["val"] == {c: 2 for c in sorted(CATEGORIES)}
    assert manifest["fingerprint"] == dataset_fingerprint(dataset_dir)


def test_livedoor_source_hash_sees_an_edited_article(corpus_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus_dir, copy)
    prepare(copy, tmp_path / "a")
    with open(copy / "smax" / "smax-6000000.txt", "a", encoding="utf-8") as f:
        f.write("追記\n")
    prepare(copy, tmp_path / "b")
    sha = [json.loads((tmp_path / n / "dataset.json").read_text())["sources"][0]["sha256"] for n in "ab"]
    assert sha[0] != sha[1]


# --- tables ---

REVIEWS = {  # label name -> texts; Japanese names, full-width text to normalize
    "良い": [f"とても良い商品です　ＮＯ．{i}" for i in range(10)],
    "普通": [f"普通の品質でした, 値段相応 {i}" for i in range(10)],  # a comma inside a quoted field
    "悪い": [f"すぐ壊れた　ｶﾞｯｶﾘ {i}" for i in range(10)],
}


def write_reviews_csv(path, rows=None):
    rows = rows or [(text, label) for i in range(10) for label, texts in REVIEWS.items() for text in [texts[i]]]
    lines = ["text,rating"] + [f'"{text}",{label}' for text, label in rows]
    path.write_bytes("\ufeff".encode() + ("\r\n".join(lines) + "\r\n").encode("utf-8"))  # as Excel saves it
    return path


def prepare_with(*options, check=True):
    """main() in-process, as the command line would call it; the error message if it exits."""
    args = Args.from_args([str(o) for o in options])
    if check:
        main(args)
        return None
    with pytest.raises(SystemExit) as error:
        main(args)
    return str(error.value.code)


def test_csv_with_a_bom_and_japanese_labels(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    out = tmp_path / "reviews"
    prepare_with("--input", source, "--text_columns", "text", "--label_column", "rating", "--output_dir", out)
    files = ["dataset.json", "label2id.json", "test.jsonl", "train.jsonl", "val.jsonl"]  # no all.jsonl for tables
    assert sorted(p.name for p in out.iterdir()) == files
    label2id = json.loads((out / "label2id.json").read_text(encoding="utf-8"))
    assert label2id == {name: i for i, name in enumerate(sorted(REVIEWS))}
    splits = {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "val", "test")}
    for name in ("val", "test"):  # 30 rows: 3 held out each, one per label
        assert Counter(r["label"] for r in splits[name]) == {label: 1 for label in REVIEWS}
    records = sorted((r for rs in splits.values() for r in rs), key=lambda r: r["id"])
    assert [r["id"] for r in records] == list(range(30))  # 0-based row numbers, each row once
    assert records[0] == {"id": 0, "text": "とても良い商品です NO.0", "label": "良い"}  # NFKC, stripped, BOM gone
    assert records[1]["text"] == "普通の品質でした, 値段相応 0" and records[2]["text"] == "すぐ壊れた ガッカリ 0"


def test_table_split_is_seeded_and_ratios_are_settable(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    for name, seed, ratio in (("a", 42, "0.1"), ("b", 42, "0.1"), ("c", 7, "0.1"), ("d", 42, "0.2")):
        prepare_with(
            "--input",
            source,
            "--label_column",
            "rating",
            "--output_dir",
            tmp_path / name,
            "--seed",
            seed,
            "--val_ratio",
            ratio,
            "--test_ratio",
            ratio,
        )
    files = {
        name: [(tmp_path / name / f"{split}.jsonl").read_bytes() for split in ("train", "val", "test")]
        for name in "abc"
    }
    assert files["a"] == files["b"] and files["a"][1] != files["c"][1]
    assert len(read_jsonl(tmp_path / "d" / "val.jsonl")) == 6 and len(read_jsonl(tmp_path / "d" / "train.jsonl")) == 18


def test_table_manifest_and_fingerprint(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    out = tmp_path / "datasets" / "reviews"
    prepare_with("--input", source, "--label_column", "rating", "--name", "reviews", "--output_dir", out)
    manifest = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest == {
        "name": "reviews",
        "sources": [{"path": str(source.resolve()), "sha256": sha256}],
        "text_fields": ["text"],
        "label_column": "rating",
        "normalize": True,
        "seed": 42,
        "ratios": {"val": 0.1, "test": 0.1},
        "counts": {
            "train": {"悪い": 8, "普通": 8, "良い": 8},
            "val": {"悪い": 1, "普通": 1, "良い": 1},
            "test": {"悪い": 1, "普通": 1, "良い": 1},
        },
        "fingerprint": dataset_fingerprint(out),
    }


def test_no_normalize_keeps_text_as_written(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    out = tmp_path / "raw"
    prepare_with("--input", source, "--label_column", "rating", "--output_dir", out, "--no_normalize")
    texts = {r["text"] for split in ("train", "val", "test") for r in read_jsonl(out / f"{split}.jsonl")}
    assert texts == {text for texts in REVIEWS.values() for text in texts}
    assert json.loads((out / "dataset.json").read_text())["normalize"] is False


def test_tsv_with_one_text_column_and_its_own_ids(tmp_path):
    rows = [f"n{i}\t文{i}です\t{'ab'[i % 2]}" for i in range(20)]
    source = tmp_path / "notes.tsv"
    source.write_text("id\tsentence\ttopic\n" + "\n".join(rows) + "\n", encoding="utf-8")  # no BOM
    out = tmp_path / "notes"
    prepare_with("--input", source, "--text_columns", "sentence", "--label_column", "topic", "--output_dir", out)
    records = [r for split in ("train", "val", "test") for r in read_jsonl(out / f"{split}.jsonl")]
    assert sorted(r["id"] for r in records) == sorted(f"n{i}" for i in range(20))
    assert {"id": "n3", "sentence": "文3です", "label": "b"} in records
    assert json.loads((out / "label2id.json").read_text()) == {"a": 0, "b": 1}


def write_jsonl_rows(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tickets(n, labels=(1, 2, 3)):
    return [{"title": f"件名{i}", "body": f"本文　{i}", "label": labels[i % len(labels)]} for i in range(n)]


def test_pre_split_jsonl_with_integer_labels(tmp_path):
    paths = {
        split: write_jsonl_rows(tmp_path / f"{split}.jsonl", tickets(n))
        for split, n in (("train", 9), ("val", 3), ("test", 4))
    }
    (tmp_path / "val.jsonl").write_text("\n" + paths["val"].read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "tickets"
    prepare_with(
        "--train",
        paths["train"],
        "--val",
        paths["val"],
        "--test",
        paths["test"],
        "--text_columns",
        "title",
        "body",
        "--name",
        "tickets",
        "--output_dir",
        out,
    )
    assert json.loads((out / "label2id.json").read_text()) == {"1": 0, "2": 1, "3": 2}
    test = read_jsonl(out / "test.jsonl")  # kept as given: order, size, row numbers as ids
    assert test[3] == {"id": 3, "title": "件名3", "body": "本文 3", "label": "1"}
    assert [r["id"] for r in read_jsonl(out / "val.jsonl")] == [0, 1, 2]
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["ratios"] == "pre-split" and manifest["seed"] is None
    assert [s["split"] for s in manifest["sources"]] == ["train", "val", "test"]
    assert manifest["counts"]["test"] == {"1": 2, "2": 1, "3": 1} and manifest["text_fields"] == ["title", "body"]
    assert manifest["fingerprint"] == dataset_fingerprint(out)
    # what train.py reads: string labels are names, so label "1" is id 0, never id 1
    records = load_split(out, "test", load_label2id(out), ["title", "body"], multi_label=False)
    assert [r["label"] for r in records] == [0, 1, 2, 0]


def test_read_table_streams(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    rows = read_table(source)
    assert inspect.isgenerator(rows)
    assert next(rows) == (2, {"text": REVIEWS["良い"][0], "rating": "良い"})  # (line number, row)


def test_the_example_table_prepares_with_the_readme_command(tmp_path):
    command = "--input datasets/reviews.csv --text_columns text --label_column rating --name reviews".split()
    result = run_script("src/prepare.py", *command, "--output_dir", tmp_path / "reviews")
    assert "total" in result.stdout and "--dataset_dir" in result.stdout
    label2id = json.loads((tmp_path / "reviews" / "label2id.json").read_text(encoding="utf-8"))
    assert len(label2id) == 3
    assert (ROOT / "datasets" / "reviews.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # saved with a BOM


def good_and_bad_rows(breakage, tmp_path):
    rows = [(text, label) for i in range(10) for label, texts in REVIEWS.items() for text in [texts[i]]]
    if breakage == "empty-text":
        rows[5] = ("　", rows[5][1])  # only a full-width space: empty once normalized
    elif breakage == "empty-label":
        rows[7] = (rows[7][0], "")
    elif breakage == "rare":
        rows = [row for row in rows if row[1] != "悪い"] + rows[2:3]
    return write_reviews_csv(tmp_path / "reviews.csv", rows)


@pytest.mark.parametrize(
    "breakage, options, message",
    [
        ("none", ["--label_column", "stars"], "reviews.csv:2: no column 'stars' (the columns are: text, rating)"),
        ("none", ["--text_columns", "body"], "no column 'body' (the columns are: text, rating); give --text_columns"),
        ("empty-text", [], "reviews.csv:7: empty text in column 'text'"),
        ("empty-label", [], "reviews.csv:9: empty label in column 'rating'"),
        ("rare", [], "label '悪い' has 1 row(s): a label needs at least 3"),
        ("none", ["--val_ratio", "0"], "--val_ratio and --test_ratio must be above 0"),
    ],
)
def test_table_errors_name_the_problem_and_write_nothing(tmp_path, breakage, options, message):
    source = good_and_bad_rows(breakage, tmp_path)
    error = prepare_with(
        "--input",
        source,
        "--name",
        "x",
        "--output_dir",
        tmp_path / "out",
        *(options or ["--label_column", "rating"]),
        check=False,
    )
    assert message in error and error.startswith("prepare.py: error: ") and "\n" not in error
    assert [p.name for p in tmp_path.iterdir()] == ["reviews.csv"]


def test_pre_split_label_missing_from_train(tmp_path):
    train = write_jsonl_rows(tmp_path / "train.jsonl", tickets(6, labels=("a", "b")))
    val = write_jsonl_rows(tmp_path / "val.jsonl", tickets(3, labels=("a", "b", "c")))
    test = write_jsonl_rows(tmp_path / "test.jsonl", tickets(2, labels=("a", "b")))
    error = prepare_with(
        "--train",
        train,
        "--val",
        val,
        "--test",
        test,
        "--text_columns",
        "title",
        "--output_dir",
        tmp_path / "out",
        check=False,
    )
    assert f"{val}: label 'c' (1 rows) does not occur in {train}" in error
    assert not (tmp_path / "out").exists()


def test_unknown_extension_and_a_bad_line_are_one_line_errors(tmp_path):
    source = tmp_path / "reviews.xlsx"
    source.write_bytes(b"PK")
    result = run_script(
        "src/prepare.py", "--input", source, "--name", "x", "--output_dir", tmp_path / "out", check=False
    )
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "reviews.xlsx: unknown extension '.xlsx': give a .csv, .tsv, .jsonl file" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n', encoding="utf-8")
    error = prepare_with("--input", bad, "--output_dir", tmp_path / "out", check=False)
    assert "bad.jsonl:2: not valid JSON" in error
    assert not (tmp_path / "out").exists()


def test_a_table_needs_a_name(tmp_path):
    source = write_reviews_csv(tmp_path / "reviews.csv")
    error = prepare_with("--input", source, "--label_column", "rating", check=False)
    assert "a table needs --name" in error


def test_a_table_changed_between_the_two_passes_is_an_error(tmp_path, monkeypatch):
    import prepare

    source = write_reviews_csv(tmp_path / "reviews.csv")
    scan = prepare.scan

    def scan_then_edit(path, *rest):
        scanned = scan(path, *rest)
        with open(path, "a", encoding="utf-8") as f:  # a row added after pass 1 has read the file
            f.write("新しい行,良い\n")
        return scanned

    monkeypatch.setattr(prepare, "scan", scan_then_edit)
    error = prepare_with("--input", source, "--label_column", "rating", "--output_dir", tmp_path / "out", check=False)
    assert "reviews.csv changed while prepare.py was reading it: run it again" in error
    assert [p.name for p in tmp_path.iterdir()] == ["reviews.csv"]  # the staging folder is gone too


def test_a_rare_label_still_gets_a_val_and_a_test_row(tmp_path):
    """Proportional shares alone gave a label of 3 rows in 1,000 no val or test row (3/0/0): macro-F1
    over all labels was then capped at 66.67 however good the model."""
    rows = [f"テキスト{i},{'A' if i < 500 else 'B' if i < 997 else 'C'}" for i in range(1000)]
    (tmp_path / "rare.csv").write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "rare"
    run_script("src/prepare.py", "--input", tmp_path / "rare.csv", "--output_dir", out)
    for split, size in (("val", 100), ("test", 100)):
        records = read_jsonl(out / f"{split}.jsonl")
        assert len(records) == size and sum(r["label"] == "C" for r in records) == 1, split


def test_the_dataset_folder_is_readable_by_colleagues(dataset_dir):
    """mkdtemp makes its staging folder 0700; the dataset swapped into place gets a new folder's mode."""
    umask = os.umask(0)
    os.umask(umask)
    assert dataset_dir.stat().st_mode & 0o777 == 0o777 & ~umask


def test_an_output_folder_that_holds_other_files_is_never_replaced(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    (project / "reviews.csv").write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    result = run_script("src/prepare.py", "--input", project / "reviews.csv", "--output_dir", project, check=False)
    assert result.returncode != 0 and "is not a dataset prepare.py wrote" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "project", "reviews.csv"]
