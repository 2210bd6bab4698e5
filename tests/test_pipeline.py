"""The whole pipeline on Beam's in-process runner: outputs, the errors table, the CLI's contract."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from demo.bad import write_bad_inputs
from models.registry import resolve_model
from pipeline.cli import main
from tests.conftest import make_audio
from tests.test_config import CONFIGS
from models.original import original_tags
from transforms import sinks
from transforms.features import n_frames, patch_starts

EXPECTED_ERRORS = {  # bad input -> (stage, error)
    "empty.mp3": ("decode", "EmptyFile"),
    "truncated.flac": ("decode", "Truncated"),
    "not_audio.mp3": ("decode", "NotAudio"),
    "random.ogg": ("decode", "NotAudio"),
    "silent.wav": ("features", "Silent"),
}


def read(output: Path, table: str):
    return ds.dataset(str(output / table), format="parquet").to_table()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, wav16k) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "reference_16k.wav").write_bytes(Path(wav16k).read_bytes())
    make_audio(root / "nested", "stereo_44k.flac", 5, 13.0, 44100, 2, "flac")
    make_audio(root / "nested" / "deeper", "stereo_48k.mp3", 9, 7.0, 48000, 2, "mp3")
    write_bad_inputs(root / "bad")
    (root / "notes.txt").write_text("not audio, and not named as audio: a folder scan skips it")
    return root


@pytest.fixture(scope="module")
def run_output(catalogue, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("out") / "tags"
    assert main(["--input", str(catalogue), "--output", str(output)]) == 0
    return output


def test_every_input_appears_exactly_once(catalogue, run_output):
    audio = sorted(str(p) for p in catalogue.rglob("*") if p.is_file() and p.suffix != ".txt")
    tracks = read(run_output, "tracks").column("uri").to_pylist()
    errors = read(run_output, "errors").column("uri").to_pylist()
    assert sorted(tracks + errors) == audio
    assert len(set(tracks + errors)) == len(audio)


def test_bad_inputs_become_error_rows(run_output):
    rows = {Path(r["uri"]).name: r for r in read(run_output, "errors").to_pylist()}
    assert set(rows) == set(EXPECTED_ERRORS)
    for name, (stage, error) in EXPECTED_ERRORS.items():
        assert (rows[name]["stage"], rows[name]["error"]) == (stage, error), rows[name]
        assert rows[name]["message"]


def test_schemas_are_the_public_contract(run_output):
    for table, schema in sinks.TABLES.items():
        assert read(run_output, table).schema.remove_metadata() == schema, table
    assert json.loads((run_output / "model.json").read_text()) == resolve_model("msd-musicnn").metadata


def test_tags_equal_the_original_model(run_output, wav16k):
    row = next(r for r in read(run_output, "tracks").to_pylist() if r["uri"].endswith("reference_16k.wav"))
    theirs, _ = original_tags(wav16k)
    assert row["n_patches"] == len(theirs) and not row["padded"]
    assert np.abs(np.array(row["activations"]) - theirs.mean(axis=0)).max() < 1e-3
    classes = resolve_model("msd-musicnn").classes
    assert row["top_tags"] == [classes[i] for i in np.argsort(-theirs.mean(axis=0))[:5]]
    assert row["model"] == "msd-musicnn" and row["sample_rate"] == 16000 and row["channels"] == 1
    assert row["duration_s"] == pytest.approx(20.0, abs=0.01)
    assert len(row["embedding"]) == 200

    patches = sorted((r for r in read(run_output, "patches").to_pylist() if r["uri"] == row["uri"]),
                     key=lambda r: r["patch"])
    assert [p["patch"] for p in patches] == list(range(len(theirs)))
    assert [p["start_s"] for p in patches] == pytest.approx([i * 187 * 256 / 16000 for i in range(len(theirs))])
    assert np.abs(np.array([p["activations"] for p in patches]) - theirs).max() < 1e-3


def test_source_properties_and_short_clip(run_output):
    rows = {Path(r["uri"]).name: r for r in read(run_output, "tracks").to_pylist()}
    assert (rows["stereo_44k.flac"]["sample_rate"], rows["stereo_44k.flac"]["channels"]) == (44100, 2)
    assert (rows["stereo_48k.mp3"]["sample_rate"], rows["stereo_48k.mp3"]["channels"]) == (48000, 2)
    short = rows["short_2s.wav"]
    assert short["padded"] and short["n_patches"] == 1 and short["duration_s"] == pytest.approx(2.0, abs=0.01)


def test_patch_hop_glob_manifest_profile_and_other_model(catalogue, tmp_path):
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(f"uri,track_id\n{catalogue / 'bad' / 'short_2s.wav'},T-short\n"
                        f"{catalogue / 'bad' / 'empty.mp3'},T-empty\n")
    output = tmp_path / "hop"
    args = ["--input", str(catalogue / "nested" / "**" / "*.flac"), "--input", str(catalogue / "reference_16k.wav"),
            "--manifest", str(manifest), "--output", str(output), "--patch-hop", "93", "--model", "mtt-vgg",
            "--config", str(CONFIGS / "local.yaml"), "--direct_num_workers=1"]
    assert main(args) == 0
    rows = {Path(r["uri"]).name: r for r in read(output, "tracks").to_pylist()}
    assert set(rows) == {"stereo_44k.flac", "reference_16k.wav", "short_2s.wav"}
    assert rows["reference_16k.wav"]["n_patches"] == len(patch_starts(n_frames(20 * 16000), 187, 93))
    assert rows["reference_16k.wav"]["model"] == "mtt-vgg" and len(rows["reference_16k.wav"]["embedding"]) == 256
    assert rows["short_2s.wav"]["track_id"] == "T-short" and rows["reference_16k.wav"]["track_id"] is None
    patch_ids = {r["track_id"] for r in read(output, "patches").to_pylist() if r["uri"].endswith("short_2s.wav")}
    assert patch_ids == {"T-short"}
    assert [(Path(r["uri"]).name, r["track_id"]) for r in read(output, "errors").to_pylist()] == [("empty.mp3", "T-empty")]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_one_model_shared_by_worker_processes(catalogue, run_output, tmp_path):
    """--model-copies 1 with two worker processes: one model, hosted by one process and called by both
    through Beam's proxy (its address file, one per copy, is in TMPDIR); the tags are unchanged."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    output = tmp_path / "out"
    result = _cli("--input", str(catalogue / "nested"), "--output", str(output), "--model-copies", "1",
                  "--direct_running_mode=multi_processing", "--direct_num_workers=2",
                  env={**os.environ, "TMPDIR": str(shared)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([f for f in shared.glob("*.address") if "model_status" not in f.name]) == 1
    expected = {r["uri"]: r for r in read(run_output, "tracks").to_pylist()}
    rows = read(output, "tracks").to_pylist()
    assert sorted(Path(r["uri"]).name for r in rows) == ["stereo_44k.flac", "stereo_48k.mp3"]
    for row in rows:
        np.testing.assert_allclose(row["activations"], expected[row["uri"]]["activations"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case,message", [
    ("no_match", "no file matches"),
    ("unknown_model", "unknown model"),
    ("unwritable", "not writable"),
    ("existing", "already holds results"),
])
def test_bad_arguments_get_one_line_and_nonzero_exit(case, message, tmp_path, wav16k, run_output):
    output = str(tmp_path / "out")
    args = {"no_match": ["--input", str(tmp_path / "nothing*.mp3"), "--output", output],
            "unknown_model": ["--input", wav16k, "--output", output, "--model", "no-such-model"],
            "unwritable": ["--input", wav16k, "--output", str(Path(wav16k) / "out")],
            "existing": ["--input", wav16k, "--output", str(run_output)]}[case]
    result = _cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_inference_accelerator_hint_lands_on_the_inference_stage_only():
    import apache_beam as beam

    from pipeline.graph import Source, TagCatalogue, TagSettings

    hint = "type:nvidia-l4;count:1;install-nvidia-driver"
    p = beam.Pipeline()
    _ = p | beam.Create([Source(pattern="x")]) | TagCatalogue(
        TagSettings(model=resolve_model("msd-musicnn"), patch_hop=187, inference_accelerator=hint))
    hinted = {}

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            self.visit_transform(node)

        def visit_transform(self, node):
            accelerator = (node.resource_hints or {}).get("beam:resources:accelerator:v1")
            if accelerator:
                hinted[node.full_label] = accelerator

    p.visit(Visitor())
    assert hinted and all("/Infer" in label for label in hinted), hinted
    assert set(hinted.values()) == {hint.encode()}
