"""Where a plain run's memory goes: one process takes a worker's steps in order, from a bare
interpreter to the largest batch the inference stage makes, and reads its resident memory after each.

    python -m bench.memory [--append] [--out BENCHMARKS.md]

Each step's row is the process's RSS after it (VmRSS) and its peak so far (VmHWM); the increase is
what the step added. The track is the first mp3 of the bench's album (bench.corpus.ensure_album).
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from bench import envinfo

MODEL = "msd-musicnn"


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def steps() -> list[tuple[str, Callable[[], object]]]:
    """A worker's steps, each a (what, do) pair; later steps use what earlier ones left in `held`."""
    held: dict = {}

    def imports():
        import apache_beam  # noqa: F401
        import musicnn_beam.models  # noqa: F401 - TensorFlow, as a worker imports it (models/quiet.py)
        import musicnn_beam.transforms.inference  # noqa: F401

    def load():
        from musicnn_beam.models.registry import resolve_model
        from musicnn_beam.models.serving import LoadedModel
        held["spec"] = resolve_model(MODEL)
        held["model"] = LoadedModel(held["spec"].local_path())

    def first_call():
        from musicnn_beam.transforms.inference import PatchTagger
        held["tagger"] = PatchTagger(held["model"], held["spec"].recipe)
        import numpy as np
        held["tagger"](np.zeros((1, held["spec"].recipe.patch_frames, held["spec"].recipe.n_mels), np.float16))

    def decode():
        import numpy as np
        from bench.corpus import ensure_album
        from musicnn_beam.transforms.audio import decode_chunks
        track = next(t for t in ensure_album() if t.suffix == ".mp3")
        held["samples"] = np.concatenate(list(decode_chunks(str(track), held["spec"].recipe.sample_rate)))
        held["track_s"] = len(held["samples"]) / held["spec"].recipe.sample_rate

    def mel():
        from musicnn_beam.transforms import features
        held["mel"] = features.mel_power(held["samples"], held["spec"].recipe)
        del held["samples"]

    def largest_batch():
        from musicnn_beam.transforms.inference import TaggerModelHandler, predict_tracks
        from musicnn_beam.transforms.records import TrackFeatures
        spec = held["spec"]
        per_track = len(held["mel"]) // spec.recipe.patch_frames
        copies = -(-TaggerModelHandler.MAX_BATCH_PATCHES // max(1, per_track))
        tracks = [TrackFeatures(uri=f"t{i}", mel=held["mel"].copy(), source_sample_rate=44100, channels=2,
                                duration_s=held["track_s"]) for i in range(copies)]
        held["predictions"] = predict_tracks(tracks, held["tagger"], spec.recipe.patch_frames, spec.recipe.patch_frames)
        held["batch"] = f"{copies} tracks, {copies * per_track} patches"

    return [("a bare interpreter (numpy)", lambda: __import__("numpy")),
            ("+ Beam, TensorFlow and the package imported", imports),
            ("+ the model loaded (SavedModel)", load),
            ("+ its first call (graph set-up, oneDNN buffers at the CPU batch)", first_call),
            ("+ one of the album's tracks decoded and resampled, whole (16 kHz float32)", decode),
            ("+ its mel (float16; the samples then let go)", mel),
            ("+ the inference stage's largest batch (MAX_BATCH_PATCHES) through the model", largest_batch)], held


def measure() -> list[tuple[str, float, float]]:
    rows = []
    listed, held = steps()
    for what, do in listed:
        do()
        rows.append((what if "largest" not in what else f"{what}: {held.get('batch')}",
                     _status_mib("VmRSS"), _status_mib("VmHWM")))
    return rows


def render(rows: list[tuple[str, float, float]]) -> str:
    lines = ["| step | RSS MiB | added MiB | peak MiB |", "| --- | ---: | ---: | ---: |"]
    previous = 0.0
    for what, rss, peak in rows:
        lines.append(f"| {what} | {rss:,.0f} | {rss - previous:+,.0f} | {peak:,.0f} |")
        previous = rss
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = envinfo.entry_parser("python -m bench.memory", __doc__.split("\n\n")[0]).parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    entry = envinfo.heading(f"where a plain run's memory goes (`python -m bench.memory`), model {MODEL}") + "\n" + \
        render(measure()) + "\n"
    envinfo.publish(entry, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
