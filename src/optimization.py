"""AdamW with weight decay on matrices only, and the linear warmup-then-decay learning-rate schedule."""

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
