"""Decoding in child processes: a file that crashes, exhausts or hangs its decoder costs that file,
not the worker (on Dataflow a bundle that fails four times fails the job).

Each child (`python -m transforms.decoders`) decodes one file at a time under an address-space
limit and streams the 16 kHz (the recipe's rate) mono samples back in chunks; the parent feeds them
to the mel as they come, so a track never exists whole in either process. The parent waits for
each message with a stall timeout. The outcomes, as TaggingError kinds:
- the child raised: its kind (read failures typed by errors.read_failure, anything unexpected
  DecoderError); MemoryError under the limit: TooLarge;
- the child died (a signal, an exit): DecoderCrashed; it is replaced;
- nothing arrived for `stall_timeout_s`: the child is killed, Timeout.

Children also let one worker process decode on several cores: PyAV holds the GIL between packets.
"""
from __future__ import annotations

import os
import pickle
import queue
import resource
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable, Optional

import numpy as np

from musicnn_beam.transforms.audio import AudioInfo, decode_chunks
from musicnn_beam.transforms.errors import TaggingError, read_failure

# A decoder may use this much address space: decoding streams, so a child needs about 300 MB
# (Python, FFmpeg, soxr, fsspec) whatever the file; past it the file asks for what no track needs.
DEFAULT_MEMORY_LIMIT = 2 << 30
DEFAULT_STALL_TIMEOUT_S = 120.0
# Tests set this to let file names ask a child to crash, hang or allocate without bound
# (names starting "decoder-crash", "decoder-hang", "decoder-oom"); never set in a real run.
TEST_HOOKS_ENV = "MUSICNN_BEAM_TEST_DECODER_HOOKS"
# `make bench` sets this to decode in the worker's own threads, to measure what isolation costs.
IN_PROCESS_ENV = "MUSICNN_BEAM_BENCH_DECODE_IN_PROCESS"


# Samples travel as raw float32 bytes behind this tag (no pickling: the bulk of what crosses); every
# other reply is a pickled tuple.
_CHUNK = b"PCM!"
# Decoded frames are a few hundred samples each: they are sent 4 s of 16 kHz audio at a time, not
# one message (a pipe write and read, a Python call) each.
SAMPLES_PER_REPLY = 1 << 16


@dataclass(frozen=True)
class DecodeRequest:
    uri: str
    sample_rate: int
    max_duration_s: Optional[float]
    # A file the decoder writes the samples into (raw float32) instead of sending them: its parent
    # reads them later, in one go (transforms.decode_ahead). Sent through the pipe, every chunk costs
    # the parent a few GIL acquisitions, up to 5 ms each while another thread runs Python: a decoder
    # working ahead of a launcher that imports TensorFlow ran at a third of its speed.
    samples_to: Optional[str] = None


class DecoderPool:
    """Up to `processes` decoding children, started on demand (or ahead with start()) and shared by
    the caller's threads: there are never more children than files decoded at once."""

    def __init__(self, processes: int, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S):
        self.memory_limit = memory_limit
        self.stall_timeout_s = stall_timeout_s
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._processes = processes
        self._slots = threading.BoundedSemaphore(processes)
        self._closed = False

    def start(self, count: Optional[int] = None, wait: bool = False) -> "DecoderPool":
        """Have `count` (default: all) children idle now rather than at first use (they import while
        the caller does other work); with wait, return once they are ready to decode."""
        wanted = min(self._processes if count is None else count, self._processes)
        children = [_Child.start(self.memory_limit) for _ in range(wanted - self._idle.qsize())]
        for child in children:
            if wait and child.replies.poll(60):
                child.replies.recv()  # its "ready"
            self._idle.put(child)
        return self

    def decode(self, request: DecodeRequest, on_chunk: Callable[[np.ndarray], None]) -> AudioInfo:
        """Decode request.uri in a child, calling on_chunk with each (k,) float32 chunk in order.
        Returns the source's AudioInfo; raises TaggingError."""
        with self._slots:
            child = self._idle_child() or _Child.start(self.memory_limit)
            clean = False
            try:
                info = child.decode(request, on_chunk, self.stall_timeout_s)
                clean = True
                return info
            except TaggingError as error:
                clean = child.alive and error.kind not in ("TooLarge", "Timeout", "DecoderCrashed")
                raise
            finally:
                if clean and not self._closed:
                    self._idle.put(child)
                else:
                    child.kill()

    def _idle_child(self) -> Optional["_Child"]:
        """An idle child that is still alive. A child dies with the thread that started it
        (PR_SET_PDEATHSIG), e.g. a thread pool's thread at teardown: it must not be given a file."""
        while True:
            try:
                child = self._idle.get_nowait()
            except queue.Empty:
                return None
            if child.alive:
                return child
            child.kill()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return


class InProcessDecoding:
    """DecoderPool's interface, decoding in the calling thread: no isolation. Only `make bench` uses it
    (IN_PROCESS_ENV=1), to measure what isolation costs a whole run; never a run's choice."""

    def start(self, count: Optional[int] = None, wait: bool = False) -> "InProcessDecoding":
        return self

    def decode(self, request: DecodeRequest, on_chunk: Callable[[np.ndarray], None]) -> AudioInfo:
        return _decode_file(request, on_chunk, hooks=False)

    def close(self) -> None:
        pass


_SHARED: dict[str, tuple[DecoderPool, int]] = {}  # key -> (pool, users)
_SHARED_LOCK = threading.Lock()


def acquire_shared(key: str, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                   stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> DecoderPool:
    """The pool for `key` in this process (at most one child per core), shared by every DoFn instance
    and thread that acquires it; made on first use. Each acquire_shared needs a release_shared."""
    with _SHARED_LOCK:
        if key not in _SHARED and os.environ.get(IN_PROCESS_ENV) == "1":
            _SHARED[key] = (InProcessDecoding(), 0)
        pool, users = _SHARED.get(key) or (DecoderPool(os.cpu_count() or 1, memory_limit, stall_timeout_s), 0)
        _SHARED[key] = (pool, users + 1)
        return pool


def release_shared(key: str) -> None:
    """Stop the pool's children when its last user lets go (children also exit when this process does:
    their request pipe closes)."""
    with _SHARED_LOCK:
        pool, users = _SHARED.pop(key)
        if users > 1:
            _SHARED[key] = (pool, users - 1)
        else:
            pool.close()


class _Child:
    """One decoding process and the two pipes to it."""

    def __init__(self, process: subprocess.Popen, requests: Connection, replies: Connection):
        self.process = process
        self.requests = requests
        self.replies = replies

    @classmethod
    def start(cls, memory_limit: int) -> "_Child":
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "musicnn_beam.transforms.decoders", str(request_read), str(reply_write), str(memory_limit)],
            pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL, close_fds=True,
            # Decoding libraries write to stderr about damaged files (libmpg123 in libsndfile's
            # fallback: "Cannot read next header"); what matters reaches the parent as a reply.
            stderr=subprocess.DEVNULL)
        os.close(request_read)
        os.close(reply_write)
        return cls(process, Connection(request_write, readable=False), Connection(reply_read, writable=False))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def decode(self, request: DecodeRequest, on_chunk: Callable[[np.ndarray], None],
               stall_timeout_s: float) -> AudioInfo:
        try:
            self.requests.send(request)
        except OSError:
            raise self._death()
        while True:
            if not self.replies.poll(stall_timeout_s):
                self.kill()
                raise TaggingError("Timeout", f"no progress for {stall_timeout_s:g} s (--decode-timeout)")
            try:
                data = _receive(self.replies.fileno())
            except (EOFError, OSError):
                raise self._death() from None
            if data[:4].tobytes() == _CHUNK:
                on_chunk(data[4:].view(np.float32))
                continue
            reply = pickle.loads(data)
            if reply[0] == "ready":
                continue
            elif reply[0] == "done":
                return reply[1]
            else:
                raise TaggingError(reply[1], reply[2])

    def _death(self) -> TaggingError:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return TaggingError("DecoderCrashed", f"the decoder was killed by {name}")
        return TaggingError("DecoderCrashed", f"the decoder exited with status {code}")

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.requests.close()
        self.replies.close()


def _receive(fd: int) -> np.ndarray:
    """One message of a multiprocessing Connection (its framing: a 4-byte big-endian size, -1 and 8
    bytes for a larger one), read straight into an array: the samples are copied once, by the kernel
    (Connection.recv_bytes copies them three times, which cost 5 % of decoding)."""
    size = struct.unpack("!i", _read_exactly(fd, 4))[0]
    if size == -1:
        size = struct.unpack("!Q", _read_exactly(fd, 8))[0]
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> np.ndarray:
    data = np.empty(size, np.uint8)
    view, got = memoryview(data), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the decoder closed its pipe")
        got += n
    return data


# --- the child -------------------------------------------------------------------------------------

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


def _test_hook(uri: str) -> None:
    name = uri.rsplit("/", 1)[-1]
    if name.startswith("decoder-crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    elif name.startswith("decoder-hang"):
        time.sleep(3600)
    elif name.startswith("decoder-oom"):
        np.empty(1 << 36, dtype=np.uint8)  # 64 GiB, as a hostile header once asked for: past the limit


def _decode_file(request: DecodeRequest, emit: Callable[[np.ndarray], None], hooks: bool) -> AudioInfo:
    """Open and decode request.uri, emitting its chunks in order; returns its AudioInfo. Raises
    TaggingError (read failures typed as such, whenever they surface)."""
    try:
        raw = _open_regular(request.uri)
    except Exception as exc:  # noqa: BLE001 - whatever the filesystem raises is a read failure
        raise read_failure(exc) from exc
    stream = raw if isinstance(raw, str) else _GuardedReads(raw)
    try:
        if hooks:
            _test_hook(request.uri)
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


def _decode_one(request: DecodeRequest, replies: Connection, hooks: bool) -> None:
    if request.samples_to is not None:
        with open(request.samples_to, "wb") as samples:
            info = _decode_file(request, lambda chunk: chunk.astype(np.float32, copy=False).tofile(samples), hooks)
        replies.send(("done", info))
        return
    pending: list[np.ndarray] = []
    size = 0

    def emit(chunk: np.ndarray) -> None:
        nonlocal size
        pending.append(chunk)
        size += len(chunk)
        if size >= SAMPLES_PER_REPLY:
            _send_samples(replies, pending)
            pending.clear()
            size = 0

    info = _decode_file(request, emit, hooks)
    if pending:
        _send_samples(replies, pending)
    replies.send(("done", info))


def _send_samples(replies: Connection, chunks: list[np.ndarray]) -> None:
    """The chunks as one PCM message, copied once (into the message) and written from there."""
    message = np.empty(len(_CHUNK) + 4 * sum(len(c) for c in chunks), np.uint8)
    message[:len(_CHUNK)] = np.frombuffer(_CHUNK, np.uint8)
    np.concatenate(chunks, out=message[len(_CHUNK):].view(np.float32))
    replies.send_bytes(message)


def _serve(requests: Connection, replies: Connection) -> None:
    import fsspec  # noqa: F401 - imported before "ready", not in the first file's time

    hooks = os.environ.get(TEST_HOOKS_ENV) == "1"
    replies.send(("ready",))
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            _decode_one(request, replies, hooks)
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
