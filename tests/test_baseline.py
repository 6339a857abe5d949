"""baseline.py: the classifier and C it chooses, its probabilities, and what an unwritable output folder does."""

import csv
import errno
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

import baseline
from conftest import run_dirs, run_script
from livedoor_classification import files, runs
from livedoor_classification.dataset_files import read_jsonl
from test_calibration import ece_by_the_formula

C_VALUES = [0.1, 1.0, 10.0, 100.0]
CANDIDATES = [(name, c) for name in ("LinearSVC", "LogisticRegression") for c in C_VALUES]  # the order ties go by
COMMON, TOPICAL = "あいうえおかきくけこさしすせそたちつてと", ["山川海", "空雲風", "火土金"]


def noisy_texts(seed: int, count: int) -> list[tuple[str, int]]:
    """Texts of 30 characters, a few of them their label's (and a few another label's): the candidates
    of the grid differ on val, unlike on the fixture corpus, where every one of them is perfect."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        label = i % 3
        chars = [
            rng.choice(TOPICAL[label])
            if rng.random() < 0.08
            else rng.choice(TOPICAL[rng.randrange(3)])
            if rng.random() < 0.06
            else rng.choice(COMMON)
            for _ in range(30)
        ]
        texts.append(("".join(chars), label))
    return texts


def write_noisy_dataset(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "label2id.json").write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    for split, (offset, count) in {"train": (0, 120), "val": (1000, 60), "test": (2000, 60)}.items():
        records = [
            {"id": i, "text": t, "label": "abc"[y]} for i, (t, y) in enumerate(noisy_texts(seed + offset, count))
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return folder


def fitted(name: str, c: float):
    return LinearSVC(C=c, random_state=42) if name == "LinearSVC" else LogisticRegression(C=c, max_iter=2000)


def oracle(dataset: Path) -> dict:
    """The grid recomputed with scikit-learn alone: each candidate's val macro-F1, the first best, and its
    model fitted on train with the features of every split."""
    splits = {s: read_jsonl(dataset / f"{s}.jsonl") for s in ("train", "val", "test")}
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x = {"train": vectorizer.fit_transform([r["text"] for r in splits["train"]])}
    x |= {s: vectorizer.transform([r["text"] for r in splits[s]]) for s in ("val", "test")}
    y = {s: np.array(["abc".index(r["label"]) for r in records]) for s, records in splits.items()}
    models = [fitted(name, c).fit(x["train"], y["train"]) for name, c in CANDIDATES]
    f1 = [f1_score(y["val"], model.predict(x["val"]), average="macro") for model in models]
    best = f1.index(max(f1))
    return {"f1": f1, "choice": CANDIDATES[best], "model": models[best], "x": x, "y": y}


@pytest.fixture(scope="module", params=[(4, "LinearSVC"), (5, "LogisticRegression")], ids=["SVM", "logistic"])
def chosen(request, tmp_path_factory):
    """A run on a dataset where the given classifier wins on val (the oracle checks that it still does)."""
    seed, winner = request.param
    dataset = write_noisy_dataset(tmp_path_factory.mktemp("noisy") / "noisy", seed)
    out = tmp_path_factory.mktemp("outputs")
    baseline.main(baseline.Args(dataset_dir=dataset, text_fields=["text"], output_root=out, c_values=C_VALUES))
    (run_dir,) = run_dirs(out)
    expected = oracle(dataset)
    assert expected["choice"][0] == winner
    return run_dir, expected


def test_the_classifier_and_c_are_the_best_on_val_of_the_grid(chosen):
    run_dir, expected = chosen
    assert len(set(expected["f1"])) > 2  # the grid's candidates differ: the choice is a real one
    assert run_dir.parent.parent.name == "tfidf-char-linear"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["classifier"], config["C"]) == expected["choice"]
    for split in ("val", "test"):
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        assert (metrics["classifier"], metrics["C"]) == expected["choice"]
    assert metrics["best_epoch"] == CANDIDATES.index(expected["choice"]) + 1
    with open(run_dir / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    assert [(row["epoch"], row["classifier"], float(row["C"])) for row in log] == [
        (str(i), name, c) for i, (name, c) in enumerate(CANDIDATES, start=1)
    ]
    assert [float(row["val_f1"]) for row in log] == pytest.approx(expected["f1"])
    predicted = [line["predicted"] for line in read_jsonl(run_dir / "test-predictions.jsonl")]
    assert predicted == ["abc"[i] for i in expected["model"].predict(expected["x"]["test"])]


def test_the_probabilities_are_logistic_regressions_or_the_svm_scores_at_a_temperature_fitted_on_train(chosen):
    """Temperature scaling (Guo et al., 2017): softmax(scores / T) keeps the SVM's prediction, and T
    minimises the log-loss of 5-fold cross-validated scores on train (stratified, shuffled by --seed)."""
    run_dir, expected = chosen
    config = json.loads((run_dir / "config.json").read_text())
    model, x, y, temperature = expected["model"], expected["x"], expected["y"], config["temperature"]
    if config["classifier"] == "LogisticRegression":
        probabilities = model.predict_proba(x["test"])
    else:
        probabilities = softmax(model.decision_function(x["test"]) / temperature, axis=1)
    lines = read_jsonl(run_dir / "test-predictions.jsonl")
    assert [list(line["probabilities"].values()) for line in lines] == pytest.approx(probabilities, abs=1e-4)
    if config["classifier"] == "LogisticRegression":
        assert temperature is None
        return
    scores = np.zeros((len(y["train"]), 3))
    for rows, held_out in StratifiedKFold(5, shuffle=True, random_state=42).split(x["train"], y["train"]):
        scores[held_out] = (
            fitted("LinearSVC", config["C"])
            .fit(x["train"][rows], y["train"][rows])
            .decision_function(x["train"][held_out])
        )

    def cross_validated_loss(t: float) -> float:
        return -log_softmax(scores / t, axis=1)[np.arange(len(scores)), y["train"]].mean()

    assert cross_validated_loss(temperature) <= min(cross_validated_loss(temperature * f) for f in (0.9, 1.1))


def test_the_baseline_reports_the_calibration_of_its_probabilities_as_train_py_does(chosen):
    run_dir, _ = chosen
    for split in ("val", "test"):
        lines = read_jsonl(run_dir / f"{split}-predictions.jsonl")
        metrics = json.loads((run_dir / f"{split}-metrics.json").read_text())
        confidence = [line["probabilities"][line["predicted"]] for line in lines]
        ece, mce = ece_by_the_formula(confidence, [line["label"] == line["predicted"] for line in lines])
        assert (metrics["ece"], metrics["mce"]) == pytest.approx((ece, mce), abs=1e-12)
        assert metrics["nll"] == metrics["loss"] and sum(metrics["reliability"]["count"]) == len(lines)


def test_a_class_with_a_single_train_example_leaves_the_svm_scores_unscaled(tmp_path):
    """Nothing to cross-validate: T = 1 (softmax of the raw scores), and the run completes."""
    splits = {
        "train": ["良い"] * 4 + ["悪い"] * 4 + ["普通"],
        "val": ["良い良い", "悪い悪い"],
        "test": ["良い", "悪い"],
    }
    dataset = tmp_path / "reviews"
    dataset.mkdir()
    (dataset / "label2id.json").write_text(json.dumps({"良": 0, "悪": 1, "普": 2}, ensure_ascii=False))
    for split, texts in splits.items():
        lines = [
            json.dumps({"text": text + f"{i}", "label": text[0]}, ensure_ascii=False) for i, text in enumerate(texts)
        ]
        (dataset / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    baseline.main(
        baseline.Args(dataset_dir=dataset, text_fields=["text"], output_root=tmp_path / "out", c_values=[1.0])
    )
    (run_dir,) = run_dirs(tmp_path / "out")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["classifier"], config["temperature"]) == ("LinearSVC", 1.0)  # every candidate is perfect on val


def refuse(*args, **kwargs):
    raise AssertionError("the features were computed before the output folder was checked")


def test_an_unwritable_output_root_is_one_line_before_the_features(dataset_dir, tmp_path, monkeypatch):
    """Tests run as root, whom a read-only folder does not stop: a path under a regular file cannot be made."""
    (tmp_path / "a-file").write_text("")
    root = tmp_path / "a-file" / "outputs"
    monkeypatch.setattr(baseline, "TfidfVectorizer", refuse)
    with pytest.raises(SystemExit) as exited:
        baseline.main(baseline.Args(dataset_dir=dataset_dir, output_root=root))
    folder = root / dataset_dir.name
    assert (
        exited.value.code
        == f"baseline.py: error: cannot write to {folder} (Not a directory): give a writable --output_root"
    )


@pytest.mark.parametrize("failing", ["config.json", "log.csv", "test-metrics.json"])
def test_a_full_disk_is_one_line_and_leaves_no_run_behind(dataset_dir, tmp_path, monkeypatch, failing):
    """No half-written run that a later stage (aggregate.py, --skip_if_done) could read: the folder goes."""
    write_text = files.write_text

    def full_disk(path, text):
        if path.name == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_text(path, text)

    monkeypatch.setattr(files, "write_text", full_disk)  # what write_json writes with
    monkeypatch.setattr(runs, "write_text", full_disk)  # and write_predictions
    monkeypatch.setattr(baseline, "write_text", full_disk, raising=False)
    with pytest.raises(SystemExit) as exited:
        baseline.main(baseline.Args(dataset_dir=dataset_dir, output_root=tmp_path / "out", c_values=[1.0]))
    message = str(exited.value.code)
    assert message.startswith(f"baseline.py: error: cannot write to {tmp_path / 'out' / dataset_dir.name}/")
    assert "(No space left on device)" in message and "\n" not in message
    assert run_dirs(tmp_path / "out") == [] and not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "option, message",
    [
        (["--seed", "-5"], "--seed must be in [0, 2**32 - 1] (got -5)"),
        (["--c_values", "nan"], "every --c_values a finite number > 0"),
        (["--c_values", "1", "0"], "every --c_values a finite number > 0"),
    ],
)
def test_values_the_solvers_refuse_are_one_line_before_anything_runs(option, message, tmp_path, in_process):
    """Today's scikit-learn would refuse them minutes later, with a traceback and an empty run folder."""
    argv = ["--output_root", tmp_path / "out", *option]
    if option[0] == "--seed":  # the real process's exit path, once
        result = run_script("src/baseline.py", *argv, check=False)
    else:
        result = in_process(baseline, *argv, check_args=baseline.check_args)
    assert result.returncode == 1 and result.stderr.startswith("baseline.py: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_seed_numpy_refuses_is_one_line_in_train_py(in_process):
    import train

    result = in_process(train, "--seed", "-1", check_args=train.check_args)
    assert result.returncode == 1 and result.stderr.strip() == (
        "train.py: error: --seed must be in [0, 2**32 - 1] (numpy's and transformers' seeds) (got -1)"
    )
