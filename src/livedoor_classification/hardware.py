"""Which device to train on, in which precision, and how fast its matrix multiply runs; on a CPU, malloc keeps
the memory a step frees for the next (keep_freed_memory).

One code path serves every device: the chosen precision only decides the dtype that torch.autocast
uses for the forward pass and whether fp16's GradScaler is enabled. Trained weights always stay fp32 (a
frozen --lora base loads in the half precision itself: lora.frozen_dtype); peak_memory_mib says what a run held.
"""

import ctypes
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# bf16 autocast on a CPU pays off only where the CPU multiplies bf16 natively; elsewhere it is emulated and
# slower than fp32 (docs/performance.md has both measured). The CPU's own report decides, not a timing: a
# timing on a loaded machine flipped, and two identical runs trained in different precisions.
CPU_NATIVE_BF16 = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16", "bf16": "ARM BF16"}
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters, as <malloc.h> numbers them


def autocast(device: torch.device, precision: str) -> Callable:
    """A context manager factory for the forward pass and loss: torch.autocast in bf16 or fp16, nothing
    in fp32 (the weights stay fp32 either way)."""
    if precision == "fp32":
        return nullcontext
    return partial(torch.autocast, device.type, dtype=AUTOCAST_DTYPES[precision])


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """The device to train on; under torchrun, CUDA means this process's own GPU (cuda:LOCAL_RANK)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        print("notice: no CUDA GPU or Apple MPS device found; running on the CPU will be slow", file=sys.stderr)
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 1024, min_seconds: float = 0.1) -> float:
    """Dense matrix-multiply throughput in FLOP/s for square matrices of `size` (2 * size^3 per product)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection and first-touch allocation
    synchronize(device)
    reps, start = 0, time.perf_counter()
    while True:
        for _ in range(4):
            torch.mm(a, b)
        reps += 4
        synchronize(device)  # GPU kernels run asynchronously: wait for them before reading the clock
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return 2 * size**3 * reps / elapsed


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction set features this CPU reports: torch's (the cpuinfo library, any OS), or with a torch
    that has no torch.cpu.get_capabilities, Linux's (/proc/cpuinfo: "flags" on x86, "Features" on ARM, the
    same names); none where neither answers."""
    if hasattr(torch.cpu, "get_capabilities"):
        return frozenset(name for name, value in torch.cpu.get_capabilities().items() if value is True)
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    listed = (line.partition(":")[2] for line in lines if line.split(":")[0].strip() in ("flags", "Features"))
    return frozenset(next(listed, "").split())  # every core alike: the first one's


def cpu_precision(features: frozenset[str]) -> tuple[str, str]:
    """--precision auto on a CPU, from the features it reports (cpu_features) and nothing else."""
    if native := [name for feature, name in CPU_NATIVE_BF16.items() if feature in features]:
        return "bf16", f"this CPU multiplies bf16 natively ({', '.join(native)})"
    return "fp32", "this CPU reports no native bf16 (AMX-BF16, AVX512-BF16, ARM BF16): emulated, it is slower than fp32"


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """The precision to train in and why, as it is printed and recorded in config.json."""
    if requested == "fp16" and device.type == "mps":
        raise ValueError("--precision fp16: mixed precision is not supported on MPS here; use fp32")
    if requested == "bf16" and device.type == "cuda" and not cuda_has_native_bf16(device):
        raise ValueError("--precision bf16: this GPU has no native bf16 (needs compute capability >= 8.0); use fp16")
    if requested != "auto":
        return requested, "requested with --precision"
    if device.type == "cuda":
        if cuda_has_native_bf16(device):
            return "bf16", f"{torch.cuda.get_device_name(device)} computes bf16 natively"
        return "fp16", f"{torch.cuda.get_device_name(device)} has no native bf16: fp16 with loss scaling"
    if device.type == "cpu":
        return cpu_precision(cpu_features())
    return "fp32", "mixed precision is not validated on MPS"


def cuda_has_native_bf16(device: torch.device) -> bool:
    # is_bf16_supported() alone also says yes for emulated bf16 on pre-Ampere GPUs, which is slow.
    return torch.cuda.get_device_capability(device) >= (8, 0)


def make_deterministic() -> None:
    """Deterministic kernels, so that a seed gives the same metrics on the same device and software.

    Call it before the first cuBLAS call (best: before anything touches CUDA): PyTorch sizes cuBLAS's
    workspaces from CUBLAS_WORKSPACE_CONFIG when it first makes one and keeps that size. cuBLAS is
    bitwise reproducible only with fixed workspaces, ":4096:8" or ":16:8" (cuBLAS docs, "Results
    reproducibility"); without either, use_deterministic_algorithms makes every matmul raise on CUDA.
    A value the user set is kept.

    The cost: slower steps, by an amount that depends on the model and GPU (measure before long sweeps).
    cudnn.benchmark's per-shape autotuning is off; attention's backward runs its deterministic, slower
    variants (cuDNN attention is excluded); index operations sort instead of adding atomically; an operation
    without a deterministic implementation raises a RuntimeError instead of running; torch.compile skips
    autotuning; ":4096:8" costs about 24 MiB of GPU memory. On the CPU training is deterministic anyway.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # autotuning may pick a different algorithm on every run


def peak_memory_mib(device: torch.device) -> float:
    """The most memory the run has held so far, in MiB: on CUDA, what PyTorch allocated on this process's GPU
    (torch.cuda.max_memory_allocated; the driver reserves more); elsewhere the process's peak resident memory
    (getrusage: the weights, the optimizer, activations and the data, as the operating system counted them)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # Unix only; not imported above, so that the module loads on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def keep_freed_memory(device: torch.device) -> bool:
    """On a CPU, have malloc keep the memory a training step frees for the next step instead of handing it back to
    the kernel. Linux with glibc only, and only where the user has not tuned malloc (a MALLOC_*_ variable, a
    glibc.malloc tunable, an allocator such as tcmalloc in LD_PRELOAD): returns whether it applied.

    PyTorch's CPU allocator caches nothing (CUDA's does): it asks malloc for every tensor. glibc gives each block of
    32 MiB or more (one layer's attention scores at batch 16, 12 heads and length 256 are 48 MiB), and smaller ones
    early on, a fresh mapping that it unmaps when the block is freed, and it hands its heap's freed top back: each
    step faults its activations in anew and the kernel zeroes them page by page. glibc's own two settings
    (mallopt(3): no mappings for large blocks, no trimming) make its heap the cache, with nothing to install
    (PyTorch's CPU tuning guide preloads tcmalloc or jemalloc for this). The cost: the heap stays at its largest,
    fragmentation included, until the process exits; MALLOC_TRIM_THRESHOLD_=131072 (glibc's default) in the
    environment keeps glibc's behaviour. Measured in docs/performance.md."""
    tuned = "malloc" in os.environ.get("LD_PRELOAD", "") or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
    tuned |= any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ)
    if device.type != "cpu" or tuned or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library this process runs on
    if mallopt is None:  # a glibc-built Python on another C library
        return False
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1  # -1: never trim


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (every GPU's too), as transformers.set_seed seeds them. Not that
    function itself: importing it imports transformers' Trainer utilities and with them peft, 2.2 s of every run's
    start on a CPU (python -X importtime), for four lines."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # on every device: CUDA's generators included
