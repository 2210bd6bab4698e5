"""Our tf.signal features against librosa's, the recipe of musicnn 0.1.0."""
from __future__ import annotations

import librosa
import numpy as np
import pytest

from musicnn_beam.models.original import librosa_load, librosa_log_mel
from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.transforms import features

pytestmark = pytest.mark.unit


def test_mel_filterbank_is_librosas_slaney_filterbank():
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96).T  # Slaney scale, Slaney norm
    np.testing.assert_allclose(features.mel_filterbank(16000, 512, 96, 0.0, 8000.0), expected, rtol=0, atol=1e-7)


def test_mel_filterbank_is_not_tf_htk_matrix():
    import tensorflow as tf

    htk = tf.signal.linear_to_mel_weight_matrix(96, 257, 16000, 0.0, 8000.0).numpy()
    assert np.abs(htk - features.mel_filterbank(16000, 512, 96, 0.0, 8000.0)).max() > 0.1


@pytest.mark.parametrize("n", [1, 255, 256, 257, 16000, 16000 * 3 + 17])
def test_frame_count_is_centred_stft(n, recipe):
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    ours = features.log_mel(samples, recipe)
    assert ours.shape == (1 + n // 256, 96) == librosa_log_mel(samples).shape


def test_log_mel_matches_librosa_on_music(wav16k, recipe):
    samples = librosa_load(wav16k)
    ours, theirs = features.log_mel(samples, recipe), librosa_log_mel(samples)
    diff = np.abs(ours - theirs)
    # float16 rounding of the mel power may land one ulp apart (about 2e-4 after the log) in a few bins
    assert diff.max() < 1e-3
    assert (diff > 0).mean() < 0.01
    assert ours.dtype == np.float32


def test_loud_audio_stays_finite(recipe):
    t = np.arange(16000 * 2) / 16000
    square = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    ours = features.log_mel(square, recipe)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, librosa_log_mel(square), atol=1e-3)


def test_mel_power_is_float16(recipe):
    assert features.mel_power(np.zeros(1000, np.float32), recipe).dtype == np.float16


def test_non_overlapping_patches_drop_last_partial():
    frames = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    patches, padded = features.to_patches(frames, 187, 187)
    assert patches.shape == (2, 187, 2) and not padded
    np.testing.assert_array_equal(patches[1], frames[187:374])


def test_overlapping_patches_follow_patch_hop():
    frames = np.arange(500 * 2, dtype=np.float32).reshape(500, 2)
    patches, _ = features.to_patches(frames, 187, 93)
    assert len(patches) == 1 + (500 - 187) // 93
    np.testing.assert_array_equal(patches[2], frames[186:373])
    np.testing.assert_array_equal(features.patch_starts(500, 187, 93), [0, 93, 186, 279])
    assert features.n_patches(500, 187, 93) == 4 and features.n_patches(100, 187, 93) == 1


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
def test_chunked_mel_equals_one_pass(n, recipe):
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    one_pass = features.mel_power(samples, recipe, chunk_frames=1 << 30)
    for chunk in (1, 37, 100, 256):
        np.testing.assert_array_equal(features.mel_power(samples, recipe, chunk_frames=chunk), one_pass)


@pytest.mark.parametrize("sample_rate,n_fft,hop_length,n_mels,f_max", [
    (16000, 512, 128, 96, 8000.0),
    (22050, 1024, 512, 64, 11025.0),
    (16000, 400, 160, 40, 6000.0),
])
def test_other_recipes_match_librosa(sample_rate, n_fft, hop_length, n_mels, f_max):
    """The recipe's numbers reach every step: librosa with the same settings is the reference."""
    from musicnn_beam.demo.synth import synth_music

    recipe = FeatureRecipe(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_min=0.0,
                           f_max=f_max, patch_frames=187, compression="log10(10000 * float16(mel) + 1)")
    samples = synth_music(4, 5.0, sample_rate, 1)[0]
    mel = librosa.feature.melspectrogram(y=samples, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                         fmax=f_max).T
    theirs = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    ours = features.log_mel(samples, recipe)
    assert ours.shape == theirs.shape == (1 + len(samples) // hop_length, n_mels)
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize("pieces", [[1], [255, 1, 300], [1000] * 45, [7777, 1, 1, 36221]])
def test_a_streamed_mel_equals_one_pass(pieces, recipe):
    """Samples pushed in pieces of any size give the one-pass mel, frame for frame."""
    samples = np.random.default_rng(len(pieces)).uniform(-0.5, 0.5, sum(pieces)).astype(np.float32)
    one_pass = features.mel_power(samples, recipe, chunk_frames=1 << 30)
    for chunk_frames in (1, 7, 64):
        stream = features.MelStream(recipe, chunk_frames)
        start = 0
        for size in pieces:
            stream.push(samples[start:start + size])
            start += size
        np.testing.assert_array_equal(stream.finish(), one_pass)
        assert stream.n_samples == len(samples) and stream.peak == np.abs(samples).max()


def test_mel_frames_give_any_span_across_chunks():
    whole = np.arange(40 * 3, dtype=np.float16).reshape(40, 3)
    frames = features.MelFrames([whole[:7], whole[7:8], whole[8:30], whole[30:]])
    assert len(frames) == 40 and frames.nbytes == whole.nbytes
    for start, stop in [(0, 40), (0, 7), (3, 5), (6, 9), (7, 8), (5, 31), (29, 40), (39, 40)]:
        np.testing.assert_array_equal(frames.frames(start, stop), whole[start:stop])
    np.testing.assert_array_equal(np.asarray(frames), whole)


def test_tracing_the_mel_leaves_nothing_in_the_temporary_folder(recipe, tmp_path, monkeypatch):
    """With autograph on, each process that traced the mel left a converted copy of its source in the
    temporary folder, never removed: 686 of them on our machine after a day of runs and tests."""
    import dataclasses
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fresh = dataclasses.replace(recipe, f_max=recipe.f_max - 1.0)  # not traced yet in this process
    features.trace_mel(fresh)
    assert list(tmp_path.iterdir()) == []
