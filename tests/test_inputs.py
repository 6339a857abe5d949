"""What the model is fed: truncation of long inputs for every kind of tokenizer, and the label rule."""

import json
import shutil

import pytest
from transformers import AutoTokenizer

from conftest import run_dirs, train_run
from livedoor_classification.dataset_files import label_id, label_names, load_split, read_jsonl, write_jsonl
from livedoor_classification.inputs import fit_pair, tokenize

LONG_TITLE = "映画監督が新しい映画を公開した" * 12  # about 180 characters: over any short budget


def test_fit_pair_gives_each_segment_half_and_the_rest_to_the_other():
    assert fit_pair(10, 1000, 62) == (10, 52)  # a short title is kept whole, as "only_second" would
    assert fit_pair(100, 1000, 62) == (31, 31)  # a long title: cut to its half, the body keeps the other
    assert fit_pair(100, 5, 62) == (57, 5)  # a short body leaves the title the rest
    assert fit_pair(3, 4, 62) == (3, 4)
    assert fit_pair(100, 0, 62) == (62, 0)  # one segment: all of the budget


def test_a_title_that_fits_is_tokenized_as_only_second_truncation_does(tokenizer, dataset_dir):
    """Our truncation changes nothing where the tokenizers' own was right: the title fits."""
    records = sorted(read_jsonl(dataset_dir / "train.jsonl"), key=lambda r: r["id"])[:40]  # short titles first
    examples = tokenize(records, tokenizer, ["title", "body"], 48, segment_ids=True)
    for record, example in zip(records, examples, strict=True):
        expected = tokenizer(
            record["title"], record["body"], truncation="only_second", max_length=48, return_token_type_ids=True
        )
        assert example["input_ids"].tolist() == expected["input_ids"]
        assert example["token_type_ids"].tolist() == expected["token_type_ids"]


@pytest.mark.parametrize("max_seq_len", [16, 32])
def test_a_title_longer_than_the_budget_is_cut_and_the_body_keeps_its_half(tokenizer, max_seq_len):
    records = [{"title": LONG_TITLE, "body": "家電の話題です。" * 30, "label": 0}]
    (example,) = tokenize(records, tokenizer, ["title", "body"], max_seq_len, segment_ids=True)
    ids = example["input_ids"].tolist()
    assert len(ids) == max_seq_len
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    budget = max_seq_len - tokenizer.num_special_tokens_to_add(pair=True)
    body = tokenizer.encode("家電の話題です。" * 30, add_special_tokens=False)
    body_share = budget - budget // 2  # the title gets budget // 2
    assert ids[-1 - body_share : -1] == body[:body_share]  # the body's first tokens survive
    if tokenizer.cls_token == "[CLS]":  # BERT: segment ids 0 for the title, 1 for the body and its [SEP]
        assert example["token_type_ids"].tolist().count(1) == body_share + 1


def test_one_long_field_is_cut_to_the_budget(tokenizer):
    (example,) = tokenize([{"text": LONG_TITLE, "label": 0}], tokenizer, ["text"], 16, segment_ids=False)
    assert len(example["input_ids"]) == 16 and "token_type_ids" not in example


def test_char_model_trains_with_titles_longer_than_max_seq_len(char_bert_dir, dataset_dir, tmp_path):
    """Reported on the real corpus: a -char model at a short --max_seq_len crashed on long titles."""
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    for split in ("train", "val", "test"):
        records = read_jsonl(data / f"{split}.jsonl")
        write_jsonl(data / f"{split}.jsonl", [r | {"title": r["title"] + LONG_TITLE} for r in records])
    run_dir = train_run(
        char_bert_dir, data, tmp_path / "out", "--max_seq_len", "16", "--epochs", "1", "--batch_size", 16
    )
    assert run_dirs(tmp_path / "out") == [run_dir]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_seq_len_used"] == 16 and (run_dir / "test-metrics.json").is_file()


def test_a_tokenizer_failure_names_the_split_and_the_record(bert_dir, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    tokenize_words = type(tokenizer).tokenize

    def fails_on_bad(self, text, **kwargs):
        if "BAD" in text:
            raise Exception("Truncation error: Sequence to truncate too short")  # as the Rust tokenizers raise
        return tokenize_words(self, text, **kwargs)

    monkeypatch.setattr(type(tokenizer), "tokenize", fails_on_bad)
    records = [{"id": 7, "title": "ok", "label": 0}, {"id": 8, "title": "BAD", "label": 0}]
    with pytest.raises(ValueError, match=r"^val\.jsonl: the tokenizer failed on the record with id 8: Truncation"):
        tokenize(records, tokenizer, ["title"], 16, segment_ids=False, split="val")


def test_label_rule_names_first_then_ids():
    stars = {"1": 0, "2": 1, "3": 2}  # star ratings: the names are digit strings
    assert [label_id(v, stars) for v in (1, 2, 3, "3")] == [0, 1, 2, 2]  # an integer rating is a name
    assert label_id(0, stars) is None  # the names are integers, so integers are names: 0 is none of them
    # ids 0..2 written beside integer names: an error at id 0, never two classes silently merged
    assert [label_id(v, stars) for v in (0, 1, 2)] == [None, 0, 1]
    categories = {"sports": 0, "movie": 1}
    assert [label_id(v, categories) for v in ("movie", 1, 0)] == [1, 1, 0]
    assert [label_id(v, categories) for v in ("politics", 2, -1, True, 1.0, None)] == [None] * 6


def test_label_names_come_from_the_ids_not_the_key_order():
    assert label_names({"positive": 1, "negative": 0}) == ["negative", "positive"]


def test_star_ratings_load_as_names(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 3}\n')
    records = load_split(tmp_path, "train", {"1": 0, "2": 1, "3": 2}, ["text"], multi_label=False)
    assert [r["label"] for r in records] == [0, 2]


def test_per_class_scores_follow_the_ids_when_label2id_lists_them_out_of_order(bert_dir, dataset_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    label2id = json.loads((data / "label2id.json").read_text())
    (data / "label2id.json").write_text(json.dumps(dict(reversed(label2id.items())), ensure_ascii=False))
    # classes of unequal support, so that names swapped between classes show
    write_jsonl(data / "test.jsonl", [r for r in read_jsonl(data / "test.jsonl") if r["label"] < 3])
    run_dir = train_run(bert_dir, data, tmp_path / "out", "--max_seq_len", "32", "--epochs", "1")
    assert run_dirs(tmp_path / "out") == [run_dir]
    test = json.loads((run_dir / "test-metrics.json").read_text())
    records = read_jsonl(data / "test.jsonl")
    for name in label2id:
        assert test["per_class"][name]["support"] == sum(r["category"] == name for r in records)
