"""hardware.py: --precision auto on a CPU decides from the features the CPU reports, never from a timing, so
that the same machine always trains in the same precision (one configuration, one row of results)."""

import pytest
import torch

from livedoor_classification import hardware

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
