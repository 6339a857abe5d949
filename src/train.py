"""Fine-tune a Hugging Face encoder on a prepared JSONL dataset; write config, log and metrics only.

    python src/train.py --model_name tohoku-nlp/bert-base-japanese-v3
    python src/train.py --model_name studio-ousia/luke-japanese-base-lite --batch_size 32 --epochs 10 --lr 5e-5

After every epoch the model is evaluated on val; the epoch with the best macro-F1 is kept as a copy
of the weights in CPU memory, restored at the end and evaluated once on val and once on test.
"""

import math
import platform
import sys
import time
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from pathlib import Path

import tokenizers
import torch
import torch.nn.functional as F
import transformers
from classopt import classopt, config
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from src.data import Collator, LengthGroupedBatchSampler, load_label2id, load_split, sorted_batches, tokenize
from src.hardware import AUTOCAST_DTYPES, resolve_device, resolve_precision
from src.metrics import SUMMARY_KEYS, classification_metrics
from src.runs import (
    ROOT,
    append_csv_row,
    create_run_dir,
    find_complete_run,
    git_commit,
    recorded_args,
    write_json,
)

# Models whose position ids start after the padding index (RoBERTa's fairseq heritage): of their
# max_position_embeddings (514), pad_token_id + 1 positions are unusable, leaving 512 tokens.
PADDING_OFFSET_MODELS = {"roberta", "xlm-roberta", "camembert", "luke", "data2vec-text", "xmod", "roberta-prelayernorm"}


@classopt(default_long=True)
class Args:
    model_name: str = config(default="tohoku-nlp/bert-base-japanese-v3", help="hub id or local model directory")
    dataset_dir: Path = config(default=ROOT / "datasets" / "livedoor", help="{train,val,test}.jsonl + label2id.json")
    text_fields: list[str] = config(default=["title", "body"], nargs="+", help="one field, or two as a sentence pair")
    batch_size: int = config(default=16, help="training examples per optimizer micro-step")
    eval_batch_size: int = config(default=64, help="examples per evaluation batch")
    epochs: int = config(default=20, help="passes over the training split")
    lr: float = config(default=3e-5, help="peak learning rate of AdamW")
    warmup_epochs: float = config(default=2.0, help="linear warmup length in epochs")
    warmup_ratio: float = config(default=0.0, help="if > 0: warmup as a fraction of all steps (overrides epochs)")
    weight_decay: float = config(default=0.01, help="AdamW weight decay, applied to matrices only")
    max_grad_norm: float = config(default=1.0, help="gradient clipping norm (0 disables clipping)")
    grad_accum: int = config(default=1, help="micro-batches per optimizer step")
    max_seq_len: int = config(default=512, help="tokens per example, capped by the model's position limit")
    seed: int = config(default=42, help="seed for the head's initialisation, dropout and batch order")
    device: str = config(default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: CUDA, then MPS, then CPU")
    precision: str = config(default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="autocast dtype")
    compile: bool = config(default=False, help="torch.compile the model")
    gradient_checkpointing: bool = config(default=False, help="recompute activations to save memory")
    output_root: Path = config(default=ROOT / "outputs", help="run folders go to <root>/<model>/<date>/<time>/")
    log_every: int = config(default=20, help="steps between progress-bar loss updates (each one syncs the GPU)")
    skip_if_done: bool = config(
        default=False, help="exit at once if output_root already holds a complete run of these settings"
    )


# Arguments that do not change a run's results: a complete run that differs only in these is the same run.
NOT_SETTINGS = {"output_root", "log_every", "skip_if_done"}


def load_model(args: Args, label2id: dict[str, int]):
    """Tokenizer and model, or a ValueError that says why not: name, network or a missing dependency."""
    local = Path(args.model_name)
    if local.exists() and not (local / "config.json").is_file():
        raise ValueError(f"{args.model_name}: not a loadable model directory (no config.json in it)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model_name)
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model_name,
            num_labels=len(label2id),
            label2id=label2id,
            id2label={i: name for name, i in label2id.items()},
            dtype=torch.float32,  # transformers 5 would otherwise keep the checkpoint's (often half) dtype
        )
    except ImportError as e:
        raise ValueError(f"{args.model_name}: a dependency of its tokenizer or model is missing: {e}") from None
    except OSError as e:
        if local.exists():
            raise ValueError(f"{args.model_name}: not a loadable model directory: {first_line(e)}") from None
        raise ValueError(
            f"{args.model_name}: not a local directory, and could not be loaded from the Hugging Face Hub "
            f"(check the name, the network, or HF_HUB_OFFLINE with a cached copy): {first_line(e)}"
        ) from None
    except ValueError as e:
        raise ValueError(f"{args.model_name}: could not load its tokenizer or model: {first_line(e)}") from None
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{args.model_name}: the tokenizer has no padding token")
    return tokenizer, model


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def usable_seq_len(requested: int, model_config, tokenizer) -> int:
    limits = [requested]
    if getattr(model_config, "max_position_embeddings", None):
        offset = model_config.pad_token_id + 1 if model_config.model_type in PADDING_OFFSET_MODELS else 0
        limits.append(model_config.max_position_embeddings - offset)
    if tokenizer.model_max_length < 1_000_000:  # the tokenizer's "no limit" is a huge sentinel
        limits.append(tokenizer.model_max_length)
    return min(limits)


def make_optimizer(model: torch.nn.Module, args: Args, device: torch.device) -> torch.optim.AdamW:
    # Decay matrices only. Selecting by p.ndim catches every bias and LayerNorm/RMSNorm weight
    # whatever an architecture calls them; matching names ("LayerNorm.weight") silently misses some.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, fused=device.type == "cuda")


def make_scheduler(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:  # linear warmup from 0 to lr, then linear decay to 0
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    # non_blocking copies from pinned memory overlap with the GPU's work instead of stalling it
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward_loss(model, batch, autocast, reduction: str = "mean"):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with autocast():  # forward and loss only: backward and the optimizer step stay outside
        logits = model(**inputs).logits
        loss = F.cross_entropy(logits.float(), batch["labels"], reduction=reduction)
    return loss, logits


def train_one_epoch(model, loader, optimizer, scheduler, scaler, autocast, args: Args, device) -> float:
    model.train()
    loss_sum = torch.zeros((), device=device)  # summed on the device: no GPU sync per step
    steps = tqdm(loader, desc="train", leave=False, dynamic_ncols=True)
    for i, batch in enumerate(steps):
        group_start = i - i % args.grad_accum
        micro_batches = min(args.grad_accum, len(loader) - group_start)
        loss, _ = forward_loss(model, to_device(batch, device), autocast)
        scaler.scale(loss / micro_batches).backward()
        loss_sum += loss.detach()
        if i + 1 == group_start + micro_batches:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if (i + 1) % args.log_every == 0:
            steps.set_postfix(loss=f"{loss_sum.item() / (i + 1):.4f}")
    return loss_sum.item() / len(loader)


@torch.inference_mode()
def evaluate(model, loader, autocast, device, label_names: list[str]) -> dict:
    """Metrics over a whole split; the loss is the exact mean over examples (summed per batch, then
    divided by the number of examples), not the last batch's or a mean of batch means."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions, labels = [], []
    for batch in loader:
        batch = to_device(batch, device)
        loss, logits = forward_loss(model, batch, autocast, reduction="sum")
        loss_sum += loss
        predictions.append(logits.argmax(dim=-1))
        labels.append(batch["labels"])
    labels, predictions = torch.cat(labels).cpu().tolist(), torch.cat(predictions).cpu().tolist()
    return {"loss": loss_sum.item() / len(labels)} | classification_metrics(labels, predictions, label_names)


def summary(metrics: dict, prefix: str) -> dict:
    return {f"{prefix}_{key}": metrics[key] for key in ("loss", *SUMMARY_KEYS)}


def make_loaders(args: Args, tokenizer, model_config, label2id: dict[str, int], max_seq_len: int, device) -> dict:
    collate = Collator(tokenizer.pad_token_id, max_seq_len)
    segment_ids = getattr(model_config, "type_vocab_size", 0) > 1
    loaders = {}
    for split in ("train", "val", "test"):
        records = load_split(args.dataset_dir, split, label2id, args.text_fields)
        examples = tokenize(records, tokenizer, args.text_fields, max_seq_len, segment_ids)
        lengths = [len(e["input_ids"]) for e in examples]
        if split == "train":
            sampler = LengthGroupedBatchSampler(lengths, args.batch_size, args.seed)
        else:
            sampler = sorted_batches(lengths, args.eval_batch_size)
        # No worker processes: batches come from pre-tokenized arrays far faster than a GPU uses them.
        pin = device.type == "cuda"
        loaders[split] = DataLoader(examples, batch_sampler=sampler, collate_fn=collate, pin_memory=pin)
    return loaders


def describe_run(args: Args, device, precision: str, reason: str, model, label2id, max_seq_len, loaders) -> dict:
    return {
        **recorded_args(args),
        "device_used": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "precision_used": precision,
        "precision_reason": reason,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "attn_implementation": model.config._attn_implementation,
        "label2id": label2id,
        "max_seq_len_used": max_seq_len,
        "num_examples": {split: len(loader.dataset) for split, loader in loaders.items()},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "git_commit": git_commit(),
        "start_time": datetime.now().isoformat(timespec="seconds"),
    }


def setup(args: Args):
    """Everything that can fail because of the user's input, before any output is written."""
    if args.grad_accum < 1 or args.batch_size < 1 or args.epochs < 1 or not 1 <= len(args.text_fields) <= 3:
        raise ValueError("--batch_size, --grad_accum and --epochs must be >= 1, --text_fields 1 to 3 names")
    label2id = load_label2id(args.dataset_dir)
    device = resolve_device(args.device)
    precision, reason = resolve_precision(args.precision, device)
    transformers.set_seed(args.seed)  # before the model is built: the new classifier head is random
    tokenizer, model = load_model(args, label2id)
    max_seq_len = usable_seq_len(args.max_seq_len, model.config, tokenizer)
    loaders = make_loaders(args, tokenizer, model.config, label2id, max_seq_len, device)
    if args.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ValueError(f"{args.model_name}: this architecture does not support --gradient_checkpointing")
        # non-reentrant: works with torch.compile and with inputs that do not require grad
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    run = describe_run(args, device, precision, reason, model, label2id, max_seq_len, loaders)
    return device, precision, model.to(device), loaders, run


def main(args: Args) -> None:
    if args.skip_if_done:
        same = {k: v for k, v in recorded_args(args).items() if k not in NOT_SETTINGS}
        if done := find_complete_run(args.output_root, args.model_name, same):
            print(f"already complete, skipped: {done}")
            return
    try:
        device, precision, model, loaders, run = setup(args)
    except ValueError as e:
        sys.exit(f"train.py: error: {e}")
    print(f"device {device} ({run['device_name']}), precision {precision}: {run['precision_reason']}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"  # fp32 matmuls in TF32 where fp32 remains
    label_names = list(run["label2id"])
    autocast = (
        partial(torch.autocast, device.type, dtype=AUTOCAST_DTYPES[precision]) if precision != "fp32" else nullcontext
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward_model = torch.compile(model) if args.compile else model

    steps_per_epoch = math.ceil(len(loaders["train"]) / args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    warmup = args.warmup_ratio * total_steps if args.warmup_ratio > 0 else args.warmup_epochs * steps_per_epoch
    optimizer = make_optimizer(model, args, device)
    scheduler = make_scheduler(optimizer, round(warmup), total_steps)

    run_dir = create_run_dir(args.output_root, args.model_name)
    write_json(run_dir / "config.json", run | {"warmup_steps": round(warmup), "total_steps": total_steps})
    print(f"writing to {run_dir}")

    train_tokens = sum(len(example["input_ids"]) for example in loaders["train"].dataset)
    best_f1, best_epoch, best_state = -1.0, 0, None
    for epoch in tqdm(range(1, args.epochs + 1), desc="epochs", dynamic_ncols=True):
        loaders["train"].batch_sampler.set_epoch(epoch)
        start = time.perf_counter()
        train_loss = train_one_epoch(
            forward_model, loaders["train"], optimizer, scheduler, scaler, autocast, args, device
        )
        seconds = time.perf_counter() - start  # train_loss.item() has synced the GPU
        val = evaluate(forward_model, loaders["val"], autocast, device, label_names)
        if val["f1"] > best_f1:
            best_f1, best_epoch = val["f1"], epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        append_csv_row(run_dir / "log.csv", {
            "epoch": epoch, "train_loss": train_loss, **summary(val, "val"),
            "lr": scheduler.get_last_lr()[0], "epoch_seconds": seconds,
            "train_samples_per_s": len(loaders["train"].dataset) / seconds,
            "train_tokens_per_s": train_tokens / seconds,
        })  # fmt: skip
        tqdm.write(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, "
                   f"val acc {val['accuracy']:.4f}, val F1 {val['f1']:.4f}, {seconds:.1f} s")  # fmt: skip

    model.load_state_dict(best_state)
    val = evaluate(forward_model, loaders["val"], autocast, device, label_names)
    test = evaluate(forward_model, loaders["test"], autocast, device, label_names)
    write_json(run_dir / "val-metrics.json", {"best_epoch": best_epoch} | val)
    write_json(run_dir / "test-metrics.json", {"best_epoch": best_epoch} | test)  # last: marks the run complete
    print(f"best epoch {best_epoch}: val F1 {val['f1']:.4f}, test accuracy {test['accuracy']:.4f}, "
          f"test F1 {test['f1']:.4f} -> {run_dir}")  # fmt: skip


if __name__ == "__main__":
    main(Args.from_args())
