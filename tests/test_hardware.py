"""hardware.py: --precision auto on a CPU decides from the features the CPU reports, never from a timing, so
that the same machine always trains in the same precision (one configuration, one row of results); on a CPU,
memory a step frees is reused by the next without faulting it in again."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from conftest import train_run
from livedoor_classification import hardware
from livedoor_classification.paths import ROOT

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16"),  # Sapphire Rapids and later: AMX
        ({"avx2", "avx512_f", "avx512_bf16"}, "bf16"),  # Cooper Lake, AMD Zen 4 and later
        ({"neon", "bf16"}, "bf16"),  # ARMv8.6 BF16 (Graviton 3 and later)
        ({"avx2", "avx512_f"}, "fp32"),  # AVX-512 without BF16: bf16 is emulated, slower than fp32
        ({"avx2", "fma3"}, "fp32"),
        (set(), "fp32"),  # nothing reported: fp32, which is never wrong
    ],
)
def test_cpu_precision_is_decided_by_the_reported_features(features, expected):
    precision, reason = hardware.cpu_precision(frozenset(features))
    assert precision == expected and reason


@pytest.mark.parametrize(("features", "expected"), [({"avx2", "avx512_bf16"}, "bf16"), ({"avx2"}, "fp32")])
def test_auto_on_a_cpu_follows_its_features_and_times_nothing(features, expected, monkeypatch):
    """Two identical runs on a loaded machine came out bf16 and fp32 when auto timed a matrix multiply."""

    def timing(*args, **kwargs):
        raise AssertionError("--precision auto timed a matrix multiply")

    monkeypatch.setattr(hardware, "matmul_flops", timing)
    monkeypatch.setattr(hardware, "cpu_features", lambda *args: frozenset(features))
    cpu = torch.device("cpu")
    assert [hardware.resolve_precision("auto", cpu)[0] for _ in range(3)] == [expected] * 3
    assert hardware.resolve_precision("fp32", cpu) == ("fp32", "requested with --precision")


@pytest.mark.parametrize(("text", "native"), [(CPUINFO_X86, True), (CPUINFO_ARM, True), ("processor\t: 0\n", False)])
def test_features_are_read_from_proc_cpuinfo_where_torch_does_not_report_them(text, native, tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(text)
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)  # a torch before it had one
    features = hardware.cpu_features(tmp_path / "cpuinfo")
    assert (hardware.cpu_precision(features)[0] == "bf16") is native
    assert hardware.cpu_features(tmp_path / "absent") == frozenset()  # not Linux: fp32


@pytest.mark.skipif(not hasattr(torch.cpu, "get_capabilities"), reason="this torch reports no CPU capabilities")
def test_torch_and_linux_report_the_same_bf16_features(monkeypatch):
    """Two independent reports of this CPU, torch's (the cpuinfo library) and Linux's /proc/cpuinfo, agree."""
    torch_reports = hardware.cpu_features()
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    linux_reports = hardware.cpu_features()
    if not linux_reports:
        pytest.skip("no /proc/cpuinfo")
    for feature in ("amx_bf16", "avx512_bf16", "bf16"):
        assert (feature in torch_reports) == (feature in linux_reports), feature


# Five training steps of a model whose activations (4,096 x 4,096 fp32) are 64 MiB each, after two that warm up: the
# page faults the kernel counted for the five (getrusage's ru_minflt).
STEPS = """
import resource, sys, torch
from livedoor_classification.hardware import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory(torch.device("cpu"))
torch.manual_seed(0)
layers = [torch.nn.Linear(16, 4096), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(4096, 16)]
model = torch.nn.Sequential(*layers)
inputs = torch.randn(4096, 16)
for step in range(7):
    if step == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(inputs).square().mean().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")
def test_a_steps_freed_activations_are_reused_without_page_faults():
    """The kernel's own count: by default glibc hands each freed activation back and the next step faults it in
    again, a fault per page (per 2 MiB page where the kernel backs every mapping with huge pages); kept, hardly any."""
    # glibc as it comes: no malloc settings or preloaded allocator of this machine's environment
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")} | {"PYTHONPATH": str(ROOT / "src")}

    def faults(mode: str) -> int:
        child = subprocess.run([sys.executable, "-P", "-c", STEPS, mode], env=env, capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        return int(child.stdout)

    default, kept = faults("default"), faults("keep")
    assert default >= 5 * 2**26 // 2**21  # the premise: at least one activation a step faulted in anew
    assert kept * 10 <= default


def test_malloc_is_left_alone_off_a_cpu_and_where_the_user_tuned_it(monkeypatch):
    assert not hardware.keep_freed_memory(torch.device("meta"))  # as CUDA and MPS: their memory is not malloc's
    tuned = {
        "MALLOC_TRIM_THRESHOLD_": "131072",  # glibc's default, the documented way to keep glibc's behaviour
        "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072",
        "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    }
    for name, value in tuned.items():
        with monkeypatch.context() as environment:
            environment.setenv(name, value)
            assert not hardware.keep_freed_memory(torch.device("cpu")), name


def test_train_py_keeps_freed_memory_on_a_cpu(bert_dir, dataset_dir, tmp_path, monkeypatch):
    import train

    devices = []
    monkeypatch.setattr(train, "keep_freed_memory", devices.append)
    options = ["--device", "cpu", "--max_seq_len", "32", "--batch_size", "8", "--max_train_samples", "16"]
    train_run(bert_dir, dataset_dir, tmp_path, *options, "--max_eval_samples", "16")
    assert devices == [torch.device("cpu")]
