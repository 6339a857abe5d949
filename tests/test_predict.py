"""What a run leaves besides its metrics: per-example predictions, an opt-in model, and predict.py."""

import io
import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, pipeline

import predict
from conftest import ROOT, run_dirs, run_script, train_run
from livedoor_classification.dataset_files import read_jsonl
from test_calibration import ece_by_the_formula


@pytest.fixture(scope="module")
def saved_run(bert_dir, dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    options = ["--max_seq_len", 64, "--batch_size", 8, "--lr", "3e-3", "--epochs", 2, "--precision", "fp32"]
    train_run(bert_dir, dataset_dir, out, *options, "--eval_batch_size", 4, "--save_model")
    (run_dir,) = run_dirs(out)
    return run_dir


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("split", ["val", "test"])
def test_metrics_recomputed_from_the_predictions_equal_the_reported_ones(saved_run, dataset_dir, split):
    predictions = read_lines(saved_run / f"{split}-predictions.jsonl")
    metrics = json.loads((saved_run / f"{split}-metrics.json").read_text())
    gold, predicted = [p["label"] for p in predictions], [p["predicted"] for p in predictions]
    assert accuracy_score(gold, predicted) == metrics["accuracy"]
    names = list(json.loads((dataset_dir / "label2id.json").read_text()))
    assert f1_score(gold, predicted, labels=names, average="macro", zero_division=0) == pytest.approx(metrics["f1"])
    records = read_jsonl(dataset_dir / f"{split}.jsonl")  # every example once, in dataset order
    assert [p["id"] for p in predictions] == [r["id"] for r in records]
    assert all(set(p["probabilities"]) == set(names) for p in predictions)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-3 for p in predictions)


def test_the_saved_model_is_a_plain_hugging_face_model(saved_run, dataset_dir):
    model_dir = saved_run / "model"
    assert (model_dir / "model.safetensors").is_file() and not list(saved_run.glob(".model*"))
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in model_dir.iterdir()} == {0o666 & ~umask}  # safetensors wrote 0600
    label2id = json.loads((dataset_dir / "label2id.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.label2id == label2id
    classify = pipeline("text-classification", model=str(model_dir), device="cpu")
    (result,) = classify("サッカーの試合で選手がゴールを決めた")
    assert result["label"] in label2id and 0 < result["score"] <= 1


def test_predict_reproduces_the_runs_test_predictions(saved_run, dataset_dir, in_process):
    result = in_process(
        predict, saved_run / "model", "--input", dataset_dir / "test.jsonl", check_args=predict.check_args
    )
    assert result.returncode == 0
    predicted = [json.loads(line) for line in result.stdout.splitlines()]
    expected = read_lines(saved_run / "test-predictions.jsonl")
    keys = ("id", "predicted", "probabilities")  # the prediction files' names; "label" there is the gold label
    assert all(set(p) == set(keys) for p in predicted)
    assert [{key: p[key] for key in keys} for p in predicted] == [{key: e[key] for key in keys} for e in expected]


def test_predict_keeps_freed_memory_on_a_cpu(saved_run, dataset_dir, in_process, monkeypatch):
    devices = []
    monkeypatch.setattr(predict, "keep_freed_memory", devices.append)
    options = ["--input", dataset_dir / "val.jsonl", "--device", "cpu"]
    result = in_process(predict, saved_run / "model", *options, check_args=predict.check_args)
    assert result.returncode == 0 and devices == [torch.device("cpu")]


def calibration_from_lines(lines: list[dict]) -> tuple[float, float]:
    """ECE and MCE of a prediction file's (or predict.py's) lines, by the paper's formula (test_calibration)."""
    confidence = [line["probabilities"][line["predicted"]] for line in lines]
    return ece_by_the_formula(confidence, [line["label"] == line["predicted"] for line in lines])


@pytest.mark.parametrize("split", ["val", "test"])
def test_ece_and_mce_recomputed_from_the_predictions_equal_the_reported_ones(saved_run, split):
    metrics = json.loads((saved_run / f"{split}-metrics.json").read_text())
    ece, mce = calibration_from_lines(read_lines(saved_run / f"{split}-predictions.jsonl"))
    assert (metrics["ece"], metrics["mce"]) == pytest.approx((ece, mce), abs=1e-12)
    assert sum(metrics["reliability"]["count"]) == len(read_lines(saved_run / f"{split}-predictions.jsonl"))
    before = metrics["uncalibrated"]
    assert {"ece", "mce", "nll", "reliability"} <= set(before)
    if split == "val":  # T minimises the val NLL, and T = 1 was among the temperatures it chose from
        assert metrics["nll"] <= before["nll"] + 1e-9


def test_the_temperature_is_fitted_on_val_logits_and_recorded_where_predictions_are_made(saved_run, dataset_dir):
    config = json.loads((saved_run / "config.json").read_text())
    settings = json.loads((saved_run / "model" / "predict.json").read_text())
    metrics = [json.loads((saved_run / f"{split}-metrics.json").read_text()) for split in ("val", "test")]
    temperature = config["temperature"]
    assert settings["temperature"] == temperature and all(m["temperature"] == temperature for m in metrics)
    # An independent fit on the val split's logits, as predict.py computes them without the temperature
    model_dir, cpu = saved_run / "model", torch.device("cpu")
    options = SimpleNamespace(input=dataset_dir / "val.jsonl", batch_size=None, precision=None, uncalibrated=True)
    records = predict.read_inputs(options.input, settings["text_fields"], settings["normalize"], None)
    tokenizer, model = predict.load_saved_model(model_dir, settings, cpu)
    raw = predict.probabilities(options, settings, records, settings["text_fields"], tokenizer, model, cpu)
    logits = np.log(raw.double().numpy())  # softmax(log p) = p: logits up to a constant per text
    labels = np.array([r["label"] for r in records])  # prepare.py writes label ids

    def nll(t):
        return -log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels].mean()

    assert temperature == pytest.approx(minimize_scalar(nll, bounds=(0.01, 100), method="bounded").x, abs=1e-3)
    assert metrics[0]["nll"] == pytest.approx(nll(temperature), abs=1e-4)  # the val NLL it minimised


def test_predict_gives_the_uncalibrated_probabilities_on_request(saved_run, dataset_dir, in_process):
    def predicted(*options) -> list[dict]:
        result = in_process(predict, saved_run / "model", "--input", dataset_dir / "test.jsonl", *options)
        assert result.returncode == 0, result.stderr
        labels = [r["category"] for r in read_jsonl(dataset_dir / "test.jsonl")]  # the label's name
        lines = zip(result.stdout.splitlines(), labels, strict=True)
        return [json.loads(line) | {"label": label} for line, label in lines]

    calibrated, raw = predicted(), predicted("--uncalibrated")
    assert [p["predicted"] for p in raw] == [p["predicted"] for p in calibrated]  # scaling changes no prediction
    assert raw != calibrated
    metrics = json.loads((saved_run / "test-metrics.json").read_text())
    ece, mce = calibration_from_lines(raw)  # the run's "uncalibrated" ECE is that of the model's own probabilities
    assert (metrics["uncalibrated"]["ece"], metrics["uncalibrated"]["mce"]) == pytest.approx((ece, mce), abs=1e-12)


def test_predict_reads_one_text_per_line_from_stdin(saved_run, dataset_dir, tmp_path, in_process):
    titles = [r["title"] for r in read_jsonl(dataset_dir / "test.jsonl")]
    command = [sys.executable, ROOT / "src" / "predict.py", saved_run / "model", "--text_columns", "title"]
    result = subprocess.run(command, input="\n".join(titles) + "\n", capture_output=True, text=True, check=True)
    predicted = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["id"] for p in predicted] == list(range(len(titles)))  # no ids: the lines' numbers, from 0
    # the same texts from a CSV file: the same predictions, in the same order
    (tmp_path / "titles.csv").write_text("title\n" + "\n".join(titles) + "\n", encoding="utf-8")
    from_file = in_process(
        predict,
        saved_run / "model",
        "--input",
        tmp_path / "titles.csv",
        "--text_columns",
        "title",
        check_args=predict.check_args,
    )
    assert from_file.returncode == 0
    assert [json.loads(line) for line in from_file.stdout.splitlines()] == predicted


def test_predict_refuses_a_folder_without_a_model(saved_run, tmp_path, in_process):
    result = in_process(predict, saved_run, check_args=predict.check_args)  # the run folder, not its model/
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("not a saved model (train.py --save_model writes <run folder>/model/)")


def test_a_copied_model_folder_predicts_alone_and_normalizes_as_training_did(
    roberta_dir, dataset_dir, tmp_path, in_process
):
    """The model folder is self-contained (predict.json), and raw text gets prepare.py's NFKC: full-width
    letters and digits and ideographic spaces give the predictions of the prepared text. (A byte-level
    BPE tokenizer does not normalize by itself; MeCab's BertJapaneseTokenizer would hide a missing NFKC.)
    The prepared text in a process of its own (nothing of this one's state), the raw text in this one."""
    options = ["--max_seq_len", 64, "--epochs", 3, "--lr", "3e-3", "--batch_size", 8, "--precision", "fp32"]
    train_run(roberta_dir, dataset_dir, tmp_path, *options, "--save_model")
    (run_dir,) = run_dirs(tmp_path)
    copy = tmp_path / "my-model"
    shutil.copytree(run_dir / "model", copy)
    shutil.rmtree(run_dir)  # nothing of the run is needed but its model folder
    records = read_jsonl(dataset_dir / "test.jsonl")[:6]
    raw = [r | {"title": "　" + r["title"].replace("NEWS", "ＮＥＷＳ").replace("12", "１２") + " "} for r in records]
    for name, rows in (("prepared", records), ("raw", raw)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    prepared = run_script(ROOT / "src" / "predict.py", copy, "--input", tmp_path / "prepared.jsonl")
    raw = in_process(predict, copy, "--input", tmp_path / "raw.jsonl", check_args=predict.check_args)
    assert raw.returncode == 0
    outputs = [prepared.stdout, raw.stdout]
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 6


def test_save_model_reruns_a_complete_run_that_has_no_model(bert_dir, dataset_dir, tmp_path):
    options = ["--max_seq_len", 32, "--epochs", 1, "--skip_if_done"]
    train_run(bert_dir, dataset_dir, tmp_path, *options)
    train_run(bert_dir, dataset_dir, tmp_path, *options, "--save_model")  # the run above has no model: not done
    train_run(bert_dir, dataset_dir, tmp_path, *options, "--save_model")  # now it is
    runs = run_dirs(tmp_path)
    assert len(runs) == 2 and [(run / "model").is_dir() for run in runs] == [False, True]


def predict_in_process(monkeypatch, capsys, stdin: str | None = None, **options) -> tuple[list[dict], str]:
    """predict.py's output lines and its stderr, run in this process (no second torch import)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    predict.main(predict.Args(**options))
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


EMPTY = {"predicted": None, "probabilities": None, "error": "empty text"}


def test_predict_writes_a_line_per_input_line_blank_lines_included(saved_run, dataset_dir, monkeypatch, capsys):
    """Outputs line up with inputs: a blank line of stdin gets a line saying so, not a silent skip."""
    titles = [r["title"] for r in read_jsonl(dataset_dir / "test.jsonl")[:2]]
    model = {"model_dir": saved_run / "model", "text_columns": ["title"]}
    alone, _ = predict_in_process(monkeypatch, capsys, "\n".join(titles) + "\n", **model)
    lines, _ = predict_in_process(monkeypatch, capsys, f"\n{titles[0]}\n \t\u3000\n{titles[1]}\n", **model)
    assert [line.pop("id") for line in lines] == [0, 1, 2, 3] and [line.pop("id") for line in alone] == [0, 1]
    assert lines == [EMPTY, alone[0], EMPTY, alone[1]]


def test_predict_marks_a_record_without_text(saved_run, dataset_dir, tmp_path, monkeypatch, capsys):
    """Every text field empty (after NFKC and stripping, as prepare.py cleans): no made-up label."""
    records = read_jsonl(dataset_dir / "test.jsonl")[:2]
    rows = [records[0], {"id": "empty", "title": "", "body": "\u3000 "}, records[1]]
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    lines, _ = predict_in_process(monkeypatch, capsys, model_dir=saved_run / "model", input=path)
    assert [line["id"] for line in lines] == [records[0]["id"], "empty", records[1]["id"]]
    assert (
        lines[1] == {"id": "empty"} | EMPTY and lines[0]["predicted"] is not None and lines[2]["predicted"] is not None
    )


def test_stdin_fills_the_field_the_user_chooses_and_says_which(saved_run, dataset_dir, tmp_path, monkeypatch, capsys):
    """A model of title + body fed plain lines sees titles only: stderr says so, --stdin_field picks the field."""
    body = read_jsonl(dataset_dir / "test.jsonl")[0]["body"].replace("\n", "")
    model_dir = saved_run / "model"
    _, stderr = predict_in_process(monkeypatch, capsys, body + "\n", model_dir=model_dir)
    assert (
        "predict.py: note: each line of standard input fills the 'title' field and leaves 'body' empty, though"
        " the model reads title + body; choose the field with --stdin_field"
    ) in stderr.splitlines()  # beside, on a machine without a GPU, the notice that the CPU is slow
    as_body, stderr = predict_in_process(monkeypatch, capsys, body, model_dir=model_dir, stdin_field="body")
    path = tmp_path / "body.jsonl"
    path.write_text(json.dumps({"title": "", "body": body}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert (
        "note:" not in stderr and as_body == predict_in_process(monkeypatch, capsys, model_dir=model_dir, input=path)[0]
    )
    with pytest.raises(SystemExit) as exited:
        predict_in_process(monkeypatch, capsys, body, model_dir=model_dir, stdin_field="text")
    assert exited.value.code == "predict.py: error: --stdin_field 'text' is not a text field of the model (title, body)"
    with pytest.raises(SystemExit) as exited:
        predict_in_process(monkeypatch, capsys, model_dir=model_dir, input=path, stdin_field="body")
    assert exited.value.code == (
        "predict.py: error: --stdin_field is for standard input; with --input, --text_columns names the columns"
    )


def test_predict_names_an_unreadable_weights_file(saved_run, dataset_dir, tmp_path, in_process):
    copy = tmp_path / "model"
    shutil.copytree(saved_run / "model", copy)
    weights = copy / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)  # an interrupted copy
    result = in_process(predict, copy, "--input", dataset_dir / "test.jsonl", check_args=predict.check_args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = result.stderr.splitlines()[-1]  # after, on a machine without a GPU, the notice that the CPU is slow
    assert error.startswith(f"predict.py: error: {weights} is unreadable (")
    assert error.endswith("): copy the model folder again, or save it again with train.py --save_model")


def test_a_field_that_is_not_text_is_named_as_such(saved_run, tmp_path, monkeypatch, capsys):
    path = tmp_path / "new.jsonl"
    path.write_text('{"title": "見出し", "body": 123}\n{"title": "見出し"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        predict_in_process(monkeypatch, capsys, model_dir=saved_run / "model", input=path)
    assert str(exit_.value.code) == f"predict.py: error: {path}:1: 'body' is int 123, not text"
    path.write_text('{"title": "見出し"}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        predict_in_process(monkeypatch, capsys, model_dir=saved_run / "model", input=path)
    assert "no text column 'body' (columns: title; give --text_columns)" in str(exit_.value.code)
