"""Hostile inputs for the decoders: small seed files in every codec and deterministic mutations of
them (bit flips, overwritten spans, cuts, repeated spans, header fields set to extremes).

Used by the bounded fuzz test (tests/test_fuzz.py) and the coverage-guided harness (`make fuzz`,
tests/fuzz_decode.py), whose findings are kept in tests/fuzz_findings/ and decoded by the test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music

FINDINGS = Path(__file__).resolve().parent / "fuzz_findings"
# codec -> (file name, sample rate, channels): about a second each, so a mutation decodes in milliseconds
SEEDS = {"wav16": ("seed.wav", 8000, 1), "wav24": ("seed24.wav", 22050, 2), "flac": ("seed.flac", 16000, 2),
         "mp3": ("seed.mp3", 22050, 1), "ogg": ("seed.ogg", 22050, 2), "opus": ("seed.opus", 16000, 1),
         "m4a": ("seed.m4a", 16000, 1)}


def write_seeds(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, (codec, (name, rate, channels)) in enumerate(SEEDS.items()):
        path = folder / name
        write_audio(path, synth_music(200 + seed, 1.0, rate, channels), rate, codec)
        paths.append(path)
    return paths


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of data, from rng."""
    out = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip a few bits
        for position in rng.integers(0, len(out), rng.integers(1, 17)):
            out[position] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a span with random bytes
        start = int(rng.integers(len(out)))
        span = rng.bytes(int(rng.integers(1, 257)))
        out[start:start + len(span)] = span
    elif kind == 2:  # cut
        del out[int(rng.integers(1, len(out))):]
    elif kind == 3:  # repeat a span
        start = int(rng.integers(len(out)))
        out[start:start] = out[start:start + int(rng.integers(1, 4097))]
    else:  # a header field (in the first 128 bytes) at an extreme: sizes, rates, counts
        position = int(rng.integers(0, min(len(out), 128) - 4))
        out[position:position + 4] = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00",
                                      b"\xff\xff\xff\x7f"][int(rng.integers(4))]
    return bytes(out)


def mutations(seeds: list[Path], per_seed: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """(name, bytes) for per_seed mutations of each seed file, the same ones every time."""
    rng = np.random.default_rng(seed)
    return [(f"{path.stem}{path.suffix.replace('.', '-')}-{i:03d}{path.suffix}", mutate(path.read_bytes(), rng))
            for path in seeds for i in range(per_seed)]
