"""What a run trains with, built once before its first epoch (build_training): the model three ways (bare; DDP-wrapped
and compiled for training; compiled for evaluation), the optimizer and its schedule (optimization.py), loss scaling
and autocast. train.py's train_epoch reads it, one optimizer step at a time."""

from livedoor_classification.cli import first_line

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from livedoor_classification import distributed
from livedoor_classification.hardware import autocast
from livedoor_classification.models import needs_unused_parameter_search
from livedoor_classification.optimization import make_optimizer, make_scheduler, schedule_steps
from livedoor_classification.runs import COMPLETION_FILE


@dataclass
class Training:
    """What a run trains with, built once before the first epoch (build_training). Without torchrun and
    --compile, the three models are one and the same."""

    bare_model: torch.nn.Module  # neither wrapped nor compiled: its weights are copied, saved and restored
    ddp_model: torch.nn.Module  # called in training: DDP-wrapped under torchrun, and compiled with --compile
    compiled_model: torch.nn.Module  # called in evaluation: compiled with --compile; never DDP, which may hang
    # there (its forward may sync ranks)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler  # loss scaling for fp16; a no-op otherwise
    autocast: Callable  # a context manager for forward and loss: torch.autocast, or nullcontext for fp32
    device: torch.device
    class_weights: torch.Tensor | None  # --class_weights: per class (single-label) or per label's positives
    threshold: float | None  # multi-label: predicted at this probability or above; None for single-label
    grad_accum: int  # micro-batches per optimizer step
    max_grad_norm: float  # gradient clipping norm; 0: no clipping
    log_every: int  # steps between progress-bar loss updates

    @property
    def multi_label(self) -> bool:  # a sigmoid and a binary cross-entropy per label, not a softmax over them
        return self.threshold is not None


def build_training(run, args) -> tuple[Training, dict]:
    """From train.py's Run (its bare model, loaders, device, precision, class weights and threshold) and the
    options (args); and the schedule's steps, for config.json."""
    model, ddp_model, device = run.model, run.model, run.device
    if distributed.world_size() > 1:
        # Buffers (position ids) never change: no need to broadcast them before every forward.
        # Only models with parameters that text never reaches (LUKE's entity parts) pay DDP's search for
        # them, a walk over the autograd graph every step; without it they would stop at the second step.
        # (static_graph would avoid the search, but silently breaks no_sync accumulation: pytorch#187732.)
        device_ids = [device] if device.type == "cuda" else None
        search = needs_unused_parameter_search(model)
        ddp_model = DistributedDataParallel(
            model, device_ids=device_ids, broadcast_buffers=False, find_unused_parameters=search
        )
    compiled_model = model
    if args.compile:
        # dynamic=True: one compilation for every sequence length and batch size. Batches come in many
        # lengths (length-grouped, padded to multiples of 8), and by default torch.compile specializes
        # on the first shape and compiles again, dynamic, at the second: twice for training and twice
        # for evaluation, a minute or more each on a CPU. Length buckets would compile once per bucket
        # and pad more. (A batch of one example still compiles once more: torch specializes sizes 0 and 1.)
        ddp_model, compiled_model = torch.compile(ddp_model, dynamic=True), torch.compile(model, dynamic=True)
    warmup, total_steps = schedule_steps(len(run.loaders["train"]), args.grad_accum, args.epochs, args.warmup_ratio)
    optimizer = make_optimizer(model, args.lr, args.weight_decay, fused=device.type in ("cuda", "cpu"))
    weights = run.class_weights  # in label id order
    training = Training(
        bare_model=model,
        ddp_model=ddp_model,
        compiled_model=compiled_model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, warmup, total_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=run.precision == "fp16"),
        autocast=autocast(device, run.precision),
        device=device,
        class_weights=torch.tensor(list(weights.values()), device=device) if weights else None,
        threshold=run.threshold,
        grad_accum=args.grad_accum,
        max_grad_norm=args.max_grad_norm,
        log_every=args.log_every,
    )
    return training, {"warmup_steps": warmup, "total_steps": total_steps}


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes, by name: every parameter that requires a gradient. In full fine-tuning that is all
    of them; with --lora, the adapters and the head, so that the best epoch's copy and resume.pt of a 7B model
    are megabytes, not the model again. (Buffers, such as position ids, never change.)"""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """trained_weights back into the model; the frozen weights are as loaded."""
    unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:  # weights of another model: never silently half-restored
        raise ValueError(f"saved weights that this model does not have: {', '.join(unexpected[:3])}")


def compile_failed(model_name: str, error: Exception, run_dir: Path | None, resumed) -> str:
    """--compile: torch.compile compiles at the first batch of training (and of evaluation), and fails
    there for some architectures (Longformer: inductor's "Invalid NaN comparison", after minutes). One line
    naming the model; the run folder is removed if it holds no finished epoch, or else named as incomplete."""
    cause = getattr(error, "inner_exception", None) or error  # the backend's own error, which dynamo wraps
    reason = f"{type(cause).__name__}: {first_line(cause)}"
    line = f"{model_name}: torch.compile failed ({reason}); run without --compile"
    if run_dir and not resumed and not (run_dir / "log.csv").exists():
        shutil.rmtree(run_dir)  # its config.json alone: nothing was trained
        return line
    return line + (f"; {run_dir} is incomplete (no {COMPLETION_FILE})" if run_dir else "")
