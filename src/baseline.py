"""A classical reference: TF-IDF over character n-grams + logistic regression, on the same splits.

    python src/baseline.py

Character n-grams need no Japanese word segmentation, and on news categories they are a strong
baseline: the row it adds to every results table shows what fine-tuning an encoder buys. The
regularisation strength C is chosen by validation macro-F1, like the best epoch of train.py, and
the run is written to outputs/ in the same format (log.csv has a row per C instead of per epoch).
"""

import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from classopt import classopt, config
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from data import load_label2id, load_split
from metrics import SUMMARY_KEYS, classification_metrics
from runs import ROOT, append_csv_row, create_run_dir, provenance, recorded_args, write_json

MODEL_NAME = "tfidf-char-logreg"


@classopt(default_long=True)
class Args:
    dataset_dir: Path = config(default=ROOT / "datasets" / "livedoor", help="{train,val,test}.jsonl + label2id.json")
    text_fields: list[str] = config(default=["title", "body"], nargs="+", help="fields joined into one text")
    ngram_min: int = config(default=1, help="shortest character n-gram")
    ngram_max: int = config(default=3, help="longest character n-gram")
    max_features: int = config(default=300_000, help="keep the most frequent n-grams only")
    c_values: list[float] = config(default=[1.0, 10.0, 100.0], nargs="+", help="inverse regularisation strengths")
    seed: int = config(default=42, help="seed of the solver")
    output_root: Path = config(default=ROOT / "outputs", help="run folders go to <root>/<model>/<date>/<time>/")


def texts(records: list[dict], fields: list[str]) -> list[str]:
    return ["\n".join(r[field] for field in fields) for r in records]


def evaluate(classifier, features, labels, label_names) -> dict:
    probabilities = classifier.predict_proba(features)
    metrics = classification_metrics(labels, probabilities.argmax(axis=1), label_names)
    return {"loss": log_loss(labels, probabilities, labels=range(len(label_names)))} | metrics


def main(args: Args) -> None:
    try:
        label2id = load_label2id(args.dataset_dir)
        splits = {s: load_split(args.dataset_dir, s, label2id, args.text_fields) for s in ("train", "val", "test")}
    except ValueError as e:
        sys.exit(f"baseline.py: error: {e}")
    label_names = list(label2id)
    labels = {split: np.array([r["label"] for r in records]) for split, records in splits.items()}
    vectorizer = TfidfVectorizer(
        analyzer="char", ngram_range=(args.ngram_min, args.ngram_max), max_features=args.max_features,
        sublinear_tf=True, min_df=2,
    )  # fmt: skip
    features = {"train": vectorizer.fit_transform(texts(splits["train"], args.text_fields))}
    features |= {s: vectorizer.transform(texts(splits[s], args.text_fields)) for s in ("val", "test")}

    run_dir = create_run_dir(args.output_root, MODEL_NAME)
    write_json(run_dir / "config.json", {
        "model_name": MODEL_NAME,
        **recorded_args(args),
        "num_parameters": (len(vectorizer.vocabulary_) + 1) * len(label_names),
        "label2id": label2id,
        "num_examples": {split: len(records) for split, records in splits.items()},
        **provenance(**{"scikit-learn": sklearn.__version__}),
    })  # fmt: skip
    best = None
    for step, c in enumerate(args.c_values, start=1):
        start = time.perf_counter()
        classifier = LogisticRegression(C=c, max_iter=2000, random_state=args.seed)
        classifier.fit(features["train"], labels["train"])
        seconds = time.perf_counter() - start
        val = evaluate(classifier, features["val"], labels["val"], label_names)
        metrics = {f"val_{key}": val[key] for key in ("loss", *SUMMARY_KEYS)}
        append_csv_row(run_dir / "log.csv", {"epoch": step, "C": c, **metrics, "epoch_seconds": seconds})
        print(f"C={c}: val accuracy {val['accuracy']:.4f}, val F1 {val['f1']:.4f}, {seconds:.1f} s")
        if best is None or val["f1"] > best[1]["f1"]:
            best = (step, val, classifier)
    step, val, classifier = best
    test = evaluate(classifier, features["test"], labels["test"], label_names)
    write_json(run_dir / "val-metrics.json", {"best_epoch": step, "C": args.c_values[step - 1]} | val)
    write_json(run_dir / "test-metrics.json", {"best_epoch": step, "C": args.c_values[step - 1]} | test)
    print(
        f"best C={args.c_values[step - 1]}: test accuracy {test['accuracy']:.4f}, test F1 {test['f1']:.4f} -> {run_dir}"
    )


if __name__ == "__main__":
    main(Args.from_args())
