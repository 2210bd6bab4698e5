"""MusiCNN's log-mel features with tf.signal, exactly musicnn 0.1.0's librosa recipe, and patching.

The recipe (musicnn/extractor.py with librosa >= 0.10): 16 kHz mono; STFT with n_fft 512, hop 256,
periodic Hann, centred with 256 ZERO samples each side; power spectrum; Slaney-scale mel filters
with Slaney area normalisation up to 8 kHz; the mel power rounded to float16; then
log10(10000 * mel + 1) in float32. Two tf.signal traps: linear_to_mel_weight_matrix is HTK-scale and
unnormalised (wrong tags), and stft does not centre (we pad ourselves).

The float16 mel power is what travels between the feature and inference stages: the original
rounds to float16 anyway, so shipping it is lossless and costs 12 KB per second of audio.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
F_MAX = SAMPLE_RATE / 2


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
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   f_min: float = 0.0, f_max: float = F_MAX) -> np.ndarray:
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


def n_frames(n_samples: int) -> int:
    """Frames of a centred STFT: 1 + n_samples // hop."""
    return 1 + n_samples // HOP_LENGTH


# Frames per TensorFlow call: bounds the STFT's working memory (frames, spectrum, power: about
# 100 MB) whatever the track's length, so an hour-long track costs no more than a song.
CHUNK_FRAMES = 16384


@tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
def _mel_power_f16(padded: tf.Tensor) -> tf.Tensor:
    """Already centre-padded samples -> (frames, 96) float16 mel power."""
    stft = tf.signal.stft(padded, frame_length=N_FFT, frame_step=HOP_LENGTH, fft_length=N_FFT,
                          window_fn=functools.partial(tf.signal.hann_window, periodic=True), pad_end=False)
    power = tf.square(tf.abs(stft))
    return tf.cast(tf.matmul(power, mel_filterbank()), tf.float16)


def _padded_span(samples: np.ndarray, first: int, last: int) -> np.ndarray:
    """The centre-padded signal covering frames [first, last): samples from first * hop - n_fft / 2
    to (last - 1) * hop + n_fft / 2, with zeros beyond either end of the track."""
    start, stop = first * HOP_LENGTH - N_FFT // 2, (last - 1) * HOP_LENGTH + N_FFT // 2
    span = samples[max(start, 0):min(stop, samples.shape[0])]
    return np.pad(span, (max(-start, 0), max(stop - samples.shape[0], 0)))


def mel_power(samples: np.ndarray, chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """(n,) float32 mono at 16 kHz -> (1 + n // 256, 96) float16 mel power, the recipe's rounding.

    Computed chunk_frames frames at a time; each frame sees exactly the samples it would in one pass.
    """
    if samples.shape[0] < 1:
        raise ValueError("mel_power needs at least one sample")
    total = n_frames(samples.shape[0])
    out = np.empty((total, N_MELS), dtype=np.float16)
    for first in range(0, total, chunk_frames):
        last = min(first + chunk_frames, total)
        out[first:last] = _mel_power_f16(tf.convert_to_tensor(_padded_span(samples, first, last), tf.float32)).numpy()
    return out


def log_compress(mel: np.ndarray) -> np.ndarray:
    """float16 mel power (..., 96) -> log10(10000 * mel + 1), float32 (numpy 2 would keep float16 and overflow)."""
    return np.log10(np.float32(10000) * mel.astype(np.float32) + np.float32(1))


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(n,) float32 mono at 16 kHz -> (1 + n // 256, 96) float32 log-mel: the model's input features."""
    return log_compress(mel_power(samples))


def n_patches(total_frames: int, patch_frames: int, hop: int) -> int:
    """How many patches patch_starts gives, without building them."""
    return 1 if total_frames <= patch_frames else (total_frames - patch_frames) // hop + 1


def patch_starts(total_frames: int, patch_frames: int, hop: int) -> np.ndarray:
    """First frame of each patch: non-overlapping when hop == patch_frames, the last partial one
    dropped; one patch (at 0) when the track is shorter than a patch. Returns (P,) int64."""
    return np.arange(n_patches(total_frames, patch_frames, hop), dtype=np.int64) * hop


def to_patches(frames: np.ndarray, patch_frames: int, hop: int) -> tuple[np.ndarray, bool]:
    """(T, M) -> ((P, patch_frames, M) patches of the same dtype, padded).

    A track shorter than one patch is repeat-padded to one patch (as musicnn's training did for
    short clips) and reported as padded, never dropped.
    """
    total = frames.shape[0]
    if total < patch_frames:
        reps = -(-patch_frames // total)
        return np.tile(frames, (reps, 1))[None, :patch_frames], True
    rows = patch_starts(total, patch_frames, hop)[:, None] + np.arange(patch_frames)  # (P, patch_frames)
    return frames[rows], False  # one gather: a contiguous copy, already in (P, frames, mels) order
