"""Label new texts with a model saved by `train.py --save_model`; JSONL on standard output.

    python src/predict.py outputs/.../model --input new.jsonl > predictions.jsonl
    python src/predict.py outputs/.../model --input tickets.csv --text_columns title body
    echo "今日の試合でゴールを決めた" | python src/predict.py outputs/.../model

Each output line: {"id": <the input's "id" if it has one>, "label": <the most probable label>,
"probabilities": {<label>: <probability, 4 decimals>}}, in input order. The texts are prepared exactly as
in training, from the run's config.json beside the model folder: the same text fields, the same
truncation and max_seq_len, the same batch size and precision. So on the run's own test split this
reproduces its test-predictions.jsonl. Input: JSONL, CSV or TSV (by extension), or one text per line
on standard input.
"""

from pathlib import Path

from classopt import classopt, config

import cli


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    model_dir: Path = config(long=False, help="a run's model/ folder, written by train.py --save_model")
    input: Path = config(default=None, help="JSONL, CSV or TSV file; default: one text per line on standard input")
    text_columns: list[str] = config(default=None, nargs="+", help="default: the run's --text_fields")
    batch_size: int = config(default=None, help="default: the run's --eval_batch_size")
    device: str = config(default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU")
    precision: str = config(default=None, choices=["bf16", "fp16", "fp32"], help="default: the run's precision")


def check_args(args: Args) -> None:
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1 (got {args.batch_size})")


if __name__ == "__main__":
    ARGS = cli.parse(Args, check_args)  # before torch is imported: --help answers at once

import json
import sys
from contextlib import nullcontext
from functools import partial

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import train
from data import Collator, eval_loader, tokenize
from hardware import AUTOCAST_DTYPES, resolve_device
from prepare import read_table


def read_run_config(model_dir: Path) -> dict:
    """The config.json of the run the model comes from (the model folder's parent)."""
    if not (model_dir / "config.json").is_file() or not any(model_dir.glob("*.safetensors")):
        raise ValueError(f"{model_dir}: not a saved model (train.py --save_model writes <run folder>/model/)")
    path = model_dir.parent / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ValueError(f"{path}: the run's config.json is missing or unreadable; predict.py needs it") from None


def read_inputs(path: Path | None, fields: list[str]) -> list[dict]:
    """Records with the text fields, from a file, or one text per line of standard input (as the
    first field; the others empty)."""
    if path is None:
        lines = [line.strip() for line in sys.stdin if line.strip()]
        if not lines:
            raise ValueError("no text on standard input (one text per line), and no --input file")
        return [{fields[0]: line} | {field: "" for field in fields[1:]} for line in lines]
    records = [row for _, row in read_table(path)]  # JSONL, CSV or TSV, as prepare.py reads them
    if not records:
        raise ValueError(f"{path}: no records to label")
    for number, record in enumerate(records, start=1):
        missing = [field for field in fields if not isinstance(record.get(field), str)]
        if missing:
            raise ValueError(f"{path}: record {number} has no text field {missing[0]!r} (give --text_columns)")
    return records


def main(args: Args) -> None:
    try:
        run = read_run_config(args.model_dir)
        fields = args.text_columns or run["text_fields"]
        records = read_inputs(args.input, fields)
        device = resolve_device(args.device)
    except (ValueError, OSError) as e:
        sys.exit(f"predict.py: error: {e}")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, dtype=torch.float32).to(device)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    segment_ids = getattr(model.config, "type_vocab_size", 0) > 1
    max_seq_len = run["max_seq_len_used"]
    examples = tokenize([r | {"label": 0} for r in records], tokenizer, fields, max_seq_len, segment_ids, "input")
    collate = Collator(tokenizer.pad_token_id, max_seq_len)
    loader = eval_loader(examples, args.batch_size or run["eval_batch_size"], collate, device.type == "cuda")
    precision = args.precision or run["precision_used"]
    autocast = nullcontext
    if precision != "fp32":
        autocast = partial(torch.autocast, device.type, dtype=AUTOCAST_DTYPES[precision])
    probabilities, _, _ = train.predict(model, loader, autocast, device, len(names))
    for record, row in zip(records, probabilities.numpy(), strict=True):
        output = {"id": record["id"]} if "id" in record else {}
        output["label"] = names[int(row.argmax())]
        output["probabilities"] = {name: round(float(p), 4) for name, p in zip(names, row, strict=True)}
        print(json.dumps(output, ensure_ascii=False))


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(ARGS)
