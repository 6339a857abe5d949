"""A classical reference: TF-IDF over character n-grams + a linear classifier, on the same splits.

    python src/baseline.py

Character n-grams need no Japanese word segmentation, and on news categories they are a strong
baseline: the row it adds to every results table shows what fine-tuning an encoder buys. It should be
the strongest cheap model, or the table flatters the encoders: a linear SVM over TF-IDF is the classic
strong text classifier (Joachims, 1998), and on livedoor's test split (issue #20) it reached 97.28%
accuracy against 96.20% for logistic regression. So both the classifier (LinearSVC, LogisticRegression)
and its regularisation strength C (--c_values) are chosen by validation macro-F1, like the best epoch
of train.py; a tie goes to the earlier candidate, LinearSVC (the stronger on text, and the faster)
before LogisticRegression, each C in the order given. The chosen model is the one fitted on train, not
refitted on train + val, as the fine-tuned models are: the same data for every row of the table.

Probabilities (prediction files, the loss): LogisticRegression's own. A linear SVM has only decision
scores; they become probabilities by temperature scaling (Guo et al., 2017, "On Calibration of Modern
Neural Networks"; calibration.fit_temperature, as train.py's): softmax(scores / T), with one T that
minimises the log-loss of 5-fold cross-validated scores on train, so that neither val nor test is seen
(train.py fits its T on val's logits: an encoder's train logits are those it was fitted to, and the
baseline's val chooses C). One T for every class keeps the SVM's own prediction as the most probable
label, which per-class sigmoids (Platt scaling, CalibratedClassifierCV) need not do. config.json records
the classifier, C and T ("temperature", null for logistic regression); the metrics files report the
calibration of these probabilities as train.py's do (ECE, MCE, NLL).

A multi-label dataset (dataset.json's "multi_label": a list of labels per text, possibly empty): one
logistic regression per label on the same features (one-vs-rest), each label's probability its own,
a label predicted at THRESHOLD (0.5) or above, as train.py does by default; C is chosen on validation
macro-F1 over the same --c_values (no SVM: it would need a temperature per label). The loss is train.py's:
the binary cross-entropy averaged over labels and texts. A label that no train text has (or that every
one has) cannot be learned: its probability is 0 (or 1) everywhere, and a line says so. config.json
records "multi_label" and the "threshold" (null for single-label runs).

--class_weights balanced weighs each class by the inverse of its frequency in train (scikit-learn's
class_weight="balanced"; multi-label: each label's texts with and without it), as train.py's option.

The run is written to outputs/ in the same format as train.py's (log.csv has a row per candidate instead
of per epoch), with the chosen model's predictions on val and test (runs.write_predictions) for
aggregate.py's confidence intervals and paired comparisons. The run folder is made before the features
are computed, so that an unwritable --output_root is one line at once; if a file cannot be written (a
full disk), the folder is removed: nothing half-written is left for aggregate.py to read.
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import math
import shutil
import sys
import time
import warnings

import numpy as np
import sklearn
from classopt import classopt, config
from scipy.special import softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from livedoor_classification import calibration
from livedoor_classification.calibration import fit_temperature
from livedoor_classification.dataset_files import SPLITS, PreparedDataset
from livedoor_classification.files import write_csv, write_json
from livedoor_classification.metrics import classification_metrics, multi_label_metrics, summary_keys
from livedoor_classification.runs import (
    as_written,
    create_run_dir,
    find_complete_run,
    interruption_reported,
    provenance,
    recorded_args,
    write_predictions,
)

MODEL_NAME = "tfidf-char-linear"
CLASSIFIERS = ("LinearSVC", "LogisticRegression")  # in the order a tie on val macro-F1 goes by
MULTI_LABEL_CLASSIFIERS = ("OneVsRestLogisticRegression",)
THRESHOLD = 0.5  # multi-label: a label is predicted at this probability or above (train.py's default)
CV_FOLDS = 5  # for the SVM's temperature; fewer when a class of train has fewer examples


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args(cli.DatasetOptions):  # --dataset, --dataset_dir, --output_root
    text_fields: list[str] = config(default=None, nargs="+", help="fields joined into one text; default: the dataset's")
    ngram_min: int = config(default=1, help="shortest character n-gram")
    ngram_max: int = config(default=3, help="longest character n-gram")
    max_features: int = config(default=300_000, help="keep the most frequent n-grams only")
    c_values: list[float] = config(
        default=[0.1, 1.0, 10.0, 100.0], nargs="+", help="inverse regularisation strengths, tried with each classifier"
    )
    class_weights: str = config(
        default=None, choices=["balanced"], help="balanced: weigh each class by its inverse frequency in train"
    )
    seed: int = config(default=42, help="seed of the solvers and of the SVM's cross-validation folds")
    skip_if_done: bool = config(
        default=False, help="exit at once if output_root already holds a complete run of these settings and dataset"
    )


def check_args(args: Args) -> None:
    """The numeric options, before anything runs: one line instead of scikit-learn's traceback later."""
    if not 1 <= args.ngram_min <= args.ngram_max:
        raise ValueError(
            f"--ngram_min and --ngram_max must satisfy 1 <= min <= max (got {args.ngram_min}, {args.ngram_max})"
        )
    if args.max_features < 1 or not args.c_values or not all(0 < c < math.inf for c in args.c_values):
        raise ValueError(
            f"--max_features must be >= 1 and every --c_values a finite number > 0 "
            f"(got {args.max_features}, {args.c_values})"
        )
    if not 0 <= args.seed < 2**32:  # scikit-learn's random_state, numpy's seed
        raise ValueError(f"--seed must be in [0, 2**32 - 1] (got {args.seed})")


def texts(records: list[dict], fields: list[str]) -> list[str]:
    return ["\n".join(r[field] for field in fields) for r in records]


def decision_scores(svm: LinearSVC, features) -> np.ndarray:
    """A column per class of svm.classes_. With two classes LinearSVC gives one score s, for classes_[1]:
    as the columns [-s/2, s/2], their softmax is the sigmoid of s and their argmax the SVM's prediction."""
    scores = svm.decision_function(features)
    return np.column_stack([-scores, scores]) / 2 if scores.ndim == 1 else scores


class TemperatureScaledSVM:
    """A LinearSVC whose probabilities are softmax(decision scores / T), T fitted on cross-validated
    scores of train (the module docstring says why). classes_, coef_ and intercept_ are the SVM's."""

    def __init__(self, c: float, seed: int, class_weight: str | None = None):
        self.c, self.seed, self.class_weight = c, seed, class_weight

    def svm(self) -> LinearSVC:
        return LinearSVC(C=self.c, max_iter=10_000, random_state=self.seed, class_weight=self.class_weight)

    def fit(self, features, labels: np.ndarray) -> "TemperatureScaledSVM":
        self.fitted = self.svm().fit(features, labels)
        self.classes_, self.coef_, self.intercept_ = self.fitted.classes_, self.fitted.coef_, self.fitted.intercept_
        self.temperature = self.fit_temperature(features, labels)
        return self

    def fit_temperature(self, features, labels: np.ndarray) -> float:
        """The T of least log-loss on train's scores, each from a model fitted without its example; 1 when
        a class of train has a single example, as there is then nothing to cross-validate."""
        folds = min(CV_FOLDS, int(np.unique(labels, return_counts=True)[1].min()))
        if folds < 2:
            return 1.0
        scores = np.zeros((len(labels), len(self.classes_)))
        for rows, held_out in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(features, labels):
            scores[held_out] = decision_scores(self.svm().fit(features[rows], labels[rows]), features[held_out])
        # train.py's temperature scaling (calibration.py), on scores held out of train instead of val's logits
        return fit_temperature(scores, np.searchsorted(self.classes_, labels), multi_label=False)

    def predict_proba(self, features) -> np.ndarray:
        return softmax(decision_scores(self.fitted, features) / self.temperature, axis=1)


def linear_model(name: str, c: float, seed: int, class_weight: str | None = None):
    if name == "LinearSVC":
        return TemperatureScaledSVM(c, seed, class_weight)
    logistic = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=class_weight)
    return OneVsRestLabels(logistic) if name == "OneVsRestLogisticRegression" else logistic


class OneVsRestLabels(OneVsRestClassifier):
    """Multi-label: a binary classifier per label (the columns of a 0/1 matrix). scikit-learn gives a
    label without positive (or negative) train texts a constant probability 0 (or 1) and warns once per
    label on every fit; main() says it once instead."""

    def fit(self, features, labels: np.ndarray) -> "OneVsRestLabels":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
            return super().fit(features, labels.astype(int))


def num_parameters(model) -> int:
    """Weights and biases; a one-vs-rest model's summed over its labels (a constant label has none)."""
    fitted = getattr(model, "estimators_", [model])
    return sum(m.coef_.size + m.intercept_.size for m in fitted if hasattr(m, "coef_"))


def probabilities(classifier, features, num_labels: int) -> np.ndarray:
    """A column per label id. The classifier has a column per label it saw in train only (a rare label
    may be missing there); a label it never saw gets probability 0, so that predictions, metrics and
    the loss still cover every label."""
    known = classifier.predict_proba(features)
    full = np.zeros((known.shape[0], num_labels))
    full[:, classifier.classes_] = known
    return full


def evaluate(classifier, features, labels, names: list[str]) -> tuple[dict, np.ndarray]:
    """The metrics, and the probabilities they come from (for the predictions file). Multi-label (labels
    a 0/1 matrix): the labels of probability THRESHOLD or above are predicted. Their calibration as train.py
    reports it (calibration.py), on the probabilities as the prediction file writes them; the NLL is the loss."""
    p = probabilities(classifier, features, len(names))
    if labels.ndim == 2:
        predicted = p >= THRESHOLD
        metrics = {"loss": binary_log_loss(labels, p)} | multi_label_metrics(labels, predicted, names)
    else:
        predicted = p.argmax(axis=1)
        loss = log_loss(labels, p, labels=range(len(names)))
        metrics = {"loss": loss} | classification_metrics(labels, predicted, names)
    return metrics | calibration.report(as_written(p), predicted, labels, names) | {"nll": metrics["loss"]}, p


def binary_log_loss(labels: np.ndarray, p: np.ndarray) -> float:
    """train.py's multi-label loss: each label's binary cross-entropy, averaged over labels and texts.
    Probabilities are clipped to [eps, 1 - eps] as scikit-learn's log_loss clips them, so that a
    label the model gives 0 (one train never has) costs -log(eps), not infinity."""
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def unlearnable(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    """Multi-label: the labels on no train text (probability 0 everywhere) or on every one (1)."""
    counts = labels.sum(axis=0)
    return {name: int(count > 0) for name, count in zip(names, counts, strict=True) if count in (0, len(labels))}


def example_ids(records: list[dict]) -> list:
    """Each record's "id" (prepare.py writes one), else its 0-based position in the split file:
    aggregate.py pairs two runs' predictions by these ids."""
    return [record.get("id", i) for i, record in enumerate(records)]


def features_of(args: Args, splits: dict[str, list[dict]]) -> dict:
    """TF-IDF of character n-grams, fitted on train. Sublinear tf (1 + log tf): an n-gram repeated all
    through a long article is not worth proportionally more. min_df=2: an n-gram of a single train text
    says nothing about unseen texts and only adds weights."""
    vectorizer = TfidfVectorizer(
        analyzer="char",
        ngram_range=(args.ngram_min, args.ngram_max),
        max_features=args.max_features,
        sublinear_tf=True,
        min_df=2,
    )
    features = {"train": vectorizer.fit_transform(texts(splits["train"], args.text_fields))}
    return features | {s: vectorizer.transform(texts(splits[s], args.text_fields)) for s in ("val", "test")}


def select(args: Args, features: dict, labels: dict, names: list[str]) -> tuple[list[dict], tuple]:
    """Every candidate (classifier, C) fitted on train and scored on val: log.csv's rows, and the first
    of the best by val macro-F1 as (step, its val metrics, its val probabilities, the fitted model)."""
    rows, best = [], None
    multi_label = labels["train"].ndim == 2
    classifiers = MULTI_LABEL_CLASSIFIERS if multi_label else CLASSIFIERS
    accuracy = "subset_accuracy" if multi_label else "accuracy"
    candidates = [(name, c) for name in classifiers for c in args.c_values]
    for step, (name, c) in enumerate(candidates, start=1):
        start = time.perf_counter()
        model = linear_model(name, c, args.seed, args.class_weights).fit(features["train"], labels["train"])
        seconds = time.perf_counter() - start
        val, val_probabilities = evaluate(model, features["val"], labels["val"], names)
        metrics = {f"val_{key}": val[key] for key in ("loss", *summary_keys(multi_label))}
        rows.append({"epoch": step, "classifier": name, "C": c, **metrics, "epoch_seconds": seconds})
        print(
            f"{name} C={c}: val {accuracy.replace('_', ' ')} {val[accuracy]:.4f}, val F1 {val['f1']:.4f}, "
            f"{seconds:.1f} s"
        )
        if best is None or val["f1"] > best[1]["f1"]:
            best = (step, val, val_probabilities, model)
    return rows, best


def run(args: Args, run_dir, splits: dict, labels: dict, names: list[str], config: dict) -> None:
    """Fit, choose, evaluate, then write the run's files, test-metrics.json last (the run is then complete)."""
    features = features_of(args, splits)
    log, (step, val, val_probabilities, model) = select(args, features, labels, names)
    test, test_probabilities = evaluate(model, features["test"], labels["test"], names)
    chosen = {"classifier": log[step - 1]["classifier"], "C": log[step - 1]["C"]}
    fitted = {"temperature": getattr(model, "temperature", None), "num_parameters": num_parameters(model)}
    write_json(run_dir / "config.json", config | chosen | fitted)
    write_csv(run_dir / "log.csv", log)  # whole, once the grid is done: a full disk leaves no partial log
    for split, p in (("val", val_probabilities), ("test", test_probabilities)):
        path, ids = run_dir / f"{split}-predictions.jsonl", example_ids(splits[split])
        write_predictions(path, ids, labels[split], p, names, config["threshold"])
    write_json(run_dir / "val-metrics.json", {"best_epoch": step} | chosen | val)
    write_json(run_dir / "test-metrics.json", {"best_epoch": step} | chosen | test)
    best = f"best {chosen['classifier']} C={chosen['C']}"
    accuracy = "subset_accuracy" if config["multi_label"] else "accuracy"
    print(f"{best}: test {accuracy.replace('_', ' ')} {test[accuracy]:.4f}, test F1 {test['f1']:.4f} -> {run_dir}")


def check_learnable(train_labels: np.ndarray, dataset: PreparedDataset) -> None:
    """A classifier needs texts with and without a label: a one-line ValueError when train has none to learn
    from, and a note for each multi-label label that no train text has (or every one has)."""
    train = dataset.folder / "train.jsonl"
    if not dataset.multi_label:
        if len(set(train_labels)) < 2:
            raise ValueError(f"{train} has a single label: a classifier needs two")
        return
    constant = unlearnable(train_labels, dataset.names)
    if len(constant) == len(dataset.names):
        raise ValueError(
            f"in {train} every label is on all texts or on none: a classifier needs texts with and without a label"
        )
    for name, probability in constant.items():
        where = "every" if probability else "no"
        print(f"note: label {name!r} is on {where} train text: the baseline gives it probability {probability}")


def main(args: Args) -> None:
    try:
        check_args(args)
        args.resolve_dataset()
        dataset = PreparedDataset(args.dataset_dir)  # its files read once, its fingerprint hashed once
        args.text_fields = args.text_fields or dataset.text_fields
        runs_dir = args.output_root / args.dataset  # every dataset's runs apart
        # Done means done on this very dataset: a baseline of livedoor is no baseline of another corpus.
        planned = recorded_args(args) | {"model_name": MODEL_NAME, "dataset_fingerprint": dataset.fingerprint}
        if args.skip_if_done and (done := find_complete_run(runs_dir, MODEL_NAME, planned)):
            print(f"already complete, skipped: {done}")
            return
        splits = {split: dataset.split(split, args.text_fields) for split in SPLITS}
        labels = {split: np.array([r["label"] for r in records]) for split, records in splits.items()}
        check_learnable(labels["train"], dataset)
    except ValueError as e:
        sys.exit(f"baseline.py: error: {e}")
    try:
        run_dir = create_run_dir(runs_dir, MODEL_NAME)  # before the features: an unwritable folder is found at once
    except OSError as e:
        sys.exit(f"baseline.py: error: cannot write to {runs_dir} ({e.strerror or e}): give a writable --output_root")
    config = {
        "model_name": MODEL_NAME,
        **recorded_args(args),
        "multi_label": dataset.multi_label,
        "threshold": THRESHOLD if dataset.multi_label else None,
        "label2id": dataset.label2id,
        "dataset_fingerprint": dataset.fingerprint,
        "num_examples": {split: len(records) for split, records in splits.items()},
        **provenance(**{"scikit-learn": sklearn.__version__}),
    }
    try:
        with interruption_reported(run_dir):  # Ctrl-C: one line naming the incomplete folder
            run(args, run_dir, splits, labels, dataset.names, config)
    except OSError as e:  # a full disk: no half-written run for aggregate.py or --skip_if_done to read
        shutil.rmtree(run_dir, ignore_errors=True)
        sys.exit(
            f"baseline.py: error: cannot write to {run_dir} ({e.strerror or e}), so it is removed:"
            " free some space or give another --output_root"
        )


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args, check_args))
