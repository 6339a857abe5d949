"""A classical reference: TF-IDF over character n-grams + logistic regression, on the same splits.

    python src/baseline.py

Character n-grams need no Japanese word segmentation, and on news categories they are a strong
baseline: the row it adds to every results table shows what fine-tuning an encoder buys. The
regularisation strength C is chosen by validation macro-F1, like the best epoch of train.py, and
the run is written to outputs/ in the same format (log.csv has a row per C instead of per epoch),
with the chosen C's predictions on val and test (runs.write_predictions) for aggregate.py's
confidence intervals and paired comparisons.
"""

from classopt import classopt, config

import cli

MODEL_NAME = "tfidf-char-logreg"
# n-grams of whole texts: train.py's --truncation and --windows do not apply (and their defaults, which
# runs.IDENTITY assumes where config.json lacks them, would show as "head" and 1 in aggregate's tables)
WHOLE_TEXTS = {"truncation": None, "windows": None}


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args(cli.DatasetOptions):  # --dataset, --dataset_dir, --output_root
    text_fields: list[str] = config(default=None, nargs="+", help="fields joined into one text; default: the dataset's")
    ngram_min: int = config(default=1, help="shortest character n-gram")
    ngram_max: int = config(default=3, help="longest character n-gram")
    max_features: int = config(default=300_000, help="keep the most frequent n-grams only")
    c_values: list[float] = config(default=[1.0, 10.0, 100.0], nargs="+", help="inverse regularisation strengths")
    seed: int = config(default=42, help="seed of the solver")
    skip_if_done: bool = config(
        default=False, help="exit at once if output_root already holds a complete run of these settings and dataset"
    )


def check_args(args: Args) -> None:
    """The numeric options, before anything runs: one line instead of scikit-learn's traceback later."""
    if not 1 <= args.ngram_min <= args.ngram_max:
        raise ValueError(
            f"--ngram_min and --ngram_max must satisfy 1 <= min <= max (got {args.ngram_min}, {args.ngram_max})"
        )
    if args.max_features < 1 or not args.c_values or min(args.c_values) <= 0:
        raise ValueError(
            f"--max_features must be >= 1 and every --c_values > 0 (got {args.max_features}, {args.c_values})"
        )


if __name__ == "__main__":
    ARGS = cli.parse(Args, check_args)  # before scikit-learn is imported: --help answers at once

import sys
import time

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from metrics import SUMMARY_KEYS, classification_metrics
from runs import (
    append_csv_row,
    create_run_dir,
    dataset_fingerprint,
    find_complete_run,
    interruption_reported,
    provenance,
    recorded_args,
    write_json,
    write_predictions,
)
from splits import dataset_text_fields, label_names, load_label2id, load_split


def texts(records: list[dict], fields: list[str]) -> list[str]:
    return ["\n".join(r[field] for field in fields) for r in records]


def probabilities(classifier, features, num_labels: int) -> np.ndarray:
    """A column per label id. The classifier has a column per label it saw in train only (a rare label
    may be missing there); a label it never saw gets probability 0, so that predictions, metrics and
    the loss still cover every label."""
    known = classifier.predict_proba(features)
    full = np.zeros((known.shape[0], num_labels))
    full[:, classifier.classes_] = known
    return full


def evaluate(classifier, features, labels, names: list[str]) -> tuple[dict, np.ndarray]:
    """The metrics, and the probabilities they come from (for the predictions file)."""
    p = probabilities(classifier, features, len(names))
    metrics = classification_metrics(labels, p.argmax(axis=1), names)
    return {"loss": log_loss(labels, p, labels=range(len(names)))} | metrics, p


def example_ids(records: list[dict]) -> list:
    """Each record's "id" (prepare.py writes one), else its 0-based position in the split file:
    aggregate.py pairs two runs' predictions by these ids."""
    return [record.get("id", i) for i, record in enumerate(records)]


def main(args: Args) -> None:
    try:
        check_args(args)
        args.resolve_dataset()
        args.text_fields = args.text_fields or dataset_text_fields(args.dataset_dir)
        runs_dir = args.output_root / args.dataset  # every dataset's runs apart
        label2id = load_label2id(args.dataset_dir)
        fingerprint = dataset_fingerprint(args.dataset_dir)
        # Done means done on this very dataset: a baseline of livedoor is no baseline of another corpus.
        planned = recorded_args(args) | {"model_name": MODEL_NAME, "dataset_fingerprint": fingerprint, **WHOLE_TEXTS}
        if args.skip_if_done and (done := find_complete_run(runs_dir, MODEL_NAME, planned)):
            print(f"already complete, skipped: {done}")
            return
        splits = {s: load_split(args.dataset_dir, s, label2id, args.text_fields) for s in ("train", "val", "test")}
    except ValueError as e:
        sys.exit(f"baseline.py: error: {e}")
    names = label_names(label2id)
    labels = {split: np.array([r["label"] for r in records]) for split, records in splits.items()}
    if len(set(labels["train"])) < 2:
        sys.exit(f"baseline.py: error: {args.dataset_dir / 'train.jsonl'} has a single label: a classifier needs two")
    vectorizer = TfidfVectorizer(
        analyzer="char", ngram_range=(args.ngram_min, args.ngram_max), max_features=args.max_features,
        sublinear_tf=True, min_df=2,
    )  # fmt: skip
    features = {"train": vectorizer.fit_transform(texts(splits["train"], args.text_fields))}
    features |= {s: vectorizer.transform(texts(splits[s], args.text_fields)) for s in ("val", "test")}

    run_dir = create_run_dir(runs_dir, MODEL_NAME)
    with interruption_reported(run_dir):  # Ctrl-C: one line naming the incomplete folder
        write_json(run_dir / "config.json", {
            "model_name": MODEL_NAME,
            **recorded_args(args),
            "num_parameters": (len(vectorizer.vocabulary_) + 1) * len(names),
            "label2id": label2id,
            "dataset_fingerprint": fingerprint,
            "num_examples": {split: len(records) for split, records in splits.items()},
            **WHOLE_TEXTS,
            **provenance(**{"scikit-learn": sklearn.__version__}),
        })  # fmt: skip
        best = None
        for step, c in enumerate(args.c_values, start=1):
            start = time.perf_counter()
            classifier = LogisticRegression(C=c, max_iter=2000, random_state=args.seed)
            classifier.fit(features["train"], labels["train"])
            seconds = time.perf_counter() - start
            val, val_probabilities = evaluate(classifier, features["val"], labels["val"], names)
            metrics = {f"val_{key}": val[key] for key in ("loss", *SUMMARY_KEYS)}
            append_csv_row(run_dir / "log.csv", {"epoch": step, "C": c, **metrics, "epoch_seconds": seconds})
            print(f"C={c}: val accuracy {val['accuracy']:.4f}, val F1 {val['f1']:.4f}, {seconds:.1f} s")
            if best is None or val["f1"] > best[1]["f1"]:
                best = (step, val, val_probabilities, classifier)
        step, val, val_probabilities, classifier = best
        test, test_probabilities = evaluate(classifier, features["test"], labels["test"], names)
        for split, p in (("val", val_probabilities), ("test", test_probabilities)):
            write_predictions(
                run_dir / f"{split}-predictions.jsonl", example_ids(splits[split]), labels[split], p, names
            )
        write_json(run_dir / "val-metrics.json", {"best_epoch": step, "C": args.c_values[step - 1]} | val)
        write_json(run_dir / "test-metrics.json", {"best_epoch": step, "C": args.c_values[step - 1]} | test)  # last
    best_c = args.c_values[step - 1]
    print(f"best C={best_c}: test accuracy {test['accuracy']:.4f}, test F1 {test['f1']:.4f} -> {run_dir}")


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(ARGS)
