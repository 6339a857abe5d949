"""Fine-tune a Hugging Face encoder (or decoder) on a prepared dataset; write config, log, metrics and predictions.

    python src/train.py --model_name tohoku-nlp/bert-base-japanese-v3
    python src/train.py --model_name studio-ousia/luke-japanese-base-lite --batch_size 32 --epochs 10 --lr 5e-5
    python src/train.py --model_name Qwen/Qwen2.5-0.5B --lora --lr 2e-4 --epochs 5 --gradient_checkpointing

After every epoch the model is evaluated on val; the epoch with the best macro-F1 is kept as a copy
of the weights in CPU memory (and its val logits), restored at the end and evaluated once on test. With
--patience N, training stops once N epochs in a row have not improved on it.

With --lora, the pretrained weights stay frozen (in the run's half precision, or 4-bit with --lora_4bit) and
only LoRA adapters (peft) and the classification head train: lora.py.

A multi-label dataset (prepare.py --multi_label) trains one logit per label with a binary cross-entropy
each, and predicts every label whose probability is --threshold or above; --class_weights balanced
weighs rare classes up (single-label: the cross-entropy's class weights; multi-label: each label's
positive weight).

Read it top to bottom: the options; the set-up (the dataset, opened once: dataset_files.PreparedDataset; the
model; the loaders: inputs.py), a Run; train_epoch, where one optimizer step is written out (forward and loss
under autocast, backward with accumulation, unscale and clip, step, schedule, zero_grad) with what a run
trains with (training.py: optimizer, schedule, DDP, compile, autocast); train_and_test, the epoch loop
(evaluation.py; log.csv: epoch_log.py; --resume: resume.py; --save_model: saved_model.py); main() at the
bottom, which writes config.json (run_config.py).
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from classopt import classopt, config
from safetensors import SafetensorError
from torch.utils.data import DataLoader
from tqdm import tqdm

from livedoor_classification import class_weights, distributed, lora, resume, run_config
from livedoor_classification.dataset_files import PreparedDataset
from livedoor_classification.epoch_log import EpochLog
from livedoor_classification.evaluation import (
    calibrated_evaluation,
    gold_labels,
    predict,
    split_metrics,
    write_document_predictions,
)
from livedoor_classification.files import check_writable, write_json
from livedoor_classification.hardware import (
    keep_freed_memory,
    make_deterministic,
    peak_memory_mib,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from livedoor_classification.inputs import Collator, Truncation, eval_loader, subset, to_device, tokenize, train_loader
from livedoor_classification.metrics import summary_keys
from livedoor_classification.models import load_model, precision_that_runs, usable_seq_len
from livedoor_classification.progress import PROGRESS_SECONDS, headline, progress_bars_off, say
from livedoor_classification.runs import (
    COMPLETION_FILE,
    create_run_dir,
    find_complete_run,
    interruption_reported,
    note_at_end,
    note_resumed,
)
from livedoor_classification.saved_model import save_model
from livedoor_classification.training import Training, build_training, compile_failed, load_weights, trained_weights


@classopt(default_long=True, parser=cli.parser(__doc__))
class Args(cli.DatasetOptions):  # --dataset, --dataset_dir, --output_root
    model_name: str = config(default="tohoku-nlp/bert-base-japanese-v3", help="hub id or local model directory")
    text_fields: list[str] = config(
        default=None,
        nargs="+",
        help="one field, or two as a sentence pair; default: the dataset's, from its dataset.json",
    )
    batch_size: int = config(default=16, help="training examples per optimizer micro-step")
    eval_batch_size: int = config(default=64, help="examples per evaluation batch")
    epochs: int = config(default=20, help="passes over the training split")
    lr: float = config(default=3e-5, help="peak learning rate of AdamW")
    warmup_ratio: float = config(default=0.1, help="linear warmup, as a fraction of all optimizer steps")
    weight_decay: float = config(default=0.01, help="AdamW weight decay, applied to matrices only")
    max_grad_norm: float = config(default=1.0, help="gradient clipping norm (0 disables clipping)")
    grad_accum: int = config(default=1, help="micro-batches per optimizer step")
    max_seq_len: int = config(default=512, help="tokens per example, capped by the model's position limit")
    truncation: str = config(
        default="head",
        choices=["head", "tail", "head_tail"],
        help="which tokens of a long last text field are kept: its start, its end, or both (Sun et al. 2019)",
    )
    head_tokens: int = config(
        default=None,
        help="head_tail: tokens kept from the start; default a quarter of the room, as the paper's 128 of 510",
    )
    windows: int = config(
        default=1,
        help="a long text becomes up to N overlapping windows, each with the "
        "title; a document's prediction averages its windows' logits",
    )
    window_stride: int = config(
        default=None,
        help="tokens from one window's start to the next; default half a window, so that windows overlap by half",
    )
    class_weights: str = config(
        default=None,
        choices=["balanced"],
        help="balanced: weigh each class's loss by its inverse frequency in train (multi-label: each label's "
        "positives by its negatives per positive); default: every example alike",
    )
    threshold: float = config(default=0.5, help="multi-label: a label is predicted at this probability or above")
    patience: int = config(
        default=0, help="stop after N epochs without a better val macro-F1 (the best is kept); 0: train every epoch"
    )
    max_train_samples: int = config(default=None, help="a smoke test: N training examples, a fixed random sample")
    max_eval_samples: int = config(default=None, help="a smoke test: N examples of val and of test, likewise")
    seed: int = config(default=42, help="seed for the head's initialisation, dropout and batch order")
    device: str = config(default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU")
    precision: str = config(default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="autocast dtype")
    deterministic: bool = config(default=False, help="deterministic CUDA kernels: same seed, same metrics; slower")
    compile: bool = config(default=False, help="torch.compile the model, once for all lengths (dynamic shapes)")
    gradient_checkpointing: bool = config(default=False, help="recompute activations to save memory")
    lora: bool = config(
        default=False,
        help="train LoRA adapters (peft) and the classification head only; the pretrained weights stay frozen, "
        "loaded in the run's precision (bf16/fp16 halve their memory)",
    )
    lora_r: int = config(default=None, help="--lora: the adapters' rank; default 8 (peft's)")
    lora_alpha: float = config(default=None, help="--lora: scaling, adapters' output x alpha / r; default 8 (peft's)")
    lora_dropout: float = config(default=None, help="--lora: dropout on the adapters' input; default 0 (peft's)")
    lora_target_modules: list[str] = config(
        default=None,
        nargs="+",
        help="--lora: the layers to adapt, by name (q_proj v_proj), or all-linear; default: peft's for the "
        "architecture (mostly the attention's query and value)",
    )
    lora_4bit: bool = config(
        default=False, help="--lora: QLoRA, the frozen weights in 4-bit NF4 (bitsandbytes; CUDA only)"
    )
    merge_lora: bool = config(
        default=False,
        help="--lora --save_model: save the adapters merged into the model, a plain model folder that pipeline() "
        "loads, instead of the adapter alone",
    )
    save_model: bool = config(default=False, help="also write the best epoch's model and tokenizer to <run>/model/")
    log_every: int = config(default=20, help="steps between progress-bar loss updates (each one syncs the GPU)")
    skip_if_done: bool = config(
        default=False, help="exit at once if output_root already holds a complete run of these settings"
    )
    tensorboard: bool = config(
        default=False, help="also write the curves (loss, val F1, learning rate) to <run>/tensorboard/ for TensorBoard"
    )
    resume: bool = config(
        default=False,
        help="save the training state after every epoch, and continue an interrupted run of these settings "
        "after its last finished epoch, in its folder",
    )


# Options that only --lora reads; peft's defaults for those it has (LoraConfig: r 8, alpha 8, dropout 0).
LORA_OPTIONS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_4bit", "merge_lora")
LORA_DEFAULTS = {"lora_r": 8, "lora_alpha": 8.0, "lora_dropout": 0.0}


def check_args(args: Args) -> None:
    """Every numeric option, before anything runs: one line naming each mistake, not a traceback later."""
    finite = all(math.isfinite(v) for v in (args.lr, args.warmup_ratio, args.weight_decay, args.max_grad_norm))
    finite &= math.isfinite(args.threshold) and all(math.isfinite(v or 0) for v in (args.lora_alpha, args.lora_dropout))
    head_tokens_ok = args.head_tokens is None or (args.head_tokens >= 0 and args.truncation == "head_tail")
    windows_ok = args.windows == 1 or (args.windows > 1 and args.truncation == "head")
    train_subset_ok = args.max_train_samples is None or args.max_train_samples >= 1
    eval_subset_ok = args.max_eval_samples is None or args.max_eval_samples >= 1
    stride_ok = args.window_stride is None or (args.window_stride >= 1 and args.windows > 1)
    # "is not", not "in (None, False)": --lora_dropout 0 is given, and 0 == False
    lora_given = [
        f"--{name}" for name in LORA_OPTIONS if getattr(args, name) is not None and getattr(args, name) is not False
    ]
    merge_ok = not args.merge_lora or (args.save_model and not args.lora_4bit)
    targets = args.lora_target_modules or []
    targets_ok = "all-linear" not in targets or len(targets) == 1
    rules = [  # option, its value, whether the value is valid, what it must be
        ("--batch_size", args.batch_size, args.batch_size >= 1, ">= 1"),
        ("--eval_batch_size", args.eval_batch_size, args.eval_batch_size >= 1, ">= 1"),
        ("--epochs", args.epochs, args.epochs >= 1, ">= 1"),
        ("--grad_accum", args.grad_accum, args.grad_accum >= 1, ">= 1"),
        ("--lr", args.lr, args.lr > 0, "> 0"),
        ("--warmup_ratio", args.warmup_ratio, 0 <= args.warmup_ratio < 1, "in [0, 1)"),
        ("--weight_decay", args.weight_decay, args.weight_decay >= 0, ">= 0"),
        ("--max_grad_norm", args.max_grad_norm, args.max_grad_norm >= 0, ">= 0 (0 disables clipping)"),
        ("--max_seq_len", args.max_seq_len, args.max_seq_len >= 8, ">= 8"),
        ("--head_tokens", args.head_tokens, head_tokens_ok, ">= 0, and given only with --truncation head_tail"),
        ("--windows", args.windows, windows_ok, ">= 1, and 1 unless --truncation head (windows start at the head)"),
        ("--window_stride", args.window_stride, stride_ok, ">= 1, and given only with --windows 2 or more"),
        ("--log_every", args.log_every, args.log_every >= 1, ">= 1"),
        ("--patience", args.patience, args.patience >= 0, ">= 0 (0: no early stopping)"),
        ("--threshold", args.threshold, 0 < args.threshold < 1, "in (0, 1)"),
        ("--seed", args.seed, 0 <= args.seed < 2**32, "in [0, 2**32 - 1] (numpy's and transformers' seeds)"),
        ("--max_train_samples", args.max_train_samples, train_subset_ok, ">= 1"),
        ("--max_eval_samples", args.max_eval_samples, eval_subset_ok, ">= 1"),
        ("--lora_r", args.lora_r, args.lora_r is None or args.lora_r >= 1, ">= 1"),
        ("--lora_alpha", args.lora_alpha, args.lora_alpha is None or args.lora_alpha > 0, "> 0"),
        ("--lora_dropout", args.lora_dropout, args.lora_dropout is None or 0 <= args.lora_dropout < 1, "in [0, 1)"),
        (" ".join(lora_given), "without --lora", args.lora or not lora_given, "given with --lora"),
        (
            "--merge_lora",
            "--merge_lora",
            merge_ok,
            "given with --save_model, and not with --lora_4bit (merge a bf16 run)",
        ),
        ("--lora_target_modules", " ".join(targets), targets_ok, "layer names, or all-linear alone"),
        (
            "--text_fields",
            args.text_fields,
            args.text_fields is None or 1 <= len(args.text_fields) <= 3,
            "1 to 3 field names",
        ),
        (
            "--lr, --warmup_ratio, --weight_decay, --max_grad_norm, --threshold, --lora_*",
            "inf or nan",
            finite,
            "finite numbers",
        ),
    ]
    mistakes = [f"{option} must be {must} (got {value})" for option, value, ok, must in rules if not ok]
    if mistakes:
        raise ValueError("; ".join(mistakes))


def resolve_dataset(args: Args) -> PreparedDataset:
    """The dataset's folder and name (--dataset or --dataset_dir), opened once: everything below asks it. Its
    text fields unless given. A single-label run has no threshold (None, as config.json records it): it
    predicts the most probable label."""
    args.resolve_dataset()
    dataset = PreparedDataset(args.dataset_dir)
    args.text_fields = args.text_fields or dataset.text_fields
    if not dataset.multi_label:
        if args.threshold not in (Args.threshold, None):
            raise ValueError(f"--threshold is for multi-label datasets; {args.dataset_dir} has one label per text")
        args.threshold = None
    return dataset


def saved_model_file(args: Args) -> str:
    """The file of <run>/model/ that says it holds what --save_model asks for now: an adapter (--lora), or a whole
    model (--merge_lora, and full fine-tuning), so that --skip_if_done never counts the one as the other."""
    return "model/adapter_config.json" if args.lora and not args.merge_lora else "model/config.json"


def resolve_lora(args: Args) -> None:
    """--lora's settings as config.json records them: peft's defaults where none was given; without --lora, every
    one None (as a run made before the option), so that they part runs in runs.IDENTITY only where they act."""
    if not args.lora:
        for name in (*LORA_DEFAULTS, "lora_4bit"):
            setattr(args, name, None)
        return
    for name, default in LORA_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.lora_target_modules == ["all-linear"]:
        args.lora_target_modules = "all-linear"  # peft's word for every linear layer but the output's


def resolve_subsets(args: Args, dataset: PreparedDataset) -> dict:
    """--max_train_samples and --max_eval_samples as the run uses them: None where the subset would be the whole
    split (of val and of test, both), for that is the run made without the option: one identity, one row of
    results, and --skip_if_done finds either for the other. Returns the values asked for, for config.json."""
    requested = {"max_train_samples_requested": args.max_train_samples}
    requested["max_eval_samples_requested"] = args.max_eval_samples
    for option, splits in (("max_train_samples", ["train"]), ("max_eval_samples", ["val", "test"])):
        size = getattr(args, option)
        if size is not None and all(size >= dataset.split_size(split) for split in splits):
            setattr(args, option, None)
    return requested


@dataclass
class Run:
    """A run set up (setup): what it trains and evaluates, and what it resolved from its arguments, its dataset
    and its model, which the functions below read and config.json records (run_config.config_record)."""

    model: torch.nn.Module  # the bare model: neither DDP-wrapped nor compiled (Training)
    loaders: dict[str, DataLoader]  # train, val, test: tokenized, batched, this rank's shard
    device: torch.device
    precision: str  # bf16, fp16 or fp32, as config.json's precision_used; resolved from --precision
    precision_reason: str
    max_seq_len: int  # --max_seq_len capped by the model's position limit: max_seq_len_used
    truncation: Truncation  # the long-document options, as the input pipeline takes them (and predict.json)
    threshold: float | None  # multi-label: a label is predicted at this probability or above; None: single-label
    class_weights: dict[str, float] | None  # --class_weights balanced: by label name, in label id order

    @property
    def multi_label(self) -> bool:  # a sigmoid and a binary cross-entropy per label, not a softmax over them
        return self.threshold is not None


def setup(args: Args, dataset: PreparedDataset) -> Run:
    """Everything that can fail because of the user's input, before any output is written."""
    if args.deterministic:
        make_deterministic()  # before the first CUDA kernel
    device = resolve_device(args.device, distributed.local_rank())
    precision = resolve_precision(args.precision, device)  # from the device alone: no process group needed
    distributed.init(device)
    precision, reason = distributed.from_main(precision)  # rank 0's decision for all
    labels = len(dataset.label2id)
    quantization = lora.quantization(precision, device, args.model_name, labels) if args.lora_4bit else None
    dtype = lora.frozen_dtype(precision, args.lora)  # fp32; with --lora, a frozen base in the run's half precision
    seed_everything(args.seed)  # before the model is built: the new classifier head is random
    tokenizer, model = load_model(args.model_name, dataset.label2id, dataset.multi_label, dtype, quantization)
    torch.manual_seed(args.seed + distributed.rank())  # dropout: a different mask on each rank
    max_seq_len = usable_seq_len(args.max_seq_len, model, tokenizer)
    if not quantization:  # a quantized model was loaded onto its GPU
        model = model.to(device)  # its precision is probed where it will train
    precision, reason = precision_that_runs(args.model_name, model, device, precision, reason, args.precision)
    if precision == "fp32" and not quantization:
        model = model.float()  # a --lora base loaded in half precision that fails in it (the probe fell back)
    if args.gradient_checkpointing and not model.supports_gradient_checkpointing:
        raise ValueError(f"{args.model_name}: this architecture does not support --gradient_checkpointing")
    if quantization:  # peft's preparation of a 4-bit model, checkpointing included
        model = lora.prepare_quantized(model, args.gradient_checkpointing)
    elif args.gradient_checkpointing:
        # non-reentrant: works with torch.compile, DDP, and inputs that do not require grad (a frozen embedding)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if args.lora:
        target = args.lora_target_modules
        model = lora.add_adapters(model, args.model_name, args.lora_r, args.lora_alpha, args.lora_dropout, target)
    truncation = Truncation(args.truncation, args.head_tokens, args.windows, args.window_stride)
    loaders = make_loaders(args, dataset, tokenizer, model.config, max_seq_len, truncation, device)
    weights = None
    if args.class_weights:  # "balanced", from the labels of the training documents
        labels = gold_labels(loaders["train"].dataset)  # a label id (multi-label: a 0/1 row) per document
        weights = class_weights.balanced(labels, dataset.names, dataset.multi_label, bool(args.max_train_samples))
    return Run(model, loaders, device, precision, reason, max_seq_len, truncation, args.threshold, weights)


def make_loaders(args: Args, dataset, tokenizer, model_config, max_seq_len: int, truncation, device) -> dict:
    """Every split read (and checked) first, then tokenized and batched: this rank's shard of it."""
    sizes = {"train": args.max_train_samples, "val": args.max_eval_samples, "test": args.max_eval_samples}
    records = {split: dataset.split(split, args.text_fields) for split in sizes}
    collate = Collator(tokenizer.pad_token_id, max_seq_len)
    segment_ids = getattr(model_config, "type_vocab_size", 0) > 1
    pin = device.type == "cuda"  # page-locked host memory: copies to the GPU can run asynchronously
    shard = {"num_replicas": distributed.world_size(), "rank": distributed.rank()}
    loaders = {}
    for split, size in sizes.items():
        chosen = subset(records[split], size)  # --max_train_samples, --max_eval_samples
        examples = tokenize(chosen, tokenizer, args.text_fields, max_seq_len, segment_ids, split, truncation)
        if split == "train":
            loaders[split] = train_loader(examples, args.batch_size, args.seed, collate, pin, **shard)
        else:
            loaders[split] = eval_loader(examples, args.eval_batch_size, collate, pin, **shard)
    return loaders


def train_epoch(t: Training, loader) -> tuple[float, float]:
    """One pass over this rank's batches, an optimizer step every t.grad_accum micro-batches; returns
    the mean training loss per example over all ranks and the highest learning rate the steps used."""
    t.ddp_model.train()
    sizes = [len(batch) for batch in loader.batch_sampler]  # this epoch's batches, as the loader will draw them
    loss_sum = torch.zeros((), device=t.device)  # summed on the device: no GPU sync per step
    max_lr = 0.0
    steps = tqdm(loader, desc="train", leave=False, dynamic_ncols=True, disable=progress_bars_off())
    last_line = time.monotonic()
    for i, batch in enumerate(steps):
        group_start = i - i % t.grad_accum
        group = sizes[group_start : group_start + t.grad_accum]  # the micro-batches of this optimizer step
        step_now = i + 1 == group_start + len(group)
        inputs = to_device(batch, t.device)
        labels = inputs.pop("labels")
        # Under DDP, gradients are averaged across ranks only on the micro-batch that ends a step.
        no_sync = hasattr(t.ddp_model, "no_sync") and not step_now
        with t.ddp_model.no_sync() if no_sync else nullcontext():
            with t.autocast():  # forward and loss only: backward and the optimizer step stay outside
                logits = t.ddp_model(**inputs).logits.float()
                if t.multi_label:  # a binary cross-entropy per label, averaged over the labels (as transformers)
                    per_label = F.binary_cross_entropy_with_logits(
                        logits, labels, pos_weight=t.class_weights, reduction="none"
                    )
                    loss = per_label.mean(dim=1).sum()
                else:  # with class weights, each example's loss times its class's weight
                    loss = F.cross_entropy(logits, labels, weight=t.class_weights, reduction="sum")
            # The mean over the step's examples: dividing each micro-batch's mean by the number of
            # micro-batches would overweight the examples of a short last micro-batch. (Under DDP each
            # rank divides by its own count and DDP averages the ranks: exact while the ranks hold
            # equally many examples, i.e. on every step but possibly an epoch's last.)
            t.scaler.scale(loss / sum(group)).backward()
        loss_sum += loss.detach()
        if step_now:
            max_lr = max(max_lr, t.scheduler.get_last_lr()[0])  # the rate this step uses
            t.scaler.unscale_(t.optimizer)  # clip the true gradients, not the fp16-scaled ones
            if t.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(t.bare_model.parameters(), t.max_grad_norm)
            scale = t.scaler.get_scale()  # fp16 only: a GPU sync, the price of knowing whether the step ran
            t.scaler.step(t.optimizer)  # skipped by fp16's GradScaler when a gradient overflowed
            t.scaler.update()  # ... and then the scale shrinks
            if t.scaler.get_scale() >= scale:  # bf16/fp32: the scaler is off and both are 1.0, no sync
                t.scheduler.step()  # a skipped step must not use up the schedule
            t.optimizer.zero_grad(set_to_none=True)
        if (i + 1) % t.log_every == 0:
            steps.set_postfix(loss=f"{loss_sum.item() / sum(sizes[: i + 1]):.4f}")
        if steps.disable and time.monotonic() - last_line >= PROGRESS_SECONDS:  # no bar: output to a file
            say(f"  train step {i + 1} of {len(sizes)}, loss {loss_sum.item() / sum(sizes[: i + 1]):.4f}")
            last_line = time.monotonic()
    totals = distributed.total(torch.stack([loss_sum, torch.tensor(float(sum(sizes)), device=t.device)]))
    return (totals[0] / totals[1]).item(), max_lr


@dataclass
class Best:
    """The best epoch so far, by val macro-F1, and a CPU copy of the weights that training changes (all of them;
    with --lora the adapters and the head): restored at the end."""

    f1: float = -1.0
    epoch: int = 0
    weights: dict | None = None
    val_logits: torch.Tensor | None = None  # its val logits (CPU), for the last evaluation: no second val pass


def train_and_test(args: Args, dataset, t: Training, run: Run, run_dir: Path | None, state=None):
    """The epoch loop: train, evaluate on val, keep the best epoch, stop early after --patience epochs without
    a better one; then restore its weights, evaluate on test (val's logits are the best epoch's), fit the
    temperature on val, and write the run's files (rank 0).
    With --resume, the training state is saved after every epoch, and a state given (an interrupted run's) is
    continued after its epoch. Returns the best epoch, the epochs run, and the val and test metrics."""
    loaders = run.loaders
    train_examples = len(loaders["train"].dataset)
    train_tokens = sum(len(example["input_ids"]) for example in loaders["train"].dataset)
    best, rows, epoch, stopped = Best(), [], 0, False
    if state is not None:  # --resume: where the interrupted run was after its last finished epoch
        resume.restore(state, t)  # (resume.load has restored the random generators too)
        best = Best(state["best_f1"], state["best_epoch"], state["best_model"], state.get("best_val_logits"))
        rows, epoch, stopped = state["log"], state["epoch"], state["stopped"]
    log = EpochLog(run_dir, rows, args.tensorboard)  # rank 0's log.csv, and --tensorboard's curves
    remaining = range(epoch + 1, args.epochs + 1) if not stopped else range(0)
    with interruption_reported(run_dir, args.resume):  # Ctrl-C: one line naming the incomplete folder (rank 0's)
        for epoch in tqdm(remaining, desc="epochs", dynamic_ncols=True, disable=progress_bars_off()):
            loaders["train"].batch_sampler.set_epoch(epoch)
            start = time.perf_counter()
            train_loss, max_lr = train_epoch(t, loaders["train"])
            seconds = time.perf_counter() - start  # the loss's .item() has synced the GPU
            start = time.perf_counter()
            val_logits = predict(t.compiled_model, loaders["val"], t.autocast, t.device, len(dataset.names))
            val, _ = split_metrics(val_logits, loaders["val"].dataset, dataset.names, t.threshold)
            val_seconds = time.perf_counter() - start  # the metrics' .item() has synced the GPU
            if val["f1"] > best.f1:  # the same on every rank: the metrics were gathered from all of them
                weights = {k: v.to("cpu", copy=True) for k, v in trained_weights(t.bare_model).items()}
                best = Best(val["f1"], epoch, weights, val_logits)
            row = {"epoch": epoch, "train_loss": train_loss}
            row |= {f"val_{key}": val[key] for key in ("loss", *summary_keys(t.multi_label))}
            row |= {"max_lr": max_lr, "epoch_seconds": seconds, "val_seconds": val_seconds}
            row |= {"train_samples_per_s": train_examples / seconds, "train_tokens_per_s": train_tokens / seconds}
            row |= {"peak_memory_mib": peak_memory_mib(t.device)}  # so far: the most this run has needed
            log.add(row)
            scores = headline(val, "val", "acc")
            say(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, {scores}, {seconds:.1f} s")
            # Early stopping watches the score that chooses the best epoch. The learning rate keeps the
            # schedule of --epochs: a run that stops early has not decayed it to 0, and its numbers are
            # those of the epoch that the full run would have reached at that point.
            stopped = bool(args.patience) and epoch - best.epoch >= args.patience
            if args.resume:  # the state a killed run continues from
                resume.save(run_dir, resume.state_after(epoch, stopped, run.precision, t, best, log.rows), t.device)
            if stopped:
                say(f"no better val F1 for {args.patience} epochs: stopping after epoch {epoch} (--patience)")
                break

        log.close()
        load_weights(t.bare_model, best.weights)
        evaluated = calibrated_evaluation(
            t.compiled_model, loaders, t.autocast, t.device, dataset.names, t.threshold, best.val_logits
        )
        (val, val_probabilities), (test, test_probabilities) = evaluated
        before, temperature = test["uncalibrated"], val["temperature"]
        say(
            f"temperature {temperature:.3f} (fitted on val): test ECE {before['ece']:.4f} -> {test['ece']:.4f}, "
            f"test NLL {before['nll']:.4f} -> {test['nll']:.4f}"
        )
        if distributed.is_main():
            for split, probabilities in (("val", val_probabilities), ("test", test_probabilities)):
                path = run_dir / f"{split}-predictions.jsonl"
                write_document_predictions(path, loaders[split].dataset, probabilities, dataset.names, t.threshold)
            note_at_end(run_dir, temperature=temperature, peak_memory_mib=peak_memory_mib(t.device))  # config.json
            epochs = {"best_epoch": best.epoch, "epochs_run": epoch}
            write_json(run_dir / "val-metrics.json", epochs | val)
            if args.save_model:
                save_model(run_dir / "model", t.bare_model, args, run, dataset, temperature)
            write_json(run_dir / "test-metrics.json", epochs | test)  # last: the run is complete
            resume.remove(run_dir)  # a complete run needs no state to continue from
    return best.epoch, epoch, val, test


def main(args: Args) -> None:
    try:
        check_args(args)
        if Path(args.model_name).is_dir():  # one local model, however it was spelled: one name in the results
            args.model_name = str(Path(args.model_name).resolve())
        dataset = resolve_dataset(args)
        resolve_lora(args)
        requested = resolve_subsets(args, dataset)  # before --skip_if_done compares them
        runs_dir = args.output_root / args.dataset  # every dataset's runs apart
        holding = saved_model_file(args) if args.save_model else None  # with --save_model, done once it has one
        # What the runs on disk are compared with; its dataset fingerprint hashes every split: once, when needed.
        planned = run_config.planned_run(args, dataset) if args.skip_if_done or args.resume else None
        if args.skip_if_done and (done := find_complete_run(runs_dir, args.model_name, planned, holding)):
            say(f"already complete, skipped: {done}")
            return
        try:
            check_writable(runs_dir)
        except ValueError as e:
            raise ValueError(f"--output_root {args.output_root}: cannot create a run folder ({e})") from None
        run = setup(args, dataset)
        resumed, state = None, None
        if args.resume:  # an interrupted run of these settings, continued in its folder
            resumed, state = resume.continued_run(runs_dir, args.model_name, planned, run.device)
        if state and state["precision"] != run.precision:  # --precision auto decided anew: the killed run's stays
            run.precision = state["precision"]
            run.precision_reason = "the precision of the interrupted run this one continues"
        training, schedule = build_training(run, args)
    except ValueError as e:
        sys.exit(f"train.py: error: {e}")
    processes = f", {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    precision = f"precision {run.precision}: {run.precision_reason}"
    say(f"device {run.device} ({run_config.device_name(run.device)}){processes}, {precision}")
    if run.device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for the matmuls left in fp32
    keep_freed_memory(run.device)  # on a CPU: each step reuses the memory the last one freed, no page faults
    run_dir = None
    try:
        if distributed.is_main() and resumed:
            run_dir = resumed
            note_resumed(run_dir)
            say(f"resuming {run_dir} after epoch {state['epoch']}")
        elif distributed.is_main():
            run_dir = create_run_dir(runs_dir, args.model_name)
            write_json(run_dir / "config.json", run_config.config_record(args, run, dataset) | requested | schedule)
            say(f"writing to {run_dir}")
        best_epoch, epochs_run, val, test = train_and_test(args, dataset, training, run, run_dir, state)
    except (OSError, SafetensorError) as e:  # a full disk, or a folder removed or made read-only meanwhile
        reason = getattr(e, "strerror", None) or cli.first_line(e)  # safetensors has errors of its own
        incomplete = f"; the run is incomplete (no {COMPLETION_FILE})" if run_dir else ""
        sys.exit(f"train.py: error: {run_dir or runs_dir}: {reason}{incomplete}")
    except RuntimeError as e:  # torch._dynamo's errors are RuntimeErrors; without --compile, not imported
        if not (args.compile and isinstance(e, torch._dynamo.exc.TorchDynamoException)):
            raise
        sys.exit(f"train.py: error: {compile_failed(args.model_name, e, run_dir, resumed)}")
    stopped = f" (stopped early after epoch {epochs_run} of {args.epochs})" if epochs_run < args.epochs else ""
    say(f"best epoch {best_epoch}{stopped}: val F1 {val['f1']:.4f}, {headline(test, 'test')} -> {run_dir}")
    distributed.finish()


if __name__ == "__main__":
    with cli.dies_of_sigint():
        main(cli.parse(Args, check_args))
