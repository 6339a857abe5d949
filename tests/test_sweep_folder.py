"""The sweep's settings, configurations and records, as units: numbering, keys, --status's lines, the Slurm
array of what is left (sweep_settings.py, sweep_folder.py). run.sh's own tests: tests/test_sweep.py."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from livedoor_classification import sweep_folder, sweep_settings

DEFAULTS = {"DEFAULT_MODEL_LIST": "a/x b", "DEFAULT_LRS": "1e-5 3e-5", "DEFAULT_SEEDS": "42"}


def settings(**variables) -> sweep_settings.Settings:
    return sweep_settings.read([], DEFAULTS | variables)


def test_the_configurations_are_models_x_lrs_x_seeds_numbered_from_1_in_that_order():
    configurations = settings(SEEDS="1 2").configurations
    assert [(c.number, c.model, c.lr, c.seed) for c in configurations] == [
        (1, "a/x", "1e-5", "1"),
        (2, "a/x", "1e-5", "2"),
        (3, "a/x", "3e-5", "1"),
        (4, "a/x", "3e-5", "2"),
        (5, "b", "1e-5", "1"),
        (6, "b", "1e-5", "2"),
        (7, "b", "3e-5", "1"),
        (8, "b", "3e-5", "2"),
    ]
    assert configurations[0].name == "a/x lr=1e-5 seed=1"
    assert len(settings().configurations) == 4  # the defaults run.sh gives


def test_configuration_n_must_be_one_of_the_sweep():
    assert sweep_settings.read(["--configuration", "4"], DEFAULTS).number == 4
    with pytest.raises(sweep_settings.SettingError, match="--configuration 5: the sweep has 4 configurations"):
        sweep_settings.read(["--configuration", "5"], DEFAULTS)
    with pytest.raises(sweep_settings.SettingError, match="the sweep has 1 configuration "):
        sweep_settings.read(["--configuration", "2"], DEFAULTS | {"MODELS": "m", "LRS": "1"})
    with pytest.raises(sweep_settings.SettingError, match="--configuration takes a number"):
        sweep_settings.read(["--configuration", "0"], DEFAULTS)


def test_the_scripts_are_given_the_sweeps_dataset_output_root_and_text_fields():
    assert settings().shared_args == ["--dataset", "livedoor"]
    s = settings(DATASET="/data/tickets", OUTPUT_ROOT="/runs", TEXT_FIELDS="body title")
    assert s.dataset_args == ["--dataset_dir", "/data/tickets"]
    assert s.shared_args == s.dataset_args + ["--output_root", "/runs", "--text_fields", "body", "title"]


def test_gpus_in_groups_of_nproc_and_workers_on_gpu():
    assert settings(GPUS="0 1 2 3", NPROC="2").slots == ["0,1", "2,3"]
    assert settings(WORKERS="3", GPU="1").slots == ["1", "1", "1"]
    assert settings(WORKERS="2").slots == ["", ""]
    assert settings().slots == []


@pytest.mark.skipif(shutil.which("cksum") is None, reason="no cksum here")
@pytest.mark.parametrize("data", [b"", b"a", b"hello world\n", bytes(range(256)) * 5])
def test_the_keys_checksum_is_posix_cksums(data, tmp_path):
    """The keys of a sweep folder made when the sweep was bash (cksum) still name the same configurations."""
    (tmp_path / "data").write_bytes(data)
    expected = subprocess.run(["cksum", tmp_path / "data"], capture_output=True, text=True, check=True).stdout
    assert sweep_folder.cksum(data) == int(expected.split()[0])


def test_a_key_stands_for_everything_that_makes_the_run_and_is_a_file_name():
    variables = {
        "MODELS": "tohoku-nlp/bert-base-japanese-v3",
        "NPROC": "2",
        "SAVE_MODEL": "1",
        "TRAIN_ARGS": "--epochs 1",
    }
    s = settings(**variables)
    key = sweep_folder.configuration_key(s, s.configurations[0])
    assert key.startswith("tohoku-nlp__bert-base-japanese-v3_lr1e-5_seed42_") and key.rsplit("_", 1)[1].isdigit()
    for other in ({"NPROC": "1"}, {"SAVE_MODEL": "0"}, {"TRAIN_ARGS": "--epochs 2"}, {"OUTPUT_ROOT": "x"}):
        changed = settings(**(variables | other))
        assert sweep_folder.configuration_key(changed, changed.configurations[0]) != key, other
    odd = settings(MODELS="we:ird*name")
    assert sweep_folder.configuration_key(odd, odd.configurations[0]).startswith("we_ird_name_lr")
    assert sweep_folder.baseline_key(s).startswith("tfidf-char-linear_")


def test_the_array_of_what_is_left_is_in_ranges(tmp_path):
    assert sweep_folder.ranges([1, 2, 3, 7]) == "1-3,7"
    assert sweep_folder.ranges([2]) == "2" and sweep_folder.ranges([]) == ""
    assert sweep_folder.ranges([1, 3, 4, 6, 7, 8]) == "1,3-4,6-8"
    (tmp_path / "ended").mkdir()
    sweep_folder.record_end(tmp_path, "done", 0, 5, True, None)
    sweep_folder.record_end(tmp_path, "failed", 1, 5, True, None)
    assert sweep_folder.succeeded(tmp_path, "done") and not sweep_folder.succeeded(tmp_path, "failed")
    assert not sweep_folder.succeeded(tmp_path, "never")  # left: it never ended
    assert sweep_folder.failed(tmp_path, "failed") and not sweep_folder.failed(tmp_path, "never")


def test_an_ended_record_says_how_the_last_attempt_ended(tmp_path):
    (tmp_path / "ended").mkdir()
    sweep_folder.record_end(tmp_path, "key", 0, 75, False, Path("/runs/m/2026-01-01/00-00-00.0"))
    record = (tmp_path / "ended" / "key").read_text()
    assert record.startswith(f"exit=0 seconds=75 trained=0 host={os.uname().nodename} ended=20")
    assert record.endswith(" run=/runs/m/2026-01-01/00-00-00.0\n")
    assert list((tmp_path / "ended").iterdir()) == [tmp_path / "ended" / "key"]  # renamed into place


def sweep_dir_with(tmp_path: Path, records: dict[str, str], running: list[str]) -> Path:
    sweep_dir = tmp_path / ".sweep"
    for folder in ("claims", "ended"):
        (sweep_dir / folder).mkdir(parents=True)
    for key, record in records.items():
        (sweep_dir / "ended" / key).write_text(record + "\n")
    for key in running:  # held by this process
        (sweep_dir / "claims" / f"{key}.1").write_text(f"{os.uname().nodename} {os.getpid()} 2026-11-30T10:00:00 -\n")
    return sweep_dir


PLAN = ["baseline tfidf-char-linear_1", "k1 m 1e-5 1", "k2 m 1e-5 2", "k3 m 1e-5 3", "k4 m 1e-5 4", "k5 m 1e-5 5"]


def test_status_counts_done_running_failed_and_left_and_estimates_the_time_left(tmp_path):
    records = {
        "k1": "exit=0 seconds=100 trained=1 host=h ended=x",
        "k2": "exit=0 seconds=2 trained=0 host=h ended=x",  # found complete: no time of a run
        "k3": "exit=3 seconds=5 trained=1 host=h ended=x",
    }
    sweep_dir = sweep_dir_with(tmp_path, records, running=["k4"])
    lines = sweep_folder.status(sweep_dir, PLAN, 600)
    assert lines == [
        f"5 configurations in {sweep_dir}: 2 done, 1 running, 1 failed, 1 left",
        f"  running: m lr=1e-5 seed=4: on {os.uname().nodename} (pid {os.getpid()}) since 2026-11-30T10:00:00",
        f"  failed:  m lr=1e-5 seed=3: exit status 3, log: {sweep_dir}/logs/k3.log",
        "time left: about 2m30s (1m40s a run over 1 finished, 1 at a time)",  # the running one half done
    ]


def test_status_without_a_run_finished_or_running(tmp_path):
    sweep_dir = sweep_dir_with(tmp_path, {}, running=[])
    assert sweep_folder.status(sweep_dir, PLAN[:2], 600) == [
        f"1 configuration in {sweep_dir}: 0 done, 0 running, 0 failed, 1 left",
        "time left: unknown until a run has finished",
    ]
    sweep_dir = sweep_dir_with(tmp_path / "b", {"k1": "exit=0 seconds=3700 trained=1"}, running=[])
    assert sweep_folder.status(sweep_dir, PLAN[:3], 600)[-1] == (
        "time left: 1h01m a run (1 finished); nothing is running now"
    )
    sweep_dir = sweep_dir_with(tmp_path / "c", {"k1": "exit=0 seconds=3700 trained=1"}, running=[])
    assert sweep_folder.status(sweep_dir, PLAN[:2], 600) == [
        f"1 configuration in {sweep_dir}: 1 done, 0 running, 0 failed, 0 left"
    ]


def test_status_shows_the_baseline_and_the_summary_while_they_run(tmp_path):
    sweep_dir = sweep_dir_with(tmp_path, {"k1": "exit=0 seconds=1 trained=1"}, running=["tfidf-char-linear_1"])
    (sweep_dir / "summary").write_text(f"{os.uname().nodename} {os.getpid()} 2026-11-30T11:00:00 -\n")
    lines = sweep_folder.status(sweep_dir, PLAN[:2], 600)
    assert lines[1].startswith("  running: the TF-IDF baseline (src/baseline.py) on ")
    assert lines[2] == f"  running: the summary (src/aggregate.py) on {os.uname().nodename} (pid {os.getpid()}) " + (
        "since 2026-11-30T11:00:00"
    )


def test_the_plan_is_what_status_reads_without_the_sweeps_variables(tmp_path):
    s = settings(MODELS="m", LRS="1e-3", SEEDS="1 2")
    sweep_folder.write_plan(tmp_path, s)
    lines = (tmp_path / "plan").read_text().splitlines()
    assert lines == sweep_folder.plan(s) and lines[0] == f"baseline {sweep_folder.baseline_key(s)}"
    assert [line.split(" ", 1)[1] for line in lines[1:]] == ["m 1e-3 1", "m 1e-3 2"]
    assert sweep_folder.duration(59) == "59s" and sweep_folder.duration(185) == "3m05s"
