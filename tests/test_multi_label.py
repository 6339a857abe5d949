"""Several labels per text (prepare.py --multi_label, train.py, predict.py), class weights for rare
classes, and early stopping: checked against scikit-learn, transformers and PyTorch's own losses."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, hamming_loss, log_loss
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import predict
import prepare
import train
from conftest import run_dirs, run_script, train_argv, train_run, write_corpus
from livedoor_classification import class_weights
from livedoor_classification.dataset_files import SPLITS, label_names, load_label2id, read_jsonl
from livedoor_classification.evaluation import first_windows
from livedoor_classification.inputs import Truncation
from test_calibration import ece_by_the_formula

FAST = ["--max_seq_len", "64", "--batch_size", "8"]


def multi_label_rows(corpus_dir) -> list[dict]:
    """Texts made of two fixture articles of different categories, labelled with both; single articles
    with their one category; and notices about nothing, with no label: 219 rows, ids of their own."""
    articles, categories = prepare.read_livedoor(corpus_dir)
    by_category = {c: [a for a in articles if a["category"] == c] for c in categories}
    rows = []
    for i in range(120):
        first, second = categories[i % 9], categories[(i * 4 + 1 + i // 9) % 9]
        if first == second:
            second = categories[(i + 1) % 9]
        a, b = by_category[first][i % 20], by_category[second][(i * 7) % 20]
        text = {"title": f"{a['title']} / {b['title']}", "body": f"{a['body']}\n{b['body']}"}
        rows.append({"id": f"pair-{i}", **text, "label": sorted([first, second])})
    for i, article in enumerate(articles[::2]):
        rows.append(
            {"id": f"one-{i}", "title": article["title"], "body": article["body"], "label": [article["category"]]}
        )
    for i in range(9):
        rows.append({"id": f"none-{i}", "title": f"お知らせ{i}", "body": "今日の話題について紹介します。", "label": []})
    return rows


def write_tables(rows: list[dict], folder) -> tuple:
    """The rows as JSONL with lists and as CSV with ';' between labels."""
    jsonl, table = folder / "tags.jsonl", folder / "tags.csv"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with open(table, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["id", "title", "body", "label"])
        writer.writeheader()
        writer.writerows(r | {"label": ";".join(r["label"])} for r in rows)
    return jsonl, table


@pytest.fixture(scope="module")
def tables(corpus_dir, tmp_path_factory):
    return write_tables(multi_label_rows(corpus_dir), tmp_path_factory.mktemp("tables"))


@pytest.fixture(scope="module")
def ml_dataset(tables, tmp_path_factory):
    output = tmp_path_factory.mktemp("datasets") / "tags"
    options = ["--text_columns", "title", "body", "--multi_label", "--output_dir", output]
    prepare.main(prepare.Args.from_args(list(map(str, ["--input", tables[0], *options]))))
    return output


def test_prepare_reads_lists_and_separated_labels_alike_and_counts_them(ml_dataset, tables, tmp_path, capsys):
    options = ["--text_columns", "title", "body", "--label_separator", ";", "--output_dir", str(tmp_path / "csv")]
    prepare.main(prepare.Args.from_args(["--input", str(tables[1]), *options]))
    assert "(no label)" in capsys.readouterr().out
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "label2id.json"):
        assert (tmp_path / "csv" / name).read_bytes() == (ml_dataset / name).read_bytes()
    manifest = json.loads((ml_dataset / "dataset.json").read_text())
    assert manifest["multi_label"] is True and manifest["label_separator"] is None
    for split in SPLITS:
        records = read_jsonl(ml_dataset / f"{split}.jsonl")
        assert manifest["counts"][split] == dict(sorted(Counter(n for r in records for n in r["label"]).items()))
        assert manifest["rows"][split] == {"rows": len(records), "no_label": sum(not r["label"] for r in records)}
    assert [manifest["rows"][s]["rows"] for s in SPLITS] == [177, 21, 21]  # 219 rows: floor(21.9) each held out


def test_the_split_keeps_each_labels_share_in_every_split(ml_dataset):
    """Iterative stratification: each label's rows in each split, against its share of the split (sizes
    177/21/21 of 219), deviate in all by less than under any of 10 random splits of the same sizes."""
    records = {split: read_jsonl(ml_dataset / f"{split}.jsonl") for split in SPLITS}
    rows = [r for split in SPLITS for r in records[split]]
    names = sorted({name for r in rows for name in r["label"]})

    def deviation(splits: list[list[dict]]) -> float:
        return sum(
            abs(sum(name in r["label"] for r in split) - sum(name in r["label"] for r in rows) * len(split) / len(rows))
            for split in splits
            for name in names
        )

    ours = deviation([records[split] for split in SPLITS])
    for seed in range(10):
        order = np.random.default_rng(seed).permutation(len(rows))
        shuffled = [rows[i] for i in order]
        assert ours < deviation([shuffled[42:], shuffled[:21], shuffled[21:42]])


def test_the_split_is_seeded(tables, tmp_path):
    def prepared(seed, name):
        options = ["--text_columns", "title", "body", "--multi_label", "--seed", str(seed)]
        prepare.main(
            prepare.Args.from_args(["--input", str(tables[0]), *options, "--output_dir", str(tmp_path / name)])
        )
        return (tmp_path / name / "test.jsonl").read_bytes()

    assert prepared(1, "a") == prepared(1, "b") != prepared(2, "c")


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        ([{"text": "a", "label": ["x", "y"]}], [], "is a list: give --multi_label"),
        ([{"text": "a", "label": "x;y"}], ["--multi_label"], "give --label_separator"),
        ([{"text": "a", "label": ["x", 1.5]}], ["--multi_label"], "label 1.5 in column 'label' is neither"),
        ([{"text": "a", "label": []}] * 3, ["--multi_label"], "no row has a label"),
        # a label of one row, with 90% held out, lands in val: it would never be trained on
        ([{"text": f"t{i}", "label": ["x"] if i else ["x", "rare"]} for i in range(20)], ["--multi_label"], "'rare'"),
    ],
)
def test_bad_multi_label_tables_are_one_line(rows, options, message, tmp_path, in_process):
    suffix = ".csv" if "--label_separator" in message else ".jsonl"
    table = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        table.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows), encoding="utf-8")
    else:
        table.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ratios = ["--val_ratio", "0.45", "--test_ratio", "0.45"]
    result = in_process(prepare, "--input", table, "--name", "t", "--output_dir", tmp_path / "out", *options, *ratios)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ml_run(bert_dir, ml_dataset, tmp_path_factory):
    # Balanced positive weights: without them this tiny random encoder first learns to predict no label at all
    options = ["--lr", "3e-3", "--epochs", "6", "--class_weights", "balanced", "--save_model"]
    return train_run(bert_dir, ml_dataset, tmp_path_factory.mktemp("outputs"), *FAST, *options)


@pytest.mark.parametrize("split", ["val", "test"])
def test_metrics_recomputed_from_the_prediction_lists_with_scikit_learn_equal_the_reported(ml_run, ml_dataset, split):
    names = label_names(load_label2id(ml_dataset))
    lines = [json.loads(line) for line in (ml_run / f"{split}-predictions.jsonl").read_text().splitlines()]
    records = read_jsonl(ml_dataset / f"{split}.jsonl")
    assert [(p["id"], p["label"]) for p in lines] == [(r["id"], r["label"]) for r in records]
    for p in lines:  # the lists are the labels at 0.5 or above (rounding aside), in label order
        assert p["predicted"] == [n for n in names if p["probabilities"][n] >= 0.5] or any(
            abs(v - 0.5) < 1e-4 for v in p["probabilities"].values()
        )
    gold = np.array([[n in p["label"] for n in names] for p in lines])
    predicted = np.array([[n in p["predicted"] for n in names] for p in lines])
    metrics = json.loads((ml_run / f"{split}-metrics.json").read_text())
    occurring = [i for i in range(len(names)) if gold[:, i].any() or predicted[:, i].any()]
    assert metrics["f1"] == pytest.approx(f1_score(gold, predicted, labels=occurring, average="macro", zero_division=0))
    assert metrics["micro_f1"] == pytest.approx(f1_score(gold, predicted, average="micro"))
    assert metrics["samples_f1"] == pytest.approx(f1_score(gold, predicted, average="samples", zero_division=1.0))
    assert metrics["subset_accuracy"] == pytest.approx((gold == predicted).all(axis=1).mean())
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(gold, predicted))
    # It learned (no label predicted: F1 0; every label: about 0.29), and the lists are not trivial
    assert metrics["f1"] > 0.35 and any(len(p["predicted"]) > 1 for p in lines) and predicted.sum() < predicted.size
    assert set(metrics["per_class"]) == set(names) and metrics["best_epoch"] >= 1 and metrics["epochs_run"] == 6


@pytest.mark.parametrize("split", ["val", "test"])
def test_each_labels_ece_recomputed_from_the_prediction_file_equals_the_reported(ml_run, ml_dataset, split):
    names = label_names(load_label2id(ml_dataset))
    lines = [json.loads(line) for line in (ml_run / f"{split}-predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((ml_run / f"{split}-metrics.json").read_text())
    per_label = []
    for name in names:  # each label's probability, right when the text has the label (the paper's formula)
        ece, mce = ece_by_the_formula([p["probabilities"][name] for p in lines], [name in p["label"] for p in lines])
        assert metrics["per_label"][name] == pytest.approx({"ece": ece, "mce": mce}, abs=1e-12)
        per_label.append(ece)
    assert metrics["ece"] == pytest.approx(np.mean(per_label), abs=1e-12)
    config = json.loads((ml_run / "config.json").read_text())
    assert metrics["temperature"] == config["temperature"] and "ece" in metrics["uncalibrated"]


def test_the_run_records_multi_label_and_logs_its_scores(ml_run):
    config = json.loads((ml_run / "config.json").read_text())
    assert config["multi_label"] is True and config["threshold"] == 0.5 and config["class_weights"] == "balanced"
    header = (ml_run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"val_subset_accuracy", "val_hamming_loss", "val_micro_f1", "val_samples_f1", "val_f1"} <= set(header)


def test_the_saved_model_is_a_multi_label_model_for_pipeline(ml_run):
    """problem_type makes transformers' pipeline() apply a sigmoid per label, not a softmax over them."""
    model_dir = ml_run / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.problem_type == "multi_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = "映画の監督と野球の選手"
    (scores,) = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)([text])
    with torch.inference_mode():
        expected = model(**tokenizer(text, return_tensors="pt")).logits.sigmoid()[0]
    got = {s["label"]: s["score"] for s in scores}
    assert [got[model.config.id2label[i]] for i in range(len(got))] == pytest.approx(expected.tolist(), abs=1e-6)


def test_predict_gives_label_lists_as_the_run_did(ml_run, ml_dataset, in_process):
    result = in_process(predict, ml_run / "model", "--input", ml_dataset / "test.jsonl", check_args=predict.check_args)
    predicted = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [json.loads(line) for line in (ml_run / "test-predictions.jsonl").read_text().splitlines()]
    assert [(p["id"], p["predicted"], p["probabilities"]) for p in predicted] == [
        (e["id"], e["predicted"], e["probabilities"]) for e in expected
    ]
    # a lower threshold predicts every label it did, and those between the two thresholds
    lower = in_process(
        predict,
        ml_run / "model",
        "--input",
        ml_dataset / "test.jsonl",
        "--threshold",
        "0.05",
        check_args=predict.check_args,
    )
    for line, at_half in zip(lower.stdout.splitlines(), predicted, strict=True):
        line = json.loads(line)
        assert line["predicted"] == [n for n, p in line["probabilities"].items() if p >= 0.05] or any(
            abs(p - 0.05) < 1e-4 for p in line["probabilities"].values()
        )
        assert set(at_half["predicted"]) <= set(line["predicted"])


def test_threshold_for_a_single_label_dataset_is_one_line(bert_dir, dataset_dir, tmp_path, in_process):
    argv = train_argv(bert_dir, dataset_dir, tmp_path, "--threshold", "0.3")
    result = in_process(train, *argv, check_args=train.check_args)
    assert result.returncode == 1 and "--threshold is for multi-label datasets" in result.stderr
    assert not any(tmp_path.iterdir())


def step_losses(bert_dir, dataset_dir, multi_label: bool, weights: bool) -> tuple[float, float]:
    """train_epoch's mean loss over an epoch with a learning rate too small to move a weight, and the same
    mean from the libraries: transformers' own loss (problem_type) without weights; with weights, scikit-
    learn's log_loss with per-example weights (single-label) or PyTorch's BCEWithLogitsLoss(pos_weight)."""
    argv = ["--model_name", str(bert_dir), "--dataset_dir", str(dataset_dir), "--lr", "1e-30", *FAST]
    argv += ["--max_train_samples", "48", "--max_eval_samples", "1"]  # the oracle needs a few batches, not all
    args = train.Args.from_args(argv + (["--class_weights", "balanced"] if weights else []))
    train.check_args(args)
    dataset = train.resolve_dataset(args)
    label2id = dataset.label2id
    problem = "multi_label_classification" if multi_label else "single_label_classification"
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = AutoModelForSequenceClassification.from_pretrained(
        bert_dir, num_labels=len(label2id), problem_type=problem, **no_dropout
    )
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    device = torch.device("cpu")
    truncation = Truncation()
    loaders = train.make_loaders(args, dataset, tokenizer, model.config, 64, truncation, device)
    names = dataset.names
    documents = first_windows(loaders["train"].dataset)
    values = class_weights.balanced(np.array([e["label"] for e in documents]), names, multi_label) if weights else None
    run = train.Run(model, loaders, device, "fp32", "", 64, truncation, args.threshold, values)
    t, _ = train.build_training(run, args)
    ours, _ = train.train_epoch(t, loaders["train"])

    model.eval()
    losses, logits, labels = [], [], []
    with torch.inference_mode():
        for batch in loaders["train"]:
            out = model(**batch)  # "labels" in the batch: transformers computes its own loss
            losses.append(out.loss.item() * len(batch["labels"]))
            logits.append(out.logits)
            labels.append(batch["labels"])
    logits, labels = torch.cat(logits), torch.cat(labels)
    if not weights:
        return ours, sum(losses) / len(labels)
    w = torch.tensor(list(values.values()))
    if multi_label:
        return ours, torch.nn.BCEWithLogitsLoss(pos_weight=w)(logits, labels).item()
    # ours: the weighted sum over the examples, divided by their number; log_loss: divided by the weights' sum
    per_example = w[labels]
    theirs = log_loss(labels, logits.double().softmax(-1), sample_weight=per_example, labels=range(len(names)))
    return ours, theirs * per_example.sum().item() / len(labels)


@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "balanced"])
@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_the_training_loss_is_the_libraries_loss(bert_dir, dataset_dir, ml_dataset, multi_label, weights):
    ours, theirs = step_losses(bert_dir, ml_dataset if multi_label else dataset_dir, multi_label, weights)
    assert ours == pytest.approx(theirs, rel=1e-5)


@pytest.fixture(scope="module")
def skewed_dataset(tmp_path_factory) -> Path:
    """The fixture corpus with one category cut to 3 articles of 163, 1.8%: a rare class."""
    corpus = write_corpus(tmp_path_factory.mktemp("skewed"))
    for article in sorted((corpus / "peachy").glob("peachy-*.txt"))[3:]:
        article.unlink()
    output = corpus.parent / "skewed"
    prepare.main(prepare.Args.from_args(["--input_dir", str(corpus), "--output_dir", str(output)]))
    return output


def test_balanced_class_weights_are_recorded_and_tell_runs_apart(
    bert_dir, skewed_dataset, ml_dataset, tmp_path, capsys
):
    dataset_dir = skewed_dataset
    options = [*FAST, "--epochs", "1", "--max_eval_samples", "8"]  # the weights come from the whole of train
    train_run(bert_dir, dataset_dir, tmp_path, *options)
    assert train_run(bert_dir, dataset_dir, tmp_path, *options, "--class_weights", "balanced", "--skip_if_done")
    assert "already complete" not in capsys.readouterr().out  # an unweighted run is not this run
    configs = [json.loads((d / "config.json").read_text()) for d in run_dirs(tmp_path)]
    weighted = next(c for c in configs if c["class_weights"] == "balanced")
    counts = Counter(r["category"] for r in read_jsonl(dataset_dir / "train.jsonl"))
    assert counts["peachy"] == 1
    n, k = sum(counts.values()), len(counts)
    assert weighted["class_weight_values"] == pytest.approx({name: n / (k * c) for name, c in counts.items()})
    assert all(config["threshold"] is None for config in configs)  # single-label: the most probable label
    # multi-label: each label's negatives per positive
    records = read_jsonl(ml_dataset / "train.jsonl")
    positives = Counter(name for r in records for name in r["label"])
    names = label_names(load_label2id(ml_dataset))
    vectors = np.array([[name in r["label"] for name in names] for r in records], dtype=np.float32)
    values = class_weights.balanced(vectors, names, True)
    assert values == pytest.approx({name: (len(records) - p) / p for name, p in positives.items()})


def test_patience_stops_early_and_keeps_the_best_epoch(bert_dir, dataset_dir, tmp_path, capsys):
    """With a learning rate too small to change a prediction, val F1 never improves on epoch 1: --patience 2
    stops after epoch 3 of 10, and the run is evaluated with epoch 1's weights."""
    options = ["--lr", "1e-30", "--epochs", "10", "--patience", "2", "--max_train_samples", "16"]
    run_dir = train_run(bert_dir, dataset_dir, tmp_path, *FAST, *options)
    assert run_dirs(tmp_path) == [run_dir]
    out = capsys.readouterr().out
    assert "stopping after epoch 3 (--patience)" in out and "stopped early after epoch 3 of 10" in out
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + 3
    for split in ("val", "test"):
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        assert (metrics["best_epoch"], metrics["epochs_run"]) == (1, 3)
    assert json.loads((run_dir / "config.json").read_text())["patience"] == 2


def test_negative_patience_is_one_line(in_process):
    result = in_process(train, "--patience", "-1", check_args=train.check_args)
    assert result.returncode == 1 and "--patience must be >= 0" in result.stderr


def test_under_torchrun_every_text_is_predicted_once_and_the_metrics_are_its_predictions(
    bert_dir, ml_dataset, tmp_path
):
    """2 processes (gloo), 21 validation and test texts: an odd number, so the ranks' shards differ."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "src/train.py"]
    argv = train_argv(bert_dir, ml_dataset, tmp_path, *FAST, "--epochs", "1")
    run_script(
        *torchrun, *argv, "--max_train_samples", "32", "--class_weights", "balanced", env={"OMP_NUM_THREADS": "1"}
    )
    (run_dir,) = run_dirs(tmp_path)
    names = label_names(load_label2id(ml_dataset))
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    for split in ("val", "test"):
        lines = [json.loads(line) for line in (run_dir / f"{split}-predictions.jsonl").read_text().splitlines()]
        records = read_jsonl(ml_dataset / f"{split}.jsonl")
        assert [(p["id"], p["label"]) for p in lines] == [(r["id"], r["label"]) for r in records]
        gold = np.array([[n in p["label"] for n in names] for p in lines])
        predicted = np.array([[n in p["predicted"] for n in names] for p in lines])
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        assert metrics["micro_f1"] == pytest.approx(f1_score(gold, predicted, average="micro", zero_division=0))
        assert metrics["subset_accuracy"] == pytest.approx((gold == predicted).all(axis=1).mean())
        assert sum(c["support"] for c in metrics["per_class"].values()) == gold.sum()
