"""What goes wrong with a store, each said in one line: OUTPUT is not a store (StoreError), a table
cannot be read (StoreUnreadable), another run committed first (StoreConflict)."""
from __future__ import annotations

import re

_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # delta-rs colours its errors for a terminal


class StoreError(Exception):
    """OUTPUT cannot be used as a store (it holds something else, or cannot be written): one line,
    exit status 2."""


class StoreUnreadable(StoreError):
    """A table of the store cannot be read (missing, not a Delta table, storage unreachable): one
    line naming the table."""


class StoreConflict(Exception):
    """Another run committed to the store after this run read `current`: nothing of this run was committed."""


def one_line(exc: BaseException) -> str:
    """An error of whatever storage or library as one line: its type and its message, colour codes
    out, line breaks and runs of spaces collapsed."""
    return f"{type(exc).__name__}: {' '.join(_COLOURS.sub('', str(exc)).split())}"


def unreadable(uri: str, exc: BaseException) -> StoreUnreadable:
    """The one error of a table that cannot be read, for `raise unreadable(uri, exc) from exc`."""
    return StoreUnreadable(f"cannot read {uri}: {one_line(exc)}")
