"""Results that can be trusted: labels a split lacks, prediction files that disagree with their run,
results that cannot be written, many classes, and Japanese names in the plots."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

import aggregate
from livedoor_classification import results_plots, results_reading, results_tables
from livedoor_classification.files import write_json
from livedoor_classification.metrics import classification_metrics
from livedoor_classification.runs import write_predictions
from test_results import DATASET, EXAMPLES, FINGERPRINT, make_run

REMEDY = "the files disagree (edited, cut short, or written by an older version): train it again"


def test_a_label_neither_in_gold_nor_predicted_is_left_out_of_the_macro_scores():
    """A perfect classifier on a split without one of three labels scores 1, not 0.6667."""
    perfect = classification_metrics([0, 1, 0, 1], [0, 1, 0, 1], ["a", "b", "c"])
    assert (perfect["accuracy"], perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert perfect["per_class"]["c"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert perfect["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_macro_scores_equal_sklearn_over_the_labels_in_gold_or_predictions():
    """c is predicted but absent (its F1 0 counts), d is neither (left out), e is never predicted (0 counts)."""
    names = ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(0)
    gold, predicted = rng.choice([0, 1, 4], 50), rng.choice([0, 1, 2], 50)
    metrics = classification_metrics(gold, predicted, names)
    expected = precision_recall_fscore_support(gold, predicted, labels=[0, 1, 2, 4], average="macro", zero_division=0)
    assert [metrics[key] for key in ("precision", "recall", "f1")] == pytest.approx(expected[:3], abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted), abs=1e-12)
    assert metrics["confusion_matrix"] == confusion_matrix(gold, predicted, labels=range(5)).tolist()
    per_class = precision_recall_fscore_support(gold, predicted, labels=range(5), zero_division=0)
    for i, name in enumerate(names):
        scores = metrics["per_class"][name]
        assert scores["support"] == per_class[3][i]
        if name == "d":
            assert scores["precision"] is scores["recall"] is scores["f1"] is None
        else:
            assert [scores[key] for key in ("precision", "recall", "f1")] == pytest.approx(
                [s[i] for s in per_class[:3]]
            )
    assert metrics["per_class"]["c"]["f1"] == 0.0 and metrics["per_class"]["e"]["recall"] == 0.0


def test_the_per_class_table_shows_a_label_the_test_split_lacks_as_absent(tmp_path):
    run_dir = make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000", label2id={"a": 0, "b": 1, "c": 2})
    gold = np.arange(EXAMPLES) % 2
    predicted = np.where(np.arange(EXAMPLES) < 20, 1 - gold, gold)  # as make_run's: 90% right, c never predicted
    for split in ("val", "test"):
        write_predictions(run_dir / f"{split}-predictions.jsonl", range(EXAMPLES), gold, np.eye(3)[predicted], "abc")
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    results = tmp_path / "results" / DATASET
    table = (results / "results.md").read_text()
    assert "| a | 90.00 | 90.00 | 90.00 | 100 |" in table and "| c | absent | absent | absent | 0 |" in table
    assert results_tables.ABSENT in table
    (per_class,) = [pd.read_csv(path) for path in results.glob("per_class_*.csv")]
    assert per_class["class"].tolist() == ["a", "b", "c"] and per_class["support"].tolist() == [100, 100, 0]
    assert per_class["f1"].tolist()[:2] == pytest.approx([0.9, 0.9]) and per_class.iloc[2].isna().sum() == 3


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_a_run_whose_prediction_files_disagree_with_it_is_skipped(tmp_path, capsys):
    """A table once showed F1 96.19 with a 95% CI of [33.06, 44.44]: its test-predictions.jsonl had been cut."""
    good = make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    truncated, altered, swapped, short_val, cut = (
        make_run(tmp_path, "org/bert", 3e-5, seed, 0.9, 0.9, f"00-00-0{seed}.000000") for seed in range(2, 7)
    )
    (truncated / "test-predictions.jsonl").write_text("".join(lines_of(truncated / "test-predictions.jsonl")[:10]))
    lines = lines_of(altered / "test-predictions.jsonl")
    lines[50] = lines[50].replace('"predicted": "a"', '"predicted": "b"')  # one more error: accuracy 0.895
    (altered / "test-predictions.jsonl").write_text("".join(lines))
    lines = lines_of(swapped / "test-predictions.jsonl")  # as many errors, but 11 a's and 9 b's: another F1
    lines[1], lines[20] = (
        lines[1].replace('"predicted": "a"', '"predicted": "b"'),
        lines[20].replace('"predicted": "a"', '"predicted": "b"'),
    )
    (swapped / "test-predictions.jsonl").write_text("".join(lines))
    (short_val / "val-predictions.jsonl").write_text("".join(lines_of(short_val / "val-predictions.jsonl")[:-1]))
    (cut / "test-predictions.jsonl").write_text((cut / "test-predictions.jsonl").read_text()[:-30])
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert skipped[:4] == [
        f"skipped {truncated / 'test-predictions.jsonl'}: 10 lines, but config.json says 200 test examples ({REMEDY})",
        f"skipped {altered / 'test-predictions.jsonl'}: accuracy 0.895000 from its lines, but test-metrics.json says "
        f"0.900000 ({REMEDY})",
        f"skipped {swapped / 'test-predictions.jsonl'}: macro-F1 0.899990 from its lines, but test-metrics.json says "
        f"0.900000 ({REMEDY})",
        f"skipped {short_val / 'val-predictions.jsonl'}: 199 lines, but config.json says 200 val examples ({REMEDY})",
    ]
    assert skipped[4].startswith(f"skipped {cut / 'test-predictions.jsonl'}: unreadable (JSONDecodeError(")
    assert len(skipped) == 5
    assert pd.read_csv(tmp_path / "results" / DATASET / "all.csv")["run_dir"].tolist() == [str(good)]


def test_a_run_of_an_older_version_is_one_line_not_a_guess(tmp_path, capsys):
    """A run folder without num_examples or prediction files (written before they existed) cannot be
    checked: it is left out, named, with what to do."""
    make_run(tmp_path, "org/bert", 3e-5, 2, 0.9, 0.9, "00-00-01.000000")
    older = make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    config = json.loads((older / "config.json").read_text())
    del config["num_examples"]
    write_json(older / "config.json", config)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    printed = capsys.readouterr().out
    assert f"skipped {older}: no config.json's num_examples (a run of an older version of this code)" in printed
    assert pd.read_csv(tmp_path / "results" / DATASET / "all.csv")["seed"].tolist() == [2]


def test_prediction_lines_read_the_same_in_any_key_order(tmp_path):
    """Lines as write_predictions writes them are read without parsing their probabilities: any other
    layout (a file written by hand or by another tool) is parsed whole, and a line cut short is unreadable."""
    ids = ['x, "probabilities": {', 7, "8"]  # the key's text inside an id is no key
    ordinary, reordered = tmp_path / "ordinary.jsonl", tmp_path / "reordered.jsonl"
    write_predictions(ordinary, ids, [0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), ["a", "b"])
    records = [json.loads(line) for line in lines_of(ordinary)]
    reordered.write_text("".join(json.dumps(dict(reversed(list(r.items())))) + "\n" for r in records))
    first, second = results_reading.read_prediction_file(ordinary), results_reading.read_prediction_file(reordered)
    assert first.ids == second.ids == ('"x, \\"probabilities\\": {"', "7", '"8"')
    assert first.names == second.names == ("a", "b")
    assert first.gold.tolist() == second.gold.tolist() == [0, 1, 1]
    assert first.predicted.tolist() == second.predicted.tolist() == [[0, 1, 0]]
    for cut in (1, 2, 10):
        ordinary.write_text("".join(lines_of(reordered)[:2]) + lines_of(ordinary)[2].rstrip()[:-cut])
        with pytest.raises(ValueError, match="unreadable"):
            results_reading.read_prediction_file(ordinary)


def test_results_that_cannot_be_written_are_a_one_line_error(tmp_path, in_process):
    make_run(tmp_path / "outputs", "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("a file where the results folder would go\n")
    result = in_process(aggregate, "--output_root", tmp_path / "outputs", "--results_dir", not_a_folder)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"aggregate.py: error: cannot write the results to {not_a_folder / DATASET} (Not a directory): "
        "give --results_dir a folder you may write to, on a disk with room"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux), where every write fails")
def test_a_full_disk_is_a_one_line_error_and_leaves_no_half_table(tmp_path, monkeypatch):
    make_run(tmp_path / "outputs", "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    results = tmp_path / "results" / DATASET
    results.mkdir(parents=True)
    (results / "results.md").write_text("the previous results\n")
    full = tmp_path / "full.png"
    full.symlink_to("/dev/full")
    save = aggregate.save

    def save_on_a_full_disk(fig, path):  # writing the plot fails as on a full disk: ENOSPC
        save(fig, full if path.name == "test_f1.png" else path)

    monkeypatch.setattr(aggregate, "save", save_on_a_full_disk)
    with pytest.raises(SystemExit) as error:
        aggregate.main(aggregate.Args(output_root=tmp_path / "outputs", results_dir=results.parent))
    assert error.value.code == (
        f"aggregate.py: error: cannot write the results to {results} (No space left on device): "
        "give --results_dir a folder you may write to, on a disk with room"
    )
    assert (results / "results.md").read_text() == "the previous results\n"
    # the previous set as it was, not a new all.csv and best.csv beside it; no staging folder left
    assert sorted(p.name for p in results.iterdir()) == ["results.md"]
    assert sorted(p.name for p in results.parent.iterdir()) == [DATASET]


def test_a_confusion_matrix_of_many_classes_leaves_out_what_would_not_be_legible():
    """Counts in the cells up to 30 classes, names up to 100 (beyond, the ticks are class ids); the figure
    stops growing at 30 classes."""
    for classes, named, counted in [(3, True, True), (40, True, False), (120, False, False)]:
        names = tuple(f"class {i}" for i in range(classes))
        fig = results_plots.confusion_figure(np.eye(classes, dtype=int), names, "test")
        (axes,) = fig.axes
        assert ([t.get_text() for t in axes.get_yticklabels()] == list(names)) == named
        assert len(axes.texts) == (classes * classes if counted else 0)
        assert max(fig.get_size_inches()) <= 0.6 * 30 + 2.5
        results_plots.plt.close(fig)


def test_plots_draw_japanese_names_with_a_japanese_font():
    names = ("独女通信", "家電チャンネル", "スポーツ")
    fig = results_plots.confusion_figure(np.eye(3, dtype=int), names, "東北大学 BERT: テスト")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of each glyph missing from the font, then draws a box
        fig.canvas.draw()
    results_plots.plt.close(fig)
    font = font_manager.findfont(font_manager.FontProperties(family=results_plots.plt.rcParams["font.family"]))
    assert Path(font).name == "ipaexg.ttf"


def test_a_smoke_run_on_a_subset_of_the_test_split_gets_a_table_of_its_own(tmp_path):
    """train.py --max_eval_samples tests on other examples: its 100 points on 10 examples must neither be
    the best row over full runs nor leave them unpaired with it."""
    make_run(tmp_path, "org/bert", 3e-5, 1, 0.9, 0.9, "00-00-01.000000")
    make_run(tmp_path, "org/bert", 3e-5, 1, 1.0, 1.0, "00-00-02.000000", max_eval_samples=10)
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    results = tmp_path / "results" / DATASET
    full, smoke = (results / "results.md").read_text().split("\n## ")
    assert full.startswith(f"## {DATASET} (dataset {FINGERPRINT[:12]})") and "| 90.00 |" in full
    assert smoke.startswith(f"{DATASET} (dataset {FINGERPRINT[:12]}, 10 val and test examples (--max_eval_samples))")
    assert "| 100.00 |" in smoke and "| 100.00 |" not in full
    assert "not compared" not in full + smoke  # each row is its section's best
    fingerprint = FINGERPRINT[:12]
    assert {p.name for p in results.glob("confusion_matrix_*")} == {
        f"confusion_matrix_{fingerprint}.png",
        f"confusion_matrix_{fingerprint}_eval10.png",
    }
