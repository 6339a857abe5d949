"""prepare.py on data on its way in (issue #20): label names normalized like the text, duplicate ids,
a single label, labels a pre-split val or test lacks, empty category folders, the written order of
the splits, and the closing hint."""

import json
import shutil
from collections import Counter

import pytest

from conftest import CATEGORIES, run_script, write_corpus
from livedoor_classification.dataset_files import read_jsonl
from prepare import Args, main

SPLITS = ("train", "val", "test")


def prepare_with(*options):
    """main() in-process, as the command line would call it; the error message if it exits, else None."""
    try:
        main(Args.from_args([str(o) for o in options]))
    except SystemExit as e:
        return str(e.code)
    return None


def write_csv(path, header, rows):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def write_jsonl_rows(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def all_records(out):
    return [r for split in SPLITS for r in read_jsonl(out / f"{split}.jsonl")]


def warning_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line]


# --- 1. label names ---


def test_label_names_are_normalized_like_the_text(tmp_path, capsys):
    # "良い " (a trailing space), "　良い" (a full-width space) and "良い" are one class; so are
    # half-width "ｶﾞｯｶﾘ" and full-width "ガッカリ", which NFKC folds together.
    labels = ["良い", "良い ", "　良い", "ガッカリ", "ｶﾞｯｶﾘ", "ガッカリ"] * 3
    source = write_csv(tmp_path / "r.csv", "text,label", [f"文{i},{label}" for i, label in enumerate(labels)])
    assert prepare_with("--input", source, "--output_dir", tmp_path / "out") is None
    assert json.loads((tmp_path / "out" / "label2id.json").read_text(encoding="utf-8")) == {"ガッカリ": 0, "良い": 1}
    assert Counter(r["label"] for r in all_records(tmp_path / "out")) == {"良い": 9, "ガッカリ": 9}
    assert warning_lines(capsys) == []


def test_no_normalize_keeps_label_names_as_written(tmp_path):
    labels = ["良い", "良い ", "ｶﾞｯｶﾘ"] * 3
    source = write_csv(tmp_path / "r.csv", "text,label", [f"文{i},{label}" for i, label in enumerate(labels)])
    assert prepare_with("--input", source, "--output_dir", tmp_path / "out", "--no_normalize") is None
    assert json.loads((tmp_path / "out" / "label2id.json").read_text(encoding="utf-8")) == {
        "良い": 0,
        "良い ": 1,
        "ｶﾞｯｶﾘ": 2,
    }


def test_labels_that_differ_only_in_number_formatting_get_one_warning_each(tmp_path, capsys):
    labels = ["1", "1.0", "01", "2", "2.5", "02.50", "10", "3"] * 3  # 10 and 3 are numbers of their own
    source = write_csv(tmp_path / "r.csv", "text,stars", [f"文{i},{label}" for i, label in enumerate(labels)])
    assert prepare_with("--input", source, "--label_column", "stars", "--output_dir", tmp_path / "out") is None
    lines = warning_lines(capsys)
    assert len(lines) == 2, lines
    assert lines[0].startswith("prepare.py: warning: ") and str(source) in lines[0]
    assert "'01', '1' and '1.0'" in lines[0] and "'02.50' and '2.5'" in lines[1]
    assert all("differ only in number formatting" in line for line in lines)
    assert len(json.loads((tmp_path / "out" / "label2id.json").read_text())) == 8  # still separate classes


def test_labels_that_nfkc_makes_one_get_a_warning(tmp_path, capsys):
    """NFKC merges "Ⅱ" and "II", "①" and "1": the user is told, and --no_normalize keeps them apart. Spaces
    and character widths merge silently: that is the cleaning asked for ("良い " is "良い", "ｶﾅ" is "カナ")."""
    labels = ["Ⅱ", "II", "①", "1", "ｶﾅ", "カナ", "良い ", "良い"] * 3
    source = write_csv(tmp_path / "r.csv", "text,label", [f"文{i},{label}" for i, label in enumerate(labels)])
    assert prepare_with("--input", source, "--output_dir", tmp_path / "out") is None
    lines = warning_lines(capsys)
    assert lines == [
        f"prepare.py: warning: {source}: labels '1' and '①' are one label, '1', once NFKC-normalized; "
        "give --no_normalize to keep them apart",
        f"prepare.py: warning: {source}: labels 'II' and 'Ⅱ' are one label, 'II', once NFKC-normalized; "
        "give --no_normalize to keep them apart",
    ]
    assert json.loads((tmp_path / "out" / "label2id.json").read_text()) == {"1": 0, "II": 1, "カナ": 2, "良い": 3}


def test_number_formatting_across_pre_split_files(tmp_path, capsys):
    train = write_jsonl_rows(
        tmp_path / "train.jsonl", [{"text": f"t{i}", "label": [1, "1.0"][i % 2]} for i in range(4)]
    )
    val = write_jsonl_rows(tmp_path / "val.jsonl", [{"text": "v", "label": 1}, {"text": "w", "label": "1.0"}])
    test = write_jsonl_rows(tmp_path / "test.jsonl", [{"text": "u", "label": 1}, {"text": "x", "label": "1.0"}])
    assert prepare_with("--train", train, "--val", val, "--test", test, "--output_dir", tmp_path / "out") is None
    [line] = warning_lines(capsys)
    assert "'1' and '1.0'" in line and str(train) in line


# --- 2. duplicate ids ---


def test_a_duplicate_id_in_a_table_names_both_lines(tmp_path):
    rows = [f"n{i},文{i},{'ab'[i % 2]}" for i in range(20)]
    rows[12] = "n3,重複,a"  # line 14 repeats the id of line 5 (line 1 is the header)
    source = write_csv(tmp_path / "notes.csv", "id,text,label", rows)
    error = prepare_with("--input", source, "--output_dir", tmp_path / "out")
    assert error.startswith("prepare.py: error: ") and "\n" not in error
    assert f"{source}: id 'n3' on lines 5 and 14" in error
    assert [p.name for p in tmp_path.iterdir()] == ["notes.csv"]


def test_ids_may_repeat_across_pre_split_files_but_not_within_one(tmp_path):
    """An id pairs a record with its prediction within a split; files exported with per-file row numbers
    as ids repeat them across files, which is no error."""

    def rows(prefix, n):
        return [{"id": f"{prefix}{i}", "text": f"文{i}", "label": "ab"[i % 2]} for i in range(n)]

    train = write_jsonl_rows(tmp_path / "train.jsonl", rows("t", 6))
    val = write_jsonl_rows(tmp_path / "val.jsonl", rows("v", 2))
    test_rows = rows("s", 3)
    test_rows[2]["id"] = "t4"  # the id of train's line 5
    test = tmp_path / "test.jsonl"
    write_jsonl_rows(test, test_rows)
    assert prepare_with("--train", train, "--val", val, "--test", test, "--output_dir", tmp_path / "ok") is None
    test_rows[1]["id"] = "t4"
    write_jsonl_rows(test, test_rows)
    test.write_text("\n" + test.read_text(encoding="utf-8"), encoding="utf-8")  # a blank first line
    error = prepare_with("--train", train, "--val", val, "--test", test, "--output_dir", tmp_path / "out")
    assert f"{test}: id 't4' on lines 3 and 4" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_ids_are_compared_as_written(tmp_path):
    """JSON 1 and "1" are different ids (they are written out as they are); rows without an id get
    their row number and are not compared with the ids of other files."""
    rows = [{"id": [1, "1", 2, "2", 3, "3"][i], "text": f"文{i}", "label": "ab"[i % 2]} for i in range(6)]
    train = write_jsonl_rows(tmp_path / "train.jsonl", rows)
    val = write_jsonl_rows(tmp_path / "val.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])
    test = write_jsonl_rows(tmp_path / "test.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])
    assert prepare_with("--train", train, "--val", val, "--test", test, "--output_dir", tmp_path / "out") is None


def test_ids_that_share_a_hash_are_told_apart(tmp_path, monkeypatch):
    """Pass 1 keeps a hash per id: with every id given one hash, the files are read again to compare
    the ids themselves, which are distinct here, and then repeated."""
    from livedoor_classification import table_records

    monkeypatch.setattr(table_records, "hash", lambda key: 7, raising=False)
    source = write_csv(tmp_path / "n.csv", "id,text,label", [f"n{i},文{i},{'ab'[i % 2]}" for i in range(20)])
    assert prepare_with("--input", source, "--output_dir", tmp_path / "out") is None
    write_csv(source, "id,text,label", [f"n{i % 19},文{i},{'ab'[i % 2]}" for i in range(20)])
    error = prepare_with("--input", source, "--output_dir", tmp_path / "out")
    assert f"{source}: id 'n0' on lines 2 and 21" in error


# --- 3. one label ---


def test_a_table_with_one_label_is_refused(tmp_path):
    source = write_csv(tmp_path / "r.csv", "text,label", [f"文{i},良い" for i in range(10)])
    error = prepare_with("--input", source, "--output_dir", tmp_path / "out")
    assert f"{source}: every row has label '良い': a classifier needs at least two labels" in error
    assert "\n" not in error and not (tmp_path / "out").exists()


def test_pre_split_files_with_one_label_are_refused(tmp_path):
    paths = [write_jsonl_rows(tmp_path / f"{s}.jsonl", [{"text": "t", "label": 5}] * 3) for s in SPLITS]
    error = prepare_with(*(f"--{s}={p}" for s, p in zip(SPLITS, paths, strict=True)), "--output_dir", tmp_path / "o")
    assert f"{paths[0]}: every row has label '5': a classifier needs at least two labels" in error


def test_a_corpus_of_one_category_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", articles_per_category=3)
    for category in sorted(CATEGORIES)[1:]:
        shutil.rmtree(corpus / category)
    error = prepare_with("--input_dir", corpus, "--output_dir", tmp_path / "out")
    assert f"{corpus}: every article is in category 'dokujo-tsushin': a classifier needs at least two labels" in error


# --- 4. a label pre-split val or test lacks ---


def test_a_label_missing_from_val_or_test_is_one_warning_per_split(tmp_path, capsys):
    train = write_jsonl_rows(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": "abc"[i % 3]} for i in range(9)])
    val = write_jsonl_rows(tmp_path / "val.jsonl", [{"text": "v", "label": "a"}, {"text": "w", "label": "b"}])
    test = write_jsonl_rows(tmp_path / "test.jsonl", [{"text": "u", "label": "a"}, {"text": "x", "label": "c"}])
    assert prepare_with("--train", train, "--val", val, "--test", test, "--output_dir", tmp_path / "out") is None
    why = "scores cannot be measured; {0}'s macro averages leave it out unless predicted"
    assert warning_lines(capsys) == [
        f"prepare.py: warning: label 'c' of {train} has no example in {val}: its val {why.format('val')}",
        f"prepare.py: warning: label 'b' of {train} has no example in {test}: its test {why.format('test')}",
    ]


# --- 5. an empty category folder ---


@pytest.mark.parametrize("empty", ["a folder with only LICENSE.txt", "text/text from two downloads at once"])
def test_an_empty_category_folder_is_refused(tmp_path, empty):
    corpus = write_corpus(tmp_path / "corpus", articles_per_category=3)
    if empty == "a folder with only LICENSE.txt":
        folder = corpus / "smax"
        for path in folder.glob("smax-*.txt"):
            path.unlink()
    else:  # what `mv staging/text data/text` made of a second extraction: data/text/text/<category>/
        folder = corpus / "text"
        shutil.copytree(corpus / "smax", folder / "smax")
    result = run_script("src/prepare.py", "--input_dir", corpus, "--output_dir", tmp_path / "out", check=False)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert f"{folder}: a category folder with no articles" in result.stderr
    assert not (tmp_path / "out").exists()


# --- 6. the order the splits are written in ---

# The fixture corpus's val and test ids for seed 42, as prepare.py drew them before the written order
# was shuffled: the shuffle must not change which article goes where.
VAL_IDS = [int(i) for i in "5 19 28 34 40 49 60 70 91 92 100 109 120 128 153 155 162 172".split()]
TEST_IDS = [int(i) for i in "4 14 23 31 42 59 68 74 89 93 101 114 125 131 141 145 166 174".split()]


def test_splits_are_written_in_a_shuffled_order_and_the_split_is_unchanged(dataset_dir):
    splits = {split: read_jsonl(dataset_dir / f"{split}.jsonl") for split in SPLITS}
    # category order put 16 articles of one category first; shuffled, 18 rows cover most categories
    assert len({r["category"] for r in splits["train"][:18]}) >= 6
    assert len({r["category"] for r in splits["val"][:9]}) >= 5
    # the assignment of articles to splits is the one the seed always gave (ids by the code before the shuffle)
    assert sorted(r["id"] for r in splits["val"]) == VAL_IDS
    assert sorted(r["id"] for r in splits["test"]) == TEST_IDS
    all_ids = [r["id"] for r in read_jsonl(dataset_dir / "all.jsonl")]
    assert all_ids == list(range(len(all_ids)))  # all.jsonl stays in id order


# A table sorted by label, 40 rows each of A..E, and its val and test row numbers for seed 42 as
# prepare.py drew them before the written order was shuffled.
SORTED_VAL = [int(i) for i in "3 9 10 36 40 53 54 55 80 85 108 110 132 135 138 140 172 190 196 199".split()]
SORTED_TEST = [int(i) for i in "11 24 25 30 48 52 67 72 89 93 99 119 121 126 148 159 165 171 173 184".split()]


def test_a_table_sorted_by_label_is_written_shuffled_and_split_as_before(tmp_path):
    source = write_csv(tmp_path / "s.csv", "id,text,label", [f"r{i},文{i},{'ABCDE'[i // 40]}" for i in range(200)])
    for name in ("a", "b"):
        assert prepare_with("--input", source, "--output_dir", tmp_path / name) is None
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    splits = {split: read_jsonl(tmp_path / "a" / f"{split}.jsonl") for split in SPLITS}
    assert len({r["label"] for r in splits["train"][:10]}) >= 4  # in file order: all ten A
    assert sorted(int(r["id"][1:]) for r in splits["val"]) == SORTED_VAL
    assert sorted(int(r["id"][1:]) for r in splits["test"]) == SORTED_TEST
    assert sorted(r["id"] for split in SPLITS for r in splits[split]) == sorted(f"r{i}" for i in range(200))
    for record in (r for split in SPLITS for r in splits[split]):  # every line whole after the shuffle
        n = int(record["id"][1:])
        assert record == {"id": f"r{n}", "text": f"文{n}", "label": "ABCDE"[n // 40]}


# --- 7. the closing hint ---


def test_the_closing_hint_names_a_model(corpus_dir, tmp_path):
    import train

    model = train.Args.from_args([]).model_name  # train.py's default, which the hint spells out
    result = run_script("src/prepare.py", "--input_dir", corpus_dir, "--output_dir", tmp_path / "out")
    hint = result.stdout.strip().splitlines()[-1]
    assert hint == f"Train on it: python src/train.py --dataset_dir {tmp_path / 'out'} --model_name {model}"


def test_an_output_dir_it_cannot_write_is_one_line(tmp_path, own_filesystem):
    source = write_csv(tmp_path / "r.csv", "text,label", [f"文{i},{'ab'[i % 2]}" for i in range(6)])
    read_only = own_filesystem(read_only=True)
    error = prepare_with("--input", source, "--output_dir", read_only / "out")
    assert error == (
        f"prepare.py: error: cannot write {read_only / 'out'} (Read-only file system): "
        "give --output_dir (or --name) a folder you may write to, on a disk with room"
    )
