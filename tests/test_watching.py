"""Watching a run whose output goes to a file (a sweep's log, nohup): progress lines during an epoch."""

import train
from conftest import train_run


def test_a_run_without_a_terminal_prints_progress_lines_during_the_epoch(
    bert_dir, dataset_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(train, "PROGRESS_SECONDS", 0)  # a line every step, rather than every 30 s
    options = ["--epochs", "1", "--max_seq_len", "32", "--batch_size", "4", "--max_train_samples", "12"]
    train_run(bert_dir, dataset_dir, tmp_path, *options, "--max_eval_samples", "4")
    out = capsys.readouterr().out  # not a terminal: no progress bar
    steps = [line for line in out.splitlines() if line.startswith("  train step ")]
    assert [line.split(",")[0] for line in steps] == [
        "  train step 1 of 3",
        "  train step 2 of 3",
        "  train step 3 of 3",
    ]
    assert out.index("  train step 3 of 3") < out.index("epoch 1:")  # during the epoch, before its line
