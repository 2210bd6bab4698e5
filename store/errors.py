"""What goes wrong with a store, each said in one line: OUTPUT is not a store (StoreError), a table
cannot be read (StoreUnreadable) or is damaged (StoreDamaged), another run committed first
(StoreConflict), the storage refuses to be written (StoreWriteFailed)."""
from __future__ import annotations

import errno
import re
from typing import Optional

from musicnn_beam.transforms.errors import code_in_words

_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # delta-rs colours its errors for a terminal
# An OS error's code in a message: Python's "[Errno 28] ...", Rust's "... (os error 28)" (delta-rs).
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|\(os error (\d+)\)")
# The storage refusing writes, whoever writes, and what the user does about it.
_WRITES_REFUSED = {errno.ENOSPC: "free space there", errno.EDQUOT: "free space there",
                   errno.EROFS: "make it writable", errno.EACCES: "make it writable", errno.EPERM: "make it writable"}


class StoreError(Exception):
    """OUTPUT cannot be used as a store (it holds something else, or cannot be written): one line,
    exit status 2."""


class StoreUnreadable(StoreError):
    """A table of the store cannot be read (missing, not a Delta table, storage unreachable): one
    line naming the table."""


class StoreDamaged(StoreError):
    """A table of the store is damaged (store.check): one line naming the table and the damage,
    exit status 2; nothing is read from it."""


class StoreConflict(Exception):
    """Another run committed to the store after this run read `current`: nothing of this run was committed."""


class StoreWriteFailed(Exception):
    """The storage refuses to be written (full, read-only, no permission): one line saying what that
    left and what to do, exit status 4."""


def one_line(exc: BaseException) -> str:
    """An error of whatever storage or library as one line: its type and its message, colour codes
    out, line breaks and runs of spaces collapsed."""
    return f"{type(exc).__name__}: {' '.join(_COLOURS.sub('', str(exc)).split())}"


def unreadable(uri: str, exc: BaseException) -> StoreUnreadable:
    """The one error of a table that cannot be read, for `raise unreadable(uri, exc) from exc`."""
    return StoreUnreadable(f"cannot read {uri}: {one_line(exc)}")


def error_code(exc: BaseException) -> Optional[int]:
    """The OS error code behind a failure: an OSError's in its chain, or the one its message names
    (Beam passes a worker's failure on as text, delta-rs its Rust error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        if isinstance(exc, PermissionError):  # s3fs: a bucket's AccessDenied, with no errno
            return errno.EACCES
        found = _ERRNO_IN_TEXT.search(str(exc))
        if found:
            return int(found.group(1) or found.group(2))
        exc = exc.__cause__ or exc.__context__
    return None


def writes_refused(exc: BaseException) -> bool:
    """Whether a failure is the storage refusing writes (full, read-only, no permission)."""
    return error_code(exc) in _WRITES_REFUSED


def write_failed(output: str, exc: BaseException, left: str) -> StoreWriteFailed:
    """The one error of a store that refused a write (a failure writes_refused says is one), for
    `raise write_failed(...) from exc`; left: what the failure left (`nothing was tagged`)."""
    code = error_code(exc)
    return StoreWriteFailed(f"the store could not be written: {code_in_words(code)} on {output}; {left}; "
                            f"{_WRITES_REFUSED[code]} and run again")
