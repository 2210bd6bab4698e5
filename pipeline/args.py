"""What the commands (`musicnn-beam`, `python -m pipeline.report`, `python -m pipeline.similar`, `python
-m pipeline.store`) share in reading their arguments: a bad one is one line and exit status 2, never
argparse's usage block."""
from __future__ import annotations

import argparse

# The command's name: its messages start with it, and so do its temporary files (pipeline/temp_files.py).
PROG = "musicnn-beam"


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class OneLineErrors:
    """For argparse parsers: a bad argument raises UsageError, one line that points at --help, instead of
    printing the whole usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    pass


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value
