"""The baseline, and aggregate.py's tables and plots (the sweep, run.sh, is tests/test_sweep.py's)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from sklearn.metrics import accuracy_score, f1_score

import aggregate
import baseline
from conftest import ROOT, run_dirs, run_script
from livedoor_classification import results_plots, results_reading, results_tables
from livedoor_classification.dataset_files import dataset_fingerprint, read_jsonl
from livedoor_classification.files import write_json
from livedoor_classification.runs import is_complete, model_dir_name, write_predictions
from test_calibration import ece_by_the_formula

DATASET = "livedoor"  # the fixture datasets' folder name, so their runs' folder under an output root
LABELS = {"a": 0, "b": 1}
FINGERPRINT = "0123456789abcdef" * 4
BASELINE = "tfidf-char-linear"
# In the made-up val and test splits: gold labels a, b, a, b, ... The first 2k examples wrong are k of
# each label, so that accuracy and macro-F1 are equal and exact for any score in whole points: the
# metrics files agree with the prediction files, as aggregate.py checks.
EXAMPLES = 200


def make_run(
    root: Path,
    model: str,
    lr: float | None,
    seed: int,
    val_f1: float,
    test_f1: float,
    stamp: str,
    errors: list[int] | None = None,
    ids: list | None = None,
    predictions: bool = True,
    **settings,
) -> Path:
    """A run folder as train.py (or, for BASELINE, baseline.py) writes it, with made-up numbers;
    settings replace or add config.json keys. Its prediction files (unless predictions=False, as
    older runs lack them) are wrong on the examples at errors: by default the first ones, as many as
    make the accuracy and the macro-F1 equal the F1 given."""
    run_dir = root / DATASET / model_dir_name(model) / "2026-01-01" / stamp
    run_dir.mkdir(parents=True)
    config = {
        "model_name": model,
        "dataset_dir": "/data/livedoor",
        "dataset_fingerprint": FINGERPRINT,
        "text_fields": ["title", "body"],
        "seed": seed,
        "label2id": LABELS,
        "num_parameters": 110_000_000,
    }
    config["num_examples"] = {"train": 800, "val": EXAMPLES, "test": EXAMPLES}
    if model == BASELINE:
        config |= {"ngram_min": 1, "ngram_max": 3, "max_features": 300_000, "c_values": [1.0, 10.0]}
    else:
        config |= {
            "lr": lr,
            "batch_size": 16,
            "grad_accum": 1,
            "world_size": 1,
            "global_batch_size": 16,
            "epochs": 2,
            "warmup_ratio": 0.1,
            "weight_decay": 0.01,
            "max_grad_norm": 1.0,
            "max_seq_len": 512,
            "max_seq_len_used": 512,
            "precision": "auto",
            "precision_used": "bf16",
            "truncation": "head",
            "head_tokens": None,
            "windows": 1,
            "window_stride": None,
        }
    write_json(run_dir / "config.json", config | settings)
    with open(run_dir / "log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["epoch", "C", "val_f1", "epoch_seconds"]
            if model == BASELINE
            else ["epoch", "train_loss", "val_f1", "epoch_seconds"]
        )
        writer.writerows([[1, 0.9, val_f1 - 0.1, 10.0], [2, 0.5, val_f1, 12.0]])
    metrics = {"accuracy": test_f1, "precision": test_f1, "recall": test_f1, "loss": 0.3}
    write_json(run_dir / "val-metrics.json", {"best_epoch": 2, **metrics, "accuracy": val_f1, "f1": val_f1})
    if predictions:
        write_made_up_predictions(run_dir / "val-predictions.jsonl", range(round((1 - val_f1) * EXAMPLES)), ids)
        errors = range(round((1 - test_f1) * EXAMPLES)) if errors is None else errors
        write_made_up_predictions(run_dir / "test-predictions.jsonl", errors, ids)
    write_json(run_dir / "test-metrics.json", {"best_epoch": 2, **metrics, "f1": test_f1})
    return run_dir


def write_made_up_predictions(path: Path, errors, ids: list | None = None) -> None:
    gold = np.arange(EXAMPLES) % 2
    predicted = gold.copy()
    predicted[list(errors)] = 1 - gold[list(errors)]
    write_predictions(path, ids or range(EXAMPLES), gold, np.eye(2)[predicted], list(LABELS))


@pytest.fixture
def outputs(tmp_path) -> Path:
    root = tmp_path / "outputs"
    # lr 3e-5 has the best single run on val (0.95), but 5e-5 the best mean over seeds (0.92 vs 0.85)
    for i, (lr, seed, val_f1, test_f1) in enumerate(
        [
            (3e-5, 1, 0.95, 0.90),
            (3e-5, 2, 0.75, 0.70),
            (3e-5, 3, 0.85, 0.80),
            (5e-5, 1, 0.92, 0.91),
            (5e-5, 2, 0.91, 0.93),
            (5e-5, 3, 0.93, 0.92),
        ]
    ):
        make_run(root, "org/bert", lr, seed, val_f1, test_f1, f"00-00-0{i}.000000")
    make_run(root, "tfidf-char-linear", None, 42, 0.80, 0.78, "00-00-00.000000")
    incomplete = make_run(root, "org/bert", 1e-5, 1, 0.99, 0.99, "00-01-00.000000")
    (incomplete / "test-metrics.json").unlink()
    corrupt = make_run(root, "org/other", 1e-5, 1, 0.99, 0.99, "00-02-00.000000")
    (corrupt / "val-metrics.json").write_text('{"best_epoch": 2, "f1"')
    return root


def test_aggregate_tables_and_plots(outputs, tmp_path, capsys):
    results = tmp_path / "results" / DATASET
    aggregate.main(aggregate.Args(output_root=outputs, results_dir=results.parent))
    printed = capsys.readouterr().out
    assert "00-01-00.000000: incomplete" in printed and "org__other" in printed and "unreadable" in printed

    all_runs = pd.read_csv(results / "all.csv")
    assert len(all_runs) == 7 and set(all_runs["model"]) == {"org/bert", BASELINE}
    assert all_runs.loc[all_runs["model"] == "org/bert", "train_seconds"].tolist() == [22.0] * 6

    best = pd.read_csv(results / "best.csv").set_index("model")
    assert best.loc["org/bert", "lr"] == 5e-5 and best.loc["org/bert", "seeds"] == 3
    assert best.loc["org/bert", "test_f1_mean"] == pytest.approx(0.92)
    assert best.loc["org/bert", "test_f1_std"] == pytest.approx(0.01)
    assert best.loc[BASELINE, "seeds"] == 1
    assert set(best["dataset_fingerprint"]) == {FINGERPRINT}

    table = (results / "results.md").read_text()
    assert table.startswith(f"## livedoor (dataset {FINGERPRINT[:12]})\n")
    assert "| Model | LR | Epochs | Max len | Batch | Params | Accuracy | Precision | Recall | F1 |" in table
    assert "| [org/bert](https://huggingface.co/org/bert) | 5e-05 | 2 | 512 | 16 | 110M | 92.00 ± 1.00 |" in table
    assert f"| {BASELINE} | – | – | – | – | 110M | 78.00 | 78.00 | 78.00 | 78.00 |" in table
    assert "text_fields title body" in table  # settings shared by every row are named under the table
    for plot in ("test_f1.png", "val_f1_per_epoch.png"):
        assert (results / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_aggregate_keeps_the_newest_of_repeated_runs(tmp_path, capsys):
    old = make_run(tmp_path, "org/bert", 3e-5, 1, 0.5, 0.5, "00-00-00.000000")
    new = make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-01.000000")
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    assert f"skipped {old}: {new} is a newer run of the same dataset and settings" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "results" / DATASET / "all.csv")["test_f1"].tolist() == [0.9]


def test_runs_of_other_settings_are_other_rows_with_their_settings_shown(tmp_path):
    """Same model, lr and seed, but more epochs, a longer max_seq_len or another batch: none of them
    may replace or be averaged with another."""
    variants = [{}, {"epochs": 4}, {"max_seq_len_used": 256}, {"global_batch_size": 32}, {"text_fields": ["body"]}]
    for i, settings in enumerate(variants):
        make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.80 + i / 100, f"00-00-0{i}.000000", **settings)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    assert len(pd.read_csv(tmp_path / "results" / DATASET / "all.csv")) == 5
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv")
    assert sorted(best["test_f1_mean"]) == pytest.approx([0.80, 0.81, 0.82, 0.83, 0.84]) and set(best["seeds"]) == {1}
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    assert "| Model | LR | Epochs | Max len | Batch | Text fields | Params |" in table
    link = "[org/bert](https://huggingface.co/org/bert)"
    for row in [
        "2 | 512 | 16 | title body | 110M | 80.00",
        "4 | 512 | 16 | title body | 110M | 81.00",
        "2 | 256 | 16 | title body | 110M | 82.00",
        "2 | 512 | 32 | title body | 110M | 83.00",
        "2 | 512 | 16 | body | 110M | 84.00",
    ]:
        assert f"| {link} | 3e-05 | {row} |" in table


def test_truncation_and_windows_are_settings_of_their_own(tmp_path):
    """Runs that read other tokens of their texts are rows of their own, with the settings as columns."""
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.81, "00-00-01.000000")
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.82, "00-00-02.000000", truncation="head_tail", head_tokens=64)
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.83, "00-00-03.000000", windows=4, window_stride=128)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    assert "| Model | LR | Epochs | Max len | Batch | Truncation | Head tokens | Windows | Stride | Params |" in table
    for row in [
        "head | – | 1 | – | 110M | 81.00",
        "head_tail | 64 | 1 | – | 110M | 82.00",
        "head | – | 4 | 128 | 110M | 83.00",
    ]:
        assert f"| 2 | 512 | 16 | {row} |" in table


def test_a_lora_run_is_a_row_of_its_own_with_its_rank_and_trained_parameters(tmp_path):
    """train.py --lora of the same model, lr and seed: its own row (the rank in the identity), with the parameters
    it trained beside the model's."""
    make_run(tmp_path, "org/llm", 3e-5, 1, 0.9, 0.81, "00-00-01.000000", num_parameters=1_100_000_000)
    lora = {"lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0, "lora_target_modules": None, "lora_4bit": False}
    make_run(
        tmp_path, "org/llm", 3e-5, 1, 0.9, 0.83, "00-00-02.000000",
        num_parameters=1_104_000_000, trainable_parameters=4_200_000, **lora,
    )  # fmt: skip
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv").set_index("test_f1_mean")
    assert best.loc[0.81, "trainable_parameters"] == 1_100_000_000 and pd.isna(best.loc[0.81, "lora_r"])
    assert best.loc[0.83, "trainable_parameters"] == 4_200_000 and best.loc[0.83, "lora_r"] == 16
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    assert "| Batch | LoRA r | LoRA alpha | LoRA dropout | 4-bit | Params |" in table
    assert "| 16 | – | – | – | – | 1.1B | 81.00" in table
    assert "| 16 | 16 | 32 | 0 | False | 1.1B (4M trained) | 83.00" in table


def test_the_lr_is_chosen_within_runs_of_the_same_settings(tmp_path):
    """At 2 epochs lr 5e-5 wins on val, at 4 epochs 3e-5 does: each setting gets its own choice."""
    for i, (lr, epochs, val_f1) in enumerate([(3e-5, 2, 0.80), (5e-5, 2, 0.90), (3e-5, 4, 0.95), (5e-5, 4, 0.70)]):
        make_run(tmp_path, "org/bert", lr, 1, val_f1, val_f1, f"00-00-0{i}.000000", epochs=epochs)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv").set_index("epochs")
    assert best.loc[2, "lr"] == 5e-5 and best.loc[4, "lr"] == 3e-5


def test_runs_on_different_datasets_are_never_in_one_table(tmp_path):
    other = "f" * 64
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.91, "00-00-00.000000")
    make_run(
        tmp_path,
        "org/bert",
        3e-5,
        1,
        0.9,
        0.61,
        "00-00-01.000000",
        dataset_fingerprint=other,
        dataset_dir="/data/reviews",
    )
    make_run(tmp_path, BASELINE, None, 42, 0.8, 0.78, "00-00-00.000000")
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    assert len(pd.read_csv(tmp_path / "results" / DATASET / "all.csv")) == 3
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv")
    assert sorted(best["test_f1_mean"]) == pytest.approx([0.61, 0.78, 0.91])
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    livedoor, reviews = table.split(f"## reviews (dataset {other[:12]})")
    assert livedoor.startswith(f"## livedoor (dataset {FINGERPRINT[:12]})")
    assert "91.00" in livedoor and BASELINE in livedoor and "61.00" not in livedoor
    assert "61.00" in reviews and BASELINE not in reviews and "91.00" not in reviews


def test_an_unreadable_log_is_reported_with_its_run_folder(tmp_path, capsys):
    good = make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    for i, text in enumerate(["", 'epoch,val_f1\n1,"0.5\n', "epoch,val_f1\n1,2,3,4\n"], start=1):
        bad = make_run(tmp_path, "org/bert", 3e-5, 1 + i, 0.9, 0.9, f"00-00-0{i}.000000")
        (bad / "log.csv").write_text(text)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3
    for i, line in enumerate(skipped, start=1):
        assert line.startswith(f"skipped {good.parent / f'00-00-0{i}.000000' / 'log.csv'}: unreadable")
    assert len(pd.read_csv(tmp_path / "results" / DATASET / "all.csv")) == 1


def test_all_csv_keeps_integer_columns_integer(outputs, tmp_path):
    aggregate.main(aggregate.Args(output_root=outputs, results_dir=tmp_path / "results"))
    all_runs = pd.read_csv(tmp_path / "results" / DATASET / "all.csv", dtype=str, keep_default_na=False)
    for column in ("seed", "batch_size", "epochs", "best_epoch", "max_seq_len", "num_parameters"):
        assert all(value == "" or value.isdigit() for value in all_runs[column]), (column, list(all_runs[column]))
    baseline_row = all_runs[all_runs["model"] == BASELINE].iloc[0]
    assert baseline_row["epochs"] == "" and baseline_row["seed"] == "42"


def test_plots_name_models_briefly_and_count_epochs_in_whole_numbers(tmp_path, monkeypatch):
    local_model = tmp_path / "models" / "my-bert"
    local_model.mkdir(parents=True)
    make_run(tmp_path / "outputs", str(local_model), 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    make_run(tmp_path / "outputs", "org/bert", 3e-5, 1, 0.8, 0.8, "00-00-00.000000")
    figures = []
    monkeypatch.setattr(results_plots.plt, "close", figures.append)
    aggregate.main(aggregate.Args(output_root=tmp_path / "outputs", results_dir=tmp_path / "results"))
    test_f1, per_epoch = figures[:2]
    bars = [label.get_text() for label in test_f1.axes[0].get_yticklabels()]
    assert sorted(bars) == ["my-bert", "org/bert"]
    (axes,) = per_epoch.axes
    assert sorted(text.get_text() for text in axes.get_legend().get_texts()) == [
        "my-bert (lr 3e-05)",
        "org/bert (lr 3e-05)",
    ]
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert str(tmp_path) not in (tmp_path / "results" / DATASET / "results.md").read_text()


def test_aggregate_marks_the_rows_that_the_best_row_is_not_distinguishable_from(tmp_path, monkeypatch, capsys):
    """On the same 200 test examples: org/close errs as often as the best row but on other examples (not
    distinguishable), the baseline on 60 more (distinguishable); org/old, of a version without prediction
    files, is left out with a line that says so."""
    root = tmp_path / "outputs"
    make_run(root, "org/bert", 3e-5, 1, 0.95, 0.90, "00-00-00.000000")  # wrong on examples 0-19
    make_run(root, "org/bert", 3e-5, 2, 0.90, 0.88, "00-00-01.000000")  # 0-23
    make_run(root, "org/close", 3e-5, 1, 0.90, 0.88, "00-00-00.000000", errors=range(20, 44))
    make_run(root, BASELINE, None, 42, 0.80, 0.60, "00-00-00.000000")  # 0-79
    make_run(root, "org/old", 3e-5, 1, 0.70, 0.50, "00-00-00.000000", predictions=False)
    figures = []
    monkeypatch.setattr(results_plots.plt, "close", figures.append)
    results = tmp_path / "results" / DATASET
    aggregate.main(aggregate.Args(output_root=root, results_dir=results.parent))
    old = next(root.glob(f"{DATASET}/org__old/*/*"))
    assert f"{old}: no val-predictions.jsonl (a run of an older version of this code): train it again" in (
        capsys.readouterr().out
    )

    best = pd.read_csv(results / "best.csv").set_index("model")
    assert list(best.index) == ["org/bert", "org/close", BASELINE]
    for model in ("org/bert", "org/close", BASELINE):
        for key in ("accuracy", "f1"):
            assert best.loc[model, f"test_{key}_ci_low"] < best.loc[model, f"test_{key}_mean"]
            assert best.loc[model, f"test_{key}_mean"] < best.loc[model, f"test_{key}_ci_high"]
    assert pd.isna(best.loc["org/bert", "f1_vs_best"])  # the best row itself
    gold = np.arange(EXAMPLES) % 2
    wrong_first = {errors: np.where(np.arange(EXAMPLES) < errors, 1 - gold, gold) for errors in (20, 24, 80)}
    f1 = {errors: f1_score(gold, predicted, average="macro") for errors, predicted in wrong_first.items()}
    assert best.loc[BASELINE, "f1_vs_best"] == pytest.approx(f1[80] - (f1[20] + f1[24]) / 2)
    assert best.loc[BASELINE, "f1_vs_best_high"] < 0 and best.loc[BASELINE, "differs_from_best"]
    assert best.loc["org/close", "f1_vs_best_low"] < 0 < best.loc["org/close", "f1_vs_best_high"]
    assert not best.loc["org/close", "differs_from_best"]

    table = (results / "results.md").read_text()
    fingerprint = FINGERPRINT[:12]
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert "| F1 | Accuracy 95% CI | F1 95% CI | F1 vs best |" in rows["| Model"]
    assert "| F1 | Accuracy 95% CI | F1 95% CI | F1 vs best | ECE | ECE 95% CI | ECE unscaled |" in rows["| Model"]
    assert rows["| [org/bert](https://huggingface.co/org/bert)"].split(" | ")[-4] == "best"  # then the ECE cells
    assert rows["| [org/close](https://huggingface.co/org/close)"].split(" | ")[-4].endswith(" ≈ best")
    assert "≈" not in rows[f"| {BASELINE}"] and "org/old" not in table
    assert "Koehn 2004" in table and f"![Confusion matrix](confusion_matrix_{fingerprint}.png)" in table

    # per class: the best row's seed with the best validation F1 (seed 1: 10 a's and 10 b's wrong of 200)
    assert "| Class | Precision | Recall | F1 | Support |" in table and "| a | 90.00 | 90.00 | 90.00 | 100 |" in table
    per_class = pd.read_csv(results / f"per_class_{fingerprint}.csv")
    assert per_class["class"].tolist() == ["a", "b"] and per_class["f1"].tolist() == pytest.approx([0.9, 0.9])
    assert (results / f"confusion_matrix_{fingerprint}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (axes,) = figures[-1].axes
    assert (
        [t.get_text() for t in axes.get_xticklabels()] == [t.get_text() for t in axes.get_yticklabels()] == ["a", "b"]
    )
    assert [t.get_text() for t in axes.texts] == ["90", "10", "10", "90"]
    assert "true" in axes.get_ylabel() and "predicted" in axes.get_xlabel()


def test_runs_on_other_test_examples_are_never_paired(tmp_path):
    """Without fingerprints (older runs) one section may hold two datasets: the example ids tell."""
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.90, "00-00-00.000000", dataset_fingerprint=None)
    make_run(
        tmp_path,
        "org/other",
        3e-5,
        1,
        0.9,
        0.80,
        "00-00-00.000000",
        dataset_fingerprint=None,
        ids=[f"r{i}" for i in range(EXAMPLES)],
    )
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv").set_index("model")
    assert best.loc["org/other", ["test_f1_ci_low", "test_f1_ci_high"]].notna().all()
    assert best.loc["org/other", ["f1_vs_best", "f1_vs_best_low", "differs_from_best"]].isna().all()
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    assert any("org/other" in line and "other test examples" in line for line in table.splitlines())


def saved_figures(monkeypatch) -> list:
    """The figures aggregate.py saves, in order, for a test to look at; closed as usual once saved."""
    figures, save = [], aggregate.save

    def save_and_keep(fig, path):
        figures.append(fig)
        save(fig, path)

    monkeypatch.setattr(aggregate, "save", save_and_keep)
    return figures


def test_a_smoke_run_is_marked_in_its_row_and_its_bar(tmp_path, monkeypatch):
    """train.py --max_train_samples or --max_eval_samples: numbers of a subset, said in the row itself."""
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.90, "00-00-00.000000")
    make_run(tmp_path, "org/small", 3e-5, 1, 0.9, 0.95, "00-00-00.000000", max_train_samples=100)
    make_run(tmp_path, "org/tiny", 3e-5, 1, 0.9, 0.90, "00-00-00.000000", max_eval_samples=EXAMPLES)
    figures = saved_figures(monkeypatch)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    table = (tmp_path / "results" / DATASET / "results.md").read_text()
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| [org/")}
    assert rows.keys() == {
        "| [org/bert](https://huggingface.co/org/bert)",
        "| [org/small](https://huggingface.co/org/small) (smoke test)",
        "| [org/tiny](https://huggingface.co/org/tiny) (smoke test)",
    }
    assert "org/small (smoke test): 100 training examples (--max_train_samples)" in table
    bars = [label.get_text() for label in figures[0].axes[0].get_yticklabels()]
    assert sorted(bars) == ["org/bert", "org/small (smoke test)", "org/tiny (smoke test)"]


def test_the_f1_plot_shows_the_tables_intervals_on_an_axis_from_zero(tmp_path, monkeypatch):
    """With one seed too (no spread across seeds): the error bars are the 95% bootstrap intervals."""
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.90, "00-00-00.000000")
    make_run(tmp_path, "org/other", 3e-5, 1, 0.9, 0.85, "00-00-00.000000")
    figures = saved_figures(monkeypatch)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    best = pd.read_csv(tmp_path / "results" / DATASET / "best.csv")
    (axes,) = figures[0].axes
    assert axes.get_xlim()[0] == 0  # bars from zero: their lengths compare as the scores do
    (errorbars,) = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    (segments,) = errorbars.lines[2]
    drawn = sorted((y, x0, x1) for (x0, y), (x1, _) in segments.get_segments())
    expected = [
        (y, low * 100, high * 100)
        for y, low, high in zip([1, 0], best["test_f1_ci_low"], best["test_f1_ci_high"], strict=True)  # best on top
    ]
    assert np.array(drawn) == pytest.approx(np.array(sorted(expected)))
    assert all(high > low for _, low, high in drawn)


def test_learning_rates_are_written_alike_and_counts_in_the_singular_or_plural(tmp_path, monkeypatch, capsys):
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.90, "00-00-00.000000")
    make_run(tmp_path, "org/other", 1e-3, 1, 0.9, 0.85, "00-00-00.000000")
    figures = saved_figures(monkeypatch)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    results = tmp_path / "results" / DATASET
    table = (results / "results.md").read_text()
    assert "| [org/bert](https://huggingface.co/org/bert) | 3e-05 |" in table
    assert "| [org/other](https://huggingface.co/org/other) | 1e-03 |" in table
    assert "(org/bert, lr 3e-05, seed 1)" in table
    for name in ("all.csv", "best.csv"):
        with open(results / name, newline="") as f:
            assert sorted(row["lr"] for row in csv.DictReader(f)) == ["1e-03", "3e-05"], name
    legend = sorted(text.get_text() for text in figures[1].axes[0].get_legend().get_texts())
    assert legend == ["org/bert (lr 3e-05)", "org/other (lr 1e-03)"]
    assert "1 seed per row" in table
    assert capsys.readouterr().out.endswith(f"2 runs, 2 rows, 1 dataset -> {results}\n")

    make_run(tmp_path, "org/bert", 3e-5, 2, 0.9, 0.90, "00-00-01.000000")
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    assert "1/2 seeds per row" in (results / "results.md").read_text()
    make_run(tmp_path / "one", "org/bert", 3e-5, 1, 0.9, 0.90, "00-00-00.000000")
    aggregate.main(aggregate.Args(output_root=tmp_path / "one", results_dir=tmp_path / "one-results"))
    assert capsys.readouterr().out.endswith(f"1 run, 1 row, 1 dataset -> {tmp_path / 'one-results' / DATASET}\n")


def test_aggregate_output_does_not_depend_on_the_working_directory(tmp_path):
    """Nor does a local path ever become a Hub link: one relative to where aggregate.py happens to run
    ("./local-bert", or "org/bert" where a folder org/bert exists) is a name like any other."""
    outputs = tmp_path / "outputs"
    for i, model in enumerate(["org/bert", "./local-bert", "../models/bert", str(tmp_path / "models" / "my-bert")]):
        make_run(outputs, model, 3e-5, 1, 0.9, 0.9 - i / 100, "00-00-00.000000")
    here = tmp_path / "elsewhere"
    for folder in ("org/bert", "local-bert"):
        (here / folder).mkdir(parents=True)
    (tmp_path / "models" / "my-bert").mkdir(parents=True)
    script = ROOT / "src" / "aggregate.py"
    run_script(script, "--output_root", outputs, "--results_dir", tmp_path / "a", cwd=here)
    run_script(script, "--output_root", "outputs", "--results_dir", "b", cwd=tmp_path)
    for name in ("all.csv", "best.csv", "results.md", f"per_class_{FINGERPRINT[:12]}.csv"):
        assert (tmp_path / "a" / DATASET / name).read_bytes() == (tmp_path / "b" / DATASET / name).read_bytes(), name
    table = (tmp_path / "a" / DATASET / "results.md").read_text()
    assert "[org/bert](https://huggingface.co/org/bert)" in table
    assert table.count("huggingface.co") == 1 and str(tmp_path) not in table


def test_aggregate_without_runs_is_an_error(tmp_path):
    result = run_script("src/aggregate.py", "--output_root", tmp_path, "--results_dir", tmp_path / "r", check=False)
    assert result.returncode != 0 and "no complete runs under" in result.stderr


def test_baseline_on_the_fixture_corpus(dataset_dir, tmp_path, monkeypatch):
    def write_json_after_the_predictions(path, data):  # a run is complete when test-metrics.json exists
        if path.name == "test-metrics.json":
            assert (path.parent / "val-predictions.jsonl").is_file() and (
                path.parent / "test-predictions.jsonl"
            ).is_file()
        write_json(path, data)

    monkeypatch.setattr(baseline, "write_json", write_json_after_the_predictions)
    baseline.main(baseline.Args(dataset_dir=dataset_dir, output_root=tmp_path, c_values=[1.0, 10.0]))
    (run_dir,) = tmp_path.glob(f"{DATASET}/tfidf-char-linear/*/*")
    assert is_complete(run_dir)
    test = json.loads((run_dir / "test-metrics.json").read_text())
    assert test["accuracy"] >= 0.9  # the categories have words of their own: easy for n-grams
    assert set(test) >= {"best_epoch", "loss", "accuracy", "precision", "recall", "f1", "per_class", "confusion_matrix"}
    row = results_reading.run_row(run_dir)
    assert row["model"] == "tfidf-char-linear" and row["lr"] is None
    assert row["truncation"] is None and row["windows"] is None  # whole texts: shown as "–", not "head" and 1
    for split in ("val", "test"):
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        lines = read_jsonl(run_dir / f"{split}-predictions.jsonl")
        assert [line["id"] for line in lines] == [record["id"] for record in read_jsonl(dataset_dir / f"{split}.jsonl")]
        gold, predicted = [line["label"] for line in lines], [line["predicted"] for line in lines]
        assert accuracy_score(gold, predicted) == metrics["accuracy"]
        occurring = sorted(set(gold) | set(predicted))  # a label neither in gold nor predicted has no F1
        assert f1_score(gold, predicted, labels=occurring, average="macro", zero_division=0) == metrics["f1"]
        assert set(lines[0]["probabilities"]) == set(metrics["per_class"])


def test_baseline_is_skipped_only_when_done_on_the_same_dataset(dataset_dir, tmp_path, capsys):
    """A baseline of one dataset must not make the baseline of another (here: one record fewer) look done."""
    other = tmp_path / "other"
    shutil.copytree(dataset_dir, other)
    train = (other / "train.jsonl").read_text().splitlines(keepends=True)
    (other / "train.jsonl").write_text("".join(train[1:]))
    args = {"output_root": tmp_path / "out", "c_values": [1.0], "skip_if_done": True}
    baseline.main(baseline.Args(dataset_dir=dataset_dir, **args))
    (first,) = run_dirs(tmp_path / "out")
    capsys.readouterr()
    baseline.main(baseline.Args(dataset_dir=dataset_dir, **args))
    assert capsys.readouterr().out == f"already complete, skipped: {first}\n"
    baseline.main(baseline.Args(dataset_dir=other, **args))
    baseline.main(baseline.Args(dataset_dir=dataset_dir, **args | {"c_values": [10.0]}))  # other settings: a new run
    assert len(list(run_dirs(tmp_path / "out"))) == 3


def write_small_dataset(folder: Path, label2id: dict, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """A dataset of (text, label name) pairs; label2id.json exactly as given, in its key order."""
    folder.mkdir(parents=True)
    (folder / "label2id.json").write_text(json.dumps(label2id))
    for split, pairs in splits.items():
        lines = [json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in pairs]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


GOOD = ["とても良い", "良い商品です", "良かった", "最高に良い"]
BAD = ["とても悪い", "悪い商品です", "悪かった", "最悪に悪い"]


def test_baseline_names_classes_by_their_ids_not_by_the_order_of_label2id(tmp_path):
    label2id = {"positive": 1, "negative": 0}  # listed in the other order than the ids
    splits = {
        "train": [(t, "positive") for t in GOOD] + [(t, "negative") for t in BAD],
        "val": [("良い", "positive"), ("悪い", "negative")],
        "test": [("良い良い", "positive"), ("良い品", "positive"), ("良い感じ", "positive"), ("悪い", "negative")],
    }
    dataset = write_small_dataset(tmp_path / "reviews", label2id, splits)
    baseline.main(
        baseline.Args(
            dataset_dir=dataset, text_fields=["text"], output_root=tmp_path / "out", ngram_max=2, c_values=[100.0]
        )
    )
    (run_dir,) = run_dirs(tmp_path / "out")
    test = json.loads((run_dir / "test-metrics.json").read_text())
    assert test["per_class"]["positive"]["support"] == 3 and test["per_class"]["negative"]["support"] == 1
    assert test["confusion_matrix"] == [[1, 0], [0, 3]]  # row i: true id i (0 negative, 1 positive)
    lines = read_jsonl(run_dir / "test-predictions.jsonl")
    assert [line["id"] for line in lines] == [0, 1, 2, 3]  # records without an "id": their line numbers
    assert [line["label"] for line in lines] == [line["predicted"] for line in lines] == ["positive"] * 3 + ["negative"]
    assert list(lines[0]["probabilities"]) == ["negative", "positive"]  # in id order
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset_fingerprint"] == dataset_fingerprint(dataset)


def test_baseline_covers_a_label_that_train_never_has(tmp_path):
    """A rare label can be missing from train: the classifier then knows fewer classes than the
    label set, yet the metrics, the loss and per_class must still cover every label."""
    label2id = {"good": 0, "bad": 1, "neutral": 2}
    splits = {
        "train": [(t, "good") for t in GOOD] + [(t, "bad") for t in BAD],
        "val": [("良い", "good"), ("悪い", "bad"), ("普通", "neutral")],
        "test": [("良い良い", "good"), ("悪い悪い", "bad"), ("普通です", "neutral")],
    }
    dataset = write_small_dataset(tmp_path / "reviews", label2id, splits)
    baseline.main(
        baseline.Args(
            dataset_dir=dataset, text_fields=["text"], output_root=tmp_path / "out", ngram_max=2, c_values=[100.0]
        )
    )
    (run_dir,) = run_dirs(tmp_path / "out")
    test = json.loads((run_dir / "test-metrics.json").read_text())
    assert set(test["per_class"]) == {"good", "bad", "neutral"} and len(test["confusion_matrix"]) == 3
    assert test["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert test["accuracy"] == pytest.approx(2 / 3) and test["loss"] > 1.0  # the neutral example costs a lot


def test_baseline_with_a_single_label_in_train_is_a_one_line_error(tmp_path):
    splits = {"train": [(t, "good") for t in GOOD], "val": [("悪い", "bad")], "test": [("悪い", "bad")]}
    dataset = write_small_dataset(tmp_path / "reviews", {"good": 0, "bad": 1}, splits)
    result = run_script(
        "src/baseline.py",
        "--dataset_dir",
        dataset,
        "--text_fields",
        "text",
        "--output_root",
        tmp_path / "out",
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = f"baseline.py: error: {dataset / 'train.jsonl'} has a single label: a classifier needs two"
    assert result.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_the_ece_column_is_the_prediction_files_with_its_interval_and_a_reliability_diagram(
    tmp_path, monkeypatch, capsys
):
    """Made-up runs predict with probability 1, so a run's ECE is its error rate (the paper's formula, one bin);
    a run whose metrics file gives another ECE than its lines is skipped, as for any other score."""
    root = tmp_path / "outputs"
    for seed, test_f1 in ((1, 0.90), (2, 0.88)):
        run_dir = make_run(root, "org/bert", 3e-5, seed, 0.9, test_f1, f"00-00-0{seed}.000000")
        metrics = json.loads((run_dir / "test-metrics.json").read_text())
        lines = read_jsonl(run_dir / "test-predictions.jsonl")
        confidence = [line["probabilities"][line["predicted"]] for line in lines]
        ece, _ = ece_by_the_formula(confidence, [line["label"] == line["predicted"] for line in lines])
        assert ece == pytest.approx(1 - test_f1)
        calibration = {"ece": ece, "nll": 0.3, "uncalibrated": {"ece": 0.2 + seed / 100, "nll": 0.4 + seed / 10}}
        write_json(run_dir / "test-metrics.json", metrics | calibration)
    edited = make_run(root, "org/edited", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    write_json(edited / "test-metrics.json", json.loads((edited / "test-metrics.json").read_text()) | {"ece": 0.01})
    figures = saved_figures(monkeypatch)
    results = tmp_path / "results" / DATASET
    aggregate.main(aggregate.Args(output_root=root, results_dir=results.parent))
    printed = capsys.readouterr().out
    assert f"{edited / 'test-predictions.jsonl'}: ECE 0.100000 from its lines, but test-metrics.json says 0.010000" in (
        printed
    )
    best = pd.read_csv(results / "best.csv").set_index("model")
    assert best.loc["org/bert", "test_ece_mean"] == pytest.approx(0.11)
    assert best.loc["org/bert", "test_ece_uncalibrated_mean"] == pytest.approx(0.215)
    assert best.loc["org/bert", ["test_nll_mean", "test_nll_uncalibrated_mean"]].tolist() == pytest.approx([0.3, 0.55])
    assert best.loc["org/bert", "test_ece_ci_low"] < 0.11 < best.loc["org/bert", "test_ece_ci_high"]
    assert pd.read_csv(results / "all.csv")["test_ece"].tolist() == pytest.approx([0.10, 0.12])
    row = next(line for line in (results / "results.md").read_text().splitlines() if line.startswith("| [org/bert]"))
    ci = results_tables.interval(best.loc["org/bert", "test_ece_ci_low"], best.loc["org/bert", "test_ece_ci_high"])
    assert row.endswith(f" | 11.00 ± 1.41 | {ci} | 21.50 ± 0.71 |")
    assert (results / f"reliability_{FINGERPRINT[:12]}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reliability = figures[2]  # after test_f1.png and val_f1_per_epoch.png
    (panel,) = [ax for ax in reliability.axes if ax.get_visible()]  # the one row's chosen run: seed 1 (val 0.9 each)
    after = next(line for line in panel.get_lines() if line.get_label() == "prediction file")
    assert list(after.get_xdata()) == [1.0] and list(after.get_ydata()) == [pytest.approx(0.90)]
