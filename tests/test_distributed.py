"""train.py under torchrun on CPU: 2 processes with the gloo backend, on one "node" or on two."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from conftest import ROOT, run_dirs, run_script, train_argv
from livedoor_classification import distributed
from livedoor_classification.dataset_files import read_jsonl
from livedoor_classification.runs import is_complete

# transformers (and train and models, which import it) are imported inside the tests that use them: each
# process that spawn() starts imports this module, and a gather test should not wait seconds for them.

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
HANG = 120  # seconds after which a distributed test counts as hung, instead of blocking CI for gloo's 30 minutes


@pytest.fixture(scope="module")
def odd_dataset(dataset_dir, tmp_path_factory):
    """The fixture dataset with 17 validation examples: a size that 2 ranks cannot split evenly."""
    data = tmp_path_factory.mktemp("odd") / "livedoor"
    shutil.copytree(dataset_dir, data)
    lines = (data / "val.jsonl").read_text().splitlines(keepends=True)
    (data / "val.jsonl").write_text("".join(lines[:17]))
    return data


def torchrun(*argv, check=True):
    return run_script(*TORCHRUN, *argv, env={"OMP_NUM_THREADS": "1"}, check=check)


def test_the_sweep_launches_a_ddp_run_that_completes_with_one_output_folder(
    bert_dir, odd_dataset, tmp_path, sweep_python
):
    """run.sh with NPROC=2 runs train.py through torchrun (one launch checks both the sweep's launcher and
    the run it makes)."""
    env = {
        "MODELS": str(bert_dir),
        "LRS": "3e-3",
        "SEEDS": "1",
        "NPROC": "2",
        "PYTHON": sweep_python,
        "OMP_NUM_THREADS": "1",
        "TRAIN_ARGS": "--epochs 2 --max_seq_len 64 --batch_size 4 --eval_batch_size 4",
        "DATASET": str(odd_dataset),
        "OUTPUT_ROOT": str(tmp_path),
    }
    run_script(ROOT / "run.sh", env=env)
    (run_dir,) = (tmp_path / "livedoor" / bert_dir.name).glob("*/*")  # beside the baseline
    assert is_complete(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 8
    val = json.loads((run_dir / "val-metrics.json").read_text())
    assert sum(map(sum, val["confusion_matrix"])) == 17  # every example counted once
    assert sum(c["support"] for c in val["per_class"].values()) == 17
    log = (run_dir / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 epochs, written once (by rank 0 only)
    for split in ("val", "test"):  # predictions: every example once, in dataset order, as the metrics count them
        predictions = [json.loads(line) for line in (run_dir / f"{split}-predictions.jsonl").read_text().splitlines()]
        assert [p["id"] for p in predictions] == [r["id"] for r in read_jsonl(odd_dataset / f"{split}.jsonl")]
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        assert sum(p["label"] == p["predicted"] for p in predictions) / len(predictions) == metrics["accuracy"]


# Sharded evaluations cut the documents into windows: a document's windows, evaluated on different
# ranks, must still make one prediction (one window each is the special case).
WINDOWS = ["--windows", "3", "--max_seq_len", "16"]


@pytest.fixture(scope="module")
def single_process_metrics(bert_dir, odd_dataset, tmp_path_factory) -> dict:
    """evaluate_fixture.py's metrics from one process, to compare the sharded evaluations with."""
    output = tmp_path_factory.mktemp("single") / "single.json"
    # one thread, as torchrun sets it: the same kernels, so the same logits to the last bit
    run_script("tests/evaluate_fixture.py", bert_dir, odd_dataset, output, *WINDOWS, env={"OMP_NUM_THREADS": "1"})
    metrics = json.loads(output.read_text())
    assert metrics["num_windows"] > 17  # the 17 documents needed more than one window each
    return metrics


def assert_same_metrics(sharded: dict, single: dict) -> None:
    sharded, single = dict(sharded), dict(single)
    assert (sharded.pop("world_size"), single.pop("world_size")) == (2, 1)
    assert sharded.pop("loss") == pytest.approx(single.pop("loss"), rel=1e-5)
    assert sharded == single
    assert sum(map(sum, sharded["confusion_matrix"])) == 17


def test_sharded_evaluation_equals_single_process(bert_dir, odd_dataset, single_process_metrics, tmp_path):
    torchrun("tests/evaluate_fixture.py", bert_dir, odd_dataset, tmp_path / "ddp.json", *WINDOWS)
    assert_same_metrics(json.loads((tmp_path / "ddp.json").read_text()), single_process_metrics)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # port 0: the system picks a free one
        return s.getsockname()[1]


def two_nodes(*argv, logs) -> None:
    """Run a script as two machines of one process each would: two torchrun agents that meet at a c10d
    rendezvous. Each "node" has LOCAL_RANK 0; only RANK tells them apart."""
    rendezvous = ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # as conftest.run_script: the scripts find their modules themselves
    nodes = []
    try:
        for node_rank in (0, 1):
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                node_rank,
                *rendezvous,
                *argv,
            ]
            with open(logs / f"node{node_rank}.log", "w") as log:  # a file, not a pipe: a full pipe stalls a node
                # a session of its own, so that a hung node is killed together with its worker
                nodes.append(
                    subprocess.Popen(
                        list(map(str, command)), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
                    )
                )
        deadline = time.monotonic() + HANG
        for node in nodes:
            node.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"two-node run hung for {HANG} s:\n" + node_logs(logs))
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    if any(node.returncode for node in nodes):
        pytest.fail("two-node run failed:\n" + node_logs(logs))


def node_logs(logs) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in sorted(logs.glob("node*.log")))


def test_two_nodes_train_with_one_output_folder(bert_dir, odd_dataset, tmp_path):
    output = tmp_path / "outputs"
    options = ["--epochs", "1", "--max_seq_len", "32", "--batch_size", "4", "--eval_batch_size", "4"]
    two_nodes(
        "src/train.py",
        *train_argv(bert_dir, odd_dataset, output, *options),
        logs=tmp_path,
    )
    (run_dir,) = run_dirs(output)  # written by global rank 0 alone, though both nodes have LOCAL_RANK 0
    assert is_complete(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2
    for split in ("val", "test"):  # sharded by global rank: every example counted once
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        assert sum(map(sum, metrics["confusion_matrix"])) == config["num_examples"][split]
    assert config["num_examples"]["val"] == 17
    assert len((run_dir / "log.csv").read_text().splitlines()) == 2  # header + 1 epoch, written once


def test_two_nodes_evaluate_as_one_process(bert_dir, odd_dataset, single_process_metrics, tmp_path):
    two_nodes("tests/evaluate_fixture.py", bert_dir, odd_dataset, tmp_path / "nodes.json", *WINDOWS, logs=tmp_path)
    assert_same_metrics(json.loads((tmp_path / "nodes.json").read_text()), single_process_metrics)


def test_a_failing_job_exits_with_the_error(bert_dir, tmp_path):
    result = torchrun("src/train.py", "--model_name", bert_dir, "--dataset_dir", tmp_path / "none", check=False)
    assert result.returncode != 0
    assert "train.py: error:" in result.stderr and "run `python src/prepare.py` first" in result.stderr


def test_init_makes_this_process_gpu_current_before_joining(monkeypatch):
    """torch.cuda.current_device() is cuda:0 on every rank unless set: object collectives and barrier
    would put every rank's buffers on GPU 0 while NCCL is bound to cuda:LOCAL_RANK."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    gpu = torch.device("cuda", 1)
    distributed.init(gpu)
    assert calls == [("set_device", gpu), ("nccl", {"device_id": gpu})]
    calls.clear()
    distributed.init(torch.device("cpu"))  # gloo on the CPU: no GPU to choose
    assert calls == [("gloo", {"device_id": None})]


def spawn(worker, *args) -> None:
    """worker(rank, *args) in 2 processes joined by distributed.init as under torchrun (gloo); a failure
    in either fails the test with its traceback, a hang fails it after HANG seconds."""
    context = torch.multiprocessing.start_processes(
        joined, args=(free_port(), worker, *args), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + HANG
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} hung for {HANG} s")


def joined(rank: int, port: int, worker, *args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    try:
        worker(rank, *args)
    finally:
        distributed.finish()


def gather_uneven_tensors(rank: int) -> None:
    ids = torch.arange(3) if rank == 0 else torch.tensor([7])  # int64 example ids, 3 and 1 of them
    gathered = distributed.gather(ids)
    assert gathered.tolist() == [0, 1, 2, 7] and gathered.dtype == torch.int64
    probabilities = torch.full((2, 3), 0.5) if rank == 0 else torch.empty(0, 3)  # a rank without examples
    gathered = distributed.gather(probabilities)
    assert gathered.shape == (2, 3) and gathered.dtype == torch.float32 and (gathered == 0.5).all()
    with pytest.raises(ValueError, match="differ beyond dim 0"):  # on both ranks: no rank left waiting
        distributed.gather(torch.zeros(2, 3 + rank))


def test_gather_concatenates_uneven_tensors_in_rank_order():
    spawn(gather_uneven_tensors)


SWEEP_ARCHITECTURES = ["bert", "luke", "xlm-roberta", "modernbert", "deberta-v2"]  # run.sh's default models


def tiny_classifier(model_type: str):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model(model_type, num_labels=2, pad_token_id=0)
    small = {
        "vocab_size": 100,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "pooler_hidden_size": 32,
        "entity_vocab_size": 10,
        "entity_emb_size": 16,
    }
    for key, value in small.items():
        if hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


def unused_parameter_models() -> list[str]:
    from livedoor_classification.models import UNUSED_PARAMETER_MODELS

    return sorted(UNUSED_PARAMETER_MODELS - set(SWEEP_ARCHITECTURES))


@pytest.mark.parametrize("model_type", SWEEP_ARCHITECTURES + unused_parameter_models())
def test_the_unused_parameter_search_is_asked_for_where_text_leaves_parameters_unused(model_type):
    from livedoor_classification.models import needs_unused_parameter_search

    model = tiny_classifier(model_type)
    ids = torch.randint(5, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1])).loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert needs_unused_parameter_search(model) == bool(unused), unused


def two_steps(model: torch.nn.Module, optimizer) -> None:
    ids = torch.randint(5, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def tiny_luke():
    from transformers import LukeConfig, LukeForSequenceClassification

    config = LukeConfig(
        vocab_size=100,
        entity_vocab_size=10,
        hidden_size=32,
        entity_emb_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    return LukeForSequenceClassification(config)


def ddp_steps_by_architecture(rank: int) -> None:
    import train
    from livedoor_classification.inputs import Truncation

    args = train.Args(lr=1e-3)
    for model, search in ((tiny_luke(), True), (tiny_classifier("bert"), False)):
        batches = {"train": [None, None]}  # 2 batches an epoch, for the schedule
        run = train.Run(model, batches, torch.device("cpu"), "fp32", "", 64, Truncation(), None, None)
        training, _ = train.build_training(run, args)
        assert isinstance(training.ddp_model, DistributedDataParallel)
        assert training.ddp_model.find_unused_parameters is search, model.config.model_type  # only LUKE pays
        two_steps(training.ddp_model, training.optimizer)
    # LUKE without the search stops at its second step, still waiting for the entity parts' gradients
    model = DistributedDataParallel(tiny_luke(), broadcast_buffers=False)
    with pytest.raises(RuntimeError, match="finished reduction in the prior iteration"):
        two_steps(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_ddp_searches_for_unused_parameters_only_where_needed():
    spawn(ddp_steps_by_architecture)
