"""runs.py: dataset fingerprints, run identity, --skip_if_done's search, JSON files others can read,
and the git state recorded in config.json."""

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import run_dirs, train_argv, train_run
from livedoor_classification import files, runs
from livedoor_classification.dataset_files import PreparedDataset, dataset_fingerprint
from livedoor_classification.files import write_json
from livedoor_classification.runs import find_complete_run, git_state, run_identity

SPLIT_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "label2id.json")


def write_dataset(folder: Path, train: str = '{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text(train)
    (folder / "val.jsonl").write_text('{"text": "c", "label": 0}\n')
    (folder / "test.jsonl").write_text('{"text": "d", "label": 1}\n')
    (folder / "label2id.json").write_text('{"x": 0, "y": 1}\n')
    return folder


def test_fingerprint_depends_on_the_bytes_only(tmp_path):
    here, there = write_dataset(tmp_path / "here"), write_dataset(tmp_path / "elsewhere" / "copy")
    fingerprint = dataset_fingerprint(here)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert dataset_fingerprint(there) == fingerprint  # the folder's name and place do not count
    (there / "all.jsonl").write_text("not one of the files that a run reads\n")
    assert dataset_fingerprint(there) == fingerprint


def test_fingerprint_changes_with_any_file_and_with_bytes_moved_between_files(tmp_path):
    fingerprint = dataset_fingerprint(write_dataset(tmp_path / "d"))
    moved = write_dataset(tmp_path / "moved", train='{"text": "a", "label": 0}\n')
    (moved / "val.jsonl").write_text('{"text": "b", "label": 1}\n{"text": "c", "label": 0}\n')
    assert dataset_fingerprint(moved) != fingerprint  # the same bytes in the same order, split differently
    relabelled = write_dataset(tmp_path / "relabelled")
    (relabelled / "label2id.json").write_text('{"y": 0, "x": 1}\n')
    assert dataset_fingerprint(relabelled) != fingerprint


def test_fingerprint_of_a_missing_file_is_a_one_line_error(tmp_path):
    dataset = write_dataset(tmp_path / "d")
    (dataset / "val.jsonl").unlink()
    with pytest.raises(ValueError, match=r"val\.jsonl not found: run `python src/prepare.py`") as error:
        dataset_fingerprint(dataset)
    assert "\n" not in str(error.value)


CONFIG = {  # config.json of a fine-tuning run, as train.py writes it (abridged)
    "model_name": "org/bert",
    "dataset_dir": "/data/livedoor",
    "dataset_fingerprint": "f" * 64,
    "text_fields": ["title", "body"],
    "batch_size": 8,
    "grad_accum": 2,
    "world_size": 2,
    "global_batch_size": 32,
    "eval_batch_size": 64,
    "epochs": 3,
    "lr": 3e-5,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "max_seq_len": 512,
    "max_seq_len_used": 510,
    "seed": 1,
    "device": "auto",
    "precision": "auto",
    "precision_used": "bf16",
    "compile": False,
    "gradient_checkpointing": False,
    "output_root": "/out",
    "log_every": 20,
    "skip_if_done": True,
    "num_parameters": 110_000_000,
}


def test_identity_is_the_data_and_the_settings_that_change_results():
    identity = run_identity(CONFIG)
    assert identity["dataset_fingerprint"] == "f" * 64 and identity["global_batch_size"] == 32
    assert identity["max_seq_len_used"] == 510 and identity["text_fields"] == ("title", "body")
    same_math = CONFIG | {
        "gradient_checkpointing": True,
        "compile": True,
        "eval_batch_size": 8,
        "batch_size": 16,
        "grad_accum": 1,
        "output_root": "/elsewhere",
        "dataset_dir": "/copy/livedoor",
    }
    assert run_identity(same_math) == identity
    for key, value in [
        ("dataset_fingerprint", "0" * 64),
        ("epochs", 4),
        ("global_batch_size", 64),
        ("max_seq_len_used", 256),
        ("text_fields", ["body"]),
        ("precision_used", "fp32"),
        ("warmup_ratio", 0.0),
        ("weight_decay", 0.0),
        ("max_grad_norm", 0.0),
        ("lr", 5e-5),
        ("seed", 2),
    ]:
        assert run_identity(CONFIG | {key: value}) != identity, key


def test_identity_of_a_config_that_lacks_keys():
    """A setting a run does not have (the baseline's lr, a model's n-grams) is None; the global batch of a
    run not yet started is worked out from its arguments."""
    baseline = run_identity({"model_name": "tfidf-char-linear", "ngram_max": 3})
    assert baseline["global_batch_size"] is None and baseline["lr"] is None and baseline["truncation"] is None
    planned = {k: v for k, v in CONFIG.items() if k != "global_batch_size"}
    assert run_identity(planned, requested=True)["global_batch_size"] == 32


def make_complete_run(output_root: Path, config: dict) -> Path:
    run_dir = runs.create_run_dir(output_root, config["model_name"])
    for name, data in [("config", config), ("val-metrics", {}), ("test-metrics", {})]:
        write_json(run_dir / f"{name}.json", data)
    return run_dir


def planned(config: dict) -> dict:
    """What train.py knows before it loads a model: its arguments, the dataset's fingerprint, the
    number of processes; not yet the resolved values."""
    return {k: v for k, v in config.items() if k not in ("max_seq_len_used", "precision_used", "global_batch_size")}


def test_find_complete_run_compares_the_identity(tmp_path):
    done = make_complete_run(tmp_path, CONFIG)
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG)) == done
    rerun = planned(CONFIG) | {"gradient_checkpointing": True, "log_every": 5, "skip_if_done": False}
    assert find_complete_run(tmp_path, "org/bert", rerun) == done
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG) | {"dataset_fingerprint": "0" * 64}) is None
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG) | {"epochs": 4}) is None
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG) | {"world_size": 1}) is None  # global batch 16
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG) | {"precision": "fp32"}) is None
    assert find_complete_run(tmp_path, "org/other", planned(CONFIG) | {"model_name": "org/other"}) is None


def test_find_complete_run_ignores_runs_of_a_dataset_prepared_again(tmp_path):
    """A run recorded before fingerprints existed is not proof that this dataset was trained on."""
    make_complete_run(tmp_path, {k: v for k, v in CONFIG.items() if k != "dataset_fingerprint"})
    assert find_complete_run(tmp_path, "org/bert", planned(CONFIG)) is None


@pytest.fixture
def umask():
    """Set the process's umask for one test, and restore it after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    """On a shared server colleagues must be able to read each other's runs: files get the mode any
    new file gets (0o666 less the umask), not mkstemp's private 0o600."""
    umask(mask)
    write_json(tmp_path / "config.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == mode
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 1}


@pytest.mark.parametrize("error", [TypeError, KeyboardInterrupt])
def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_whole(tmp_path, monkeypatch, error):
    write_json(tmp_path / "config.json", {"a": 1})

    def fail_after_writing(*args):  # the temporary file is written, the rename fails
        raise error("interrupted")

    monkeypatch.setattr(files.os, "replace", fail_after_writing)
    with pytest.raises(error):
        write_json(tmp_path / "config.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 1}


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_git_state_records_a_dirty_tree_and_a_hash_of_its_diff(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("lr = 3e-5\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    commit = git(tmp_path, "rev-parse", "HEAD").strip()
    assert git_state(tmp_path) == {"git_commit": commit, "git_dirty": False, "git_diff_sha256": None}

    (tmp_path / "train.py").write_text("lr = 5e-5\n")
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=tmp_path, capture_output=True, check=True).stdout
    state = git_state(tmp_path)
    assert state == {"git_commit": commit, "git_dirty": True, "git_diff_sha256": hashlib.sha256(diff).hexdigest()}
    (tmp_path / "train.py").write_text("lr = 1e-5\n")
    assert git_state(tmp_path)["git_diff_sha256"] != state["git_diff_sha256"]

    (tmp_path / "train.py").write_text("lr = 3e-5\n")
    (tmp_path / "notes.py").write_text("import train\n")  # untracked code can change results too
    assert git_state(tmp_path)["git_dirty"] is True


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}


def test_provenance_records_the_git_state():
    assert {"git_commit", "git_dirty", "git_diff_sha256", "versions", "start_time"} <= set(runs.provenance())


def test_max_samples_at_or_above_a_splits_size_is_the_whole_split(bert_dir, dataset_dir, tmp_path, in_process):
    """--max_train_samples 10**9 trains on the whole split: it is the run without the option, one identity (one
    row of results), and --skip_if_done finds either for the other; config.json keeps the value asked for."""
    import train

    paths = train_argv(bert_dir, dataset_dir, tmp_path)
    small = ["--max_seq_len", "32", "--epochs", "1", "--precision", "fp32"]
    whole = ["--max_train_samples", 10**9, "--max_eval_samples", 18]  # val and test: 18 examples each
    assert in_process(train, *paths, *small, *whole, check_args=train.check_args).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_examples"] == {"train": 144, "val": 18, "test": 18}
    assert (config["max_train_samples"], config["max_eval_samples"]) == (None, None)  # as without the options
    assert (config["max_train_samples_requested"], config["max_eval_samples_requested"]) == (10**9, 18)
    assert run_identity(config) == run_identity(config | {"max_train_samples": None, "max_eval_samples": None})
    for options in ([], whole):  # a later run without the options, and one with them again
        result = in_process(train, *paths, *small, *options, "--skip_if_done", check_args=train.check_args)
        assert result.returncode == 0 and f"already complete, skipped: {run_dir}" in result.stdout


def test_max_samples_below_a_splits_size_is_a_subset(tmp_path):
    """--max_eval_samples subsets val and test alike: it is the whole of them only if neither is larger."""
    from types import SimpleNamespace

    import train

    dataset = write_dataset(tmp_path / "d")  # train 2, val 1, test 1
    (dataset / "test.jsonl").write_text('{"text": "d", "label": 1}\n\n{"text": "e", "label": 0}\n')  # 2, a blank line
    for asked, used in [((2, 2), (None, None)), ((1, 1), (1, 1)), ((3, 2), (None, None)), ((None, None), (None, None))]:
        args = SimpleNamespace(dataset_dir=dataset, max_train_samples=asked[0], max_eval_samples=asked[1])
        requested = train.resolve_subsets(args, PreparedDataset(dataset))
        assert (args.max_train_samples, args.max_eval_samples) == used, asked
        assert requested == {"max_train_samples_requested": asked[0], "max_eval_samples_requested": asked[1]}


def test_a_run_hashes_its_dataset_once(bert_dir, dataset_dir, tmp_path, monkeypatch):
    """--skip_if_done and --resume compare the dataset's fingerprint, and config.json records it: one SHA-256
    over every split for all three (dataset_files.PreparedDataset)."""
    from livedoor_classification import dataset_files

    hashed, fingerprint = [], dataset_files.dataset_fingerprint
    monkeypatch.setattr(
        dataset_files, "dataset_fingerprint", lambda folder: hashed.append(folder) or fingerprint(folder)
    )
    options = ["--epochs", "1", "--max_seq_len", "32", "--max_train_samples", "8", "--max_eval_samples", "4"]
    run_dir = train_run(bert_dir, dataset_dir, tmp_path, *options, "--skip_if_done", "--resume")
    assert len(hashed) == 1 and json.loads((run_dir / "config.json").read_text())["dataset_fingerprint"]
