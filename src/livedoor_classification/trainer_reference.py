"""The reference bench.py compares train.py with: the same fine-tuning written the way transformers' documentation
writes it, with its `Trainer` (https://huggingface.co/docs/transformers/training), run in a process of its own:

    python -m livedoor_classification.trainer_reference --model_name DIR --dataset_dir DIR --output FILE \\
        --epochs 1 --batch_size 16 --max_seq_len 256 --lr 5e-5 --warmup_ratio 0.1 --precision bf16

The settings are train.py's defaults where the Trainer has the same knob (AdamW with weight decay 0.01 off biases
and LayerNorms, gradient clipping at 1.0, a linear schedule after a linear warmup, validation after every epoch,
the seed): a user who leaves train.py for the Trainer, or the reverse, gets this. What differs is what each does
by itself: here the pair (title, body) is tokenized per split with `tokenizer(first, second, truncation=True)`,
batches are drawn at random and padded by DataCollatorWithPadding, no checkpoint is written
(save_strategy="no") and the model of the last epoch is tested. It writes a JSON object to --output: the test
accuracy and macro-F1 (scikit-learn, from its predictions), the optimizer steps, the training seconds and the
tokens trained on (the attention masks' ones), for bench.py's table. Needs `accelerate` (the dev requirements).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from livedoor_classification.dataset_files import PreparedDataset


def encoded(dataset: PreparedDataset, split: str, tokenizer, max_seq_len: int) -> list[dict]:
    """A split as the Trainer takes it: a dict of token ids and the label per text."""
    records = dataset.split(split)
    texts = [[record[field] for field in dataset.text_fields] for record in records]
    columns = list(zip(*texts, strict=True))  # the first field's texts, then the second's (a pair), if any
    encoding = tokenizer(*columns, truncation=True, max_length=max_seq_len)
    return [{key: encoding[key][i] for key in encoding} | {"labels": r["label"]} for i, r in enumerate(records)]


def main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    dataset = PreparedDataset(args.dataset_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.model_name)
    labels = {"num_labels": len(dataset.names), "id2label": dict(enumerate(dataset.names))}
    model = AutoModelForSequenceClassification.from_pretrained(args.model_name, **labels, label2id=dataset.label2id)
    splits = {split: encoded(dataset, split, tokenizer, args.max_seq_len) for split in ("train", "val", "test")}
    training_args = TrainingArguments(
        output_dir=str(args.output.parent / "trainer-output"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1): the fraction of all steps (transformers 5)
        weight_decay=0.01,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",
        seed=args.seed,
        disable_tqdm=True,
        torch_compile=args.compile,  # bench.py's third pair, against train.py --compile
    )
    collator = DataCollatorWithPadding(tokenizer)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["val"],
        data_collator=collator,
    )
    trainer.remove_callback(PrinterCallback)  # its metrics dicts on stdout: bench.py prints the table
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    logits = trainer.predict(splits["test"]).predictions
    predicted = np.asarray(logits).argmax(axis=-1)
    gold = [example["labels"] for example in splits["test"]]
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    result = {
        "test_accuracy": accuracy_score(gold, predicted),
        "test_f1": f1_score(gold, predicted, average="macro"),
        "steps": trainer.state.global_step,
        "train_seconds": train_seconds,  # the epochs, their validation included, as train.py's epoch_seconds
        "train_tokens": args.epochs * sum(sum(example["attention_mask"]) for example in splits["train"]),
        "seconds_in_process": time.perf_counter() - start,
        "cuda_peak_bytes": peak,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--dataset_dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--max_seq_len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup_ratio", type=float, default=0.1)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compile", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse())
