"""Multi-label runs (several labels per text, possibly none): the baseline's one-vs-rest logistic regression,
and aggregate.py's tables, intervals, paired comparisons and checks."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support
from sklearn.multiclass import OneVsRestClassifier

import aggregate
import baseline
from conftest import CATEGORIES, FILLER, article_text, run_dirs
from livedoor_classification import results_reading, results_significance, results_tables
from livedoor_classification.dataset_files import read_jsonl
from livedoor_classification.files import write_json
from livedoor_classification.metrics import MULTI_LABEL_SUMMARY_KEYS, multi_label_metrics
from livedoor_classification.runs import write_predictions
from test_results import DATASET, FINGERPRINT, make_run

# A dataset of articles of the fixture corpus: two articles of two categories joined (both labels), one
# article (its label), or filler text (no label). "topic-news" is on test texts only: train never has it.
TOPICS = list(CATEGORIES)[:4]
NAMES = [*TOPICS, "topic-news"]
NEVER_IN_TRAIN = "topic-news"


def text_and_labels(i: int) -> tuple[str, list[str]]:
    first, second = TOPICS[i % 4], TOPICS[(i + 1) % 4]
    kind = (i // 4) % 4
    if kind == 0:
        return article_text(first, i) + article_text(second, i + 1), [first, second]
    if kind == 3:
        return "".join(FILLER[(i + k) % len(FILLER)] for k in range(6)) + str(i), []
    return article_text(first, i), [first]


def write_multi_label_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "label2id.json").write_text(json.dumps({name: i for i, name in enumerate(NAMES)}))
    (folder / "dataset.json").write_text(json.dumps({"multi_label": True, "text_fields": ["text"]}))
    for split, (start, count) in {"train": (0, 64), "val": (100, 24), "test": (200, 24)}.items():
        records = []
        for i in range(start, start + count):
            text, labels = text_and_labels(i)
            labels += [NEVER_IN_TRAIN] if split == "test" and i % 8 == 1 else []
            records.append({"id": f"{split}-{i}", "text": text, "label": labels})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return folder


@pytest.fixture(scope="module")
def baseline_runs(tmp_path_factory) -> tuple[Path, Path, Path, str]:
    """The baseline on the dataset, without and with --class_weights balanced: (dataset, plain run, balanced
    run, what the first printed)."""
    dataset = write_multi_label_dataset(tmp_path_factory.mktemp("data") / "tags")
    out = tmp_path_factory.mktemp("outputs")
    args = {"dataset_dir": dataset, "output_root": out, "c_values": [0.1, 10.0]}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # capsys is a fixture of a test, not of a module
        baseline.main(baseline.Args(**args))
    baseline.main(baseline.Args(**args, class_weights="balanced"))
    plain, balanced = run_dirs(out)
    return dataset, plain, balanced, printed.getvalue()


def multi_hot(lists: list[list[str]]) -> np.ndarray:
    return np.array([[name in labels for name in NAMES] for labels in lists], dtype=int)


def oracle_probabilities(dataset: Path, c: float, class_weight: str | None) -> np.ndarray:
    """scikit-learn alone: the baseline's TF-IDF and a logistic regression per label, on test."""
    splits = {s: read_jsonl(dataset / f"{s}.jsonl") for s in ("train", "test")}
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform([r["text"] for r in splits["train"]])
    logistic = LogisticRegression(C=c, max_iter=2000, random_state=42, class_weight=class_weight)
    model = OneVsRestClassifier(logistic).fit(x_train, multi_hot([r["label"] for r in splits["train"]]))
    return model.predict_proba(vectorizer.transform([r["text"] for r in splits["test"]]))


def test_the_baseline_metrics_equal_sklearn_on_its_prediction_files(baseline_runs):
    dataset, run_dir, _, printed = baseline_runs
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["multi_label"], config["threshold"], config["class_weights"]) == (True, 0.5, None)
    assert config["classifier"] == "OneVsRestLogisticRegression" and config["temperature"] is None
    log = pd.read_csv(run_dir / "log.csv")
    assert [c for c in log.columns if c.startswith("val_")] == [f"val_{k}" for k in ("loss", *MULTI_LABEL_SUMMARY_KEYS)]
    assert config["C"] == log.loc[log["val_f1"].idxmax(), "C"]  # the first best on val macro-F1
    for split in ("val", "test"):
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        lines = read_jsonl(run_dir / f"{split}-predictions.jsonl")
        assert [line["id"] for line in lines] == [r["id"] for r in read_jsonl(dataset / f"{split}.jsonl")]
        in_id_order = [sorted(r["label"], key=NAMES.index) for r in read_jsonl(dataset / f"{split}.jsonl")]
        assert [line["label"] for line in lines] == in_id_order
        for line in lines:  # predicted: the labels of probability 0.5 or above, in label id order
            assert line["predicted"] == [name for name, p in line["probabilities"].items() if p >= 0.5]
        gold, predicted = multi_hot([line["label"] for line in lines]), multi_hot([line["predicted"] for line in lines])
        occurring = np.flatnonzero(gold.any(axis=0) | predicted.any(axis=0))
        macro = precision_recall_fscore_support(gold, predicted, labels=occurring, average="macro", zero_division=0)
        expected = {
            "subset_accuracy": accuracy_score(gold, predicted),
            "hamming_loss": hamming_loss(gold, predicted),
            "micro_f1": f1_score(gold, predicted, average="micro", zero_division=0),
            "samples_f1": f1_score(gold, predicted, average="samples", zero_division=1.0),
            "precision": macro[0],
            "recall": macro[1],
            "f1": macro[2],
        }
        assert {key: metrics[key] for key in expected} == pytest.approx(expected, abs=1e-12)
        assert "confusion_matrix" not in metrics and list(metrics["per_class"]) == NAMES
    # The label train never has: probability 0 everywhere, never predicted, its test texts all missed.
    assert f"note: label '{NEVER_IN_TRAIN}' is on no train text: the baseline gives it probability 0" in printed
    assert {line["probabilities"][NEVER_IN_TRAIN] for line in lines} == {0.0}
    assert metrics["per_class"][NEVER_IN_TRAIN] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert metrics["f1"] < 1 and metrics["per_class"][TOPICS[0]]["f1"] == 1.0  # the topics are easy for n-grams


@pytest.mark.parametrize("balanced", [False, True], ids=["plain", "balanced"])
@pytest.mark.filterwarnings("ignore:Label not 4 is present")  # the oracle's one-vs-rest, of the label train lacks
def test_the_baseline_probabilities_and_loss_are_one_logistic_regression_per_label(baseline_runs, balanced):
    dataset, plain, weighted, _ = baseline_runs
    run_dir = weighted if balanced else plain
    config = json.loads((run_dir / "config.json").read_text())
    assert config["class_weights"] == ("balanced" if balanced else None)
    p = oracle_probabilities(dataset, config["C"], config["class_weights"])
    lines = read_jsonl(run_dir / "test-predictions.jsonl")
    assert [list(line["probabilities"].values()) for line in lines] == pytest.approx(p, abs=1e-4)
    # train.py's loss: the binary cross-entropy of each label, averaged over labels and texts (clipped as
    # scikit-learn's log_loss clips: the label train never has costs -log(eps) on its test texts)
    y = multi_hot([line["label"] for line in lines])
    eps = np.finfo(float).eps
    clipped = np.clip(p, eps, 1 - eps)
    loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert json.loads((run_dir / "test-metrics.json").read_text())["loss"] == pytest.approx(loss, rel=1e-6)


def test_class_weights_balanced_reach_every_single_label_classifier():
    svm = baseline.linear_model("LinearSVC", 1.0, 42, "balanced")
    assert svm.svm().class_weight == "balanced"  # the fitted SVM and its temperature's cross-validation folds
    assert baseline.linear_model("LogisticRegression", 1.0, 42, "balanced").class_weight == "balanced"
    assert baseline.linear_model("LogisticRegression", 1.0, 42).class_weight is None


def test_a_multi_label_train_split_without_a_learnable_label_is_a_one_line_error(tmp_path, in_process):
    dataset = write_multi_label_dataset(tmp_path / "tags")
    records = read_jsonl(dataset / "train.jsonl")
    (dataset / "train.jsonl").write_text("".join(json.dumps(r | {"label": []}) + "\n" for r in records))
    result = in_process(baseline, "--dataset_dir", dataset, "--output_root", tmp_path / "out")
    assert result.returncode == 1 and result.stderr == (
        f"baseline.py: error: in {dataset / 'train.jsonl'} every label is on all texts or on none:"
        " a classifier needs texts with and without a label\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:No artists with labels")  # the per-epoch plot of baseline rows only: no lines
def test_aggregate_reads_the_multi_label_baseline(baseline_runs, tmp_path):
    """Its rows differ in class_weights only: a column of their own."""
    _, plain, _, _ = baseline_runs
    results = tmp_path / "results"
    aggregate.main(aggregate.Args(output_root=plain.parents[3], dataset="tags", results_dir=results))
    table = (results / "tags" / "results.md").read_text()
    assert "| Model | LR | Epochs | Max len | Batch | Class weights | Params | Subset accuracy |" in table
    assert "| tfidf-char-linear | – | – | – | – | balanced |" in table and "threshold 0.5" in table
    assert results_tables.NO_CONFUSION_MATRIX in table and not list((results / "tags").glob("confusion_matrix_*"))


# Hand-built runs: 200 test texts (and as many val texts, the same), 4 labels, some rare; wrong decisions on
# chosen texts, one per text, on its label i % 4 (so on every label).
MULTI_FINGERPRINT = "abcdef0123456789" * 4
LABELS = {"sports": 0, "politics": 1, "economy": 2, "culture": 3}
TEXTS = 200


def gold_labels() -> np.ndarray:
    return np.random.default_rng(0).random((TEXTS, len(LABELS))) < [0.5, 0.3, 0.2, 0.05]


def with_errors(errors) -> np.ndarray:
    predicted = gold_labels()
    for i in errors:
        predicted[i, i % len(LABELS)] ^= True
    return predicted


def write_split(run_dir: Path, split: str, predicted: np.ndarray, ids=None) -> dict:
    """Its predictions (probabilities 0.9 for a predicted label, 0.1 for the others) and metrics files."""
    names = list(LABELS)
    probabilities = np.where(predicted, 0.9, 0.1)
    write_predictions(
        run_dir / f"{split}-predictions.jsonl", ids or range(TEXTS), gold_labels(), probabilities, names, 0.5
    )
    metrics = {"best_epoch": 2, "epochs_run": 2, "loss": 0.2, **multi_label_metrics(gold_labels(), predicted, names)}
    write_json(run_dir / f"{split}-metrics.json", metrics)
    return metrics


def make_multi_label_run(root: Path, model: str, lr: float, seed: int, val_errors, test_errors, stamp: str) -> Path:
    """A run folder as train.py writes it for a multi-label dataset."""
    settings = {"multi_label": True, "threshold": 0.5, "class_weights": None, "patience": None}
    settings |= {"dataset_fingerprint": MULTI_FINGERPRINT, "dataset_dir": "/data/tags", "label2id": LABELS}
    run_dir = make_run(root, model, lr, seed, 0.9, 0.9, stamp, **settings)
    config = json.loads((run_dir / "config.json").read_text())
    write_json(run_dir / "config.json", config | {"num_examples": {"train": 800, "val": TEXTS, "test": TEXTS}})
    write_split(run_dir, "val", with_errors(val_errors))
    write_split(run_dir, "test", with_errors(test_errors))  # last, as the run's completion
    return run_dir


def sklearn_macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    occurring = np.flatnonzero(gold.any(axis=0) | predicted.any(axis=0))
    return f1_score(gold, predicted, labels=occurring, average="macro", zero_division=0)


def test_aggregate_multi_label_tables_intervals_and_comparison(tmp_path, monkeypatch):
    """lr 3e-5 has the better mean val macro-F1 over its two seeds; org/close errs as often as the best row
    on other texts. A single-label run in the same outputs gets a section of its own, as it always did."""
    monkeypatch.setattr(results_significance, "RESAMPLES", 100)  # the oracle below scores every resample with sklearn
    root = tmp_path / "outputs"
    make_multi_label_run(root, "org/bert", 3e-5, 1, range(20), range(20), "00-00-00.000000")
    make_multi_label_run(root, "org/bert", 3e-5, 2, range(24), range(24), "00-00-01.000000")
    make_multi_label_run(root, "org/bert", 5e-5, 1, range(60), range(10), "00-00-02.000000")
    make_multi_label_run(root, "org/close", 3e-5, 1, range(20), range(20, 44), "00-00-00.000000")
    make_run(root, "org/single", 3e-5, 1, 0.9, 0.9, "00-00-00.000000")
    results = tmp_path / "results" / DATASET
    aggregate.main(aggregate.Args(output_root=root, results_dir=results.parent))

    all_runs = pd.read_csv(results / "all.csv")
    assert all_runs.groupby("model")["multi_label"].first().to_dict() == {
        "org/bert": True,
        "org/close": True,
        "org/single": False,
    }
    assert all_runs.loc[all_runs["multi_label"], [f"test_{k}" for k in MULTI_LABEL_SUMMARY_KEYS]].notna().all().all()
    assert all_runs.loc[~all_runs["multi_label"], "test_micro_f1"].isna().all()

    best = pd.read_csv(results / "best.csv").set_index("model")
    assert best.loc["org/bert", "lr"] == 3e-5 and best.loc["org/bert", "seeds"] == 2
    gold = gold_labels()
    bert = [with_errors(range(20)), with_errors(range(24))]
    close = with_errors(range(20, 44))
    expected_mean = np.mean([sklearn_macro_f1(gold, p) for p in bert])
    assert best.loc["org/bert", "test_f1_mean"] == pytest.approx(expected_mean, abs=1e-12)

    # The plain oracle: the documented draws (one generator of seed 0, a row of TEXTS indices per resample),
    # each resample scored by sklearn; a row of several seeds averages them per resample.
    draws = np.random.default_rng(0).integers(0, TEXTS, size=(100, TEXTS))
    oracles = {
        "f1": sklearn_macro_f1,
        "micro_f1": lambda y, p: f1_score(y, p, average="micro", zero_division=0),
        "subset_accuracy": accuracy_score,
    }
    for key, oracle in oracles.items():
        expected = np.percentile([oracle(gold[d], close[d]) for d in draws], [2.5, 97.5])
        interval = best.loc["org/close", [f"test_{key}_ci_low", f"test_{key}_ci_high"]].tolist()
        assert interval == pytest.approx(expected, abs=1e-12), key
    close_f1 = np.array([sklearn_macro_f1(gold[d], close[d]) for d in draws])
    bert_f1 = np.mean([[sklearn_macro_f1(gold[d], p[d]) for d in draws] for p in bert], axis=0)
    assert best.loc["org/bert", ["test_f1_ci_low", "test_f1_ci_high"]].tolist() == pytest.approx(
        np.percentile(bert_f1, [2.5, 97.5]), abs=1e-12
    )
    difference = sklearn_macro_f1(gold, close) - expected_mean
    assert best.loc["org/close", "f1_vs_best"] == pytest.approx(difference, abs=1e-12)
    assert best.loc["org/close", ["f1_vs_best_low", "f1_vs_best_high"]].tolist() == pytest.approx(
        np.percentile(close_f1 - bert_f1, [2.5, 97.5]), abs=1e-12
    )
    assert best.loc["org/close", "f1_vs_best_low"] < 0 < best.loc["org/close", "f1_vs_best_high"]

    table = (results / "results.md").read_text()
    single, multi = table.split("\n## ")  # sections in fingerprint order
    assert multi.startswith(f"tags (dataset {MULTI_FINGERPRINT[:12]})")
    assert (
        "| Model | LR | Epochs | Max len | Batch | Params | Subset accuracy | Hamming loss | Micro-F1 | Samples-F1 "
        "| Precision | Recall | F1 | Subset accuracy 95% CI | Micro-F1 95% CI | F1 95% CI | F1 vs best |"
    ) in multi
    rows = {line.split(" | ")[0]: line for line in multi.splitlines() if line.startswith("| [org/")}
    assert rows["| [org/bert](https://huggingface.co/org/bert)"].split(" | ")[-4] == "best"  # then the ECE cells
    assert rows["| [org/close](https://huggingface.co/org/close)"].split(" | ")[-4].endswith(" ≈ best")
    assert "| Label | Precision | Recall | F1 | Support |" in multi and results_tables.NO_CONFUSION_MATRIX in multi
    per_label = pd.read_csv(results / f"per_class_{MULTI_FINGERPRINT[:12]}.csv")
    chosen = multi_label_metrics(gold, bert[0], list(LABELS))["per_class"]  # seed 1: the better val F1
    assert per_label["class"].tolist() == list(LABELS)
    assert per_label["f1"].tolist() == pytest.approx([chosen[name]["f1"] for name in LABELS])
    assert not (results / f"confusion_matrix_{MULTI_FINGERPRINT[:12]}.png").exists()
    assert single.startswith(f"## livedoor (dataset {FINGERPRINT[:12]})")
    assert "| Model | LR | Epochs | Max len | Batch | Params | Accuracy | Precision | Recall | F1 |" in single
    assert "Subset" not in single and (results / f"confusion_matrix_{FINGERPRINT[:12]}.png").is_file()


def test_a_multi_label_run_whose_prediction_files_disagree_with_it_is_skipped(tmp_path, capsys):
    good = make_multi_label_run(tmp_path, "org/bert", 3e-5, 1, range(20), range(20), "00-00-00.000000")
    edited, single_lines, list_lines = (
        make_multi_label_run(tmp_path, "org/bert", 3e-5, seed, range(20), range(20), f"00-00-0{seed}.000000")
        for seed in (2, 3, 4)
    )
    path = edited / "test-predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    right = next(i for i in range(20, TEXTS) if json.loads(lines[i])["predicted"])  # a text right, with labels
    lines[right] = json.dumps(json.loads(lines[right]) | {"predicted": []}) + "\n"  # one more text wrong
    path.write_text("".join(lines))
    gold = np.arange(TEXTS) % 2  # one label a line, as a single-label run's file
    write_predictions(single_lines / "test-predictions.jsonl", range(TEXTS), gold, np.eye(4)[gold], list(LABELS))
    config = json.loads((list_lines / "config.json").read_text())
    write_json(list_lines / "config.json", config | {"multi_label": False})
    aggregate.main(aggregate.Args(output_root=tmp_path, results_dir=tmp_path / "results"))
    skipped = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    remedy = "the files disagree (edited, cut short, or written by an older version): train it again"
    subset_accuracy = multi_label_metrics(gold_labels(), with_errors(range(20)), list(LABELS))["subset_accuracy"]
    assert skipped == [
        f"skipped {path}: subset accuracy {subset_accuracy - 1 / TEXTS:.6f} from its lines, but test-metrics.json "
        f"says {subset_accuracy:.6f} ({remedy})",
        f"skipped {single_lines / 'test-predictions.jsonl'}: one label a line, but config.json says multi_label "
        f"true ({remedy})",
        f"skipped {list_lines / 'val-predictions.jsonl'}: lists of labels, but config.json says multi_label false "
        f"({remedy})",
    ]
    assert pd.read_csv(tmp_path / "results" / DATASET / "all.csv")["run_dir"].tolist() == [str(good)]


def test_multi_label_predictions_are_paired_by_id_and_label_name():
    """Another run's file may list its texts and labels in another order: matched by id and name, never by position."""
    gold, predicted = gold_labels(), with_errors(range(30))
    ids = tuple(json.dumps(i) for i in range(TEXTS))
    names = tuple(LABELS)
    reference = results_reading.Predictions(ids, names, gold, predicted[None])
    order, columns = np.arange(TEXTS)[::-1], [2, 0, 3, 1]
    other = results_reading.Predictions(
        tuple(ids[i] for i in order),
        tuple(names[c] for c in columns),
        gold[order][:, columns],
        predicted[order][:, columns][None],
    )
    assert np.array_equal(results_significance.aligned(other, reference), predicted[None])
    single = results_reading.Predictions(ids, names, gold.argmax(axis=1), predicted.argmax(axis=1)[None])
    with pytest.raises(ValueError, match="other test examples"):
        results_significance.aligned(single, reference)
