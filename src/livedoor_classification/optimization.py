"""The optimizer and its learning-rate schedule: AdamW, weight decay on matrices only; a linear warmup over a
fraction of all steps, then a linear decay to 0."""

import math

import torch


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


def schedule_steps(batches_per_epoch: int, grad_accum: int, epochs: int, warmup_ratio: float) -> tuple[int, int]:
    """Warmup and total optimizer steps. Warmup is a fraction of the whole run (10%: the reference
    setup's 2 of 20 epochs), so that a short run still trains at its peak rate for most of its steps."""
    total_steps = math.ceil(batches_per_epoch / grad_accum) * epochs
    warmup = round(warmup_ratio * total_steps)
    if warmup >= total_steps:
        message = f"{warmup} warmup steps of {total_steps} leave none to train"
        raise ValueError(f"--warmup_ratio {warmup_ratio}: {message}; lower it or train longer")
    return warmup, total_steps
