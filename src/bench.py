"""Measure how fast train.py runs on this machine, and what a GPU would need from it.

    python src/bench.py                                  # offline: random BERT-base-shaped model
    python src/bench.py --model_name tohoku-nlp/bert-base-japanese-v3 --precisions fp32 auto

Input preparation is measured with the library train.py uses (inputs.py). Training is measured by
running train.py itself, in a process of its own as a user runs it, on a dataset and a model folder
written here, and reading what it writes (log.csv, config.json, the metrics): the numbers describe
what training does, not a copy of it. Sections:
1. tokenization, once per split before training: documents/s, MeCab (BertJapaneseTokenizer) and fast;
2. the input pipeline after tokenization: samples/s and padding, next to a naive pipeline that
   tokenizes every batch and pads random batches to their longest member;
3. the model step: train.py's second epoch (the first warms up): training and evaluation samples/s,
   tokens/s and achieved FLOP/s against this machine's matmul peak;
4. what one H100 needs to stay busy at half its dense bf16 peak, and whether the pipeline delivers it;
5. torch.compile: eager against train.py --compile on the BERT-base shape in fp32 (or
   --compile_precision bf16): the compilation's seconds, the steady-state speed-ups, and the livedoor
   epochs that pay for it;
6. accuracy: a small BERT trained by train.py in fp32 and in mixed precision;
7. long documents: the same small BERT at a short --max_seq_len (--long_seq_len), where truncation
   bites, reading each document's head, its head and tail, or 3 windows: accuracy and wall time;
8. trainer (only when asked: --sections trainer): train.py against transformers' Trainer on the same
   model, data and settings, in alternating rounds (trainer_comparison.py): wall time, time per step,
   tokens/s, peak memory and test accuracy of each, and the ratio ours / Trainer with its range. On
   --model_name (a local folder) and the prepared dataset's splits if given, else a MiniLM-shaped random
   model on synthetic texts. Needs accelerate (in requirements.txt);
9. lora (only when asked: --sections lora): what train.py --lora saves, on a random Llama-shaped decoder
   (--lora_layers of --lora_hidden) trained one epoch in full and with LoRA adapters of peft's default rank,
   on the same texts, batches, length and precision: time per optimizer step, peak memory (train.py's own
   and the process's), trainable and total parameters, and the ratios LoRA / full.
The table is printed and written as JSON (--output). If a section fails, the report still holds every
section measured before it and names the failed one with its error ("failed"), and the exit status is 1.

What it trains on is made on the spot (synthetic.py), train.py runs through train_process.py, the FLOPs
come from flops.py. A new section is a name in SECTIONS, a function returning its results, a block in measure().
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import json
import math
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from classopt import classopt, config

from livedoor_classification.dataset_files import read_jsonl
from livedoor_classification.flops import non_embedding_parameters, step_flops
from livedoor_classification.hardware import AUTOCAST_DTYPES, matmul_flops
from livedoor_classification.inputs import Collator, tokenize, train_loader
from livedoor_classification.models import load_model, usable_seq_len
from livedoor_classification.paths import ROOT
from livedoor_classification.pipeline_measures import (
    naive_loader,
    padding_fraction,
    random_batches_padding,
    samples_per_second,
)
from livedoor_classification.synthetic import (
    bert_base,
    local_tokenizers,
    minilm_shape,
    random_llama,
    save_model,
    small_bert,
    synthetic_records,
    write_dataset,
)
from livedoor_classification.train_process import read_run, run_measured, run_train, train_command
from livedoor_classification.trainer_comparison import compare

SECTIONS = [
    "tokenization",
    "pipeline",
    "model_step",
    "compile",
    "precision_accuracy",
    "long_documents",
    "trainer",
    "lora",
]
ON_REQUEST = ["trainer", "lora"]  # minutes of training that answer a question of their own: run when named


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args:
    model_name: str = config(default="", help="model to measure; empty: a randomly initialised BERT-base shape")
    dataset_dir: Path = config(default=ROOT / "datasets" / "livedoor", help="lengths from train.jsonl, if present")
    documents: int = config(default=2000, help="documents for the tokenization, pipeline and model_step sections")
    max_seq_len: int = config(default=512, help="as train.py --max_seq_len")
    batch_size: int = config(default=16, help="as train.py --batch_size, for the pipeline section")
    model_batch_size: int = config(default=8, help="train.py --batch_size of the model step (small: CPUs are slow)")
    steps: int = config(default=3, help="training batches per epoch in the model step, and as many of evaluation")
    precisions: list[str] = config(default=["fp32", "auto"], nargs="+", help="precisions to time the model in")
    compile_precision: str = config(default="fp32", choices=["fp32", "bf16"], help="precision of the compile section")
    accuracy_records: int = config(default=1100, help="documents for the accuracy sections (6 and 7)")
    accuracy_epochs: int = config(default=3, help="train.py --epochs of the precision_accuracy section")
    long_epochs: int = config(default=5, help="train.py --epochs of the long_documents section")
    long_seq_len: int = config(default=128, help="--max_seq_len of the long-documents section")
    trainer_documents: list[int] = config(
        default=[800, 200, 400], nargs=3, help="trainer section: train, val, test documents (the first of each split)"
    )
    trainer_rounds: int = config(default=3, help="trainer section: alternating rounds of train.py and the Trainer")
    trainer_precisions: list[str] = config(
        default=["fp32", "auto"],
        nargs="+",
        choices=["fp32", "bf16", "fp16", "auto", "compile"],
        help="trainer section: the pairs, each a precision of both sides, or compile: auto with train.py --compile "
        "and the Trainer's torch_compile",
    )
    trainer_epochs: int = config(default=1, help="trainer section: epochs of both")
    trainer_seq_len: int = config(default=256, help="trainer section: --max_seq_len of both")
    lora_layers: int = config(default=6, help="lora section: the random Llama's layers")
    lora_hidden: int = config(default=768, help="lora section: its hidden size, a multiple of 64 (heads of 64)")
    lora_steps: int = config(default=6, help="lora section: optimizer steps of the epoch each side trains")
    lora_batch_size: int = config(default=8, help="lora section: train.py --batch_size of both")
    lora_seq_len: int = config(default=128, help="lora section: train.py --max_seq_len of both")
    lora_precision: str = config(
        default="fp32", choices=["fp32", "auto", "bf16", "fp16"], help="lora section: train.py --precision of both"
    )
    output: Path = config(default=ROOT / "bench" / "bench.json", help="where the JSON report goes")
    sections: list[str] = config(
        default=[section for section in SECTIONS if section not in ON_REQUEST],
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"the sections to run, in the order of: {' '.join(SECTIONS)} ({' and '.join(ON_REQUEST)} only when named)",
    )


def check_args(args: Args) -> None:
    """The trainer and lora sections' counts, before anything runs: one line, not a failure minutes in."""
    counts = {"--trainer_rounds": args.trainer_rounds, "--trainer_epochs": args.trainer_epochs}
    counts |= {"--trainer_documents": min(args.trainer_documents)}
    counts |= {"--lora_layers": args.lora_layers, "--lora_steps": args.lora_steps}
    counts |= {"--lora_batch_size": args.lora_batch_size}
    mistakes = [f"{option} must be >= 1 (got {value})" for option, value in counts.items() if value < 1]
    for option, value in {"--trainer_seq_len": args.trainer_seq_len, "--lora_seq_len": args.lora_seq_len}.items():
        if value < 8:
            mistakes.append(f"{option} must be >= 8 (got {value})")
    if args.lora_hidden < 64 or args.lora_hidden % 64:
        mistakes.append(f"--lora_hidden must be a positive multiple of 64 (got {args.lora_hidden})")
    if mistakes:
        raise ValueError("; ".join(mistakes))


TEXT_FIELDS = ["title", "body"]  # a sentence pair, as train.py reads livedoor
LIVEDOOR_EPOCH = (5895, 736)  # training and validation articles evaluated per epoch
H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, H100 SXM, dense (NVIDIA's datasheet; 1,979 is with sparsity)


def load_records(args: Args) -> tuple[list[dict], str]:
    path = args.dataset_dir / "train.jsonl"
    if path.is_file():
        return read_jsonl(path)[: args.documents], str(path)
    return synthetic_records(args.documents), "synthetic livedoor-like lengths (see synthetic_records)"


def time_tokenization(records, tokenizer, max_seq_len) -> tuple[list[dict], float]:
    start = time.perf_counter()
    examples = tokenize(records, tokenizer, TEXT_FIELDS, max_seq_len, segment_ids=True)
    return examples, len(records) / (time.perf_counter() - start)


def pipeline_section(args: Args, records, examples, fast_tokenizer) -> dict:
    collate = Collator(fast_tokenizer.pad_token_id, args.max_seq_len)
    loader = train_loader(examples, args.batch_size, seed=0, collate=collate, pin_memory=False)
    naive = naive_loader(records, fast_tokenizer, args.batch_size, args.max_seq_len)
    titles = tokenize([r | {"body": ""} for r in records], fast_tokenizer, ["title"], args.max_seq_len, True)
    title_loader = train_loader(titles, args.batch_size, seed=0, collate=collate, pin_memory=False)
    result = {
        "pipeline_samples_per_s": samples_per_second(loader),
        "naive_samples_per_s": samples_per_second(naive, epochs=1),
        "padding_grouped": padding_fraction(loader),
        "padding_random": random_batches_padding(examples, args.batch_size),
        "titles_padding_grouped": padding_fraction(title_loader),
        "titles_padding_random": random_batches_padding(titles, args.batch_size),
    }
    result["pipeline_speedup_over_naive"] = result["pipeline_samples_per_s"] / result["naive_samples_per_s"]
    return result


def token_lengths(records: list[dict], tokenizer, model, max_seq_len: int) -> list[int]:
    """Each record's length in tokens as train.py tokenizes it for this model (capped where it caps)."""
    max_seq_len = usable_seq_len(max_seq_len, model, tokenizer)
    return [len(e["input_ids"]) for e in tokenize(records, tokenizer, TEXT_FIELDS, max_seq_len, segment_ids=True)]


def model_step(
    args: Args, model, tokenizer, model_dir: str, records, requested: str, variant: str, workdir: Path, compile=False
) -> dict:
    """Training and evaluation speed of train.py in one precision (compiled with compile): 2 epochs of
    --steps batches of --model_batch_size, each followed by as many batches of validation. The second
    epoch's log.csv row is the steady state; the first epoch warms up (and compiles), and what it took
    beyond the second is first_epoch_extra_seconds. model (in memory) gives the FLOPs of model_dir's."""
    batch, steps = args.model_batch_size, args.steps
    needed = batch * (2 * steps + 1)  # training, validation, and a batch of test that train.py also needs
    if len(records) < needed:
        raise ValueError(f"the model step needs {needed} documents (--documents is {len(records)})")
    train_records, val_records = records[: batch * steps], records[batch * steps : 2 * batch * steps]
    folder = Path(tempfile.mkdtemp(prefix="model-step-", dir=workdir))
    splits = {"train": train_records, "val": val_records, "test": records[2 * batch * steps : needed]}
    run, _ = run_train(
        folder / "outputs",
        model_name=model_dir,
        dataset_dir=write_dataset(folder / "dataset", splits),
        text_fields=TEXT_FIELDS,
        max_seq_len=args.max_seq_len,
        batch_size=batch,
        eval_batch_size=batch,
        epochs=2,
        precision=requested,
        compile=compile,
    )
    first, steady = run["log"]
    train_lengths = token_lengths(train_records, tokenizer, model, args.max_seq_len)
    val_lengths = token_lengths(val_records, tokenizer, model, args.max_seq_len)
    # The FLOPs count the lengths computed here: they must be the ones train.py trained on.
    train_tokens = steady["train_tokens_per_s"] * steady["epoch_seconds"]
    if not math.isclose(train_tokens, sum(train_lengths), rel_tol=1e-3):
        raise RuntimeError(f"train.py trained on {train_tokens:.0f} tokens, bench counts {sum(train_lengths)}")
    precision, device = run["config"]["precision_used"], torch.device(run["config"]["device_used"])
    peak = matmul_flops(device, AUTOCAST_DTYPES[precision], size=2048, min_seconds=1.0)
    warm_up_seconds = first["epoch_seconds"] + first["val_seconds"] - steady["epoch_seconds"] - steady["val_seconds"]
    non_embedding = non_embedding_parameters(model)
    train_flops = step_flops(train_lengths, model.config, non_embedding, training=True) / steady["epoch_seconds"]
    eval_flops = step_flops(val_lengths, model.config, non_embedding, training=False) / steady["val_seconds"]
    return {
        "precision": precision,
        "variant": variant,
        "reason": run["config"]["precision_reason"],
        "device": str(device),
        "matmul_peak_flops": peak,
        "first_epoch_extra_seconds": warm_up_seconds,
        "train_samples_per_s": steady["train_samples_per_s"],
        "train_tokens_per_s": steady["train_tokens_per_s"],
        "train_flops": train_flops,
        "train_utilisation": train_flops / peak,
        "eval_samples_per_s": len(val_lengths) / steady["val_seconds"],
        "eval_tokens_per_s": sum(val_lengths) / steady["val_seconds"],
        "eval_flops": eval_flops,
        "eval_utilisation": eval_flops / peak,
    }


def h100_section(model, lengths: list[int], pipeline_samples_per_s: float) -> dict:
    non_embedding = non_embedding_parameters(model)
    per_sample = step_flops(lengths, model.config, non_embedding, training=True) / len(lengths)
    needed = 0.5 * H100_BF16_DENSE_PEAK / per_sample
    return {
        "h100_train_flops_per_sample": per_sample,
        "h100_samples_per_s_at_50pct": needed,
        "pipeline_keeps_up": pipeline_samples_per_s >= needed,
    }


def compile_section(args: Args, records: list[dict], tokenizer, workdir: Path) -> dict:
    """Eager against compiled (train.py --compile) on the BERT-base shape in --compile_precision, each a
    train.py run of its own with a cold compilation cache: the compilation's cost (what the first epoch
    takes beyond the second, compiled minus eager), the steady-state speed-ups, and after how many epochs
    on livedoor (LIVEDOOR_EPOCH: training and validation articles) the faster epochs have paid for the
    compilation. A third row, compiled without attention dropout, shows what the unfused attention costs."""
    model = bert_base()
    folder = save_model(model, tokenizer, workdir / "bert-base")
    no_dropout_dir = workdir / "bert-base-no-attention-dropout"
    no_dropout = save_model(model, tokenizer, no_dropout_dir, attention_probs_dropout_prob=0.0)
    precision = args.compile_precision
    step = partial(model_step, args, model, tokenizer, records=records, requested=precision, workdir=workdir)
    eager = step(folder, variant="eager")
    compiled = step(folder, variant="compiled", compile=True)
    compile_seconds = compiled["first_epoch_extra_seconds"] - eager["first_epoch_extra_seconds"]
    # where the rest of the time goes: on CPUs, attention dropout keeps attention out of fused kernels
    fused = step(no_dropout, variant="compiled, attention dropout 0", compile=True)

    def epoch_seconds(step: dict) -> float:
        train_examples, val_examples = LIVEDOOR_EPOCH
        return train_examples / step["train_samples_per_s"] + val_examples / step["eval_samples_per_s"]

    saved = epoch_seconds(eager) - epoch_seconds(compiled)
    return {
        "compile": [eager, compiled, fused],
        "compile_seconds": compile_seconds,
        "compiled_train_speedup": compiled["train_samples_per_s"] / eager["train_samples_per_s"],
        "compiled_eval_speedup": compiled["eval_samples_per_s"] / eager["eval_samples_per_s"],
        "livedoor_epoch_seconds_eager": epoch_seconds(eager),
        "livedoor_epoch_seconds_compiled": epoch_seconds(compiled),
        "compile_breaks_even_after_epochs": compile_seconds / saved if saved > 0 else "never",
    }


def small_task(records: list[dict], tokenizer, workdir: Path) -> tuple[Path, str]:
    """A dataset of the records (train, val and test 8:1:1, in their order) and a small BERT, randomly
    initialised, for the tokenizer: what the accuracy sections train with train.py."""
    tenth = len(records) // 10
    splits = {"train": records[: -2 * tenth], "val": records[-2 * tenth : -tenth], "test": records[-tenth:]}
    num_labels = len({r["label"] for r in records})
    model = save_model(small_bert(len(tokenizer), num_labels), tokenizer, workdir / "model")
    return write_dataset(workdir / "dataset", splits), model


def precision_accuracy(records: list[dict], tokenizer, workdir: Path, epochs: int) -> list[dict]:
    """Train a small BERT with train.py, once per precision, on the learnable synthetic task: mixed
    precision must not cost accuracy."""
    data, model_dir = small_task(records, tokenizer, workdir / "precision")
    rows = []
    for precision in ("fp32", "auto"):
        output = workdir / "precision" / f"outputs-{precision}"
        run, _ = run_train(
            output, model_name=model_dir, dataset_dir=data, lr=3e-4, epochs=epochs, max_seq_len=64, precision=precision
        )
        seconds = [row["epoch_seconds"] for row in run["log"]]
        rows.append(
            {
                "precision": run["config"]["precision_used"],
                "val_accuracy": run["val-metrics"]["accuracy"],
                "epoch_seconds": sum(seconds) / len(seconds),
            }
        )
    return rows


# What the long-documents section compares: train.py's options for each way of reading a long text.
LONG_DOCUMENT_MODES = {"head": {}, "head_tail": {"truncation": "head_tail"}, "windows 3": {"windows": 3}}


def long_documents(records: list[dict], tokenizer, max_seq_len: int, workdir: Path, epochs: int) -> list[dict]:
    """The same small BERT, seed and documents at a budget far below the documents' lengths, read in
    each of LONG_DOCUMENT_MODES (in fp32, so that only the mode differs): accuracy, macro-F1 and wall
    time of each train.py run (its start-up included)."""
    data, model_dir = small_task(records, tokenizer, workdir / "long")
    rows = []
    for mode, options in LONG_DOCUMENT_MODES.items():
        output = workdir / "long" / f"outputs-{mode.replace(' ', '-')}"
        run, seconds = run_train(
            output,
            model_name=model_dir,
            dataset_dir=data,
            lr=3e-4,
            epochs=epochs,
            max_seq_len=max_seq_len,
            precision="fp32",
            **options,
        )
        config, val, test = run["config"], run["val-metrics"], run["test-metrics"]
        rows.append(
            {
                "mode": mode,
                "max_seq_len": config["max_seq_len_used"],
                "train_windows_per_document": config["num_windows"]["train"] / config["num_examples"]["train"],
                "val_accuracy": val["accuracy"],
                "test_accuracy": test["accuracy"],
                "test_f1": test["f1"],
                "seconds": seconds,
            }
        )
    return rows


def print_report(report: dict) -> None:
    for key, value in report.items():
        if isinstance(value, list):
            for row in value:
                print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        else:
            print(f"{key:36} {value:.4g}" if isinstance(value, float) else f"{key:36} {value}")


def measure(args: Args, report: dict, started: list[str], workdir: Path) -> None:
    """Run the chosen sections in order, each adding its results to report as it completes; started
    names the sections begun, so that the last one is the one that failed."""
    started.append("setup")  # reading the texts and training the local tokenizers
    records, source = load_records(args)
    mecab, fast = local_tokenizers(records, workdir)
    report |= {"documents": len(records), "lengths_from": source, "torch_threads": torch.get_num_threads()}

    if "tokenization" in args.sections:
        started.append("tokenization")
        _, report["mecab_documents_per_s"] = time_tokenization(records, mecab, args.max_seq_len)
        examples, report["fast_documents_per_s"] = time_tokenization(records, fast, args.max_seq_len)

    if "pipeline" in args.sections:
        started.append("pipeline")
        if "tokenization" not in args.sections:  # the pipeline runs on the fast tokenizer's examples all the same
            examples = tokenize(records, fast, TEXT_FIELDS, args.max_seq_len, segment_ids=True)
        report |= pipeline_section(args, records, examples, fast)

    if "model_step" in args.sections:
        started.append("model_step")
        if args.model_name:  # train.py loads it itself; its tokenizer gives the lengths
            tokenizer, model = load_model(args.model_name, {str(i): i for i in range(9)})
            model_dir = args.model_name
        else:
            tokenizer, model = fast, bert_base()
            model_dir = save_model(model, fast, workdir / "bert-base")
        lengths = token_lengths(records, tokenizer, model, args.max_seq_len)
        report["model"] = args.model_name or "BERT-base shape, random weights"
        report["mean_tokens_per_example"] = sum(lengths) / len(lengths)
        if "pipeline_samples_per_s" in report:
            report |= h100_section(model, lengths, report["pipeline_samples_per_s"])
        step = partial(model_step, args, model, tokenizer, records=records, workdir=workdir)
        report["model_step"] = steps = []  # filled one precision at a time: a failure keeps the ones before
        for precision in args.precisions:
            steps.append(step(model_dir, requested=precision, variant="as train.py"))
        # Where the time goes: on CPUs, attention dropout forces PyTorch's unfused attention.
        if getattr(model.config, "attention_probs_dropout_prob", 0) > 0:
            folder = workdir / f"{Path(model_dir).name}-no-attention-dropout"
            no_dropout = save_model(model, tokenizer, folder, attention_probs_dropout_prob=0.0)
            steps.append(step(no_dropout, requested="auto", variant="attention dropout 0"))

    if "compile" in args.sections:
        started.append("compile")
        report |= compile_section(args, records, fast, workdir)

    if "precision_accuracy" in args.sections:
        started.append("precision_accuracy")
        accuracy_records = synthetic_records(args.accuracy_records, seed=1)
        report["precision_accuracy"] = precision_accuracy(accuracy_records, fast, workdir, args.accuracy_epochs)

    if "long_documents" in args.sections:
        started.append("long_documents")
        # Real documents if a prepared dataset is there; else synthetic ones whose label words are sparse
        # (1 word in 50), so that reading more of a text finds more of them.
        if source.endswith("train.jsonl"):
            long_records = records[: args.accuracy_records]
        else:
            long_records = synthetic_records(args.accuracy_records, seed=2, label_rate=0.02)
        report["long_documents"] = long_documents(long_records, fast, args.long_seq_len, workdir, args.long_epochs)

    if "trainer" in args.sections:
        started.append("trainer")
        report["trainer_rounds"], report["trainer"] = trainer_section(args, records, source, fast, workdir)

    if "lora" in args.sections:
        started.append("lora")
        report["lora"], summary = lora_section(args, records, fast, workdir)
        report |= summary


def trainer_section(args: Args, records: list[dict], source: str, tokenizer, workdir: Path) -> tuple[list, list]:
    """train.py against the Trainer: the first documents of each split of the prepared dataset (or of synthetic
    texts, split in order), on --model_name or a MiniLM-shaped random BERT (6 layers of 384, as
    all-MiniLM-L6) with the local fast tokenizer; lr 5e-5, 10% warmup, batch 16, as the Trainer's examples."""
    sizes = dict(zip(("train", "val", "test"), args.trainer_documents, strict=True))
    if source.endswith("train.jsonl"):
        splits = {split: read_jsonl(args.dataset_dir / f"{split}.jsonl")[:n] for split, n in sizes.items()}
    else:
        texts, start = synthetic_records(sum(sizes.values()), seed=3), 0
        splits = {}
        for split, n in sizes.items():
            splits[split], start = texts[start : start + n], start + n
    data = write_dataset(workdir / "trainer" / "dataset", splits)
    model_dir = args.model_name or save_model(minilm_shape(len(tokenizer), 9), tokenizer, workdir / "trainer" / "model")
    settings = {"epochs": args.trainer_epochs, "batch_size": 16, "eval_batch_size": 64, "lr": 5e-5}
    settings |= {"warmup_ratio": 0.1, "max_seq_len": args.trainer_seq_len, "seed": 42}
    return compare(model_dir, data, workdir / "trainer", args.trainer_precisions, args.trainer_rounds, settings)


def lora_section(args: Args, records: list[dict], tokenizer, workdir: Path) -> tuple[list[dict], dict]:
    """Full fine-tuning against train.py --lora on the same random Llama-shaped decoder (--lora_layers of
    --lora_hidden; heads of 64 and a quarter as many key-value heads, Llama 3's grouped-query attention) with the
    local fast tokenizer, the same first texts (--lora_steps batches of training, a batch each of validation and
    test), length, batch, precision and seed, one epoch each in a process of its own. A random decoder: what LoRA
    saves is a matter of the shape, not of the weights; a decoder, as LoRA is mostly used with (and peft
    knows which of its layers to adapt). A row per side and the ratios LoRA / full."""
    batch, steps = args.lora_batch_size, args.lora_steps
    needed = batch * (steps + 2)
    if len(records) < needed:
        raise ValueError(f"the lora section needs {needed} documents (--documents is {len(records)})")
    train_end = batch * steps
    splits = {"train": records[:train_end], "val": records[train_end : train_end + batch]}
    splits["test"] = records[train_end + batch : needed]
    data = write_dataset(workdir / "lora" / "dataset", splits)
    heads = args.lora_hidden // 64
    num_labels = len({r["label"] for r in records[:needed]})
    model = random_llama(len(tokenizer), num_labels, args.lora_layers, args.lora_hidden, heads, max(1, heads // 4))
    settings = {"model_name": save_model(model, tokenizer, workdir / "lora" / "model"), "dataset_dir": data}
    settings |= {"text_fields": TEXT_FIELDS, "max_seq_len": args.lora_seq_len, "batch_size": batch}
    settings |= {"eval_batch_size": batch, "epochs": 1, "precision": args.lora_precision}
    full = lora_side(workdir / "lora" / "outputs-full", settings)
    adapted = lora_side(workdir / "lora" / "outputs-lora", settings | {"lora": True})
    # The ratios compare like with like only if both trained the same optimizer steps on the same tokens.
    if (full["steps"], full["train_tokens"]) != (adapted["steps"], adapted["train_tokens"]):
        raise RuntimeError(
            f"full trained {full['steps']} steps on {full['train_tokens']} tokens, LoRA "
            f"{adapted['steps']} on {adapted['train_tokens']}"
        )
    summary = {
        "lora_model": f"Llama shape, {args.lora_layers} layers of {args.lora_hidden}, random weights",
        "lora_ms_per_step_ratio": adapted["ms_per_step"] / full["ms_per_step"],
        "lora_peak_memory_ratio": adapted["peak_memory_mib"] / full["peak_memory_mib"],
        "lora_peak_rss_ratio": adapted["peak_rss_mib"] / full["peak_rss_mib"],
        # the ratios include what both sides hold alike (Python, torch, the data): the difference is LoRA's saving
        "lora_peak_memory_saved_mib": full["peak_memory_mib"] - adapted["peak_memory_mib"],
        "lora_trainable_share": adapted["trainable_parameters"] / full["trainable_parameters"],
    }
    return [full, adapted], summary


def lora_side(output: Path, options: dict) -> dict:
    """One train.py run of the lora section, read back: steps (config.json's optimizer steps) and training tokens
    (log.csv's rate x seconds) to show both sides trained alike; the epoch's seconds per step (training alone, not
    validation); config.json's peak memory (on CUDA the GPU's allocations, elsewhere the resident memory) and
    wait4's peak resident memory of the process; config.json's parameter counts (with --lora, the frozen base,
    the adapters and peft's copy of the head: the trained one beside the original)."""
    seconds, peak_rss_mib = run_measured("train.py", train_command(output, **options))
    run = read_run(output)
    config, (epoch,) = run["config"], run["log"]
    steps = config["total_steps"]
    return {
        "side": f"LoRA r={config['lora_r']}" if config["lora_r"] else "full",
        "precision": config["precision_used"],
        "device": config["device_used"],
        "steps": steps,
        "train_tokens": round(epoch["train_tokens_per_s"] * epoch["epoch_seconds"]),
        "ms_per_step": 1000 * epoch["epoch_seconds"] / steps,
        "peak_memory_mib": config["peak_memory_mib"],
        "peak_rss_mib": peak_rss_mib,
        "trainable_parameters": config["trainable_parameters"],
        "num_parameters": config["num_parameters"],
        "wall_s": seconds,
    }


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def main(args: Args) -> None:
    report, started = {}, []
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        measure(args, report, started, workdir)
    except BaseException as e:  # also Ctrl-C
        # A late section's failure must not cost the minutes measured before it: keep them, say what failed.
        report["failed"] = {"section": started[-1], "error": one_line(e)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_report(report)
    print(f"-> {args.output}")
    if "failed" in report:
        failed = report["failed"]
        sys.exit(
            f"bench.py: error: section {failed['section']} failed ({failed['error']}); "
            f"the sections before it are in {args.output}"
        )


if __name__ == "__main__":
    with cli.dies_of_sigint():  # Ctrl-C is a KeyboardInterrupt, which main() reports like any failure
        main(cli.parse(Args, check_args))
