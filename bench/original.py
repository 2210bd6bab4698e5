"""The original musicnn 0.1.0 path as one standalone process, for the throughput comparison.

The same steps as tests/reference.py (musicnn's extractor.batch_data() + extractor()): librosa.load at
16 kHz, librosa's mel spectrogram (n_fft 512, hop 256, 96 mels), rounded to float16, log10(10000 x + 1)
in float32, non-overlapping 187-frame patches (last partial one dropped), the shipped graph and
checkpoint at batch 1, the graph built once for all files.

    python -m bench.original FILE... [--model msd-musicnn] [--result OUT.json]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

PATCH_FRAMES = 187
CHECKPOINTS = {"msd-musicnn": ("MSD_musicnn", "musicnn"), "mtt-musicnn": ("MTT_musicnn", "musicnn"),
               "msd-vgg": ("MSD_vgg", "vgg"), "mtt-vgg": ("MTT_vgg", "vgg")}


def log_mel(samples: np.ndarray) -> np.ndarray:
    import librosa
    mel = librosa.feature.melspectrogram(y=samples, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def patches(features: np.ndarray) -> np.ndarray:
    starts = range(0, features.shape[0] - PATCH_FRAMES + 1, PATCH_FRAMES)
    return np.stack([features[s:s + PATCH_FRAMES] for s in starts])


def tag_file(path: str, model) -> np.ndarray:
    """One file -> (P, classes) activations, batch 1 as the original."""
    import librosa
    x = patches(log_mel(librosa.load(path, sr=16000)[0]))
    return np.concatenate([model(x[i:i + 1])[0] for i in range(len(x))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default="msd-musicnn", choices=sorted(CHECKPOINTS))
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    from models.original import OriginalModel  # imports TensorFlow

    start = time.perf_counter()
    model = OriginalModel(*CHECKPOINTS[args.model])
    built = time.perf_counter()
    n_patches = sum(len(tag_file(path, model)) for path in args.files)
    done = time.perf_counter()
    result = {"n_patches": n_patches, "graph_build_s": built - start, "tagging_s": done - built}
    print(result)
    if args.result:
        from bench.proc import write_result
        write_result(args.result, result)


if __name__ == "__main__":
    main()
