"""Our tf.signal features against librosa's, the recipe of musicnn 0.1.0."""
from __future__ import annotations

import librosa
import numpy as np
import pytest

from models.original import librosa_load, librosa_log_mel
from transforms import features


def test_mel_filterbank_is_librosas_slaney_filterbank():
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96).T  # Slaney scale, Slaney norm
    np.testing.assert_allclose(features.mel_filterbank(), expected, rtol=0, atol=1e-7)


def test_mel_filterbank_is_not_tf_htk_matrix():
    import tensorflow as tf

    htk = tf.signal.linear_to_mel_weight_matrix(96, 257, 16000, 0.0, 8000.0).numpy()
    assert np.abs(htk - features.mel_filterbank()).max() > 0.1


@pytest.mark.parametrize("n", [1, 255, 256, 257, 16000, 16000 * 3 + 17])
def test_frame_count_is_centred_stft(n):
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    ours = features.log_mel(samples)
    assert ours.shape == (1 + n // 256, 96) == librosa_log_mel(samples).shape


def test_log_mel_matches_librosa_on_music(wav16k):
    samples = librosa_load(wav16k)
    ours, theirs = features.log_mel(samples), librosa_log_mel(samples)
    diff = np.abs(ours - theirs)
    # float16 rounding of the mel power may land one ulp apart (about 2e-4 after the log) in a few bins
    assert diff.max() < 1e-3
    assert (diff > 0).mean() < 0.01
    assert ours.dtype == np.float32


def test_loud_audio_stays_finite():
    t = np.arange(16000 * 2) / 16000
    square = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    ours = features.log_mel(square)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, librosa_log_mel(square), atol=1e-3)


def test_mel_power_is_float16():
    assert features.mel_power(np.zeros(1000, np.float32)).dtype == np.float16


def test_non_overlapping_patches_drop_last_partial():
    frames = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    patches, padded = features.to_patches(frames, 187, 187)
    assert patches.shape == (2, 187, 2) and not padded
    np.testing.assert_array_equal(patches[1], frames[187:374])


def test_overlapping_patches_follow_hop():
    frames = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    patches, _ = features.to_patches(frames, 187, 93)
    assert len(patches) == 1 + (500 - 187) // 93
    np.testing.assert_array_equal(patches[2], frames[186:373])
    np.testing.assert_array_equal(features.patch_starts(500, 187, 93), [0, 93, 186, 279])


def test_short_track_is_repeat_padded_to_one_patch():
    frames = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)
    patches, padded = features.to_patches(frames, 187, 187)
    assert padded and patches.shape == (1, 187, 2)
    np.testing.assert_array_equal(patches[0, :50], frames)
    np.testing.assert_array_equal(patches[0, 150:187], frames[:37])


def test_exactly_one_patch_is_not_padded():
    patches, padded = features.to_patches(np.ones((187, 96), np.float16), 187, 187)
    assert patches.shape == (1, 187, 96) and not padded


@pytest.mark.parametrize("n", [16000 * 7 + 5, 256 * 100, 256 * 100 - 1])
def test_chunked_mel_equals_one_pass(n):
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    one_pass = features.mel_power(samples, chunk_frames=1 << 30)
    for chunk in (1, 37, 100, 256):
        np.testing.assert_array_equal(features.mel_power(samples, chunk_frames=chunk), one_pass)
