"""The converted models against musicnn 0.1.0's own graph and checkpoint, restored from the wheel."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.models.original import librosa_load, librosa_log_mel, original_model, original_patches, original_tags
from musicnn_beam.models.registry import known_models, resolve_model
from musicnn_beam.transforms.audio import decode_audio
from musicnn_beam.transforms.features import mel_power
from musicnn_beam.transforms.inference import PatchTagger, predict_tracks
from musicnn_beam.transforms.records import TrackFeatures

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reference_patches(wav16k) -> np.ndarray:
    return original_patches(librosa_log_mel(librosa_load(wav16k)))


@pytest.mark.parametrize("name", known_models())
def test_converted_model_equals_original_graph(name, reference_patches, loaded_model):
    spec = resolve_model(name)
    ours_a, ours_e = loaded_model(name)(reference_patches)
    theirs_a, theirs_e = original_model(name)(reference_patches)
    assert ours_a.shape == (len(reference_patches), len(spec.classes))
    assert ours_e.shape == theirs_e.shape == (len(reference_patches), spec.metadata["outputs"][1]["shape"][1])
    np.testing.assert_allclose(ours_a, theirs_a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours_e, theirs_e, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", known_models())
def test_metadata_describes_the_model(name, converted_models):
    spec = resolve_model(name)
    assert json.loads(Path(spec.local_path(), "model.json").read_text()) == spec.metadata
    assert spec.name == name and len(spec.classes) == len(set(spec.classes)) == 50
    # musicnn 0.1.0's recipe (its extractor.py and config), for every one of its models
    assert (spec.recipe.sample_rate, spec.recipe.n_fft, spec.recipe.hop_length, spec.recipe.n_mels) == (16000, 512, 256, 96)
    assert (spec.recipe.f_min, spec.recipe.f_max, spec.recipe.patch_frames) == (0.0, 8000.0, 187)
    assert [o["name"] for o in spec.metadata["outputs"]] == ["activations", "embedding"]


def _our_tags(path: str, model, name: str = "msd-musicnn") -> tuple[np.ndarray, np.ndarray]:
    recipe = resolve_model(name).recipe
    decoded = decode_audio(path, recipe.sample_rate)
    track = TrackFeatures(path, mel_power(decoded.samples, recipe), decoded.source_sample_rate, decoded.channels,
                          decoded.duration_s)
    (prediction,) = predict_tracks([track], PatchTagger(model, recipe), recipe.patch_frames, recipe.patch_frames)
    return prediction.activations, prediction.embeddings


@pytest.mark.parametrize("name", ["msd-musicnn", "mtt-musicnn"])
def test_whole_path_on_16k_wav_matches_original(wav16k, name, loaded_model):
    ours_a, ours_e = _our_tags(wav16k, loaded_model(name), name)
    theirs_a, theirs_e = original_tags(wav16k, name)
    assert ours_a.shape == theirs_a.shape
    print(f"{name} 16 kHz wav: max |activation diff| {np.abs(ours_a - theirs_a).max():.2e}")
    assert np.abs(ours_a - theirs_a).max() < 1e-3
    assert np.abs(ours_e - theirs_e).max() < 1e-2


@pytest.mark.parametrize("codec,rate,channels", [("flac", 44100, 2), ("mp3", 44100, 2), ("wav24", 22050, 1)])
def test_other_inputs_within_tolerance(tmp_path, codec, rate, channels, loaded_model):
    path = str(tmp_path / f"music.{codec[:3]}")
    write_audio(path, synth_music(11, 24.0, rate, channels), rate, codec)
    ours, _ = _our_tags(path, loaded_model("msd-musicnn"))
    theirs, _ = original_tags(path)
    n = min(len(ours), len(theirs))
    diff = np.abs(ours[:n] - theirs[:n])
    print(f"{codec} {rate} Hz x{channels}: max {diff.max():.2e}, mean {diff.mean():.2e}")
    assert abs(len(ours) - len(theirs)) <= 1
    assert diff.max() < 0.1 and diff.mean() < 0.01
    top3 = lambda a: set(np.argsort(-a.mean(axis=0))[:3])  # noqa: E731
    assert top3(ours[:n]) == top3(theirs[:n])


def test_batching_across_tracks_does_not_change_results(wav16k, tmp_path, loaded_model, recipe):
    model = loaded_model("msd-musicnn")
    other = str(tmp_path / "other.wav")
    write_audio(other, synth_music(3, 9.0, 16000, 1), 16000, "wav16")
    tracks = []
    for path in (wav16k, other):
        d = decode_audio(path, 16000)
        tracks.append(TrackFeatures(path, mel_power(d.samples, recipe), 16000, 1, d.duration_s))
    together = predict_tracks(tracks, PatchTagger(model, recipe, batch_size=5), 187, 187)
    alone = [predict_tracks([t], PatchTagger(model, recipe, batch_size=64), 187, 187)[0] for t in tracks]
    for a, b in zip(together, alone):
        assert a.track.uri == b.track.uri
        np.testing.assert_allclose(a.activations, b.activations, atol=1e-6)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


@pytest.mark.parametrize("precision,tolerance", [("bfloat16", 0.02), ("float16", 0.02)])
def test_reduced_precision_stays_within_tolerance_of_float32(precision, tolerance, reference_patches, loaded_model):
    reference, _ = loaded_model("msd-musicnn")(reference_patches)
    fast, embedding = loaded_model("msd-musicnn", precision)(reference_patches)
    assert np.abs(fast - reference).max() < tolerance
    assert 0 < np.abs(fast - reference).max()  # it did run in another precision
    assert embedding.shape == (len(reference_patches), 200) and np.isfinite(embedding).all()
