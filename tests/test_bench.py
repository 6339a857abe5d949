"""bench.py runs end to end and reports every section (speed targets are checked on full runs, not here)."""

import json
import math
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import pytest
import torch

import bench
import train
from conftest import ROOT
from livedoor_classification import hardware, train_process
from livedoor_classification.flops import non_embedding_parameters, step_flops
from livedoor_classification.synthetic import local_tokenizers, synthetic_records
from livedoor_classification.train_process import run_train


@pytest.fixture
def train_py_in_process(monkeypatch):
    """bench.py's train.py runs made in this process rather than one process each (a torch import fewer
    per run), for the tests of what bench reports; test_a_failing_train_py_run_is_one_line_with_its_error
    starts a real train.py process."""

    def run(command, env, **kwargs):
        assert command[:2] == [sys.executable, str(ROOT / "src" / "train.py")]
        for key, value in env.items():
            if os.environ.get(key) != value:
                monkeypatch.setenv(key, value)
        args = train.Args.from_args(command[2:])
        train.check_args(args)
        train.main(args)
        return subprocess.CompletedProcess(command, 0, stderr="")

    monkeypatch.setattr(train_process, "subprocess", SimpleNamespace(run=run, PIPE=subprocess.PIPE))


@pytest.fixture
def small_peak(monkeypatch):
    """The model step's matmul peak measured on small matrices for a short time (bench.py: 2048, 1 s per
    precision): the tests check the report's arithmetic with it, not the peak."""
    monkeypatch.setattr(
        bench, "matmul_flops", lambda device, dtype, **_: hardware.matmul_flops(device, dtype, 256, 0.05)
    )


def test_bench_reports_every_section(bert_dir, tmp_path, monkeypatch, in_process, train_py_in_process, small_peak):
    """Every section but compile (a test below) and long_documents (another), at the smallest sizes:
    the tiny BERT of the fixtures in the model step, train.py runs of one or two epochs (in this process)."""
    output, temp = tmp_path / "bench.json", tmp_path / "tmp"
    temp.mkdir()
    sections = ["tokenization", "pipeline", "model_step", "precision_accuracy"]
    monkeypatch.setenv("TMPDIR", str(temp))  # for the train.py runs it starts
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # for its own working folder (read at the first use)
    result = in_process(  # in this process: its output and report, not its process, are checked here
        bench,
        *("--model_name", bert_dir, "--documents", "24", "--max_seq_len", "64"),
        *("--model_batch_size", "2", "--steps", "1", "--accuracy_records", "40", "--accuracy_epochs", "1"),
        *("--dataset_dir", tmp_path / "none", "--output", output, "--sections", *sections),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    assert report["lengths_from"].startswith("synthetic") and report["model"] == str(bert_dir)
    rates = ["mecab_documents_per_s", "fast_documents_per_s", "pipeline_samples_per_s", "naive_samples_per_s"]
    assert all(report[key] > 0 for key in rates + ["h100_samples_per_s_at_50pct"])
    assert 0 <= report["padding_grouped"] <= report["padding_random"] < 1
    assert 0 <= report["titles_padding_grouped"] <= report["titles_padding_random"] < 1
    assert 0 < report["mean_tokens_per_example"] <= 64
    steps = report["model_step"]
    assert [s["variant"] for s in steps] == ["as train.py", "as train.py", "attention dropout 0"]
    assert steps[0]["precision"] == "fp32" and all(s["device"] == "cpu" for s in steps)
    for step in steps:  # the peak is measured under whatever load there is: utilisation may exceed 1 here
        for part in ("train", "eval"):
            assert step[f"{part}_samples_per_s"] > 0 and step[f"{part}_tokens_per_s"] > step[f"{part}_samples_per_s"]
            assert step[f"{part}_utilisation"] == pytest.approx(step[f"{part}_flops"] / step["matmul_peak_flops"])
            assert step[f"{part}_flops"] > 0
        assert math.isfinite(step["first_epoch_extra_seconds"])
    accuracy = report["precision_accuracy"]
    assert [r["precision"] for r in accuracy][0] == "fp32" and len(accuracy) == 2
    assert all(0 <= r["val_accuracy"] <= 1 and r["epoch_seconds"] > 0 for r in accuracy)
    assert "compile" not in report and "long_documents" not in report  # only the sections asked for
    assert "failed" not in report and not list(temp.glob("bench-*"))  # its working folder is removed


def test_a_late_failure_keeps_what_was_measured_and_removes_the_working_folder(
    bert_dir, tmp_path, monkeypatch, small_peak, train_py_in_process
):
    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(the rest of the message)")

    monkeypatch.setattr(bench, "precision_accuracy", out_of_memory)  # the last section, minutes into a run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where mkdtemp makes the working folder
    (tmp_path / "tmp").mkdir()
    output = tmp_path / "bench.json"
    args = bench.Args(
        model_name=str(bert_dir),
        documents=24,
        max_seq_len=64,
        model_batch_size=2,
        steps=1,
        precisions=["fp32"],
        dataset_dir=tmp_path / "none",
        output=output,
        sections=["tokenization", "pipeline", "model_step", "precision_accuracy"],
    )
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    message = str(exit_.value.code)
    assert message.startswith("bench.py: error: section precision_accuracy failed") and "\n" not in message

    report = json.loads(output.read_text())
    error = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert report["failed"] == {"section": "precision_accuracy", "error": error}
    assert report["fast_documents_per_s"] > 0 and report["pipeline_samples_per_s"] > 0
    assert report["model"] == str(bert_dir) and report["model_step"][0]["precision"] == "fp32"
    assert [s["variant"] for s in report["model_step"]] == ["as train.py", "attention dropout 0"]
    assert "precision_accuracy" not in report
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_compile_section_says_when_compiling_pays_back(monkeypatch, tmp_path):
    """The arithmetic of the compile section, on made-up measurements (compiling BERT-base takes minutes;
    tests/test_train.py runs train.py --compile)."""
    rows = iter(
        [
            {"first_epoch_extra_seconds": 10.0, "train_samples_per_s": 1.0, "eval_samples_per_s": 4.0},  # eager
            {"first_epoch_extra_seconds": 130.0, "train_samples_per_s": 2.0, "eval_samples_per_s": 4.0},  # compiled
            {"first_epoch_extra_seconds": 130.0, "train_samples_per_s": 3.0, "eval_samples_per_s": 5.0},  # no dropout
        ]
    )
    monkeypatch.setattr(bench, "model_step", lambda *args, **kwargs: next(rows))
    monkeypatch.setattr(bench, "bert_base", lambda: None)
    monkeypatch.setattr(bench, "save_model", lambda model, tokenizer, folder, **changes: str(folder))
    report = bench.compile_section(bench.Args(), records=[], tokenizer=None, workdir=tmp_path)
    train_examples, val_examples = bench.LIVEDOOR_EPOCH
    assert report["compile_seconds"] == 120.0 and report["compiled_train_speedup"] == 2.0
    assert report["livedoor_epoch_seconds_eager"] == train_examples / 1.0 + val_examples / 4.0
    assert report["compile_breaks_even_after_epochs"] == pytest.approx(120.0 / (train_examples / 2.0))


def test_the_long_documents_section_compares_the_three_ways_of_reading(tmp_path, train_py_in_process):
    records = synthetic_records(30, seed=2, label_rate=0.02)
    _, fast = local_tokenizers(records, tmp_path)
    rows = bench.long_documents(records, fast, max_seq_len=32, workdir=tmp_path, epochs=1)
    assert [row["mode"] for row in rows] == ["head", "head_tail", "windows 3"]
    assert all(row["max_seq_len"] == 32 and 0 <= row["test_accuracy"] <= 1 and row["seconds"] > 0 for row in rows)
    assert [row["train_windows_per_document"] > 1 for row in rows] == [False, False, True]


def test_a_failing_train_py_run_is_one_line_with_its_error(tmp_path):
    with pytest.raises(RuntimeError) as error:
        run_train(tmp_path / "outputs", model_name=str(tmp_path / "none"), dataset_dir=tmp_path / "none")
    message = str(error.value)
    assert message.startswith("train.py exited with status 1: train.py: error: ") and "\n" not in message


def test_a_failure_before_the_first_section_is_named_too(tmp_path, monkeypatch):
    def no_tokenizer(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(bench, "local_tokenizers", no_tokenizer)
    output = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_:
        bench.main(bench.Args(documents=8, dataset_dir=tmp_path / "none", output=output))
    assert str(exit_.value.code).startswith("bench.py: error: section setup failed (OSError: No space left")
    assert json.loads(output.read_text())["failed"]["section"] == "setup"


def test_a_steps_flops_count_the_dense_layers_per_token_and_attention_per_length_squared():
    """flops.py: what the model step's achieved FLOP/s and the H100 section divide by."""
    layers = torch.nn.ModuleDict({"embeddings": torch.nn.Embedding(10, 4), "dense": torch.nn.Linear(4, 4)})
    assert non_embedding_parameters(layers) == 4 * 4 + 4  # the lookup table does no multiply-adds
    config = SimpleNamespace(hidden_size=4, num_hidden_layers=2)
    forward = step_flops([2, 3], config, non_embedding_params=20, training=False)
    assert forward == 2 * 20 * (2 + 3) + 4 * 4 * 2 * (2 * 2 + 3 * 3)
    assert step_flops([2, 3], config, non_embedding_params=20, training=True) == 3 * forward  # with the backward


def test_the_trainer_section_runs_both_sides_on_the_same_steps_and_tokens(bert_dir, dataset_dir, tmp_path, in_process):
    """bench.py --sections trainer (issue #32) on the fixtures' tiny BERT and dataset, one round: a row for each
    side and a summary. The oracle that both trained the same configuration is the sides' own counts: the same
    optimizer steps (train.py's config.json, the Trainer's state) and the same training tokens as cut to the
    length (train.py's log.csv, the Trainer's attention masks). The ratio is the wall times'."""
    output = tmp_path / "bench.json"
    argv = ["--sections", "trainer", "--model_name", bert_dir, "--dataset_dir", dataset_dir, "--output", output]
    argv += ["--documents", 40, "--trainer_documents", 48, 12, 24, "--trainer_rounds", 1]
    result = in_process(bench, *argv, "--trainer_precisions", "fp32", "--trainer_seq_len", 48)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    ours, trainer = report["trainer_rounds"]
    assert (ours["side"], trainer["side"]) == ("train.py", "Trainer")
    assert ours["steps"] == trainer["steps"] == math.ceil(48 / 16)
    assert ours["train_tokens"] == trainer["train_tokens"] > 48
    (summary,) = report["trainer"]
    assert summary["ratio_median"] == pytest.approx(ours["wall_s"] / trainer["wall_s"])
    assert 0 <= trainer["test_accuracy"] <= 1 and trainer["peak_rss_mib"] > 100
    assert "ratio_median=" in result.stdout


def test_the_trainer_sections_counts_are_checked_before_anything_runs(tmp_path, in_process):
    output = tmp_path / "bench.json"
    argv = ["--sections", "trainer", "--trainer_rounds", 0, "--trainer_documents", 5, 0, 3, "--output", output]
    result = in_process(bench, *argv, check_args=bench.check_args)
    assert result.returncode == 1 and not output.exists()
    assert result.stderr == (
        "bench.py: error: --trainer_rounds must be >= 1 (got 0); --trainer_documents must be >= 1 (got 0)\n"
    )


def test_the_lora_section_runs_both_sides_on_the_same_steps_and_counts_the_adapters(tmp_path, in_process):
    """bench.py --sections lora (issue #30) on a tiny Llama shape: 2 layers of 128, so 2 heads of 64 and 1 key-value
    head. The oracle of the adapters is their analytic count at peft's default rank 8 on q_proj (128 -> 128) and
    v_proj (128 -> 64) in each layer, with the head (128 x 9, no bias) trained whole; LoRA keeps every weight of
    the full model (frozen) beside them, and peft's trained copy of the head beside the original."""
    output = tmp_path / "bench.json"
    argv = ["--sections", "lora", "--dataset_dir", tmp_path / "none", "--output", output, "--documents", 16]
    argv += ["--lora_layers", 2, "--lora_hidden", 128, "--lora_steps", 2, "--lora_batch_size", 4]
    result = in_process(bench, *argv, "--lora_seq_len", 32)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    full, lora = report["lora"]
    assert (full["side"], lora["side"]) == ("full", "LoRA r=8")
    assert full["steps"] == lora["steps"] == 2 and full["train_tokens"] == lora["train_tokens"] == 2 * 4 * 32
    assert full["trainable_parameters"] == full["num_parameters"]
    adapters, head = 2 * (8 * (128 + 128) + 8 * (128 + 64)), 128 * 9
    assert lora["trainable_parameters"] == adapters + head < full["num_parameters"]
    assert lora["num_parameters"] == full["num_parameters"] + adapters + head
    for side in (full, lora):
        assert side["precision"] == "fp32" and side["ms_per_step"] > 0
        assert side["peak_memory_mib"] > 100 and side["peak_rss_mib"] > 100
    assert report["lora_ms_per_step_ratio"] == pytest.approx(lora["ms_per_step"] / full["ms_per_step"])
    assert report["lora_peak_rss_ratio"] == pytest.approx(lora["peak_rss_mib"] / full["peak_rss_mib"])
    assert "side=LoRA r=8" in result.stdout and "lora_ms_per_step_ratio" in result.stdout
