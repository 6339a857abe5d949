"""train.py under torchrun on CPU: 2 processes with the gloo backend."""

import json
import shutil
import sys

import pytest

from conftest import ROOT, run_script
from runs import is_complete

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


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


def test_ddp_run_completes_with_one_output_folder(bert_dir, odd_dataset, tmp_path):
    torchrun(
        "src/train.py", "--model_name", bert_dir, "--dataset_dir", odd_dataset, "--output_root", tmp_path,
        "--epochs", "2", "--max_seq_len", "64", "--batch_size", "4", "--eval_batch_size", "4", "--lr", "3e-3",
    )  # fmt: skip
    (run_dir,) = tmp_path.glob("*/*/*")
    assert is_complete(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 8
    val = json.loads((run_dir / "val-metrics.json").read_text())
    assert sum(map(sum, val["confusion_matrix"])) == 17  # every example counted once
    assert sum(c["support"] for c in val["per_class"].values()) == 17
    log = (run_dir / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + 2 epochs, written once (by rank 0 only)


def test_sharded_evaluation_equals_single_process(bert_dir, odd_dataset, tmp_path):
    torchrun("tests/evaluate_fixture.py", bert_dir, odd_dataset, tmp_path / "ddp.json")
    # one thread in both, as torchrun sets it: the same kernels, so the same logits to the last bit
    run_script(
        "tests/evaluate_fixture.py", bert_dir, odd_dataset, tmp_path / "single.json", env={"OMP_NUM_THREADS": "1"}
    )
    ddp, single = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ddp", "single"))
    assert (ddp.pop("world_size"), single.pop("world_size")) == (2, 1)
    assert ddp.pop("loss") == pytest.approx(single.pop("loss"), rel=1e-5)
    assert ddp == single
    assert sum(map(sum, ddp["confusion_matrix"])) == 17


def test_a_failing_job_exits_with_the_error(bert_dir, tmp_path):
    result = torchrun("src/train.py", "--model_name", bert_dir, "--dataset_dir", tmp_path / "none", check=False)
    assert result.returncode != 0
    assert "train.py: error:" in result.stderr and "run `python src/prepare.py` first" in result.stderr


def test_sweep_launches_runs_through_torchrun(bert_dir, dataset_dir, tmp_path):
    env = {
        "MODELS": str(bert_dir), "LRS": "3e-3", "SEEDS": "1", "NPROC": "2", "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "TRAIN_ARGS": f"--epochs 1 --max_seq_len 32 --dataset_dir {dataset_dir} --output_root {tmp_path}",
    }  # fmt: skip
    run_script(ROOT / "run.sh", env=env)
    (run_dir,) = tmp_path.glob("*/*/*")
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
