"""What every script's command line shares: --help that shows each option's default, and one-line errors.

This module imports nothing heavy, so that a script can parse its arguments before it imports torch.
"""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help; the script's docstring kept as written."""


def parser(description: str) -> argparse.ArgumentParser:
    """The parser for a script's classopt Args (`@classopt(parser=cli.parser(__doc__))`). classopt adds
    the options to it on every from_args() call (the tests call it many times): "resolve" lets the
    second call replace them instead of failing on a duplicate."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, conflict_handler="resolve")


def first_line(error: Exception) -> str:
    """An exception as one line: the first line of its message, or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
