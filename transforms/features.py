"""MusiCNN's log-mel features with tf.signal, exactly musicnn 0.1.0's librosa recipe, and patching.

The recipe (musicnn/extractor.py with librosa >= 0.10): 16 kHz mono; STFT with n_fft 512, hop_length 256,
periodic Hann, centred with 256 ZERO samples each side; power spectrum; Slaney-scale mel filters
with Slaney area normalisation up to 8 kHz; the mel power rounded to float16; then
log10(10000 * mel + 1) in float32. Two tf.signal traps: linear_to_mel_weight_matrix is HTK-scale and
unnormalised (wrong tags), and stft does not centre (we pad ourselves).

The numbers come from the model's metadata, read into a models.recipe.FeatureRecipe: every
function here takes the recipe, and nothing here knows MusiCNN's values.

The float16 mel power is what travels between the feature and inference stages: the original
rounds to float16 anyway, so shipping it is lossless and costs 12 KB per second of audio.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from musicnn_beam.models.recipe import FeatureRecipe  # first: the models package imports TensorFlow quietly (models/quiet.py)
import tensorflow as tf  # noqa: E402 - see above


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Slaney mel filters with Slaney area normalisation, as librosa.filters.mel's defaults.

    Returns (n_fft // 2 + 1, n_mels) float32, so that power (T, bins) @ filters = mel (T, n_mels).
    """
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return np.ascontiguousarray(weights.astype(np.float32).T)


# Frames per TensorFlow call: bounds the STFT's working memory (frames, spectrum, power: about
# 100 MB at MusiCNN's settings) whatever the track's length, so an hour-long track costs no more than a song.
CHUNK_FRAMES = 16384


@functools.lru_cache(maxsize=8)
def _mel_power_fn(recipe: FeatureRecipe) -> Callable[[tf.Tensor], tf.Tensor]:
    """The recipe's graph: already centre-padded samples (n,) -> (frames, n_mels) float16 mel power."""
    filters = tf.constant(mel_filterbank(recipe.sample_rate, recipe.n_fft, recipe.n_mels, recipe.f_min, recipe.f_max))
    window = functools.partial(tf.signal.hann_window, periodic=True)

    # autograph=False: straight-line ops, nothing to convert; converting wrote a source file into the
    # temporary folder, one per process, never removed.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def mel_power_f16(padded: tf.Tensor) -> tf.Tensor:
        stft = tf.signal.stft(padded, frame_length=recipe.n_fft, frame_step=recipe.hop_length,
                              fft_length=recipe.n_fft, window_fn=window, pad_end=False)
        return tf.cast(tf.matmul(tf.square(tf.abs(stft)), filters), tf.float16)

    return mel_power_f16


def trace_mel(recipe: FeatureRecipe) -> None:
    """Trace the recipe's mel graph now (0.1-0.2 s, once per process), before a first file needs it."""
    _mel_power_fn(recipe)(tf.zeros([recipe.n_fft], tf.float32))


class MelFrames:
    """A track's mel as MelStream computed it: (n_frames, n_mels) float16 frames in chunks, never
    joined whole (a 10-hour track's mel is 430 MB; joining would hold it twice). frames() gives any
    span; len() and nbytes work as on an array, which is accepted wherever MelFrames is."""

    def __init__(self, chunks: list[np.ndarray]):
        self.chunks = chunks
        self._ends = np.cumsum([c.shape[0] for c in chunks])

    @classmethod
    def of(cls, mel: "MelFrames | np.ndarray") -> "MelFrames":
        return mel if isinstance(mel, MelFrames) else cls([mel])

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as one (stop - start, n_mels) array: a view inside one chunk, else a copy."""
        first = int(np.searchsorted(self._ends, start, side="right"))
        last = int(np.searchsorted(self._ends, stop - 1, side="right"))
        offset = int(self._ends[first - 1]) if first else 0
        if first == last:
            return self.chunks[first][start - offset:stop - offset]
        return np.concatenate([self.frames(max(start, lo), min(stop, hi))
                               for lo, hi in zip([0, *self._ends[:-1].tolist()], self._ends.tolist())
                               if lo < stop and hi > start])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        joined = self.frames(0, len(self))
        return joined if dtype is None else joined.astype(dtype)


class MelStream:
    """A mono signal pushed in chunks of any size -> its (1 + n // hop_length, n_mels) float16 mel power,
    equal to a one-pass mel_power of the whole signal.

    Only the samples the next frames need are held (about chunk_frames * hop_length), and the mel is
    computed chunk_frames frames a TensorFlow call: the memory a track costs is its mel (12 KB per
    audio second at MusiCNN's settings), not its samples. `n_samples` and `peak` are kept for the
    usability checks (and `finite`, False once a NaN or infinity came).
    """

    def __init__(self, recipe: FeatureRecipe, chunk_frames: int = CHUNK_FRAMES):
        self.recipe = recipe
        self.chunk_frames = chunk_frames
        self.n_samples = 0
        self.peak = 0.0
        self.finite = True  # False once a NaN or infinite sample came (a damaged float file)
        self._compute = _mel_power_fn(recipe)
        self._held: list[np.ndarray] = []  # samples [self._held_from, self.n_samples), in pushed pieces
        self._held_from = 0
        self._frames_done = 0
        self._mel: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        """samples: (k,) float32 at recipe.sample_rate, the next k samples of the signal."""
        if samples.shape[0] == 0:
            return
        self._held.append(samples)
        self.n_samples += samples.shape[0]
        peak = float(np.max(np.abs(samples)))
        self.finite = self.finite and np.isfinite(peak)
        self.peak = max(self.peak, peak) if self.finite else self.peak
        half, hop_length = self.recipe.n_fft // 2, self.recipe.hop_length
        # frames whose samples are all in
        ready = (self.n_samples - half) // hop_length + 1 if self.n_samples >= half else 0
        while ready - self._frames_done >= self.chunk_frames:
            self._compute_frames(self._frames_done + self.chunk_frames)

    def finish(self) -> MelFrames:
        """The whole signal's mel power, (1 + n // hop_length, n_mels) float16 frames; the signal ends with
        zeros past its last sample, as a centred STFT pads it."""
        if self.n_samples < 1:
            raise ValueError("a mel needs at least one sample")
        total = self.recipe.n_frames(self.n_samples)
        while self._frames_done < total:
            self._compute_frames(min(self._frames_done + self.chunk_frames, total))
        return MelFrames(self._mel)

    def _compute_frames(self, last: int) -> None:
        """Frames [done, last): from samples first * hop_length - n_fft / 2 to (last - 1) * hop_length
        + n_fft / 2, zeros beyond either end of the signal."""
        half, hop_length = self.recipe.n_fft // 2, self.recipe.hop_length
        first = self._frames_done
        start, stop = first * hop_length - half, (last - 1) * hop_length + half
        held = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        span = held[max(start, 0) - self._held_from:min(stop, self.n_samples) - self._held_from]
        span = np.pad(span, (max(-start, 0), max(stop - self.n_samples, 0)))
        # A copy: the array .numpy() returns keeps TensorFlow's buffers behind it alive (measured: about
        # 3x its own size held per chunk), which made a 10-hour track's mel cost three times its size.
        self._mel.append(self._compute(tf.convert_to_tensor(span, tf.float32)).numpy().copy())
        self._frames_done = last
        keep_from = max(last * hop_length - half, 0)  # the first sample a later frame needs
        self._held = [held[keep_from - self._held_from:]]
        self._held_from = keep_from


def mel_power(samples: np.ndarray, recipe: FeatureRecipe, chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """(n,) float32 mono at recipe.sample_rate -> (1 + n // hop_length, n_mels) float16 mel power, the
    recipe's rounding.

    Computed chunk_frames frames at a time (MelStream); each frame sees exactly the samples it would
    in one pass.
    """
    if samples.shape[0] < 1:
        raise ValueError("mel_power needs at least one sample")
    stream = MelStream(recipe, chunk_frames)
    stream.push(samples)
    return np.asarray(stream.finish())


def log_mel(samples: np.ndarray, recipe: FeatureRecipe) -> np.ndarray:
    """(n,) float32 mono at recipe.sample_rate -> (1 + n // hop_length, n_mels) float32 log-mel: the model's input."""
    return recipe.compress(mel_power(samples, recipe))


def n_patches(total_frames: int, patch_frames: int, patch_hop: int) -> int:
    """How many patches patch_starts gives, without building them."""
    return 1 if total_frames <= patch_frames else (total_frames - patch_frames) // patch_hop + 1


def patch_starts(total_frames: int, patch_frames: int, patch_hop: int) -> np.ndarray:
    """First frame of each patch, patch_hop frames apart: non-overlapping when patch_hop ==
    patch_frames, the last partial one dropped; one patch (at 0) when the track is shorter than a
    patch. Returns (P,) int64."""
    return np.arange(n_patches(total_frames, patch_frames, patch_hop), dtype=np.int64) * patch_hop


def to_patches(frames: np.ndarray, patch_frames: int, patch_hop: int) -> tuple[np.ndarray, bool]:
    """(T, M) -> ((P, patch_frames, M) patches of the same dtype, padded).

    A track shorter than one patch is repeat-padded to one patch (as musicnn's training did for
    short clips) and reported as padded, never dropped.
    """
    total = frames.shape[0]
    if total < patch_frames:
        reps = -(-patch_frames // total)
        return np.tile(frames, (reps, 1))[None, :patch_frames], True
    rows = patch_starts(total, patch_frames, patch_hop)[:, None] + np.arange(patch_frames)  # (P, patch_frames)
    return frames[rows], False  # one gather: a contiguous copy, already in (P, frames, mels) order
