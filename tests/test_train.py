"""train.py on tiny local models: it learns, keeps the best epoch, and writes exactly what it promises."""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

import conftest
import train
from conftest import ROOT, run_dirs, run_script, train_argv
from livedoor_classification import evaluation, hardware
from livedoor_classification.dataset_files import read_jsonl, write_jsonl
from livedoor_classification.inputs import Collator, sorted_batches, subset
from livedoor_classification.models import usable_seq_len
from livedoor_classification.optimization import make_optimizer
from livedoor_classification.runs import is_complete

RUN_FILES = {
    "config.json",
    "log.csv",
    "val-metrics.json",
    "test-metrics.json",
    "val-predictions.jsonl",
    "test-predictions.jsonl",
}
FAST = ["--max_seq_len", "64", "--batch_size", "8", "--lr", "3e-3"]


def train_run(model_dir, dataset_dir, output_root, *extra, epochs=15):
    """conftest.train_run, FAST, for 15 epochs unless told; the only run under output_root."""
    run_dir = conftest.train_run(model_dir, dataset_dir, output_root, *FAST, "--epochs", epochs, *extra)
    assert run_dirs(output_root) == [run_dir]
    return run_dir


def read_log(run_dir) -> list[dict]:
    with open(run_dir / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_json(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def bert_run(bert_dir, dataset_dir, tmp_path_factory):
    """One complete run that several tests read; fp32 forced, so this is the plain path."""
    return train_run(bert_dir, dataset_dir, tmp_path_factory.mktemp("outputs"), "--precision", "fp32")


def test_bert_mecab_learns_far_above_chance(bert_run):
    # 9 balanced classes: chance is 0.11
    assert read_json(bert_run / "test-metrics.json")["accuracy"] >= 0.6
    assert max(row["val_accuracy"] for row in read_log(bert_run)) >= 0.6


def test_bf16_autocast_on_cpu_learns(roberta_dir, dataset_dir, tmp_path):
    run_dir = train_run(roberta_dir, dataset_dir, tmp_path, "--precision", "bf16")
    assert read_json(run_dir / "config.json")["precision_used"] == "bf16"
    assert read_json(run_dir / "test-metrics.json")["accuracy"] >= 0.6


def test_best_epoch_weights_are_evaluated_at_the_end(bert_run):
    log = read_log(bert_run)
    val = read_json(bert_run / "val-metrics.json")
    best = max(range(len(log)), key=lambda i: (log[i]["val_f1"], -i))  # first epoch with the best F1
    assert val["best_epoch"] == best + 1
    # the restored weights reproduce the best epoch's validation numbers, not the last epoch's
    for key in ("loss", "accuracy", "precision", "recall", "f1"):
        assert val[key] == pytest.approx(log[best][f"val_{key}"], abs=1e-9)


def test_val_is_predicted_once_an_epoch_and_its_best_logits_are_the_restored_weights(
    bert_dir, dataset_dir, tmp_path, monkeypatch
):
    """The last evaluation reuses the best epoch's val logits rather than predicting val again (a pass over it
    for nothing, issue #32): val is predicted once an epoch, test once; and the logits reused are bitwise those
    that the restored weights give (so the restore is still what the test split is predicted with)."""
    calls, compared = [], []
    predict, calibrated = evaluation.predict, evaluation.calibrated_evaluation

    def counting(model, loader, *args):
        calls.append(len(loader.dataset))
        return predict(model, loader, *args)

    def checking(model, loaders, autocast, device, names, threshold, val_logits=None):
        again = predict(model, loaders["val"], autocast, device, len(names))  # not counted: the oracle's own
        compared.append(torch.equal(again, val_logits))
        return calibrated(model, loaders, autocast, device, names, threshold, val_logits)

    monkeypatch.setattr(train, "predict", counting)
    monkeypatch.setattr(evaluation, "predict", counting)
    monkeypatch.setattr(train, "calibrated_evaluation", checking)
    run_dir = train_run(bert_dir, dataset_dir, tmp_path, "--precision", "fp32", epochs=3)
    sizes = read_json(run_dir / "config.json")["num_windows"]
    assert calls == [sizes["val"]] * 3 + [sizes["test"]] and compared == [True]


def test_outputs_hold_exactly_the_promised_files_and_keys(bert_run, bert_dir, dataset_dir):
    assert {p.name for p in bert_run.iterdir()} == RUN_FILES
    assert is_complete(bert_run)
    model_dir, date_dir = bert_run.parent.parent, bert_run.parent
    assert model_dir.name.startswith("tiny-bert-japanese") and len(date_dir.name) == 10
    config = read_json(bert_run / "config.json")
    assert config["model_name"] == str(bert_dir.resolve())  # a local model: one name however it was typed
    for key in (
        "model_name",
        "lr",
        "seed",
        "device_used",
        "precision_used",
        "precision_reason",
        "num_parameters",
        "trainable_parameters",
        "peak_memory_mib",
        "label2id",
        "max_seq_len_used",
        "versions",
        "git_commit",
        "start_time",
        "num_examples",
    ):
        assert key in config
    assert config["label2id"] == read_json(dataset_dir / "label2id.json")
    log = read_log(bert_run)
    assert len(log) == 15 and [row["epoch"] for row in log] == list(range(1, 16))
    assert set(log[0]) == {
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "val_f1",
        "max_lr",
        "epoch_seconds",
        "val_seconds",
        "train_samples_per_s",
        "train_tokens_per_s",
        "peak_memory_mib",
    }
    assert all(row["peak_memory_mib"] > 0 for row in log)
    # 18 steps an epoch, 10% of 270 steps warm up: the peak is reached in epoch 2, then decays linearly
    assert log[0]["max_lr"] < 3e-3 and log[1]["max_lr"] == pytest.approx(3e-3)
    assert all(a["max_lr"] > b["max_lr"] for a, b in zip(log[1:], log[2:], strict=False))
    assert log[-1]["max_lr"] == pytest.approx(3e-3 * 18 / 243)  # the last epoch's first step: 18 steps to go
    test = read_json(bert_run / "test-metrics.json")
    keys = {
        "best_epoch",
        "epochs_run",
        "loss",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "per_class",
        "confusion_matrix",
        *("ece", "mce", "nll", "reliability", "temperature", "uncalibrated"),  # calibration.py
    }
    assert set(test) == keys and test["epochs_run"] == 15
    assert set(test["uncalibrated"]) == {"ece", "mce", "nll", "reliability"}
    assert test["temperature"] == config["temperature"] > 0
    assert set(test["per_class"]) == set(config["label2id"])
    assert sum(c["support"] for c in test["per_class"].values()) == len(read_jsonl(dataset_dir / "test.jsonl"))
    assert sum(map(sum, test["confusion_matrix"])) == config["num_examples"]["test"]


def test_same_seed_same_metrics(bert_dir, dataset_dir, tmp_path):
    runs = [train_run(bert_dir, dataset_dir, tmp_path / name, "--precision", "fp32", epochs=3) for name in "ab"]
    logs = [read_log(run) for run in runs]
    for a, b in zip(*logs, strict=True):
        measured = ("_s", "memory")  # times and memory: the machine's, not the run's
        assert {k: v for k, v in a.items() if not any(m in k for m in measured)} == {
            k: v for k, v in b.items() if not any(m in k for m in measured)
        }


def test_single_text_field_grad_accum_and_checkpointing(roberta_dir, dataset_dir, tmp_path):
    # a dataset of its own with one text field and label names, as a user's task would have
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(dataset_dir / "label2id.json", own)
    for split in ("train", "val", "test"):
        records = read_jsonl(dataset_dir / f"{split}.jsonl")
        write_jsonl(own / f"{split}.jsonl", [{"text": r["title"], "label": r["category"]} for r in records])
    run_dir = train_run(
        roberta_dir,
        own,
        tmp_path / "out",
        "--text_fields",
        "text",
        "--grad_accum",
        "2",
        "--gradient_checkpointing",
        "--max_train_samples",  # a complete run is checked, not what it learns
        "32",
        epochs=2,
    )
    assert is_complete(run_dir)
    assert read_json(run_dir / "config.json")["text_fields"] == ["text"]


def test_interrupted_run_is_recognisably_incomplete(bert_dir, dataset_dir, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):  # at the end of the first epoch: a few examples do
        train_run(bert_dir, dataset_dir, tmp_path, "--max_train_samples", 16, epochs=2)
    (run_dir,) = run_dirs(tmp_path)
    assert (run_dir / "config.json").exists() and not is_complete(run_dir)


def test_every_1d_parameter_is_excluded_from_weight_decay(bert_dir, roberta_dir):
    for model_dir in (bert_dir, roberta_dir):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
        decay, no_decay = make_optimizer(model, lr=1e-3, weight_decay=0.01, fused=False).param_groups
        assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
        assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
        names = {id(p): n for n, p in model.named_parameters()}
        excluded = {names[id(p)] for p in no_decay["params"]}
        assert any("LayerNorm.weight" in n for n in excluded) and any(n.endswith(".bias") for n in excluded)
        assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_eval_loss_is_the_exact_mean_over_examples():
    torch.manual_seed(0)
    logits_table = torch.randn(11, 3)

    class TableModel(torch.nn.Module):  # returns fixed logits for the example ids in input_ids[:, 0]
        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(logits=logits_table[input_ids[:, 0]])

    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2]
    examples = [{"input_ids": [i] * (1 + i % 4), "label": labels[i], "document": i} for i in range(11)]
    batches = sorted_batches([len(e["input_ids"]) for e in examples], batch_size=4)  # sizes 4, 4, 3
    loader = torch.utils.data.DataLoader(examples, batch_sampler=batches, collate_fn=Collator(0, 16))
    logits = evaluation.predict(TableModel(), loader, partial(torch.autocast, "cpu", enabled=False), "cpu", 3)
    metrics, probabilities = evaluation.split_metrics(logits, loader.dataset, ["a", "b", "c"], None)
    # evaluated in length-sorted batches, returned in dataset order
    torch.testing.assert_close(probabilities, logits_table.softmax(dim=-1))
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits_table, torch.tensor(labels)).item(), rel=1e-6)
    assert metrics["accuracy"] == pytest.approx((logits_table.argmax(1) == torch.tensor(labels)).float().mean().item())


def test_max_seq_len_is_capped_by_the_model(bert_dir, roberta_dir):
    from transformers import AutoTokenizer

    for model_dir, limit in ((bert_dir, 128), (roberta_dir, 128)):  # RoBERTa: 130 positions - (pad id 1 + 1)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        assert usable_seq_len(512, model, tokenizer) == limit
        assert usable_seq_len(64, model, tokenizer) == 64


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no-dataset", "label2id.json not found: run `python src/prepare.py` first"),
        ("bad-label", "test.jsonl:1: label 'politics' is not in label2id.json"),
        ("empty-split", "val.jsonl is empty"),
        ("bad-json", "train.jsonl:1: not valid JSON"),
        ("text-field", "no text field 'headline'"),
        ("model-name", "the Hugging Face Hub could not be reached and no copy is cached"),
        ("model-dir", "not a loadable model directory"),
        ("model-path-missing", "no such directory"),
        ("no-tokenizer", "the tokenizer files are missing"),
        ("negative-lr", "--lr must be > 0 (got -0.001)"),
        ("zero-eval-batch", "--eval_batch_size must be >= 1 (got 0)"),
        ("warmup-too-long", "warmup steps of 18 leave none to train"),
        ("infinite-lr", "must be finite numbers (got inf or nan)"),
        ("output-root-is-a-file", "cannot create a run folder"),
    ],
)
def test_errors_are_one_clear_line_and_write_nothing(breakage, message, bert_dir, dataset_dir, tmp_path, in_process):
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    model, fields, extra = str(bert_dir), ["title", "body"], []
    if breakage == "no-dataset":
        shutil.rmtree(data)
    elif breakage == "bad-label":
        (data / "test.jsonl").write_text('{"title": "a", "body": "b", "label": "politics"}\n')
    elif breakage == "empty-split":
        (data / "val.jsonl").write_text("")
    elif breakage == "bad-json":
        (data / "train.jsonl").write_text("{not json\n")
    elif breakage == "text-field":
        fields = ["headline"]
    elif breakage == "model-name":
        model = "no-such-org/no-such-model"
    elif breakage == "no-tokenizer":  # a model saved without its tokenizer: transformers builds an empty one
        model = tmp_path / "model-only"
        model.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(bert_dir / name, model)
    elif breakage == "negative-lr":
        extra = ["--lr=-1e-3"]
    elif breakage == "zero-eval-batch":
        extra = ["--eval_batch_size", "0"]
    elif breakage == "model-path-missing":
        model = str(tmp_path / "no-such-model")
    elif breakage == "infinite-lr":  # inf > 0: it would train to nan and be recorded as a complete run
        extra = ["--lr", "inf"]
    elif breakage == "output-root-is-a-file":
        (tmp_path / "a-file").write_text("")
        extra = ["--output_root", tmp_path / "a-file"]
    elif breakage == "warmup-too-long":
        extra = ["--warmup_ratio", "0.99", "--batch_size", "8"]  # 18 steps in the single epoch
    else:
        model = str(tmp_path)  # a directory without a model
    argv = train_argv(model, data, tmp_path / "out", "--text_fields", *fields)
    argv += ["--epochs", "1", *extra]
    if breakage == "model-name":  # a process of its own: HF_HUB_OFFLINE is read at import, and the real exit path
        result = run_script("src/train.py", *argv, check=False)
    else:
        result = in_process(train, *argv, check_args=train.check_args)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: error:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_training_steps_do_not_sync_with_the_device_except_to_log(bert_dir, dataset_dir, monkeypatch):
    """.item() waits for the GPU: our loop may call it only at logging intervals and once per epoch.
    (The DataLoader's own .item() on a CPU seed tensor at the start of an epoch is not a device sync.)"""
    args = train.Args(
        model_name=str(bert_dir),
        dataset_dir=dataset_dir,
        batch_size=8,
        max_seq_len=64,
        log_every=5,
        device="cpu",
        precision="bf16",
    )
    run = train.setup(args, train.resolve_dataset(args))
    training, _ = train.build_training(run, args)
    loaders = run.loaders
    callers = []
    item = torch.Tensor.item

    def counting_item(tensor):
        callers.append(sys._getframe(1).f_code.co_filename)
        return item(tensor)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    train.train_epoch(training, loaders["train"])
    ours = [caller for caller in callers if "torch/utils/data" not in caller]
    assert len(loaders["train"]) == 18 and len(ours) == 18 // 5 + 1


def test_forced_fp32_is_recorded(bert_run):
    # bert_run forced fp32; an auto run records the measured decision and its reason
    config = read_json(bert_run / "config.json")
    assert (config["precision"], config["precision_used"]) == ("fp32", "fp32")
    assert config["precision_reason"] == "requested with --precision"


@pytest.fixture(scope="module")
def auto_run(bert_dir, dataset_dir, tmp_path_factory):
    """A 2-epoch run in the default --precision auto, which two tests read."""
    return train_run(bert_dir, dataset_dir, tmp_path_factory.mktemp("auto"), epochs=2)


def test_auto_precision_run_records_its_reason(auto_run):
    config = read_json(auto_run / "config.json")
    assert config["precision"] == "auto"  # the decision from what this CPU reports (tests/test_hardware.py)
    assert (config["precision_used"], config["precision_reason"]) == hardware.cpu_precision(hardware.cpu_features())


def test_load_errors_tell_the_name_from_the_network():
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from livedoor_classification.models import why_not_loaded

    # the Hub's exceptions, as transformers chains them (their constructors want an HTTP response)
    name_error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
    for cause, words in (
        (name_error, "no such model on the Hugging Face Hub"),
        (LocalEntryNotFoundError("offline"), "the Hugging Face Hub could not be reached"),
    ):
        error = OSError("wrapped by transformers")
        error.__cause__ = cause
        assert words in why_not_loaded(error, is_local=False)


def test_a_missing_tokenizer_dependency_is_named(bert_dir, monkeypatch):
    from livedoor_classification import models

    def needs_sentencepiece(*args, **kwargs):
        raise ImportError("this tokenizer requires the SentencePiece library")

    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", needs_sentencepiece)
    with pytest.raises(ValueError, match="a dependency of its tokenizer or model is missing: .*SentencePiece"):
        models.load_model(str(bert_dir), {"a": 0, "b": 1})


def test_a_short_run_trains_at_its_peak_rate(auto_run):
    """Warmup was 2 epochs whatever --epochs was: a 2-epoch run never reached its peak rate."""
    config = read_json(auto_run / "config.json")
    assert (config["warmup_steps"], config["total_steps"]) == (4, 36)  # 10% of 2 epochs of 18 steps
    assert read_log(auto_run)[0]["max_lr"] == pytest.approx(3e-3)


def test_steps_that_fp16_loss_scaling_skips_do_not_use_up_the_schedule(bert_dir, dataset_dir):
    args = train.Args(
        model_name=str(bert_dir),
        dataset_dir=dataset_dir,
        batch_size=8,
        max_seq_len=32,
        device="cpu",
        precision="fp16",
        max_train_samples=24,
    )
    run = train.setup(args, train.resolve_dataset(args))
    training, _ = train.build_training(run, args)
    loaders = run.loaders
    classifier = run.model.classifier.weight
    initial = classifier.detach().clone()
    with torch.no_grad():
        classifier.fill_(math.inf)  # every gradient overflows: GradScaler skips every step
    train.train_epoch(training, loaders["train"])
    assert training.scheduler.last_epoch == 0 and training.scaler.get_scale() < 2.0**16  # skipped, scale shrunk
    with torch.no_grad():
        classifier.copy_(initial)
    train.train_epoch(training, loaders["train"])
    assert training.scheduler.last_epoch == len(loaders["train"]) == 3  # every step taken


def test_ctrl_c_prints_one_line_naming_the_incomplete_run(bert_dir, dataset_dir, tmp_path):
    options = ["--epochs", "1000", "--max_seq_len", "32", "--precision", "fp32"]
    argv = [sys.executable, ROOT / "src" / "train.py", *train_argv(bert_dir, dataset_dir, tmp_path, *options)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        for line in process.stdout:
            if line.startswith("epoch 1:"):  # training is under way
                break
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
    (run_dir,) = run_dirs(tmp_path)
    # killed by SIGINT itself, so that a shell looping over runs (run.sh) stops too
    assert process.returncode == -signal.SIGINT and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted: {run_dir} is incomplete")
    assert not is_complete(run_dir)


def test_output_to_a_file_has_one_line_per_epoch_and_no_progress_bars(bert_dir, dataset_dir, tmp_path):
    # a few examples, in several batches: the lines printed are checked
    options = ["--epochs", "3", "--max_seq_len", "32", "--max_train_samples", "16", "--batch_size", "4"]
    options += ["--max_eval_samples", "9"]
    result = run_script("src/train.py", *train_argv(bert_dir, dataset_dir, tmp_path, *options))
    output = result.stdout + result.stderr
    assert "\r" not in output and "\x1b[" not in output
    assert [line.split(":")[0] for line in output.splitlines() if line.startswith("epoch ")] == [
        "epoch 1",
        "epoch 2",
        "epoch 3",
    ]


def test_a_mistyped_option_is_one_line(in_process):
    result = run_script("src/train.py", "--bogus", check=False)  # the real process's exit path, once
    errors = result.stderr.splitlines()
    assert result.returncode != 0 and len(errors) == 1 and errors[0].startswith("train.py: error:")
    for argv in (["--epochs", "1.5"], ["--bogus"], ["--lr=-1"]):
        result = in_process(train, *argv, check_args=train.check_args)
        errors = result.stderr.splitlines()
        assert result.returncode != 0 and len(errors) == 1 and errors[0].startswith("train.py: error:"), argv


def test_a_read_only_output_root_is_found_before_the_model_loads(own_filesystem, tmp_path, dataset_dir, in_process):
    read_only = own_filesystem(read_only=True)
    # the model folder is no model either: the output root's error must come first
    argv = train_argv(tmp_path, dataset_dir, read_only / "outputs")
    result = in_process(train, *argv, check_args=train.check_args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"train.py: error: --output_root {read_only / 'outputs'}: cannot create a run folder "
        f"({read_only}: cannot write here (Read-only file system))"
    )


def test_a_disk_that_fills_during_the_run_is_one_line_and_leaves_no_partial_file(
    own_filesystem, bert_dir, dataset_dir, in_process
):
    small = own_filesystem(size="64k")  # the run's JSON and CSV files fit; the model's weights do not
    argv = train_argv(bert_dir, dataset_dir, small, *FAST)
    options = ["--epochs", "2", "--save_model", "--max_train_samples", "16"]  # a few examples: the log is checked
    result = in_process(train, *argv, *options, check_args=train.check_args)
    (run_dir,) = run_dirs(small)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: error: {run_dir}: ") and "No space left on device" in line
    assert line.endswith("; the run is incomplete (no test-metrics.json)")
    assert not is_complete(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES - {"test-metrics.json"})  # no .tmp, no model
    assert len(read_log(run_dir)) == 2


def test_a_full_log_write_keeps_the_rows_before(tmp_path, own_filesystem):
    from conftest import fill
    from livedoor_classification.files import append_csv_row

    small = own_filesystem(size="64k")
    append_csv_row(small / "log.csv", {"epoch": 1, "loss": 0.5})
    append_csv_row(small / "log.csv", {"epoch": 2, "loss": 0.25})
    written = (small / "log.csv").read_bytes()
    with open(tmp_path / "oracle.csv", "w", newline="") as f:  # the csv module writing the rows at once
        writer = csv.DictWriter(f, ["epoch", "loss"])
        writer.writeheader()
        writer.writerows([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
    assert written == (tmp_path / "oracle.csv").read_bytes()
    fill(small)
    with pytest.raises(OSError):
        append_csv_row(small / "log.csv", {"epoch": 3, "loss": 0.125})
    assert (small / "log.csv").read_bytes() == written  # whole, as before the failed write
    assert [p.name for p in small.iterdir() if p.name != "filler"] == ["log.csv"]


def test_corrupted_weights_are_one_line(bert_dir, dataset_dir, tmp_path, in_process):
    model = tmp_path / "model"
    shutil.copytree(bert_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    argv = train_argv(model, dataset_dir, tmp_path / "out")
    result = in_process(train, *argv, check_args=train.check_args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: error: {model}: its weights (model.safetensors) are unreadable")
    assert not (tmp_path / "out").exists()


def test_max_samples_train_and_evaluate_on_a_subset_recorded_in_the_identity(
    bert_dir, dataset_dir, tmp_path, in_process
):
    from livedoor_classification.runs import run_identity

    run_dir = train_run(bert_dir, dataset_dir, tmp_path, "--max_train_samples", 20, "--max_eval_samples", 5, epochs=1)
    config = read_json(run_dir / "config.json")
    assert config["num_examples"] == {"train": 20, "val": 5, "test": 5}
    val = read_jsonl(dataset_dir / "val.jsonl")
    predicted = [json.loads(line) for line in (run_dir / "val-predictions.jsonl").read_text().splitlines()]
    # a fixed random sample, in the split's order: not its first lines (one class in a file sorted by label)
    ids = [r["id"] for r in val]
    chosen = [p["id"] for p in predicted]
    assert chosen != ids[:5] and sorted(chosen, key=ids.index) == chosen and len(set(chosen)) == 5
    assert len({p["label"] for p in predicted}) > 1
    assert {r["id"] for r in subset(val, 3)} < set(chosen) == {r["id"] for r in subset(val, 5)}  # nested
    assert run_identity(config)["max_train_samples"] == 20 and run_identity(config)["max_eval_samples"] == 5
    assert run_identity({})["max_train_samples"] is None  # a full run
    for option in ("--max_train_samples", "--max_eval_samples"):
        result = in_process(train, option, "0", check_args=train.check_args)
        assert result.returncode == 1 and f"{option} must be >= 1 (got 0)" in result.stderr


def test_ctrl_c_while_importing_is_one_line(tmp_path):
    """Ctrl-C in the seconds train.py spends importing torch: no traceback through the import machinery."""
    process = subprocess.Popen(
        [sys.executable, "src/train.py", "--epochs", "1"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    import time

    # Inside `import torch`: its shared library is mapped (past argument parsing), and torch has seconds of
    # Python modules still to import. Waiting for that, not a fixed time, holds on a loaded machine too.
    maps = Path(f"/proc/{process.pid}/maps")
    while process.poll() is None and "libtorch" not in maps.read_text():
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT
    assert stderr.strip() == "train.py: interrupted while starting"
