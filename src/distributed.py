"""Running under torchrun: one process per GPU (NCCL) or per CPU worker (gloo), with PyTorch DDP.

A plain `python src/train.py` is a world of one process, and every helper here is then a no-op, so
the training script has a single code path.
"""

import os

import torch
import torch.distributed as dist


def local_rank() -> int:
    """This process's index on its machine, as torchrun sets it (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device: torch.device) -> None:
    """Join torchrun's process group, if launched by torchrun with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # device_id binds NCCL to this process's GPU at once, instead of guessing on the first collective
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Only the main process writes outputs and shows progress."""
    return rank() == 0


def gather(values: list) -> list:
    """Every rank's list, concatenated in rank order, on every rank (lists may differ in length)."""
    if not dist.is_initialized():
        return values
    parts = [None] * world_size()
    dist.all_gather_object(parts, values)
    return [value for part in parts for value in part]


def total(value: torch.Tensor) -> torch.Tensor:
    """Sum of a scalar tensor over all ranks."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
