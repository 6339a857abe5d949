"""Fine-tune a Hugging Face encoder on a prepared dataset; write config, log, metrics and predictions.

    python src/train.py --model_name tohoku-nlp/bert-base-japanese-v3
    python src/train.py --model_name studio-ousia/luke-japanese-base-lite --batch_size 32 --epochs 10 --lr 5e-5

After every epoch the model is evaluated on val; the epoch with the best macro-F1 is kept as a copy
of the weights in CPU memory, restored at the end and evaluated once on val and once on test. With
--patience N, training stops once N epochs in a row have not improved on it.

A multi-label dataset (prepare.py --multi_label) trains one logit per label with a binary cross-entropy
each, and predicts every label whose probability is --threshold or above; --class_weights balanced
weighs rare classes up (single-label: the cross-entropy's class weights; multi-label: each label's
positive weight).

Read it top to bottom: the options; the set-up (data, model, loaders: inputs.py); what a run trains with
(optimizer, schedule, DDP, compile, autocast); train_epoch, where one optimizer step is written out
(forward and loss under autocast, backward with accumulation, unscale and clip, step, schedule, zero_grad);
train_and_test, the epoch loop (evaluation: evaluation.py); main() at the bottom.
"""

import livedoor_classification.cli as cli  # first: Ctrl-C ends the script with one line, even while torch imports

import math
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F
import transformers
from classopt import classopt, config
from safetensors import SafetensorError
from sklearn.utils.class_weight import compute_class_weight
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import AutoTokenizer

from livedoor_classification import distributed, resume
from livedoor_classification.calibration import fit_temperature
from livedoor_classification.dataset_files import (
    dataset_fingerprint,
    dataset_manifest,
    dataset_text_fields,
    is_multi_label,
    label_names,
    load_label2id,
    load_split,
)
from livedoor_classification.evaluation import evaluate, first_windows, gold_labels, predict, split_metrics
from livedoor_classification.files import (
    append_csv_row,
    as_a_new_file,
    check_writable,
    remove_stale_staging,
    staging_folder,
    write_csv,
    write_json,
)
from livedoor_classification.hardware import autocast, make_deterministic, resolve_device, resolve_precision
from livedoor_classification.inputs import Collator, Truncation, eval_loader, to_device, tokenize, train_loader
from livedoor_classification.metrics import summary_keys
from livedoor_classification.models import (
    load_model,
    needs_unused_parameter_search,
    precision_that_runs,
    usable_seq_len,
)
from livedoor_classification.runs import (
    COMPLETION_FILE,
    create_run_dir,
    find_complete_run,
    interruption_reported,
    provenance,
    read_config,
    recorded_args,
    write_predictions,
)


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


def check_args(args: Args) -> None:
    """Every numeric option, before anything runs: one line naming each mistake, not a traceback later."""
    finite = all(math.isfinite(v) for v in (args.lr, args.warmup_ratio, args.weight_decay, args.max_grad_norm))
    finite &= math.isfinite(args.threshold)
    head_tokens_ok = args.head_tokens is None or (args.head_tokens >= 0 and args.truncation == "head_tail")
    windows_ok = args.windows == 1 or (args.windows > 1 and args.truncation == "head")
    train_subset_ok = args.max_train_samples is None or args.max_train_samples >= 1
    eval_subset_ok = args.max_eval_samples is None or args.max_eval_samples >= 1
    stride_ok = args.window_stride is None or (args.window_stride >= 1 and args.windows > 1)
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
        (
            "--text_fields",
            args.text_fields,
            args.text_fields is None or 1 <= len(args.text_fields) <= 3,
            "1 to 3 field names",
        ),
        ("--lr, --warmup_ratio, --weight_decay, --max_grad_norm, --threshold", "inf or nan", finite, "finite numbers"),
    ]
    mistakes = [f"{option} must be {must} (got {value})" for option, value, ok, must in rules if not ok]
    if mistakes:
        raise ValueError("; ".join(mistakes))


def resolve_dataset(args: Args) -> bool:
    """The dataset's folder and name (--dataset or --dataset_dir), and its text fields unless given;
    whether it is multi-label. A single-label run has no threshold (None, as config.json records it): it
    predicts the most probable label."""
    args.resolve_dataset()
    args.text_fields = args.text_fields or dataset_text_fields(args.dataset_dir)
    multi_label = is_multi_label(args.dataset_dir)
    if not multi_label:
        if args.threshold not in (Args.threshold, None):
            raise ValueError(f"--threshold is for multi-label datasets; {args.dataset_dir} has one label per text")
        args.threshold = None
    return multi_label


def setup(args: Args, multi_label: bool):
    """Everything that can fail because of the user's input, before any output is written."""
    if args.deterministic:
        make_deterministic()  # before the first CUDA kernel
    label2id = load_label2id(args.dataset_dir)
    device = resolve_device(args.device, distributed.local_rank())
    distributed.init(device)
    precision, reason = distributed.from_main(resolve_precision(args.precision, device))  # one decision for all
    transformers.set_seed(args.seed)  # before the model is built: the new classifier head is random
    tokenizer, model = load_model(args.model_name, label2id, multi_label)
    torch.manual_seed(args.seed + distributed.rank())  # dropout: a different mask on each rank
    max_seq_len = usable_seq_len(args.max_seq_len, model, tokenizer)
    loaders = make_loaders(args, tokenizer, model.config, label2id, max_seq_len, device)
    if args.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ValueError(f"{args.model_name}: this architecture does not support --gradient_checkpointing")
        # non-reentrant: works with torch.compile, DDP, and inputs that do not require grad
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    train_labels = np.array([example["label"] for example in first_windows(loaders["train"].dataset)])
    weights = class_weights(args, train_labels, label_names(label2id), multi_label)
    model = model.to(device)  # its precision is probed where it will train
    precision, reason = precision_that_runs(args.model_name, model, device, precision, reason, args.precision)
    run = describe_run(args, device, precision, reason, model, label2id, max_seq_len, loaders)
    run |= {"multi_label": multi_label, "class_weight_values": weights}
    return device, precision, model, loaders, run


def truncation_of(args: Args) -> Truncation:
    """The long-document options as the input pipeline takes them (and predict.json records them)."""
    return Truncation(args.truncation, args.head_tokens, args.windows, args.window_stride)


def make_loaders(args: Args, tokenizer, model_config, label2id: dict[str, int], max_seq_len: int, device) -> dict:
    truncation = truncation_of(args)
    collate = Collator(tokenizer.pad_token_id, max_seq_len)
    segment_ids = getattr(model_config, "type_vocab_size", 0) > 1
    pin = device.type == "cuda"  # page-locked host memory: copies to the GPU can run asynchronously
    shard = {"num_replicas": distributed.world_size(), "rank": distributed.rank()}
    loaders = {}
    for split in ("train", "val", "test"):
        records = load_split(args.dataset_dir, split, label2id, args.text_fields)
        records = subset(records, args.max_train_samples if split == "train" else args.max_eval_samples)
        examples = tokenize(records, tokenizer, args.text_fields, max_seq_len, segment_ids, split, truncation)
        if split == "train":
            loaders[split] = train_loader(examples, args.batch_size, args.seed, collate, pin, **shard)
        else:
            loaders[split] = eval_loader(examples, args.eval_batch_size, collate, pin, **shard)
    return loaders


def subset(records: list[dict], size: int | None) -> list[dict]:
    """`size` records (all for None), in their order, drawn at random with a fixed seed rather than the
    first ones, which are one class in a file sorted by label; the same whatever --seed, and nested (a
    smaller subset is part of a larger one), so that smoke runs of different sizes compare."""
    if size is None or size >= len(records):
        return records
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    return [records[i] for i in sorted(order[:size])]


def resolve_subsets(args: Args) -> dict:
    """--max_train_samples and --max_eval_samples as the run uses them: None where the subset would be the whole
    split (of val and of test, both), for that is the run made without the option: one identity, one row of
    results, and --skip_if_done finds either for the other. Returns the values asked for, for config.json."""
    requested = {"max_train_samples_requested": args.max_train_samples}
    requested["max_eval_samples_requested"] = args.max_eval_samples
    for option, splits in (("max_train_samples", ["train"]), ("max_eval_samples", ["val", "test"])):
        size = getattr(args, option)
        if size is not None and all(size >= split_size(args.dataset_dir, split) for split in splits):
            setattr(args, option, None)
    return requested


def split_size(dataset_dir: Path, split: str) -> float:
    """The records of a split (its non-blank lines, as load_split reads them); infinite if it cannot be read
    now, which load_split then reports."""
    try:
        with open(dataset_dir / f"{split}.jsonl", encoding="utf-8-sig") as f:
            return sum(1 for line in f if line.strip())
    except (OSError, UnicodeDecodeError):
        return math.inf


def class_weights(args: Args, labels: np.ndarray, names: list[str], multi_label: bool) -> dict[str, float] | None:
    """--class_weights balanced, from the training documents' labels (ids, or multi-hot rows), by label name.
    Single-label: n / (classes x n_c), scikit-learn's "balanced" (King and Zeng 2001), so that every class
    weighs as much in the loss as in a balanced set. Multi-label: each label's negatives per positive, the
    pos_weight that PyTorch's BCEWithLogitsLoss documents, so that its positives weigh as much as its
    negatives. None without the option."""
    if args.class_weights is None:
        return None
    positives = labels.sum(axis=0) if multi_label else np.bincount(labels, minlength=len(names))
    if missing := [name for name, n in zip(names, positives, strict=True) if n == 0]:
        subset = " (of --max_train_samples)" if args.max_train_samples else ""
        raise ValueError(f"--class_weights balanced: label {missing[0]!r} has no training example{subset}")
    if multi_label:
        weights = (len(labels) - positives) / positives
    else:
        weights = compute_class_weight("balanced", classes=np.arange(len(names)), y=labels)
    return dict(zip(names, weights.tolist(), strict=True))  # label name -> weight, as config.json records it


def describe_run(args: Args, device, precision: str, reason: str, model, label2id, max_seq_len, loaders) -> dict:
    return {
        **recorded_args(args),
        "device_used": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "host": platform.node(),  # with CUDA_VISIBLE_DEVICES: which GPUs of which machine a sweep gave the run
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "precision_used": precision,
        "precision_reason": reason,
        "world_size": distributed.world_size(),
        "global_batch_size": args.batch_size * args.grad_accum * distributed.world_size(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "attn_implementation": model.config._attn_implementation,
        "label2id": label2id,
        "dataset_fingerprint": dataset_fingerprint(args.dataset_dir),
        "max_seq_len_used": max_seq_len,
        "num_examples": {split: len(first_windows(loader.dataset)) for split, loader in loaders.items()},
        "num_windows": {split: len(loader.dataset) for split, loader in loaders.items()},  # examples the model sees
        **provenance(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            transformers=transformers.__version__,
            tokenizers=tokenizers.__version__,
        ),
    }


def planned_run(args: Args) -> dict:
    """What --skip_if_done compares with complete runs (runs.find_complete_run): these arguments on
    this very dataset (a re-prepared dataset has another fingerprint, so its runs are not "done"),
    with as many processes as torchrun is starting now."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # the process group does not exist yet
    return recorded_args(args) | {
        "dataset_fingerprint": dataset_fingerprint(args.dataset_dir),
        "world_size": world_size,
    }


@dataclass
class Training:
    """What a run trains with, built once before the first epoch."""

    model: torch.nn.Module  # the bare model: its weights are copied and restored
    train_model: torch.nn.Module  # called in training: DDP-wrapped under torchrun, compiled with --compile
    eval_model: torch.nn.Module  # called in evaluation: never DDP (its forward may sync ranks and hang)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # loss scaling for fp16; a no-op otherwise
    autocast: Callable  # a context manager for forward and loss: torch.autocast, or nullcontext for fp32
    device: torch.device
    class_weights: torch.Tensor | None  # --class_weights: per class (single-label) or per label's positives
    threshold: float | None  # multi-label: predicted at this probability or above; None for single-label

    @property
    def multi_label(self) -> bool:  # a sigmoid and a binary cross-entropy per label, not a softmax over them
        return self.threshold is not None


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    # Decay matrices only. Selecting by p.ndim catches every bias and LayerNorm/RMSNorm weight
    # whatever an architecture calls them; matching names ("LayerNorm.weight") silently misses some.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, fused=fused)  # fused: one kernel over all parameters (CUDA, CPU)


def make_scheduler(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:  # linear warmup from 0 to lr, then linear decay to 0
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def schedule_steps(args: Args, batches_per_epoch: int) -> tuple[int, int]:
    """Warmup and total optimizer steps. Warmup is a fraction of the whole run (10%: the reference
    setup's 2 of 20 epochs), so that a short run still trains at its peak rate for most of its steps."""
    total_steps = math.ceil(batches_per_epoch / args.grad_accum) * args.epochs
    warmup = round(args.warmup_ratio * total_steps)
    if warmup >= total_steps:
        message = f"{warmup} warmup steps of {total_steps} leave none to train"
        raise ValueError(f"--warmup_ratio {args.warmup_ratio}: {message}; lower it or train longer")
    return warmup, total_steps


def build_training(model, args: Args, device, precision: str, run: dict, batches_per_epoch: int):
    train_model = model
    if distributed.world_size() > 1:
        # Buffers (position ids) never change: no need to broadcast them before every forward.
        # Only models with parameters that text never reaches (LUKE's entity parts) pay DDP's search for
        # them, a walk over the autograd graph every step; without it they would stop at the second step.
        # (static_graph would avoid the search, but silently breaks no_sync accumulation: pytorch#187732.)
        device_ids = [device] if device.type == "cuda" else None
        search = needs_unused_parameter_search(model)
        train_model = DistributedDataParallel(
            model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=search
        )
    eval_model = model
    if args.compile:
        # dynamic=True: one compilation for every sequence length and batch size. Batches come in many
        # lengths (length-grouped, padded to multiples of 8), and by default torch.compile specializes
        # on the first shape and compiles again, dynamic, at the second: twice for training and twice
        # for evaluation, a minute or more each on a CPU. Length buckets would compile once per bucket
        # and pad more. (A batch of one example still compiles once more: torch specializes sizes 0 and 1.)
        train_model, eval_model = torch.compile(train_model, dynamic=True), torch.compile(model, dynamic=True)
    warmup, total_steps = schedule_steps(args, batches_per_epoch)
    optimizer = make_optimizer(model, args.lr, args.weight_decay, fused=device.type in ("cuda", "cpu"))
    weights = run["class_weight_values"]  # in label id order
    weights = torch.tensor(list(weights.values()), device=device) if weights else None
    training = Training(
        model,
        train_model,
        eval_model,
        optimizer,
        make_scheduler(optimizer, warmup, total_steps),
        torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        autocast(device, precision),
        device,
        weights,
        args.threshold if run["multi_label"] else None,
    )
    return training, {"warmup_steps": warmup, "total_steps": total_steps}


def train_epoch(t: Training, loader, args: Args) -> tuple[float, float]:
    """One pass over this rank's batches, an optimizer step every args.grad_accum micro-batches; returns
    the mean training loss per example over all ranks and the highest learning rate the steps used."""
    t.train_model.train()
    sizes = [len(batch) for batch in loader.batch_sampler]  # this epoch's batches, as the loader will draw them
    loss_sum = torch.zeros((), device=t.device)  # summed on the device: no GPU sync per step
    max_lr = 0.0
    steps = tqdm(loader, desc="train", leave=False, dynamic_ncols=True, disable=progress_bars_off())
    last_line = time.monotonic()
    for i, batch in enumerate(steps):
        group_start = i - i % args.grad_accum
        group = sizes[group_start : group_start + args.grad_accum]  # the micro-batches of this optimizer step
        step_now = i + 1 == group_start + len(group)
        inputs = to_device(batch, t.device)
        labels = inputs.pop("labels")
        # Under DDP, gradients are averaged across ranks only on the micro-batch that ends a step.
        no_sync = hasattr(t.train_model, "no_sync") and not step_now
        with t.train_model.no_sync() if no_sync else nullcontext():
            with t.autocast():  # forward and loss only: backward and the optimizer step stay outside
                logits = t.train_model(**inputs).logits.float()
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
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(t.model.parameters(), args.max_grad_norm)
            scale = t.scaler.get_scale()  # fp16 only: a GPU sync, the price of knowing whether the step ran
            t.scaler.step(t.optimizer)  # skipped by fp16's GradScaler when a gradient overflowed
            t.scaler.update()  # ... and then the scale shrinks
            if t.scaler.get_scale() >= scale:  # bf16/fp32: the scaler is off and both are 1.0, no sync
                t.scheduler.step()  # a skipped step must not use up the schedule
            t.optimizer.zero_grad(set_to_none=True)
        if (i + 1) % args.log_every == 0:
            steps.set_postfix(loss=f"{loss_sum.item() / sum(sizes[: i + 1]):.4f}")
        if steps.disable and time.monotonic() - last_line >= PROGRESS_SECONDS:  # no bar: output to a file
            say(f"  train step {i + 1} of {len(sizes)}, loss {loss_sum.item() / sum(sizes[: i + 1]):.4f}")
            last_line = time.monotonic()
    totals = distributed.total(torch.stack([loss_sum, torch.tensor(float(sum(sizes)), device=t.device)]))
    return (totals[0] / totals[1]).item(), max_lr


def train_and_test(args: Args, t: Training, loaders, run: dict, run_dir: Path | None, names: list, state=None):
    """The epoch loop: train, evaluate on val, keep a CPU copy of the best epoch's weights (by validation
    macro-F1), stop early after --patience epochs without a better one; then restore them, evaluate on val
    and test once, and write the run's files (rank 0). With --resume, the training state is saved after
    every epoch, and a state given (an interrupted run's) is continued after its epoch. Returns the best
    epoch, the epochs run, and the val and test metrics."""
    train_examples = len(loaders["train"].dataset)
    train_tokens = sum(len(example["input_ids"]) for example in loaders["train"].dataset)
    best_f1, best_epoch, best_state, rows, epoch, stopped = -1.0, 0, None, [], 0, False
    if state is not None:  # resume.load has restored the random generators too
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        t.scaler.load_state_dict(state["scaler"])
        best_f1, best_epoch, best_state = state["best_f1"], state["best_epoch"], state["best_model"]
        rows, epoch, stopped = state["log"], state["epoch"], state["stopped"]
        if distributed.is_main():
            write_csv(run_dir / "log.csv", rows)  # without a row of an epoch the killed run did not finish
    remaining = range(epoch + 1, args.epochs + 1) if not stopped else range(0)
    board = None
    if args.tensorboard and run_dir:  # rank 0
        # One event file, rewritten from the log's rows: a resumed run's curves are then exactly log.csv's.
        # (Two files, the killed run's and this one's, are read in name order, which is only the order
        # they were written in when their creation times differ by a second or more.)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        board = SummaryWriter(run_dir / "tensorboard")
        for row in rows:
            add_curves(board, row)
    with interruption_reported(run_dir, args.resume):  # Ctrl-C: one line naming the incomplete folder (rank 0's)
        for epoch in tqdm(remaining, desc="epochs", dynamic_ncols=True, disable=progress_bars_off()):
            loaders["train"].batch_sampler.set_epoch(epoch)
            start = time.perf_counter()
            train_loss, max_lr = train_epoch(t, loaders["train"], args)
            seconds = time.perf_counter() - start  # the loss's .item() has synced the GPU
            start = time.perf_counter()
            val, _ = evaluate(t.eval_model, loaders["val"], t.autocast, t.device, names, t.threshold)
            val_seconds = time.perf_counter() - start  # the metrics' .item() has synced the GPU
            if val["f1"] > best_f1:  # the same on every rank: the metrics were gathered from all of them
                best_f1, best_epoch = val["f1"], epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in t.model.state_dict().items()}
            if distributed.is_main():
                row = {"epoch": epoch, "train_loss": train_loss, **summary(val, "val", t.multi_label)}
                row |= {"max_lr": max_lr, "epoch_seconds": seconds, "val_seconds": val_seconds}
                row |= {"train_samples_per_s": train_examples / seconds, "train_tokens_per_s": train_tokens / seconds}
                append_csv_row(run_dir / "log.csv", row)
                rows.append(row)
                if board is not None:
                    add_curves(board, row)
            scores = headline(val, "val", "acc")
            say(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, {scores}, {seconds:.1f} s")
            # Early stopping watches the score that chooses the best epoch. The learning rate keeps the
            # schedule of --epochs: a run that stops early has not decayed it to 0, and its numbers are
            # those of the epoch that the full run would have reached at that point.
            stopped = bool(args.patience) and epoch - best_epoch >= args.patience
            if args.resume:
                training_state = {
                    "epoch": epoch,
                    "stopped": stopped,
                    "precision": run["precision_used"],
                    "model": t.model.state_dict(),
                    "optimizer": t.optimizer.state_dict(),
                    "scheduler": t.scheduler.state_dict(),
                    "scaler": t.scaler.state_dict(),
                    "best_f1": best_f1,
                    "best_epoch": best_epoch,
                    "best_model": best_state,
                    "log": rows,
                }
                resume.save(run_dir, training_state, t.device)
            if stopped:
                say(f"no better val F1 for {args.patience} epochs: stopping after epoch {epoch} (--patience)")
                break

        if board is not None:
            board.close()
        t.model.load_state_dict(best_state)
        (val, val_probabilities), (test, test_probabilities) = calibrated_evaluation(t, loaders, names)
        epochs = {"best_epoch": best_epoch, "epochs_run": epoch}
        if distributed.is_main():
            # config.json was written before training; T is known only now (and is no setting: not in IDENTITY)
            write_json(run_dir / "config.json", read_config(run_dir) | {"temperature": val["temperature"]})
            write_json(run_dir / "val-metrics.json", epochs | val)
            for split, probabilities in (("val", val_probabilities), ("test", test_probabilities)):
                examples = first_windows(loaders[split].dataset)  # a line per document
                ids, labels = [e["id"] for e in examples], [e["label"] for e in examples]
                path = run_dir / f"{split}-predictions.jsonl"
                write_predictions(path, ids, labels, probabilities.numpy(), names, t.threshold)
            if args.save_model:
                save_model(t.model, args, run, run_dir / "model", val["temperature"])
            write_json(run_dir / "test-metrics.json", epochs | test)  # last: the run is complete
            resume.remove(run_dir)  # a complete run needs no state to continue from
    return best_epoch, epoch, val, test


def calibrated_evaluation(t: Training, loaders, names: list) -> tuple[tuple, tuple]:
    """The best epoch's val and test metrics, each with its probabilities, temperature-scaled (calibration.py):
    one T fitted on the val logits (every rank fits the same T on the same gathered logits), never on test."""
    evaluated = ("val", "test")
    logits = {split: predict(t.eval_model, loaders[split], t.autocast, t.device, len(names)) for split in evaluated}
    temperature = fit_temperature(logits["val"], gold_labels(loaders["val"].dataset), t.multi_label)
    val, val_probabilities = split_metrics(logits["val"], loaders["val"].dataset, names, t.threshold, temperature)
    test, test_probabilities = split_metrics(logits["test"], loaders["test"].dataset, names, t.threshold, temperature)
    before = test["uncalibrated"]
    say(
        f"temperature {temperature:.3f} (fitted on val): test ECE {before['ece']:.4f} -> {test['ece']:.4f}, "
        f"test NLL {before['nll']:.4f} -> {test['nll']:.4f}"
    )
    return (val, val_probabilities), (test, test_probabilities)


def add_curves(board: SummaryWriter, row: dict) -> None:
    """--tensorboard: an epoch's point on each curve (a point per step would sync the GPU every step)."""
    curves = {"loss/train": "train_loss", "loss/val": "val_loss", "f1/val": "val_f1", "lr/max": "max_lr"}
    for tag, column in curves.items():
        board.add_scalar(tag, row[column], row["epoch"])
    board.flush()


def save_model(model, args: Args, run: dict, path: Path, temperature: float) -> None:
    """The best epoch's weights (safetensors), config (with id2label) and tokenizer: a plain Hugging
    Face model folder that AutoModelForSequenceClassification and pipeline() load; and predict.json,
    how this run prepared its texts, so that predict.py, given the folder alone, does the same.
    Written under a temporary name and renamed when whole."""
    remove_stale_staging(path.parents[3], f"*/*/*/.{path.name}.")  # those of killed runs, in any run folder
    for left in path.parents[3].glob(f"*/*/*/.{path.name}.tmp"):  # killed runs' of versions before staging_folder
        shutil.rmtree(left, ignore_errors=True)
    staging = staging_folder(path.parent, f".{path.name}.")
    try:
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(args.model_name, trust_remote_code=False).save_pretrained(staging)  # as loaded
        normalize = dataset_manifest(args.dataset_dir).get("normalize", True)  # as prepare.py did: NFKC, strip
        write_json(
            staging / "predict.json",
            {
                "text_fields": args.text_fields,
                "max_seq_len": run["max_seq_len_used"],
                "normalize": normalize,
                "batch_size": args.eval_batch_size,
                "precision": run["precision_used"],
                "truncation": asdict(truncation_of(args)),
                "threshold": args.threshold,  # multi-label: predicted at or above; None: the most probable
                "temperature": temperature,  # the probabilities are softmax (sigmoid) of logits / temperature
            },
        )
        for file in [staging, *staging.iterdir()]:  # safetensors writes 0600
            as_a_new_file(file)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no half-written model beside the run's files
        raise
    staging.rename(path)


def summary(metrics: dict, prefix: str, multi_label: bool) -> dict:
    return {f"{prefix}_{key}": metrics[key] for key in ("loss", *summary_keys(multi_label))}


def headline(metrics: dict, split: str, accuracy: str = "accuracy") -> str:
    """The scores a progress line shows: accuracy and macro-F1; multi-label, exact match, micro- and macro-F1."""
    if "subset_accuracy" in metrics:
        exact, micro = metrics["subset_accuracy"], metrics["micro_f1"]
        return f"{split} exact match {exact:.4f}, {split} micro-F1 {micro:.4f}, {split} F1 {metrics['f1']:.4f}"
    return f"{split} {accuracy} {metrics['accuracy']:.4f}, {split} F1 {metrics['f1']:.4f}"


def say(message: str) -> None:
    if distributed.is_main():
        tqdm.write(message)


# Without a progress bar (output to a file: a sweep's log, nohup), a line this often during an epoch, so
# that a long epoch shows it is moving. Each one syncs the GPU for its loss.
PROGRESS_SECONDS = 30


def progress_bars_off() -> bool | None:
    """None lets tqdm decide: bars on a terminal, none when the output goes to a file (a sweep log,
    nohup, CI), where they would be escape sequences and blank lines. Only rank 0 shows them."""
    return None if distributed.is_main() else True


def compile_failed(model_name: str, error: Exception, run_dir: Path | None, resumed) -> str:
    """--compile: torch.compile compiles at the first batch of training (and of evaluation), and fails
    there for some architectures (Longformer: inductor's "Invalid NaN comparison", after minutes). One line
    naming the model; the run folder is removed if it holds no finished epoch, or else named as incomplete."""
    cause = getattr(error, "inner_exception", None) or error  # the backend's own error, which dynamo wraps
    reason = f"{type(cause).__name__}: {cli.first_line(cause)}"
    line = f"{model_name}: torch.compile failed ({reason}); run without --compile"
    if run_dir and not resumed and not (run_dir / "log.csv").exists():
        shutil.rmtree(run_dir)  # its config.json alone: nothing was trained
        return line
    return line + (f"; {run_dir} is incomplete (no {COMPLETION_FILE})" if run_dir else "")


def main(args: Args) -> None:
    try:
        check_args(args)
        if Path(args.model_name).is_dir():  # one local model, however it was spelled: one name in the results
            args.model_name = str(Path(args.model_name).resolve())
        multi_label = resolve_dataset(args)
        requested = resolve_subsets(args)  # before --skip_if_done compares them
        runs_dir = args.output_root / args.dataset  # every dataset's runs apart
        holding = "model" if args.save_model else None  # with --save_model, a run is done once it has one
        # What the runs on disk are compared with; its dataset fingerprint hashes every split: once, when needed.
        planned = planned_run(args) if args.skip_if_done or args.resume else None
        if args.skip_if_done and (done := find_complete_run(runs_dir, args.model_name, planned, holding)):
            say(f"already complete, skipped: {done}")
            return
        try:
            check_writable(runs_dir)
        except ValueError as e:
            raise ValueError(f"--output_root {args.output_root}: cannot create a run folder ({e})") from None
        device, precision, model, loaders, run = setup(args, multi_label)
        run |= requested
        resumed = args.resume and resume.find_resumable_run(runs_dir, args.model_name, planned)
        resumed = distributed.from_main(resumed or None)  # rank 0's finding: one folder for every process
        state = resume.load(resumed, device) if resumed else None
        if args.resume and not resumed and distributed.is_main():  # an interrupted run of other settings?
            if notice := resume.not_continued(runs_dir, args.model_name, planned):
                print(notice, file=sys.stderr)
        if state and state["precision"] != precision:  # --precision auto decided anew: the killed run's stays
            precision = run["precision_used"] = state["precision"]
            run["precision_reason"] = "the precision of the interrupted run this one continues"
        training, schedule = build_training(model, args, device, precision, run, len(loaders["train"]))
    except ValueError as e:
        sys.exit(f"train.py: error: {e}")
    processes = f", {run['world_size']} processes" if run["world_size"] > 1 else ""
    say(f"device {device} ({run['device_name']}){processes}, precision {precision}: {run['precision_reason']}")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for the matmuls left in fp32
    run_dir, names = None, label_names(run["label2id"])
    try:
        if distributed.is_main() and resumed:
            run_dir = resumed
            config = read_config(run_dir)  # resume.find_resumable_run has read it
            resumes = config.get("resumed_at", []) + [datetime.now().isoformat(timespec="seconds")]
            write_json(run_dir / "config.json", config | {"resumed_at": resumes})
            say(f"resuming {run_dir} after epoch {state['epoch']}")
        elif distributed.is_main():
            run_dir = create_run_dir(runs_dir, args.model_name)
            write_json(run_dir / "config.json", run | schedule)
            say(f"writing to {run_dir}")
        best_epoch, epochs_run, val, test = train_and_test(args, training, loaders, run, run_dir, names, state)
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
