"""On a CUDA GPU: mixed precision, torch.compile, deterministic kernels, several GPUs; and, on every
device, gradient accumulation and compiling once for every length. The CUDA tests carry the `gpu` mark
(`pytest -m gpu` runs them alone, `-m "not gpu"` leaves them out) and are skipped where no GPU is
visible; the CPU cases run everywhere."""

import copy
import csv
import json
import math
import os
import shutil
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

import conftest
import train
from conftest import run_dirs, run_script, save_tiny_bert, train_run
from livedoor_classification import hardware
from livedoor_classification.dataset_files import read_jsonl, write_jsonl
from livedoor_classification.inputs import Collator, Truncation
from livedoor_classification.runs import is_complete

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = [pytest.mark.gpu, NEEDS_CUDA]
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]
FAST = ["--max_seq_len", "64", "--batch_size", "8", "--lr", "3e-3"]


def train_argv(bert_dir, dataset_dir, output_root, *extra) -> list[str]:
    return conftest.train_argv(bert_dir, dataset_dir, output_root, *FAST, *extra)


def read_json(path):
    return json.loads(path.read_text())


@pytest.mark.gpu
@NEEDS_CUDA
@pytest.mark.parametrize(
    "precision, extra", [("bf16", []), ("fp16", []), ("bf16", ["--compile"])], ids=["bf16", "fp16", "compile"]
)
def test_one_epoch_on_the_gpu(precision, extra, bert_dir, dataset_dir, tmp_path, monkeypatch):
    built = []
    build_training = train.build_training

    def recording(*args, **kwargs):
        training, schedule = build_training(*args, **kwargs)
        built.append(training)
        return training, schedule

    monkeypatch.setattr(train, "build_training", recording)
    options = ["--device", "cuda", "--precision", precision, "--epochs", "1", *extra]
    run_dir = train_run(bert_dir, dataset_dir, tmp_path, *FAST, *options)
    assert is_complete(run_dir)
    config = read_json(run_dir / "config.json")
    assert (config["device_used"], config["precision_used"]) == ("cuda:0", precision)
    assert built[0].scaler.is_enabled() == (precision == "fp16")  # loss scaling in fp16, and only there
    assert math.isfinite(read_json(run_dir / "test-metrics.json")["loss"])


@pytest.mark.gpu
@NEEDS_CUDA
def test_deterministic_runs_give_the_same_metrics(bert_dir, dataset_dir, tmp_path):
    """The README's promise: a seed gives the same metrics on the same device. Each run a process of its
    own, as users run them: --deterministic must come before CUDA's first matmul in that process."""
    for name in ("a", "b"):
        argv = train_argv(bert_dir, dataset_dir, tmp_path / name, "--device", "cuda", "--epochs", "2")
        run_script("src/train.py", *argv, "--precision", "bf16", "--deterministic")
    logs = []
    for name in ("a", "b"):
        (run_dir,) = run_dirs(tmp_path / name)
        with open(run_dir / "log.csv") as f:
            logs.append([{k: v for k, v in row.items() if "_s" not in k} for row in csv.DictReader(f)])  # not timings
        logs[-1].append(read_json(run_dir / "test-metrics.json"))
    assert logs[0] == logs[1]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_evaluate_as_one(bert_dir, dataset_dir, tmp_path):
    """NCCL on cuda:0 and cuda:1: the gathered predictions and labels must be every example's, once."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run_script(*torchrun, "tests/evaluate_fixture.py", bert_dir, dataset_dir, tmp_path / "ddp.json", "--device", "cuda")
    run_script("tests/evaluate_fixture.py", bert_dir, dataset_dir, tmp_path / "single.json", "--device", "cuda")
    ddp, single = read_json(tmp_path / "ddp.json"), read_json(tmp_path / "single.json")
    assert (ddp.pop("world_size"), single.pop("world_size")) == (2, 1)
    assert ddp.pop("loss") == pytest.approx(single.pop("loss"), rel=1e-5)
    assert ddp == single


@pytest.fixture(scope="module")
def varied_lengths(dataset_dir, tmp_path_factory):
    """The fixture dataset with bodies of 1 to 3 times their length: batches of several widths (the
    fixture's own articles all pad to 40 tokens)."""
    data = tmp_path_factory.mktemp("varied") / "livedoor"
    shutil.copytree(dataset_dir, data)
    for split in ("train", "val", "test"):
        records = read_jsonl(data / f"{split}.jsonl")
        write_jsonl(data / f"{split}.jsonl", [r | {"body": r["body"] * (1 + i % 3)} for i, r in enumerate(records)])
    return data


@pytest.fixture(scope="module")
def one_layer_bert(bert_dir, tmp_path_factory):
    """The tiny BERT with one layer, for the CPU: compiling traces and lowers every layer, and one is
    enough to see a recompilation for a new length (on 2 cores, 10 s less of the suite's longest test).
    On CUDA the test keeps two, where a recompilation per layer would show too."""
    out = tmp_path_factory.mktemp("one-layer-bert")
    shutil.copy(bert_dir / "vocab.txt", out)
    return save_tiny_bert(out, subword_tokenizer_type="wordpiece", layers=1)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_compiles_once_for_every_length(
    device, bert_dir, one_layer_bert, varied_lengths, tmp_path, monkeypatch
):
    """By default torch.compile compiled again at the second batch shape of training and of evaluation
    (with --compile the issue's run took 2.4x as long). With gradient checkpointing, which must compile
    too; compilations are counted by torch's own counters."""
    from torch._dynamo.utils import counters, guard_failures

    torch._dynamo.reset()
    counters.clear()
    compiled_before_epoch = []
    train_epoch = train.train_epoch

    def counting(*args, **kwargs):
        compiled_before_epoch.append(counters["frames"]["total"])  # recompilations included
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", counting)
    options = ["--compile", "--gradient_checkpointing", "--max_seq_len", "128", "--device", device, "--epochs", "2"]
    model = one_layer_bert if device == "cpu" else bert_dir
    run_dir = train_run(model, varied_lengths, tmp_path, *FAST, *options)
    assert is_complete(run_dir)
    assert compiled_before_epoch[1] == counters["frames"]["total"] > 0  # nothing compiled after epoch 1
    # the only recompilation: evaluation's graph, without gradients; none for a new batch shape
    reasons = [reason for failures in guard_failures.values() for reason in failures]
    assert len(reasons) == 1 and "grad_mode" in reasons[0]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_train_compiled(bert_dir, varied_lengths, tmp_path):
    """DDP and torch.compile together, with batches of several lengths."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    argv = train_argv(
        bert_dir, varied_lengths, tmp_path, "--device", "cuda", "--compile", "--max_seq_len", "128", "--epochs", "2"
    )
    run_script(*torchrun, "src/train.py", *argv)
    (run_dir,) = run_dirs(tmp_path)
    assert is_complete(run_dir) and read_json(run_dir / "config.json")["world_size"] == 2


def test_make_deterministic_sets_all_three_switches(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # restored after the test
    try:
        hardware.make_deterministic()
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)  # global state: leave it as the other tests expect it
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other setting cuBLAS allows: the user's choice
    try:
        hardware.make_deterministic()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.fixture
def full_fp32_matmuls():
    """train.main turns on TF32 for CUDA matmuls; an equivalence to fp tolerance needs true fp32."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def step_through(model, args, device, examples, batches: list[list[int]], pad_token_id: int):
    """train.train_epoch over the given batches of examples; one padded width for all of them, so that
    micro-batches and the large batches run the same sequence length."""
    collate = Collator(pad_token_id, args.max_seq_len, multiple_of=args.max_seq_len)
    loader = DataLoader(examples, batch_sampler=batches, collate_fn=collate)
    run = train.Run(model, {"train": loader}, device, "fp32", "", args.max_seq_len, Truncation(), None, None)
    training, _ = train.build_training(run, args)
    train.train_epoch(training, loader)
    return model.state_dict()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "sizes",
    [[4] * 8, [4] * 7 + [2]],
    ids=["equal-micro-batches", "short-last-micro-batch"],
)
def test_accumulating_k_micro_batches_steps_as_one_batch_k_times_larger(
    device, sizes, bert_dir, dataset_dir, full_fp32_matmuls
):
    """k = 3 over 8 micro-batches: groups of 3, 3 and an uneven last 2, each compared with one optimizer
    step on its examples as one batch. fp32 and no dropout, so that both runs compute the same function."""
    k = 3
    settings = dict(
        model_name=str(bert_dir),
        dataset_dir=dataset_dir,
        device=device,
        precision="fp32",
        max_seq_len=32,
        lr=1e-3,
        warmup_ratio=0.0,
        epochs=1,
        log_every=1000,
    )
    args = train.Args(grad_accum=k, **settings)
    run = train.setup(args, train.resolve_dataset(args))
    device, model, loaders = run.device, run.model, run.loaders
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # train_epoch puts the model in training mode: dropout off by its rate
    initial = copy.deepcopy(model.state_dict())
    examples, pad_token_id = loaders["train"].dataset, loaders["train"].collate_fn.pad_token_id
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    micro_batches = [list(range(start, start + size)) for start, size in zip(starts, sizes, strict=True)]
    groups = [sum(micro_batches[i : i + k], []) for i in range(0, len(micro_batches), k)]
    assert len(groups[-1]) < k * sizes[0]  # the last group is uneven

    reference_model = copy.deepcopy(model)
    accumulated = step_through(
        model, train.Args(grad_accum=k, **settings), device, examples, micro_batches, pad_token_id
    )
    reference = step_through(
        reference_model, train.Args(grad_accum=1, **settings), device, examples, groups, pad_token_id
    )
    assert any(not torch.equal(initial[name], value) for name, value in accumulated.items())  # it trained
    for name, value in accumulated.items():
        torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-6, msg=partial("{}: {}".format, name))
