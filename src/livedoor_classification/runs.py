"""Run folders under outputs/: where a run writes its config, log and metrics, and how to tell a
finished run from one that crashed or is still going.

    outputs/<dataset>/<model name, "/" as "__">/<YYYY-MM-DD>/<HH-MM-SS.ffffff>/
        config.json        written first: arguments and what was resolved from them
        log.csv            a row per epoch, appended as training goes
        val-metrics.json   the best epoch's weights on the validation split
        val-predictions.jsonl, test-predictions.jsonl   a line per example (write_predictions); train.py's
                           probabilities are temperature-scaled (calibration.py; config.json's "temperature")
        model/             only with train.py --save_model: the best epoch's weights and tokenizer
        test-metrics.json  written last: a run is complete exactly when this file exists

Every JSON file is written to a temporary name and renamed, so a file that exists is whole.

A run's identity (IDENTITY) is the dataset it trained on, by fingerprint, and every setting that
changes its numbers: aggregate.py keeps runs of different identities apart, and train.py
--skip_if_done counts a run as done only if one of the same identity is complete.
"""

import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from livedoor_classification.dataset_files import dataset_fingerprint
from livedoor_classification.files import write_json, write_text
from livedoor_classification.paths import ROOT

COMPLETION_FILE = "test-metrics.json"

# The config.json keys that make a run's identity: the dataset (by fingerprint) and every setting that
# changes its numbers. A key a run does not have (the baseline has no lr) is None. A new setting that
# changes results is added here and nowhere else. Not here: what gives the same numbers by other means
# (gradient_checkpointing, compile, eval_batch_size, the device's name, output paths).
IDENTITY = (
    "dataset_fingerprint",
    "model_name",
    "text_fields",
    "lr",
    "seed",
    "epochs",
    "global_batch_size",  # batch_size x grad_accum x world_size: see global_batch_size()
    "max_seq_len_used",
    "truncation",  # which tokens of a long text are seen: inputs.Truncation
    "head_tokens",
    "windows",
    "window_stride",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "precision_used",
    "deterministic",
    "max_train_samples",  # a smoke test on a subset: its numbers are not the full run's (None: the whole split)
    "max_eval_samples",
    "class_weights",  # None, or "balanced": each class's loss weighed by its inverse frequency in train
    "threshold",  # multi-label: a label is predicted at this probability or above
    "patience",  # early stopping: a run that stopped early is not the run that trained every epoch
    "lora_r",  # train.py --lora: None for full fine-tuning (every --lora setting is)
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_4bit",
    "ngram_min",  # the baseline's own settings
    "ngram_max",
    "max_features",
    "c_values",
)
# Values resolved when a run starts, and the argument each comes from: the model's position limit
# caps max_seq_len, and "auto" picks a precision for the device. --skip_if_done decides before any
# model is loaded, so it compares the arguments instead.
RESOLVED_FROM = {"max_seq_len_used": "max_seq_len", "precision_used": "precision"}


def model_dir_name(model_name: str) -> str:
    """A hub id like tohoku-nlp/bert-base-japanese-v3 becomes tohoku-nlp__bert-base-japanese-v3; a
    local directory is named by its last component."""
    path = Path(model_name)
    return path.name if path.is_dir() else model_name.strip("/").replace("/", "__")


def create_run_dir(output_root: Path, model_name: str) -> Path:
    """A fresh folder named by the current time; exist_ok=False so that two runs started in the
    same microsecond (a sweep on several GPUs) cannot share one."""
    while True:
        now = datetime.now()
        run_dir = output_root / model_dir_name(model_name) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S.%f")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue


PROBABILITY_DECIMALS = 4  # a prediction file's probabilities; more digits would say more than a model knows


def as_written(probabilities):
    """Probabilities as a prediction file holds them (float64, rounded), so that what is computed from them
    (the ECE of the metrics files) is what the file's lines give again, to the last bit."""
    import numpy as np  # here, not above: the sweep's --status imports runs.py before any environment exists

    return np.round(np.asarray(probabilities, dtype=np.float64), PROBABILITY_DECIMALS)


def predicted_labels(row, names: Sequence[str], threshold: float | None):
    """The most probable label's name, or (multi-label, a threshold given) the names of every label of
    probability >= threshold, in label id order, maybe none. train.py's prediction files and predict.py alike."""
    if threshold is None:
        return names[int(row.argmax())]
    return [name for name, p in zip(names, row, strict=True) if p >= threshold]


def write_predictions(
    path: Path, ids: Sequence, labels: Sequence, probabilities, names: Sequence[str], threshold: float | None = None
) -> None:
    """<split>-predictions.jsonl: a line per example, in dataset order: its id, the gold label, the
    predicted label (the most probable, taken before rounding) and every label's probability rounded to
    4 decimals (as_written). Multi-label (a threshold given; labels are multi-hot rows): "label" and "predicted" are
    lists of names, in label id order, the predicted ones those of probability >= threshold (before
    rounding). Metrics recomputed from "label" and "predicted" equal the reported ones."""
    lines = []
    for example_id, label, row, shown in zip(ids, labels, probabilities, as_written(probabilities), strict=True):
        gold = names[label] if threshold is None else [name for name, y in zip(names, label, strict=True) if y]
        record = {
            "id": example_id,
            "label": gold,
            "predicted": predicted_labels(row, names, threshold),
            "probabilities": dict(zip(names, shown.tolist(), strict=True)),
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text(path, "".join(lines))


def recorded_args(args) -> dict:
    """A script's arguments as config.json records them (paths absolute, as strings)."""
    return {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in vars(args).items()}


@contextmanager
def interruption_reported(run_dir: Path | None, resumable: bool = False):
    """Ctrl-C inside: first one line naming the run folder left incomplete (it lacks COMPLETION_FILE,
    so aggregate.py and --skip_if_done ignore it), and whether the same command continues it (train.py
    --resume); the script's cli.dies_of_sigint then ends the process without a traceback. run_dir None:
    say nothing (torchrun's processes other than rank 0)."""
    try:
        yield
    except KeyboardInterrupt:
        if run_dir is not None:
            how = "; the same command continues it after its last finished epoch (--resume)" if resumable else ""
            print(f"\ninterrupted: {run_dir} is incomplete (no {COMPLETION_FILE}){how}", file=sys.stderr)
        raise


def is_complete(run_dir: Path) -> bool:
    return (run_dir / COMPLETION_FILE).is_file() and (run_dir / "config.json").is_file()


def global_batch_size(config: dict) -> int | None:
    """Examples per optimizer step: as recorded, or from its factors for the arguments of a run not yet
    started (torchrun's world size included); None for the baseline."""
    if config.get("global_batch_size") is not None:
        return config["global_batch_size"]
    if config.get("batch_size") is None:
        return None
    return config["batch_size"] * config.get("grad_accum", 1) * config.get("world_size", 1)


def run_identity(config: dict, requested: bool = False) -> dict:
    """The IDENTITY keys of a config.json, lists as tuples (hashable). requested=True takes the
    arguments in place of the values resolved from them (RESOLVED_FROM), for a run not yet started."""
    identity = {}
    for key in IDENTITY:
        value = config.get(RESOLVED_FROM.get(key, key) if requested else key)
        identity[key] = tuple(value) if isinstance(value, list) else value
    identity["global_batch_size"] = global_batch_size(config)
    return identity


def provenance(**library_versions: str | None) -> dict:
    """What config.json records of where a run came from: versions, git state and start time."""
    return {
        "versions": {"python": platform.python_version(), **library_versions},
        **git_state(),
        "start_time": datetime.now().isoformat(timespec="seconds"),
    }


def git_state(cwd: Path = ROOT) -> dict:
    """The commit, whether the tree differs from it (untracked files count: new code changes results
    too), and the SHA-256 of `git diff HEAD --binary` when it does; all None outside a git checkout.
    The hash cannot restore the changes, but tells two runs of different uncommitted code apart."""
    commit = git(cwd, "rev-parse", "HEAD")
    status = git(cwd, "status", "--porcelain")
    if commit is None or status is None:
        return {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    diff = git(cwd, "diff", "HEAD", "--binary") if status else None
    return {
        "git_commit": commit.decode().strip(),
        "git_dirty": bool(status),
        "git_diff_sha256": hashlib.sha256(diff).hexdigest() if diff is not None else None,
    }


def git(cwd: Path, *args: str) -> bytes | None:
    """A git command's output as bytes (diffs need not be text), or None if it fails."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def read_config(run_dir: Path) -> dict | None:
    """A run folder's config.json, or None if it has none that reads (a folder being created)."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) else None


def note_resumed(run_dir: Path) -> None:
    """A continued run's config.json keeps its first start's values and lists when it was continued."""
    config = read_config(run_dir)  # resume.find_resumable_run has read it
    resumes = config.get("resumed_at", []) + [datetime.now().isoformat(timespec="seconds")]
    write_json(run_dir / "config.json", config | {"resumed_at": resumes})


def note_at_end(run_dir: Path, **values) -> None:
    """config.json was written before training; what is known only at the end (the temperature, the peak memory)
    is added to it then (no setting: not in runs.IDENTITY)."""
    write_json(run_dir / "config.json", read_config(run_dir) | values)


def read_run(run_dir: Path) -> dict:
    """config.json, val-metrics.json and test-metrics.json of a complete run; ValueError if any is
    missing or not valid JSON (a crashed run, or a file damaged after the fact)."""
    if not is_complete(run_dir):
        raise ValueError(f"{run_dir}: incomplete (no {COMPLETION_FILE}): crashed, interrupted or still running")
    files = {}
    for name in ("config", "val-metrics", "test-metrics"):
        try:
            files[name] = json.loads((run_dir / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{run_dir / f'{name}.json'}: unreadable ({e})") from None
    return files


def runs_like(output_root: Path, model_name: str, planned: dict) -> list[Path]:
    """The run folders of this model, complete or not, oldest first, whose config.json has the identity
    of a run about to start. planned is what its config.json will hold as far as known before the model
    loads: the arguments, "dataset_fingerprint" and "world_size" (or "global_batch_size"); the values
    resolved later are compared by their arguments. A run of another dataset, or one that predates
    fingerprints, is not this run."""
    wanted = run_identity(planned, requested=True)
    folders = sorted(path.parent for path in (output_root / model_dir_name(model_name)).glob("*/*/config.json"))
    return [
        run_dir
        for run_dir in folders
        if (config := read_config(run_dir)) is not None and run_identity(config, requested=True) == wanted
    ]


def identity_differences(config: dict, planned: dict) -> list[tuple[str, object, object]]:
    """How a run's config.json differs from a run about to start (planned, as for runs_like): (setting, its
    value, the planned value) for each identity key that differs, named as the option that sets it."""
    theirs, ours = run_identity(config, requested=True), run_identity(planned, requested=True)
    names = {"dataset_fingerprint": "dataset fingerprint", "global_batch_size": "global batch size"}
    return [
        (names.get(key, f"--{RESOLVED_FROM.get(key, key)}"), theirs[key], ours[key])
        for key in IDENTITY
        if theirs[key] != ours[key]
    ]


def find_complete_run(output_root: Path, model_name: str, planned: dict, holding: str | None = None) -> Path | None:
    """A complete, readable run of this identity (runs_like), and, if given, with a file or folder
    `holding` (e.g. its saved "model")."""
    for run_dir in runs_like(output_root, model_name, planned):
        try:
            read_run(run_dir)
        except ValueError:
            continue
        if holding is None or (run_dir / holding).exists():
            return run_dir
    return None


def complete_in_sweep(sweep_dir: Path, dataset_dir: Path, holding: str, keys: Sequence[str]) -> dict[str, Path]:
    """The configurations of the sweep (src/sweep.py, by key) known to be complete without starting train.py and
    torch for each: the run that the last attempt recorded (<sweep_dir>/ended/<key>: "exit=0 ... run=<folder>")
    is still complete, of this very dataset, and holds `holding` if given (--save_model: "model"). The key
    stands for every argument of the run; whatever is not found here is left to train.py --skip_if_done."""
    try:
        fingerprint, found = dataset_fingerprint(dataset_dir), {}
    except (OSError, ValueError):  # no dataset there: train.py says so, once for every run
        return {}
    for key in keys:
        try:
            record = (sweep_dir / "ended" / key).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if not record.startswith("exit=0 ") or " run=" not in record:
            continue
        run_dir = Path(record.partition(" run=")[2])
        try:
            config = read_run(run_dir)["config"]
        except ValueError:
            continue
        if config.get("dataset_fingerprint") == fingerprint and (not holding or (run_dir / holding).exists()):
            found[key] = run_dir
    return found
