"""What every script's command line shares: --help that shows each option's default, one-line errors,
and a quiet end on Ctrl-C or a closed pipe.

Every script imports this module first (ruff's isort keeps it first: pyproject.toml), and it imports only
light modules, so that a Ctrl-C in the seconds of importing torch ends the script with one line instead of a
traceback through the imports.
"""

import argparse
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def missing_dependency(kind, error, traceback) -> None:
    """A script started by a Python without the dependencies (python3 outside .venv): one line on how to
    get them, not a traceback through the imports. Any other uncaught error as Python reports it."""
    ours = isinstance(error, ModuleNotFoundError) and (Path(__file__).parent / f"{error.name}.py").exists()
    if not isinstance(error, ModuleNotFoundError) or ours:
        sys.__excepthook__(kind, error, traceback)
        return
    print(
        f"{Path(sys.argv[0]).name}: error: {error} in {sys.executable}: `bash run.sh` sets up .venv/ with the "
        "dependencies (or see the README's Set-up); then run the script with .venv/bin/python",
        file=sys.stderr,
    )


SCRIPT_STARTING = Path(sys.argv[0]).resolve().parent == Path(__file__).resolve().parent.parent  # a script of src/
if SCRIPT_STARTING:
    sys.excepthook = missing_dependency  # before the first dependency is imported, classopt just below

from classopt import config  # noqa: E402 (after the hook above)

from livedoor_classification.paths import ROOT, dataset_folder  # noqa: E402


def interrupted_while_starting(signum, frame) -> None:
    print(f"{Path(sys.argv[0]).name}: interrupted while starting", file=sys.stderr)
    die_of_sigint()


def die_of_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


if SCRIPT_STARTING:
    signal.signal(signal.SIGINT, interrupted_while_starting)  # until main() runs inside dies_of_sigint
    # Output piped into `head` that stops reading: end quietly, as Unix tools do, rather than report a
    # broken pipe as an error of the run (or worse, remove a finished run folder over it).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


@dataclass
class DatasetOptions:
    """The options of every stage after prepare.py (train, baseline, aggregate): which prepared
    dataset, and where its runs go. A script's Args inherits them, so each is defined once."""

    dataset: str = config(default="livedoor", help="a dataset prepared by prepare.py, in datasets/<name>/")
    dataset_dir: Path = config(default=None, help="a prepared dataset folder anywhere (instead of --dataset)")
    output_root: Path = config(default=ROOT / "outputs", help="runs go to <root>/<dataset>/<model>/<date>/<time>/")

    def resolve_dataset(self) -> None:
        """--dataset_dir wins and names the dataset by its folder; else datasets/<--dataset>."""
        self.dataset_dir = dataset_folder(self.dataset, self.dataset_dir)
        self.dataset = self.dataset_dir.name


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help; the script's docstring kept as written."""


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        """A mistyped option is one line, not the whole usage block followed by the error."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(description: str) -> argparse.ArgumentParser:
    """The parser for a script's classopt Args (`@classopt(parser=cli.parser(__doc__))`). classopt adds
    the options to it on every from_args() call (the tests call it many times): "resolve" lets the
    second call replace them instead of failing on a duplicate."""
    return OneLineErrors(description=description, formatter_class=HelpFormatter, conflict_handler="resolve")


def parse(args_class, check=None):
    """The script's arguments from the command line, and check(args)'s ValueError as a one-line error."""
    args = args_class.from_args()
    try:
        if check is not None:
            check(args)
    except ValueError as e:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {e}")
    return args


def first_line(error: Exception) -> str:
    """An exception as one line: the first line of its message, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def dies_of_sigint():
    """Around a script's main(): Ctrl-C ends the process without a traceback, and by SIGINT itself
    rather than an exit status of its own, because a shell (run.sh's loop over runs) stops only when
    its child was killed by the signal; the shell then reports status 130."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C is a KeyboardInterrupt
    # The imports are done: a module missing from here on (an optional one, in the right environment) is
    # reported by Python as it is, not as a wrong environment.
    sys.excepthook = sys.__excepthook__
    try:
        yield
    except KeyboardInterrupt:
        die_of_sigint()
