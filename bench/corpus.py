"""The benchmark's audio, generated once and cached under build/bench-audio/.

A corpus of music-like tracks (44.1 kHz stereo, alternately mp3 and flac, 150-160 s each, different
seeds) adding up to at least the requested minutes, single long flac tracks, and hours-long wavs
(for memory). Each folder or file
has a manifest of how it was made; a missing file or a changed recipe regenerates it.

    python -m bench.corpus [--minutes 20] [--long 5 --long 60] [--hours 10] [--result OUT.json]

bench.run generates in this separate process, so that its own memory stays small: a child's peak RSS
(ru_maxrss) starts from its parent's RSS at fork.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from bench.proc import ROOT

AUDIO_DIR = ROOT / "build" / "bench-audio"
SAMPLE_RATE = 44100
CHANNELS = 2
TRACK_SECONDS = (150.0, 155.0, 160.0)
SEGMENT_S = 300.0  # long tracks are synthesised in segments of this length (different seeds)


def corpus_plan(minutes: float) -> list[dict]:
    """[{name, seed, duration_s, codec}] adding up to at least `minutes` of audio."""
    plan: list[dict] = []
    total = 0.0
    while total < minutes * 60:
        i = len(plan)
        codec = "mp3" if i % 2 == 0 else "flac"
        duration = TRACK_SECONDS[i % len(TRACK_SECONDS)]
        plan.append({"name": f"track{i:02d}.{codec}", "seed": 1000 + i, "duration_s": duration, "codec": codec})
        total += duration
    if len(plan) % 2:  # as many mp3 as flac
        plan.append({"name": f"track{len(plan):02d}.flac", "seed": 1000 + len(plan),
                     "duration_s": TRACK_SECONDS[0], "codec": "flac"})
    return plan


def ensure_corpus(minutes: float) -> list[Path]:
    return _ensure_tracks(AUDIO_DIR / f"corpus-{minutes:g}min", corpus_plan(minutes))


def _ensure_tracks(folder: Path, plan: list[dict]) -> list[Path]:
    """The tracks of plan ([{name, seed, duration_s, codec}]) in folder, synthesised unless cached."""
    manifest = {"sample_rate": SAMPLE_RATE, "channels": CHANNELS, "tracks": plan}
    files = [folder / t["name"] for t in plan]
    if _cached(folder / "manifest.json", manifest, files):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    for track, path in zip(plan, files):
        print(f"  generating {path.relative_to(ROOT)} ({track['duration_s']:.0f} s {track['codec']})", flush=True)
        _write(path, _synth(track["seed"], track["duration_s"]), track["codec"])
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return files


ALBUM_SECONDS = (195.0, 240.0, 282.0, 213.0, 300.0, 186.0, 258.0, 225.0, 270.0, 204.0)  # 3 to 5 minutes


def ensure_album() -> list[Path]:
    """10 tracks of 3 to 5 minutes (an album, or a night's new files), mp3 and flac, 44.1 kHz stereo."""
    plan = [{"name": f"album{i:02d}.{'mp3' if i % 2 == 0 else 'flac'}", "seed": 6000 + i, "duration_s": seconds,
             "codec": "mp3" if i % 2 == 0 else "flac"} for i, seconds in enumerate(ALBUM_SECONDS)]
    return _ensure_tracks(AUDIO_DIR / "album", plan)


def ensure_long_track(minutes: float, seed: int) -> Path:
    """One 44.1 kHz stereo flac of `minutes`, synthesised in SEGMENT_S pieces with seeds seed, seed+1, ..."""
    path = AUDIO_DIR / f"long-{minutes:g}min.flac"
    manifest = {"sample_rate": SAMPLE_RATE, "channels": CHANNELS, "duration_s": minutes * 60,
                "seed": seed, "segment_s": SEGMENT_S, "codec": "flac"}
    if _cached(path.with_suffix(".json"), manifest, [path]):
        return path
    print(f"  generating {path.relative_to(ROOT)} ({minutes:g} min flac)", flush=True)
    total = minutes * 60
    n_segments = math.ceil(total / SEGMENT_S)
    segments = [_synth(seed + i, min(SEGMENT_S, total - i * SEGMENT_S)) for i in range(n_segments)]
    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    _write(path, np.concatenate(segments, axis=1), "flac")
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    return path


def ensure_hours_wav(hours: float, seed: int = 5000) -> Path:
    """A 16 kHz mono 16-bit wav of `hours`, for memory: one SEGMENT_S piece written over and over
    (1.15 GB for 10 hours), streamed to disk, never held whole."""
    rate = 16000
    path = AUDIO_DIR / f"hours-{hours:g}h.wav"
    manifest = {"sample_rate": rate, "channels": 1, "duration_s": hours * 3600, "seed": seed,
                "segment_s": SEGMENT_S, "codec": "wav16, one segment repeated"}
    if _cached(path.with_suffix(".json"), manifest, [path]):
        return path
    print(f"  generating {path.relative_to(ROOT)} ({hours:g} h wav)", flush=True)
    from musicnn_beam.demo.synth import synth_music
    segment = (np.clip(synth_music(seed, SEGMENT_S, rate, 1)[0], -1, 1) * 32767).astype("<i2").tobytes()
    total = int(hours * 3600 * rate) * 2
    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(b"RIFF" + (36 + total).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
                + (rate * 2).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
                + b"data" + total.to_bytes(4, "little"))
        for start in range(0, total, len(segment)):
            f.write(segment[:total - start])
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    return path


def _cached(manifest_path: Path, manifest: dict, files: list[Path]) -> bool:
    if not manifest_path.is_file() or not all(f.is_file() and f.stat().st_size > 0 for f in files):
        return False
    return json.loads(manifest_path.read_text()) == manifest


def _synth(seed: int, duration_s: float) -> np.ndarray:
    from musicnn_beam.demo.synth import synth_music
    return synth_music(seed, duration_s, SAMPLE_RATE, CHANNELS)


def _write(path: Path, samples: np.ndarray, codec: str) -> None:
    from musicnn_beam.demo.encode import write_audio
    tmp = path.with_name(path.name + ".part")
    write_audio(tmp, samples, SAMPLE_RATE, codec)  # write_audio picks the container by codec, not suffix
    tmp.replace(path)


LONG_SEEDS = {5: 2000, 60: 3000}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--long", type=float, action="append", default=[], help="minutes of a long track; repeatable")
    parser.add_argument("--hours", type=float, action="append", default=[],
                        help="hours of a 16 kHz mono wav (memory); repeatable")
    parser.add_argument("--album", action="store_true", help="also the 10-track album (3 to 5 minutes each)")
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    result = {"corpus": [str(p) for p in ensure_corpus(args.minutes)],
              "album": [str(p) for p in ensure_album()] if args.album else [],
              "long": {f"{m:g}": str(ensure_long_track(m, LONG_SEEDS.get(int(m), 4000 + int(m)))) for m in args.long},
              "hours": {f"{h:g}": str(ensure_hours_wav(h)) for h in args.hours}}
    if args.result:
        from bench.proc import write_result
        write_result(args.result, result)


if __name__ == "__main__":
    main()
