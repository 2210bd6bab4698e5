"""Decoding in child processes: a file that crashes, exhausts or hangs its decoder costs that file,
not the worker (on Dataflow a bundle that fails four times fails the job).

A pool's children (transforms.decoder_child) decode one file at a time under an address-space limit
and stream the 16 kHz (the recipe's rate) mono samples back in chunks (transforms.decoder_pipe); the
parent feeds them to the mel as they come, so a track never exists whole in either process. The
parent waits for each message with a stall timeout. The outcomes, as TaggingError kinds:
- the child raised: its kind (read failures typed by errors.read_failure, anything unexpected
  DecoderError); MemoryError under the limit: TooLarge;
- the child died (a signal, an exit): DecoderCrashed; it is replaced;
- nothing arrived for `stall_timeout_s`: the child is killed, Timeout.

Children also let one worker process decode on several cores: PyAV holds the GIL between packets.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from typing import Callable, Optional

import numpy as np

from musicnn_beam.transforms.audio import AudioInfo
from musicnn_beam.transforms.decoder_child import decode_file
from musicnn_beam.transforms.decoder_pipe import DecodeRequest, receive
from musicnn_beam.transforms.errors import TaggingError

# A decoder may use this much address space: decoding streams, so a child needs about 300 MB
# (Python, FFmpeg, soxr, fsspec) whatever the file; past it the file asks for what no track needs.
DEFAULT_MEMORY_LIMIT = 2 << 30
DEFAULT_STALL_TIMEOUT_S = 120.0
# Past this a track is TooLong, found in bounded time (--max-duration): a 6-hour track's whole run peaks
# at 1.8 GB RSS (BENCHMARKS.md), held by its mel (12 KB per audio second); longer ones are the user's call.
DEFAULT_MAX_DURATION_S = 6 * 3600.0
# `make bench` sets this to decode in the worker's own threads, to measure what isolation costs.
IN_PROCESS_ENV = "MUSICNN_BEAM_BENCH_DECODE_IN_PROCESS"
# A decoder process's command line, before its three arguments (decoder_child.main).
CHILD_COMMAND = (sys.executable, "-m", "musicnn_beam.transforms.decoder_child")


class DecoderPool:
    """Up to `processes` decoding children, started on demand (or ahead with start()) and shared by
    the caller's threads: there are never more children than files decoded at once. Its idle
    children stop at close(), or when the pool is garbage-collected (a pool shared through Beam's
    Shared is let go of, not closed)."""

    def __init__(self, processes: int, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S):
        self.memory_limit = memory_limit
        self.stall_timeout_s = stall_timeout_s
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._processes = processes
        self._slots = threading.BoundedSemaphore(processes)
        self._closed = False
        self._kill_idle = weakref.finalize(self, _kill_all, self._idle)

    def start(self, count: Optional[int] = None, wait: bool = False) -> "DecoderPool":
        """Have `count` (default: all) children idle now rather than at first use (they import while
        the caller does other work); with wait, return once they are ready to decode."""
        wanted = min(self._processes if count is None else count, self._processes)
        children = [_Child.start(self.memory_limit) for _ in range(wanted - self._idle.qsize())]
        for child in children:
            if wait and child.replies.poll(60):
                receive(child.replies)  # its "ready"
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
        """Stop the idle children now, and each busy one once its file is done."""
        self._closed = True
        self._kill_idle()


def _kill_all(idle: "queue.Queue[_Child]") -> None:
    while True:
        try:
            idle.get_nowait().kill()
        except queue.Empty:
            return


class InProcessDecoding:
    """DecoderPool's interface, decoding in the calling thread: no isolation. Only `make bench` uses it
    (IN_PROCESS_ENV=1), to measure what isolation costs a whole run; never a run's choice."""

    def start(self, count: Optional[int] = None, wait: bool = False) -> "InProcessDecoding":
        return self

    def decode(self, request: DecodeRequest, on_chunk: Callable[[np.ndarray], None]) -> AudioInfo:
        return decode_file(request, on_chunk)

    def close(self) -> None:
        pass


def worker_pool(stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> "DecoderPool | InProcessDecoding":
    """The decoders of a worker process, made to be shared by its DoFn instances and threads through
    apache_beam.utils.shared.Shared: at most one child per core."""
    if os.environ.get(IN_PROCESS_ENV) == "1":
        return InProcessDecoding()
    return DecoderPool(os.cpu_count() or 1, stall_timeout_s=stall_timeout_s)


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
            [*CHILD_COMMAND, str(request_read), str(reply_write), str(memory_limit)],
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
                reply = receive(self.replies)
            except (EOFError, OSError):
                raise self._death() from None
            if isinstance(reply, np.ndarray):
                on_chunk(reply)
            elif reply[0] == "done":
                return reply[1]
            elif reply[0] == "error":
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
