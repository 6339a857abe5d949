"""Long documents: --truncation head|tail|head_tail and --windows, from the tokens kept to one
prediction per document (in train.py, under torchrun, and in predict.py)."""

import json
import shutil

import pytest
import torch

import predict
import train
from conftest import run_dirs, train_run
from livedoor_classification.dataset_files import read_jsonl, write_jsonl
from livedoor_classification.evaluation import average_windows, first_windows
from livedoor_classification.inputs import Truncation, keep_spans, tokenize

TITLE = "映画の話題"
BODY = "".join(f"{word}の{number}回目の公開について紹介します。" for number in range(8) for word in ("監督", "家電"))
MAX_SEQ_LEN = 32


def test_keep_spans_of_each_mode():
    assert keep_spans(10, 20, Truncation("tail")) == [[(0, 10)]]  # a text that fits is kept whole, in every mode
    assert keep_spans(100, 20, Truncation("head")) == [[(0, 20)]]
    assert keep_spans(100, 20, Truncation("tail")) == [[(80, 100)]]
    assert keep_spans(100, 20, Truncation("head_tail")) == [[(0, 5), (85, 100)]]  # a quarter from the head
    assert keep_spans(100, 20, Truncation("head_tail", head_tokens=12)) == [[(0, 12), (92, 100)]]
    assert keep_spans(100, 20, Truncation("head_tail", head_tokens=0)) == [[(80, 100)]]  # no empty span
    assert keep_spans(100, 20, Truncation("head_tail", head_tokens=50)) == [[(0, 20)]]  # at most the room
    # windows: half a window apart by default; the last one ends with the text
    assert keep_spans(50, 20, Truncation(windows=9)) == [[(0, 20)], [(10, 30)], [(20, 40)], [(30, 50)]]
    assert keep_spans(50, 20, Truncation(windows=2)) == [[(0, 20)], [(10, 30)]]  # only the first N
    assert keep_spans(45, 20, Truncation(windows=9, window_stride=15)) == [[(0, 20)], [(15, 35)], [(25, 45)]]
    assert keep_spans(45, 20, Truncation(windows=9, window_stride=99)) == [[(0, 20)], [(20, 40)], [(25, 45)]]


def pair_layout(tokenizer, title: list[int], body: list[int]) -> tuple[list[int], list[int]]:
    """The input ids and segment ids of a title-body pair, written out for each model family."""
    if tokenizer.cls_token == "[CLS]":  # BERT: [CLS] title [SEP] body [SEP], segment 1 from the body on
        ids = [tokenizer.cls_token_id, *title, tokenizer.sep_token_id, *body, tokenizer.sep_token_id]
        return ids, [0] * (len(title) + 2) + [1] * (len(body) + 1)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id  # RoBERTa: <s> title </s></s> body </s>
    return [cls, *title, sep, sep, *body, sep], [0] * (len(title) + len(body) + 4)


@pytest.mark.parametrize(
    "truncation, body_parts",  # the parts of the body's tokens each window keeps, for a room of r tokens
    [
        (Truncation("head"), lambda b, r: [b[:r]]),
        (Truncation("tail"), lambda b, r: [b[-r:]]),
        (Truncation("head_tail"), lambda b, r: [b[: r // 4] + b[-(r - r // 4) :]]),
        (Truncation("head_tail", head_tokens=3), lambda b, r: [b[:3] + b[-(r - 3) :]]),
        (Truncation(windows=3), lambda b, r: [b[:r], b[r // 2 : r // 2 + r], b[2 * (r // 2) : 2 * (r // 2) + r]]),
        (Truncation(windows=3, window_stride=5), lambda b, r: [b[:r], b[5 : 5 + r], b[10 : 10 + r]]),
    ],
    ids=["head", "tail", "head_tail", "head_tail-3", "windows", "windows-stride-5"],
)
def test_each_mode_keeps_the_promised_tokens_with_the_title_and_special_tokens(tokenizer, truncation, body_parts):
    title = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(TITLE))
    body = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(BODY))
    room = MAX_SEQ_LEN - tokenizer.num_special_tokens_to_add(pair=True) - len(title)
    assert len(body) > 3 * room  # long enough for every window to be full
    records = [{"title": TITLE, "body": BODY, "label": 3, "id": "doc-7"}]
    examples = tokenize(records, tokenizer, ["title", "body"], MAX_SEQ_LEN, True, truncation=truncation)
    assert len(examples) == len(body_parts(body, room))
    for example, part in zip(examples, body_parts(body, room), strict=True):
        ids, segments = pair_layout(tokenizer, title, part)
        assert example["input_ids"].tolist() == ids and len(ids) == MAX_SEQ_LEN
        assert example["token_type_ids"].tolist() == segments
        assert (example["id"], example["label"], example["document"]) == ("doc-7", 3, 0)


def test_one_field_is_windowed_alone_and_short_texts_stay_one_example(bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    body = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(BODY))
    records = [{"body": BODY, "label": 0}, {"body": "家電の話題", "label": 1}, {"body": BODY, "label": 2}]
    examples = tokenize(records, tokenizer, ["body"], 16, False, truncation=Truncation(windows=2))
    assert [e["document"] for e in examples] == [0, 0, 1, 2, 2]
    assert [e["id"] for e in examples] == [0, 0, 1, 2, 2]  # a record's line in the split, not the window's
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert examples[1]["input_ids"].tolist() == [cls, *body[7:21], sep]  # room 14, stride 7
    assert [e["label"] for e in first_windows(examples)] == [0, 1, 2]


def test_windows_logits_are_averaged_per_document():
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, -1.0], [0.5, 0.5], [-2.0, 4.0]])
    averaged = average_windows(logits, [0, 0, 0, 1, 2])
    torch.testing.assert_close(averaged, torch.tensor([[3.0, 1 / 3], [0.5, 0.5], [-2.0, 4.0]]))
    assert torch.equal(average_windows(logits, range(5)), logits)  # one window each: unchanged, bit for bit


@pytest.mark.parametrize(
    "options, message",
    [
        (["--head_tokens", "10"], "--head_tokens must be >= 0, and given only with --truncation head_tail"),
        (["--truncation", "head_tail", "--head_tokens=-1"], "--head_tokens must be >= 0"),
        (["--truncation", "tail", "--windows", "2"], "--windows must be >= 1, and 1 unless --truncation head"),
        (["--windows", "0"], "--windows must be >= 1"),
        (["--window_stride", "8"], "--window_stride must be >= 1, and given only with --windows 2 or more"),
        (["--windows", "2", "--window_stride", "0"], "--window_stride must be >= 1"),
    ],
)
def test_options_that_cannot_go_together_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        train.check_args(train.Args.from_args(options))


@pytest.fixture(scope="module")
def windows_run(bert_dir, dataset_dir, tmp_path_factory):
    """A run with 3 windows per document at --max_seq_len 16, where the fixture's articles need them."""
    out = tmp_path_factory.mktemp("windows")
    options = ["--max_seq_len", "16", "--windows", "3", "--epochs", "2", "--lr", "3e-3", "--save_model"]
    run_dir = train_run(bert_dir, dataset_dir, out, *options)
    assert run_dirs(out) == [run_dir]
    return run_dir


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("split", ["val", "test"])
def test_windows_give_one_prediction_per_document(windows_run, dataset_dir, split):
    config = json.loads((windows_run / "config.json").read_text())
    records = read_jsonl(dataset_dir / f"{split}.jsonl")
    assert config["num_examples"][split] == len(records) < config["num_windows"][split]
    assert (config["windows"], config["truncation"]) == (3, "head")
    predictions = read_lines(windows_run / f"{split}-predictions.jsonl")
    assert [p["id"] for p in predictions] == [r["id"] for r in records]
    metrics = json.loads((windows_run / f"{split}-metrics.json").read_text())
    assert sum(c["support"] for c in metrics["per_class"].values()) == len(records)
    assert metrics["accuracy"] == sum(p["label"] == p["predicted"] for p in predictions) / len(records)
    assert json.loads((windows_run / "model" / "predict.json").read_text())["truncation"]["windows"] == 3


def test_predict_applies_the_runs_windows(windows_run, dataset_dir, tmp_path, capsys):
    def predicted(model_dir):
        predict.main(predict.Args(model_dir=model_dir, input=dataset_dir / "test.jsonl"))
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    expected = read_lines(windows_run / "test-predictions.jsonl")
    windowed = predicted(windows_run / "model")
    assert [(p["id"], p["probabilities"]) for p in windowed] == [(e["id"], e["probabilities"]) for e in expected]
    # the same texts cut to their head alone are predicted otherwise: predict.py did apply the windows
    head_only = tmp_path / "model"
    shutil.copytree(windows_run / "model", head_only)
    settings = json.loads((head_only / "predict.json").read_text())
    settings["truncation"]["windows"] = 1
    (head_only / "predict.json").write_text(json.dumps(settings))
    assert [p["probabilities"] for p in predicted(head_only)] != [p["probabilities"] for p in windowed]


def test_tail_and_head_tail_runs_record_their_mode(bert_dir, dataset_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    write_jsonl(data / "train.jsonl", read_jsonl(data / "train.jsonl")[:40])
    for options in (["--truncation", "tail"], ["--truncation", "head_tail", "--head_tokens", "2"]):
        train_run(bert_dir, data, tmp_path / "out", "--max_seq_len", "16", "--epochs", "1", *options)
    configs = [json.loads((run / "config.json").read_text()) for run in run_dirs(tmp_path / "out")]
    assert [(c["truncation"], c["head_tokens"]) for c in configs] == [("tail", None), ("head_tail", 2)]
    assert all(c["num_windows"] == c["num_examples"] for c in configs)
