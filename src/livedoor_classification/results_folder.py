"""results/<dataset>/ as a set (aggregate.py's last step): the names of its files, and staged(), which writes
a new set beside the folder and then puts it in the folder's place. A kill or a full disk mid-write leaves
the previous set, never a new best.csv beside an old results.md. Files of an older set are not carried over
(a confusion matrix of a dataset no longer in the table); any other file in the folder is."""

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from livedoor_classification.files import as_a_new_file, remove_stale_staging, replace_folder, staging_folder
from livedoor_classification.results_columns import SHORT_FINGERPRINT

# What aggregate.py writes in results/<dataset>/ (section_file's names, and write_text's temporary names of
# them), by the whole name: the set that each run replaces whole. Whatever else the folder holds (someone's
# notes, their own per_class_notes.csv) is carried into the new set.
SECTION_NAME = rf"([0-9a-f]{{{SHORT_FINGERPRINT}}}|unrecorded)(_eval\d+)?"  # section_file's part of a name
RESULT_FILE = re.compile(
    r"all\.csv|best\.csv|results\.md|test_f1\.png|val_f1_per_epoch\.png"
    rf"|(confusion_matrix|reliability)_{SECTION_NAME}\.png|per_class_{SECTION_NAME}\.csv"
)
TEMPORARY_FILE = re.compile(r"\.(.+)\.[0-9a-f]{16}\.tmp")  # files.write_text's


def section_file(row, prefix: str, suffix: str) -> str:
    """A file of one dataset's section, named by its fingerprint as in the section's heading."""
    fingerprint, subset = row["dataset_fingerprint"], row["max_eval_samples"]
    name = "unrecorded" if pd.isna(fingerprint) else fingerprint[:SHORT_FINGERPRINT]
    return f"{prefix}_{name}{'' if pd.isna(subset) else f'_eval{int(subset)}'}{suffix}"


def confusion_file(row) -> str:
    return section_file(row, "confusion_matrix", ".png")


def reliability_file(row) -> str:
    return section_file(row, "reliability", ".png")


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """A new folder to write a set into, which then replaces `folder` whole, or is removed if the writing
    fails. It is made beside `folder` (the same disk: renaming moves nothing) as files.staging_folder
    names it, after this process, with whatever `folder` holds beside a result set (RESULT_FILE) copied in."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
    with contextlib.suppress(FileExistsError):  # made meanwhile by another aggregate.py; a file: reported below
        folder.parent.mkdir(parents=True)
    prefix = f".{folder.name}."
    remove_stale_staging(folder.parent, prefix)  # a killed aggregate.py's (kill -9 skips the except below)
    staging = staging_folder(folder.parent, prefix)
    try:
        as_a_new_file(staging)  # mkdtemp makes it private; the results are for colleagues to read
        carry_over(folder, staging)
        yield staging
        replace_folder(folder, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def carry_over(folder: Path, staging: Path) -> None:
    """Copy into staging what folder holds that aggregate.py does not write (RESULT_FILE): someone's notes
    stay; an older set's files (a confusion matrix of a dataset no longer in the table) do not."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        temporary = TEMPORARY_FILE.fullmatch(entry.name)
        if RESULT_FILE.fullmatch(temporary[1] if temporary else entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staging / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, staging / entry.name, follow_symlinks=False)
