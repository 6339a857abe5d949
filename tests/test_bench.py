"""bench.py runs end to end and reports every section (speed targets are checked on full runs, not here)."""

import json
import tempfile

import pytest

import bench
from conftest import run_script


def test_bench_reports_every_section(tmp_path):
    output, temp = tmp_path / "bench.json", tmp_path / "tmp"
    temp.mkdir()
    run_script(
        "src/bench.py", "--documents", "64", "--max_seq_len", "64", "--model_batch_size", "2", "--steps", "1",
        "--accuracy_records", "300", "--dataset_dir", tmp_path / "none", "--output", output,
        env={"TMPDIR": str(temp)},
    )  # fmt: skip
    report = json.loads(output.read_text())
    assert report["lengths_from"].startswith("synthetic")
    rates = ["mecab_documents_per_s", "fast_documents_per_s", "pipeline_samples_per_s", "naive_samples_per_s"]
    assert all(report[key] > 0 for key in rates + ["h100_samples_per_s_at_50pct"])
    assert 0 <= report["padding_grouped"] <= report["padding_random"] < 1
    assert 0 <= report["titles_padding_grouped"] <= report["titles_padding_random"] < 1
    steps = report["model_step"]
    assert [s["variant"] for s in steps] == ["as train.py", "as train.py", "attention dropout 0"]
    assert steps[0]["precision"] == "fp32" and all(0 < s["train_utilisation"] < 1 for s in steps)
    assert [r["precision"] for r in report["precision_accuracy"]][0] == "fp32"
    assert "failed" not in report and not list(temp.glob("bench-*"))  # its working folder is removed


def test_a_late_failure_keeps_what_was_measured_and_removes_the_working_folder(bert_dir, tmp_path, monkeypatch):
    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(the rest of the message)")

    monkeypatch.setattr(bench, "precision_accuracy", out_of_memory)  # the last section, minutes into a run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where mkdtemp makes the working folder
    (tmp_path / "tmp").mkdir()
    output = tmp_path / "bench.json"
    args = bench.Args(model_name=str(bert_dir), documents=64, max_seq_len=64, model_batch_size=2, steps=1,
                      precisions=["fp32"], dataset_dir=tmp_path / "none", output=output)  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    message = str(exit_.value.code)
    assert message.startswith("bench.py: error: section precision_accuracy failed") and "\n" not in message

    report = json.loads(output.read_text())
    error = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert report["failed"] == {"section": "precision_accuracy", "error": error}
    assert report["fast_documents_per_s"] > 0 and report["pipeline_samples_per_s"] > 0
    assert report["model"] == str(bert_dir) and [s["precision"] for s in report["model_step"]] == ["fp32"]
    assert "precision_accuracy" not in report
    assert list((tmp_path / "tmp").iterdir()) == []
