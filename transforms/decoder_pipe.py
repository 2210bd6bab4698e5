"""What crosses the two pipes between a decoder pool (transforms.decoders) and a decoder process
(transforms.decoder_child), both multiprocessing Connections.

Requests: a pickled DecodeRequest. Replies: ("ready",) once the child can decode; per request, its
samples as PCM messages (send_samples), then ("done", AudioInfo) or ("error", kind, message).
"""
from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Optional

import numpy as np

# Samples travel as raw float32 bytes behind this tag (no pickling: the bulk of what crosses); every
# other reply is a pickled tuple.
_PCM = b"PCM!"
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


def send_samples(replies: Connection, chunks: list[np.ndarray]) -> None:
    """The chunks as one PCM message, copied once (into the message) and written from there."""
    message = np.empty(len(_PCM) + 4 * sum(len(c) for c in chunks), np.uint8)
    message[:len(_PCM)] = np.frombuffer(_PCM, np.uint8)
    np.concatenate(chunks, out=message[len(_PCM):].view(np.float32))
    replies.send_bytes(message)


def receive(replies: Connection) -> "np.ndarray | tuple":
    """The next reply: (k,) float32 samples, or the reply's tuple. Raises EOFError or OSError when the
    child is gone."""
    data = _receive_bytes(replies.fileno())
    if data[:len(_PCM)].tobytes() == _PCM:
        return data[len(_PCM):].view(np.float32)
    return pickle.loads(data)


def _receive_bytes(fd: int) -> np.ndarray:
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
