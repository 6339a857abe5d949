"""Label new texts with a model saved by `train.py --save_model`; JSONL on standard output.

    python src/predict.py outputs/.../model --input new.jsonl > predictions.jsonl
    python src/predict.py outputs/.../model --input tickets.csv --text_columns title body
    echo "今日の試合でゴールを決めた" | python src/predict.py outputs/.../model

One output line per input, in input order (a record of the --input file, or a line of standard input),
so that the nth output line is always the nth input's, with the names of the run's prediction files
(test-predictions.jsonl, whose "label" is the gold label):

    {"id": <the input's "id", else its number from 0>, "predicted": <the most probable label>,
     "probabilities": {<label>: <probability, 4 decimals>}}
    {"id": ..., "predicted": null, "probabilities": null, "error": "empty text"}

(the number of the line of standard input or of the record of the file, as prepare.py numbers a table's
rows; a multi-label model: "predicted" is the list of labels whose probability, a sigmoid each, is the
run's --threshold or above, or --threshold's; possibly empty),

the second for an input whose text fields are all empty once normalized (a blank line of standard
input, a record of "" or spaces only): a model would still give it a label, made up from nothing.

The texts are prepared exactly as in training, from the model folder's predict.json (train.py writes
it): the same normalization (NFKC, as prepare.py applied), text fields, max_seq_len, truncation
(--truncation; with --windows, one line per input, its windows' logits averaged), batch size and
precision. So on the run's own test split, on the same kind of device, this reproduces its
test-predictions.jsonl. Input: JSONL, CSV or TSV (by extension), or one text per line on standard
input. A line of standard input fills the model's first text field (--stdin_field another) and leaves
the others empty: a model trained on title + body then sees a title only, and a note on stderr says so.

The probabilities are calibrated, as in the run's prediction files: softmax (sigmoid) of the logits divided
by the temperature that train.py fitted on the validation split (predict.json's "temperature"; see
calibration.py), which never changes the most probable label (multi-label: --threshold applies to these;
at 0.5 the labels are the same). --uncalibrated gives the model's own probabilities instead (a model saved
without a temperature has only those).
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import json
import sys
from pathlib import Path

import torch
import transformers
from classopt import classopt, config
from safetensors import SafetensorError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from livedoor_classification import lora
from livedoor_classification.dataset_files import normalize
from livedoor_classification.evaluation import predict
from livedoor_classification.hardware import autocast, keep_freed_memory, resolve_device
from livedoor_classification.inputs import Collator, Truncation, eval_loader, tokenize
from livedoor_classification.models import NO_CUSTOM_CODE, load_model, needs_custom_code
from livedoor_classification.runs import as_written, predicted_labels
from livedoor_classification.tables import read_table


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    model_dir: Path = config(long=False, help="a run's model/ folder, written by train.py --save_model")
    input: Path = config(default=None, help="JSONL, CSV or TSV file; default: one text per line on standard input")
    text_columns: list[str] = config(default=None, nargs="+", help="default: the run's --text_fields")
    stdin_field: str = config(
        default=None, help="the text field each line of standard input fills, the others left empty; default: the first"
    )
    batch_size: int = config(default=None, help="default: the run's --eval_batch_size")
    device: str = config(default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU")
    precision: str = config(default=None, choices=["bf16", "fp16", "fp32"], help="default: the run's precision")
    threshold: float = config(default=None, help="multi-label: a label is predicted at this probability or above")
    uncalibrated: bool = config(
        default=False, help="the model's own probabilities, not those scaled by the run's fitted temperature"
    )


def check_args(args: Args) -> None:
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1) (got {args.threshold})")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1 (got {args.batch_size})")
    if args.stdin_field is not None and args.input is not None:
        raise ValueError("--stdin_field is for standard input; with --input, --text_columns names the columns")


def read_settings(model_dir: Path) -> dict:
    """How the run prepared its texts, from the model folder's predict.json."""
    path = model_dir / "predict.json"
    weights = (model_dir / "config.json").is_file() or lora.is_adapter(model_dir)  # a model, or a --lora adapter
    if not weights or not path.is_file():
        raise ValueError(f"{model_dir}: not a saved model (train.py --save_model writes <run folder>/model/)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not valid JSON; save the model again with train.py --save_model") from None


def stdin_field(args: Args, fields: list[str]) -> str:
    """The text field that each line of standard input fills: --stdin_field, else the first, with a note
    on stderr when the model reads more fields, as they are left empty (a title + body model fed titles
    only predicts less well than its run's scores say)."""
    if args.stdin_field is not None:
        if args.stdin_field not in fields:
            known = ", ".join(fields)
            raise ValueError(f"--stdin_field {args.stdin_field!r} is not a text field of the model ({known})")
        return args.stdin_field
    if len(fields) > 1:
        empty, read = " and ".join(map(repr, fields[1:])), " + ".join(fields)
        print(
            f"predict.py: note: each line of standard input fills the {fields[0]!r} field and leaves {empty} empty,"
            f" though the model reads {read}; choose the field with --stdin_field",
            file=sys.stderr,
        )
    return fields[0]


def read_inputs(path: Path | None, fields: list[str], normalized: bool, line_field: str | None) -> list[dict]:
    """Records with the text fields, from a file, or one per line of standard input (its text in
    line_field, the others empty), normalized as prepare.py normalized the training data."""
    records = read_records(path, fields, line_field)
    if normalized:  # the training data was
        records = [r | {field: normalize(r[field]) for field in fields} for r in records]
    return records


def read_records(path: Path | None, fields: list[str], line_field: str | None) -> list[dict]:
    if path is None:
        lines = [line.strip() for line in sys.stdin]  # blank ones too: an output line each
        if not lines:
            raise ValueError("no text on standard input (one text per line), and no --input file")
        return [dict.fromkeys(fields, "") | {line_field: line} for line in lines]
    rows = list(read_table(path))  # JSONL, CSV or TSV, as prepare.py reads them
    if not rows:
        raise ValueError(f"{path}: no records to label")
    for line, row in rows:
        if missing := [field for field in fields if field not in row]:
            columns = ", ".join(row)
            raise ValueError(f"{path}:{line}: no text column {missing[0]!r} (columns: {columns}; give --text_columns)")
        if not_text := [field for field in fields if not isinstance(row[field], str)]:
            value = row[not_text[0]]
            raise ValueError(f"{path}:{line}: {not_text[0]!r} is {type(value).__name__} {value!r}, not text")
    return [row for _, row in rows]


def has_text(record: dict, fields: list[str]) -> bool:
    return any(record[field].strip() for field in fields)


def load_saved_model(model_dir: Path, settings: dict, device):
    """The saved model and its tokenizer; a --lora adapter on its base model, loaded as train.py loaded it."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # no loading bar in the output a user redirects
    dtype = getattr(torch, settings.get("base_dtype", "float32"))  # float32, or a --lora run's half precision
    if lora.is_adapter(model_dir):
        return load_adapter_model(model_dir, settings, dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)  # models.NO_CUSTOM_CODE
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=False, dtype=dtype)
    except SafetensorError as e:  # a truncated or damaged weights file: an interrupted copy, a full disk
        weights = model_dir / "model.safetensors"
        where = weights if weights.is_file() else f"a .safetensors file of {model_dir}"
        remedy = "copy the model folder again, or save it again with train.py --save_model"
        raise ValueError(f"{where} is unreadable ({cli.first_line(e)}): {remedy}") from None
    except (OSError, ValueError) as e:
        if needs_custom_code(e):
            raise ValueError(f"{model_dir}: {NO_CUSTOM_CODE}") from None
        raise ValueError(f"{model_dir}: could not load the saved model: {cli.first_line(e)}") from None
    return tokenizer, model.to(device)


def load_adapter_model(model_dir: Path, settings: dict, dtype, device):
    """train.py --lora --save_model's adapter (and head) on the base model that adapter_config.json names."""
    base_name = lora.base_model_name(model_dir)
    label2id = {name: i for i, name in enumerate(settings["labels"])}
    try:
        _, base = load_model(base_name, label2id, settings["multi_label"], dtype)
    except ValueError as e:  # moved, renamed, or not downloaded here
        where = "its base_model_name_or_path in adapter_config.json names the base model"
        raise ValueError(f"{model_dir}: the adapter's base model: {e} ({where})") from None
    try:
        model = lora.load_adapter(base, model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)  # with the run's padding token
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as e:  # peft's own errors are of every kind
        remedy = "copy the model folder again, or save it again with train.py --save_model"
        raise ValueError(
            f"{model_dir}: the adapter is unreadable ({type(e).__name__}: {cli.first_line(e)}): {remedy}"
        ) from None
    return tokenizer, model.to(device)


def probabilities(args: Args, settings: dict, records: list[dict], fields: list[str], tokenizer, model, device):
    """Each record's label probabilities (a row per record, as a tensor), its text prepared as in training."""
    if not records:
        return torch.empty(0, model.config.num_labels)
    segment_ids = getattr(model.config, "type_vocab_size", 0) > 1
    max_seq_len = settings["max_seq_len"]
    source = args.input.stem if args.input else "stdin"  # named in a tokenizer error
    truncation = Truncation(**settings["truncation"])  # as train.py cut the texts
    unlabelled = [r | {"label": 0} for r in records]
    examples = tokenize(unlabelled, tokenizer, fields, max_seq_len, segment_ids, source, truncation)
    collate = Collator(tokenizer.pad_token_id, max_seq_len)
    loader = eval_loader(examples, args.batch_size or settings["batch_size"], collate, device.type == "cuda")
    precision = args.precision or settings["precision"]
    logits = predict(model, loader, autocast(device, precision), device, model.config.num_labels)
    # In float64, as train.py computed its prediction files' probabilities (evaluation.split_metrics).
    temperature = settings.get("temperature") if not args.uncalibrated else None  # None: an older model's, or raw
    logits = logits.double() / (temperature or 1.0)
    return logits.sigmoid() if multi_label(model) else logits.softmax(dim=-1)


def multi_label(model) -> bool:
    return model.config.problem_type == "multi_label_classification"  # as train.py saved it


def prediction(row, names: list[str], threshold: float | None) -> dict:
    """A text's "predicted" and "probabilities", as train.py's prediction files write them (runs.write_predictions)."""
    probabilities = dict(zip(names, as_written(row).tolist(), strict=True))
    return {"predicted": predicted_labels(row, names, threshold), "probabilities": probabilities}


def main(args: Args) -> None:
    try:
        check_args(args)
        settings = read_settings(args.model_dir)
        fields = args.text_columns or settings["text_fields"]
        if args.input is not None and not args.input.is_file():
            raise ValueError(f"--input {args.input}: no such file")
        line_field = stdin_field(args, fields) if args.input is None else None
        records = read_inputs(args.input, fields, settings["normalize"], line_field)
        device = resolve_device(args.device)
        keep_freed_memory(device)  # on a CPU: each batch reuses the memory the last one freed
        tokenizer, model = load_saved_model(args.model_dir, settings, device)
        threshold = (args.threshold or settings["threshold"]) if multi_label(model) else None
        if args.threshold is not None and threshold is None:
            raise ValueError(f"--threshold is for multi-label models; {args.model_dir} predicts one label")
        with_text = [record for record in records if has_text(record, fields)]
        rows = iter(probabilities(args, settings, with_text, fields, tokenizer, model, device).numpy())
    except (ValueError, OSError) as e:  # a tokenizer's failure too: nothing is printed before all is predicted
        sys.exit(f"predict.py: error: {e}")
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    for number, record in enumerate(records):
        output = {"id": record.get("id", number)}
        if has_text(record, fields):
            output |= prediction(next(rows), names, threshold)
        else:
            output |= {"predicted": None, "probabilities": None, "error": "empty text"}
        print(json.dumps(output, ensure_ascii=False))


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args, check_args))
