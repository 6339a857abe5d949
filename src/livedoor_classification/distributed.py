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
        cuda = device.type == "cuda"
        if cuda:
            # Whatever asks for "the" GPU (a bare "cuda", torch.cuda.current_device(), barrier, the buffers of
            # all_gather_object, whose docs leave set_device to the user) gets cuda:0 on every rank unless the
            # current device is set: all ranks crowd onto GPU 0 while NCCL works on cuda:LOCAL_RANK.
            torch.cuda.set_device(device)
        # device_id binds NCCL to this process's GPU at once, instead of guessing on the first collective
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Only the main process writes outputs and shows progress."""
    return rank() == 0


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's tensor, concatenated along dim 0 in rank order, on every rank.

    Dim 0 is the example dim and may differ between ranks (an uneven last batch, or none at all); the
    other dims must agree (a rank without examples passes torch.empty(0, *rest)): 1-D labels and
    predictions, 2-D probabilities, example ids all work. The data stays on this rank's device: no
    pickling, no copy through host memory; only the ranks' shapes are read on the host, to trim.
    """
    if not dist.is_initialized():
        return tensor
    # all_gather needs one shape on every rank: share the shapes, pad dim 0 to the longest, trim after.
    shape = torch.tensor(tensor.shape, dtype=torch.long, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    shapes = torch.stack(shapes).tolist()
    if any(other[1:] != shapes[0][1:] for other in shapes):
        raise ValueError(f"distributed.gather: the ranks' tensors differ beyond dim 0: {shapes}")
    padded = tensor.new_zeros((max(length for length, *_ in shapes), *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in shapes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:length] for part, (length, *_) in zip(parts, shapes, strict=True)])


def from_main(value):
    """Rank 0's value on every rank: for a decision every rank must share, such as a precision chosen
    from a timing, which could come out differently on each rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(value: torch.Tensor) -> torch.Tensor:
    """Elementwise sum of a tensor over all ranks (a scalar, or a few values reduced in one call)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value


def finish() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
