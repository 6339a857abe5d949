"""bench.py runs end to end and reports every section (speed targets are checked on full runs, not here)."""

import json

from conftest import run_script


def test_bench_reports_every_section(tmp_path):
    output = tmp_path / "bench.json"
    run_script(
        "src/bench.py", "--documents", "64", "--max_seq_len", "64", "--model_batch_size", "2", "--steps", "1",
        "--accuracy_records", "300", "--dataset_dir", tmp_path / "none", "--output", output,
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
