"""A decoder process: `python -m musicnn_beam.transforms.decoder_child REQUEST_FD REPLY_FD MEMORY_LIMIT`,
started by a transforms.decoders pool. It decodes one file at a time under an address-space limit and
replies in transforms.decoder_pipe's messages; it dies with its parent.
"""
from __future__ import annotations

import os
import resource
import signal
import stat
import sys
from multiprocessing.connection import Connection
from typing import Callable, Optional

import numpy as np

from musicnn_beam.transforms.audio import AudioInfo, decode_chunks
from musicnn_beam.transforms.decoder_pipe import SAMPLES_PER_REPLY, DecodeRequest, send_samples
from musicnn_beam.transforms.errors import TaggingError, read_failure


class _GuardedReads:
    """A binary file whose read failures are remembered: an S3 or GCS failure surfaces inside the
    decoder (fsspec opens lazily), and must be reported as a read failure, not as a damaged file."""

    def __init__(self, raw):
        self._raw = raw
        self.failure: Optional[BaseException] = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except Exception as exc:
            self.failure = exc
            raise

    def __getattr__(self, name):
        return getattr(self._raw, name)


def _open_regular(uri: str):
    """A local file's path (FFmpeg reads it itself: faster than through Python), or a remote file
    opened through fsspec. Only regular files: a FIFO would block open() forever."""
    import fsspec
    from fsspec.core import split_protocol

    if split_protocol(uri)[0] in (None, "file", "local"):
        path = uri.removeprefix("file://")
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else
                    "folder" if stat.S_ISDIR(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "special file")
            raise TaggingError("NotAFile", f"a {kind}, not a regular file")
        return path
    return fsspec.open(uri, "rb").open()


def decode_file(request: DecodeRequest, emit: Callable[[np.ndarray], None]) -> AudioInfo:
    """Open and decode request.uri, emitting its chunks in order; returns its AudioInfo. Raises
    TaggingError (read failures typed as such, whenever they surface)."""
    try:
        raw = _open_regular(request.uri)
    except Exception as exc:  # noqa: BLE001 - whatever the filesystem raises is a read failure
        raise read_failure(exc) from exc
    stream = raw if isinstance(raw, str) else _GuardedReads(raw)
    try:
        decoding = decode_chunks(stream, request.sample_rate, request.max_duration_s)
        while True:
            try:
                emit(next(decoding))
            except StopIteration as done:
                return done.value
    except Exception as exc:
        if getattr(stream, "failure", None) is not None:
            raise read_failure(stream.failure) from exc
        raise
    finally:
        if not isinstance(raw, str):
            raw.close()


def _decode_one(request: DecodeRequest, replies: Connection) -> None:
    if request.samples_to is not None:
        with open(request.samples_to, "wb") as samples:
            info = decode_file(request, lambda chunk: chunk.astype(np.float32, copy=False).tofile(samples))
        replies.send(("done", info))
        return
    pending: list[np.ndarray] = []
    size = 0

    def emit(chunk: np.ndarray) -> None:
        nonlocal size
        pending.append(chunk)
        size += len(chunk)
        if size >= SAMPLES_PER_REPLY:
            send_samples(replies, pending)
            pending.clear()
            size = 0

    info = decode_file(request, emit)
    if pending:
        send_samples(replies, pending)
    replies.send(("done", info))


def _serve(requests: Connection, replies: Connection) -> None:
    import fsspec  # noqa: F401 - imported before "ready", not in the first file's time

    replies.send(("ready",))
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            _decode_one(request, replies)
        except TaggingError as error:
            replies.send(("error", error.kind, error.message))
        except MemoryError:
            replies.send(("error", "TooLarge", "decoding needed more than the decoder's memory limit"))
            return  # a process that ran out of memory is not trusted with the next file
        except Exception as exc:  # noqa: BLE001 - the file made the decoder fail: report it, keep serving
            replies.send(("error", "DecoderError", f"{type(exc).__name__}: {exc}"[:2000]))


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies: a killed run leaves no decoder behind, even
    one that is stuck (it would otherwise notice only at its next read of the request pipe)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the closed request pipe ends the child at its next request
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(0)


def main(argv: list[str]) -> None:
    request_fd, reply_fd, memory_limit = int(argv[0]), int(argv[1]), int(argv[2])
    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    _serve(Connection(request_fd, writable=False), Connection(reply_fd, readable=False))


if __name__ == "__main__":
    main(sys.argv[1:])
