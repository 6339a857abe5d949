"""requirements.txt and requirements-dev.txt are poetry.lock for pip: the same pins and hashes, installable.

After `poetry lock`, regenerate them with `python .ci/export-requirements`; these tests fail until then.
"""

import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.markers import Marker

from conftest import ROOT

LOCK = tomllib.loads((ROOT / "poetry.lock").read_text(encoding="utf-8"))
# The platforms wheels are built for, on each Python the project supports: on each, pip must be given
# exactly one version of every package that the lock has for it.
ENVIRONMENTS = [
    {
        "python_version": v,
        "python_full_version": f"{v}.0",
        "sys_platform": s,
        "platform_system": p,
        "platform_machine": m,
        "extra": "",
    }
    for v in ("3.11", "3.12", "3.13", "3.14")
    for s, p, m in [
        ("linux", "Linux", "x86_64"),
        ("linux", "Linux", "aarch64"),
        ("win32", "Windows", "AMD64"),
        ("darwin", "Darwin", "arm64"),
        ("darwin", "Darwin", "x86_64"),
    ]
]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(group: str, exclude: set[str] = frozenset()) -> dict[tuple[str, str], tuple[str, set[str]]]:
    """(name, version) -> (marker, hashes) of the group's packages in poetry.lock."""
    found = {}
    for package in LOCK["package"]:
        name = canonical(package["name"])
        if group in package["groups"] and name not in exclude:
            marker = package.get("markers", "")
            marker = marker.get(group, "") if isinstance(marker, dict) else marker
            found[name, package["version"]] = (marker, {f["hash"] for f in package["files"]})
    return found


def exported(filename: str) -> tuple[dict[tuple[str, str], tuple[str, set[str]]], list[str]]:
    """(name, version) -> (marker, hashes) of a requirements file, and its option lines (-r ...)."""
    text = (ROOT / filename).read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text).splitlines()  # join the continuation lines
    entries, options = {}, []
    for line in (line.strip() for line in logical):
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        head, *hashes = line.split("--hash=")
        requirement, _, marker = head.partition(";")
        name, _, version = requirement.strip().partition("==")
        key = (canonical(name), version)
        assert key not in entries, f"{filename}: {name}=={version} twice"
        entries[key] = (marker.strip(), {h.strip() for h in hashes})
    return entries, options


MAIN = locked("main")
DEV = locked("dev", exclude={name for name, _ in MAIN})
# The CPU route: torch is installed first from PyTorch's CPU index; no NVIDIA package is installed.
CUDA_BUILD = ("torch", "triton", "nvidia-", "cuda-")  # names, and prefixes of names
CPU = {key: entry for key, entry in (MAIN | DEV).items() if not key[0].startswith(CUDA_BUILD)}
FILES = [("requirements.txt", MAIN), ("requirements-dev.txt", DEV), ("requirements-cpu.txt", CPU)]


@pytest.mark.parametrize(("filename", "lock"), FILES)
def test_export_pins_exactly_the_locked_versions_and_hashes(filename, lock):
    entries, _ = exported(filename)
    missing = sorted(set(lock) - set(entries))
    extra = sorted(set(entries) - set(lock))
    assert not missing and not extra, f"{filename}: missing {missing}, not locked {extra}; run .ci/export-requirements"
    for key, (_, hashes) in lock.items():
        assert entries[key][1] == hashes, f"{filename}: hashes of {key[0]}=={key[1]} differ from poetry.lock"


def test_dev_requirements_build_on_the_main_ones():
    _, options = exported("requirements-dev.txt")
    assert options == ["-r requirements.txt"]
    assert {name for name, _ in DEV} >= {"pytest", "ruff"}


@pytest.mark.parametrize(("filename", "lock"), FILES)
def test_each_platform_gets_one_locked_version_of_each_package(filename, lock):
    """pip rejects two pins of one package (ResolutionImpossible), and must not install a package that
    the lock leaves out on a platform (colorama is for Windows only)."""
    entries, _ = exported(filename)
    wrong = []
    for environment in ENVIRONMENTS:
        for name in {name for name, _ in lock}:
            allowed = {v for (n, v), (marker, _) in lock.items() if n == name and holds(marker, environment)}
            pinned = {v for (n, v), (marker, _) in entries.items() if n == name and holds(marker, environment)}
            if not (pinned <= allowed and len(pinned) == min(len(allowed), 1)):
                where = " ".join(environment[k] for k in ("sys_platform", "platform_machine", "python_version"))
                wrong.append(f"{name} {sorted(pinned)} on {where}")
    assert not wrong, f"{filename}: " + "; ".join(wrong[:5])


def holds(marker: str, environment: dict) -> bool:
    return not marker or Marker(marker).evaluate(environment)


def test_the_export_is_what_the_generator_writes(tmp_path):
    shutil.copy(ROOT / "poetry.lock", tmp_path)
    subprocess.run([sys.executable, ROOT / ".ci" / "export-requirements", tmp_path], check=True, capture_output=True)
    for filename, _ in FILES:
        assert (tmp_path / filename).read_text() == (ROOT / filename).read_text(), (
            f"{filename} is stale or edited by hand; run `python .ci/export-requirements`"
        )
