"""`python -m demo --out DIR [--bad]`: write the built-in demo catalogue (deterministic) into DIR."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

from musicnn_beam.demo.bad import write_bad_inputs
from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music


class Track(NamedTuple):
    relpath: str
    seed: int
    duration_s: float
    sample_rate: int
    channels: int
    codec: str


# One track per format a catalogue holds, in nested folders; seeds chosen for distinct styles.
TRACKS: tuple[Track, ...] = (
    Track("rock/drive_44k_stereo.mp3", 5, 30.0, 44100, 2, "mp3"),
    Track("rock/live/encore_48k_stereo.flac", 4, 24.0, 48000, 2, "flac"),
    Track("ambient/drift_16k_mono.wav", 2, 20.0, 16000, 1, "wav16"),
    Track("ambient/haze_22k_mono_24bit.wav", 3, 18.0, 22050, 1, "wav24"),
    Track("electronic/pulse_32k_stereo_float.wav", 1, 16.0, 32000, 2, "wavf32"),
    Track("electronic/night_44k_stereo.ogg", 6, 22.0, 44100, 2, "ogg"),
    Track("mixed/voice_48k_stereo.opus", 7, 20.0, 48000, 2, "opus"),
    Track("mixed/deeper/groove_44k_stereo.m4a", 0, 25.0, 44100, 2, "m4a"),
    Track("mixed/deeper/surround_44k_6ch.wav", 8, 15.0, 44100, 6, "wav16"),
    Track("mixed/jingle_2s.wav", 9, 2.0, 44100, 2, "wav16"),
)

BROKEN = "broken.mp3"  # the first 200 bytes of a real mp3: decode_audio raises TaggingError (Corrupt)


def write_catalogue(out: Path, bad: bool = False) -> list[Path]:
    """Write TRACKS (and broken.mp3; with bad=True also demo.bad's set under bad/) into out."""
    written: list[Path] = []
    for track in TRACKS:
        path = out / track.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = synth_music(track.seed, track.duration_s, track.sample_rate, track.channels)
        write_audio(path, samples, track.sample_rate, track.codec)
        written.append(path)
    mp3 = next(out / t.relpath for t in TRACKS if t.codec == "mp3")
    (out / BROKEN).write_bytes(mp3.read_bytes()[:200])
    written.append(out / BROKEN)
    if bad:
        written.extend(Path(p) for p in write_bad_inputs(out / "bad").values())
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="folder to write into (created; nothing is deleted)")
    parser.add_argument("--bad", action="store_true", help="also write empty/truncated/non-audio/silent/short inputs under bad/")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for path in write_catalogue(args.out, bad=args.bad):
        print(f"{path.stat().st_size:>10,d}  {path}")
    print(f"demo catalogue written to {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
