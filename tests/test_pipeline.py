"""The whole pipeline on Beam's in-process runner: outputs, the errors table, the CLI's contract."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from musicnn_beam.demo.bad import write_bad_inputs
from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.models.original import librosa_load, original_model, original_tags
from musicnn_beam.models.registry import resolve_model
from musicnn_beam.pipeline.cli import main
from musicnn_beam.pipeline.temp_files import local_temp_prefix, remove_local_temp
from musicnn_beam.store.read import read_table
from musicnn_beam.store.schema import TABLES
from tests.decoder_faults import cli_command, use_faulty_decoders
from musicnn_beam.transforms.errors import KINDS
from tests.conftest import make_audio
from tests.test_config import CONFIGS

# Runs call the CLI's main() in this process; the console's quiet, worker processes and a kill need processes.
pytestmark = pytest.mark.usefixtures("converted_models")

EXPECTED_ERRORS = {  # bad input -> (stage, error)
    "empty.mp3": ("decode", "EmptyFile"),
    "truncated.flac": ("decode", "Truncated"),
    "corrupt.mp3": ("decode", "Corrupt"),
    "not_audio.mp3": ("decode", "NotAudio"),
    "random.ogg": ("decode", "NotAudio"),
    "video_only.mp4": ("decode", "NoAudioStream"),
    "no_samples.wav": ("decode", "EmptyAudio"),
    "silent.wav": ("features", "Silent"),
    "too_short.wav": ("features", "TooShort"),
    "rate_1hz.wav": ("decode", "UnsupportedFormat"),
    "nan.wav": ("decode", "Corrupt"),  # the data is damaged, though only the features stage sees it
}
# The kinds no file of the bad set gives, and the test below that produces each.
KINDS_TESTED_ELSEWHERE = {
    "ConflictingTrackId": "test_every_file_is_tagged_once_whatever_names_it",
    "InferenceFailed": "test_an_inference_failure_costs_only_the_track_that_fails_alone",
    **dict.fromkeys(["NotFound", "NotAFile", "TooLong", "TooLarge", "Timeout", "DecoderCrashed"],
                    "test_a_decoder_that_crashes_exhausts_memory_or_hangs_costs_one_file"),
    "ReadFailed": "tests/test_storage.py::test_a_storage_outage_gives_read_errors",
    "PermissionDenied": "tests/test_decoders.py::test_a_file_the_run_may_not_read_is_tried_again_a_symlink_loop_waits",
}
# Kinds no end-to-end test here can produce, typed by the unit tests: DecoderError is what a decoder
# bug (not a file) would give.
KINDS_UNIT_TESTED_ONLY = {"DecoderError"}


def read(output: Path, table: str):
    return read_table(str(output), table)


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


@pytest.mark.integration
def test_every_input_appears_exactly_once(catalogue, run_output):
    audio = sorted(str(p) for p in catalogue.rglob("*") if p.is_file() and p.suffix != ".txt")
    tracks = read(run_output, "tracks").column("uri").to_pylist()
    errors = read(run_output, "errors").column("uri").to_pylist()
    assert sorted(tracks + errors) == audio
    assert len(set(tracks + errors)) == len(audio)


@pytest.mark.integration
def test_bad_inputs_become_error_rows(run_output):
    assert {kind for _, kind in EXPECTED_ERRORS.values()} | set(KINDS_TESTED_ELSEWHERE) | KINDS_UNIT_TESTED_ONLY \
        == set(KINDS)
    rows = {Path(r["uri"]).name: r for r in read(run_output, "errors").to_pylist()}
    assert set(rows) == set(EXPECTED_ERRORS)
    for name, (stage, error) in EXPECTED_ERRORS.items():
        assert (rows[name]["stage"], rows[name]["error"]) == (stage, error), rows[name]
        assert rows[name]["message"]


@pytest.mark.integration
def test_schemas_are_the_public_contract(run_output):
    for table, schema in TABLES.items():
        assert read(run_output, table).schema.remove_metadata() == schema, table
    (run,) = read(run_output, "runs").to_pylist()
    model = resolve_model("msd-musicnn")
    assert run["classes"] == model.classes and run["fingerprint"] == model.fingerprint()
    assert (run["model"], run["status"], run["settings"]) == ("msd-musicnn", "finished", "patch_hop=187;precision=float32")
    run_ids = {run["run_id"]}
    for table in ("tracks", "patches", "errors", "current"):
        assert set(read(run_output, table).column("run_id").to_pylist()) == run_ids, table


@pytest.mark.integration
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


@pytest.mark.integration
def test_source_properties_and_short_clip(run_output):
    rows = {Path(r["uri"]).name: r for r in read(run_output, "tracks").to_pylist()}
    assert (rows["stereo_44k.flac"]["sample_rate"], rows["stereo_44k.flac"]["channels"]) == (44100, 2)
    assert (rows["stereo_48k.mp3"]["sample_rate"], rows["stereo_48k.mp3"]["channels"]) == (48000, 2)
    short = rows["short_2s.wav"]
    assert short["padded"] and short["n_patches"] == 1 and short["duration_s"] == pytest.approx(2.0, abs=0.01)


@pytest.mark.integration
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
    assert rows["reference_16k.wav"]["n_patches"] == 12  # 1 + 320000 // 256 = 1251 frames: 1 + (1251 - 187) // 93
    assert rows["reference_16k.wav"]["model"] == "mtt-vgg" and len(rows["reference_16k.wav"]["embedding"]) == 256
    assert rows["short_2s.wav"]["track_id"] == "T-short" and rows["reference_16k.wav"]["track_id"] is None
    patch_ids = {r["track_id"] for r in read(output, "patches").to_pylist() if r["uri"].endswith("short_2s.wav")}
    assert patch_ids == {"T-short"}
    assert [(Path(r["uri"]).name, r["track_id"]) for r in read(output, "errors").to_pylist()] == [("empty.mp3", "T-empty")]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicnn_beam.pipeline", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.e2e
def test_one_model_shared_by_worker_processes_and_no_debris(catalogue, run_output, tmp_path):
    """--model-copies 1 with two worker processes: one model, hosted by one process and called by both
    through Beam's proxy (its address file, one per copy, is in TMPDIR while the run lasts); the
    tags are unchanged. The run leaves nothing in TMPDIR, and removes what a killed run on the same
    output left there (a killed run's files in the store: tests/test_catalogue_store.py)."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    output = tmp_path / "out"
    stale = shared / f"{local_temp_prefix(str(output))}0123456789ab0.address"  # a killed run's shared model
    stale.write_text("127.0.0.1:1")
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # Beam's address files exist only while the run lasts
        while not done.is_set():
            seen.update(p.name for p in shared.glob("*.address") if "model_status" not in p.name and p != stale)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = _cli("--input", str(catalogue / "nested"), "--output", str(output), "--model-copies", "1",
                      "--direct_running_mode=multi_processing", "--direct_num_workers=2",
                      env={**os.environ, "TMPDIR": str(shared)})
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(seen) == 1, seen
    assert list(shared.iterdir()) == []
    # The tables, and _staging emptied (it stays: removing it raced other runs creating their folders in it)
    assert sorted(p.name for p in output.iterdir()) == ["_staging", "current", "errors", "patches", "runs", "tracks"]
    assert list((output / "_staging").iterdir()) == []
    expected = {r["uri"]: r for r in read(run_output, "tracks").to_pylist()}
    rows = read(output, "tracks").to_pylist()
    assert sorted(Path(r["uri"]).name for r in rows) == ["stereo_44k.flac", "stereo_48k.mp3"]
    for row in rows:
        np.testing.assert_allclose(row["activations"], expected[row["uri"]]["activations"], rtol=0, atol=1e-6)


@pytest.mark.e2e
def test_a_plain_run_prints_its_line_and_nothing_else(tmp_path, wav16k):
    """No TensorFlow, CUDA or absl start-up notes: the run's line on stdout, nothing on stderr;
    --verbose brings the notes back."""
    quiet = _cli("--input", wav16k, "--output", str(tmp_path / "store"))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    (line,) = quiet.stdout.splitlines()
    assert line.startswith("musicnn-beam: run ") and "1 listed, 0 skipped, 1 tagged" in line
    verbose = _cli("--input", wav16k, "--output", str(tmp_path / "store"), "--verbose")
    assert verbose.returncode == 0 and "oneDNN" in verbose.stderr
    assert "1 listed, 1 skipped, 0 tagged" in verbose.stdout


@pytest.mark.e2e
def test_worker_processes_are_quiet_too_and_leave_no_progress_folder(tmp_path, wav16k):
    """Two worker processes (multi_processing): they import TensorFlow quietly and their start-up
    warnings are not relayed; their progress files, written to the last moment, are removed."""
    output = str(tmp_path / "store")
    run = _cli("--input", wav16k, "--output", output, "--direct_num_workers=2")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "1 listed, 0 skipped, 1 tagged" in run.stdout
    assert glob.glob(f"{tempfile.gettempdir()}/{local_temp_prefix(output)}*") == []


@pytest.mark.e2e
def test_a_killed_run_leaves_no_decoder_behind(tmp_path, wav16k):
    """SIGKILL the CLI while a decoder child is stuck: the child dies with it (and a stuck child
    would not notice its closed pipe). What it left in TMPDIR (its folder of samples decoded ahead,
    its progress folder) goes with the next run on its output, which removes a dead launcher's files."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(wav16k, folder / "decoder-hang.wav")
    command = cli_command("--input", str(folder), "--output", str(tmp_path / "out"), "--decode-timeout", "600")
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, children = time.monotonic() + 60, []
        while not children and time.monotonic() < deadline:
            time.sleep(0.2)
            children = _decoder_children(run.pid)
        assert children, "no decoder started"
        time.sleep(1.0)  # into the hang
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    left = glob.glob(f"{tempfile.gettempdir()}/{local_temp_prefix(str(tmp_path / 'out'))}{run.pid}-*")
    assert any("-decoded-" in name for name in left), left
    remove_local_temp(local_temp_prefix(str(tmp_path / "out")), spare_running=True)  # as the next run does
    assert not [name for name in left if os.path.exists(name)]


def _decoder_children(parent: int) -> list[int]:
    """The decoder processes whose parent is `parent`, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        if ppid == parent and (b"decoder_child" in command or b"decoder_faults" in command):
            children.append(int(stat.parent.name))
    return children


def model_folder(folder: Path, **features) -> str:
    """A --model folder: msd-musicnn's SavedModel with its metadata's features block changed."""
    shutil.copytree(resolve_model("msd-musicnn").local_path(), folder)
    metadata = json.loads((folder / "model.json").read_text())
    metadata["features"].update(features)
    (folder / "model.json").write_text(json.dumps(metadata))
    return str(folder)


@pytest.mark.integration
@pytest.mark.parametrize("case,message", [
    ("no_match", "no file matches"),
    ("no_folder", "no file matches"),
    ("unknown_model", "unknown model"),
    ("unwritable", "not writable"),
    ("not_a_store", "holds 'notes.txt', which is not a table of this store"),
    ("misspelt_flag", "'--patch_hop' (did you mean --patch-hop?), '93'"),
    ("zero_hop", "argument --patch-hop: '0' must be at least 1"),
    ("no_output", "the following arguments are required: --output (see musicnn-beam --help)"),
    ("no_input", "name the audio with --input or --manifest (see musicnn-beam --help)"),
    ("htk_mel_model", "features.mel_scale = 'htk' is not supported (only 'slaney')"),
])
def test_bad_arguments_get_one_line_and_nonzero_exit(case, message, tmp_path, wav16k, run_output, cli):
    output = str(tmp_path / "out")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    args = {"no_match": ["--input", str(tmp_path / "nothing.mp3"), "--output", output],
            "no_folder": ["--input", str(tmp_path / "nowhere" / "*.mp3"), "--output", output],
            "unknown_model": ["--input", wav16k, "--output", output, "--model", "no-such-model"],
            "unwritable": ["--input", wav16k, "--output", str(Path(wav16k) / "out")],
            "not_a_store": ["--input", wav16k, "--output", str(tmp_path / "used")],
            "misspelt_flag": ["--input", wav16k, "--output", output, "--patch_hop", "93"],
            "zero_hop": ["--input", wav16k, "--output", output, "--patch-hop", "0"],
            "no_output": ["--input", wav16k],
            "no_input": ["--output", output],
            "htk_mel_model": ["--input", wav16k, "--output", output,
                              "--model", model_folder(tmp_path / "htk", mel_scale="htk")]}[case]
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path(output).exists()  # refused before anything is written


@pytest.mark.integration
def test_every_file_is_tagged_once_whatever_names_it(catalogue, tmp_path):
    """A file named by a folder, by `..`, through a symlink and by a manifest with a track_id is
    tagged once, with that id; a file two manifests give different track_ids is one error row."""
    nested = catalogue / "nested"
    flac, mp3 = nested / "stereo_44k.flac", nested / "deeper" / "stereo_48k.mp3"
    link = tmp_path / "links" / "same.flac"
    link.parent.mkdir()
    link.symlink_to(flac)
    (tmp_path / "one.csv").write_text(f"uri,track_id\n{flac},T-flac\n{mp3},A-1\n")
    (tmp_path / "two.csv").write_text(f"uri,track_id\n{mp3},B-2\n")
    output = tmp_path / "out"
    assert main(["--input", str(nested), "--input", f"{nested}/../nested/stereo_44k.flac", "--input", str(link),
                 "--manifest", str(tmp_path / "one.csv"), "--manifest", str(tmp_path / "two.csv"),
                 "--output", str(output), "--direct_num_workers=1"]) == 0

    tracks, errors = read(output, "tracks").to_pylist(), read(output, "errors").to_pylist()
    assert [(r["uri"], r["track_id"]) for r in tracks] == [(min(str(flac), str(link)), "T-flac")]
    assert [(r["uri"], r["track_id"], r["stage"], r["error"]) for r in errors] == \
        [(str(mp3), None, "input", "ConflictingTrackId")]
    assert "'A-1', 'B-2'" in errors[0]["message"]
    patches = read(output, "patches").to_pylist()
    assert sorted(r["patch"] for r in patches) == list(range(tracks[0]["n_patches"]))  # once each, no duplicates


@pytest.mark.integration
def test_the_models_metadata_decides_its_features(wav16k, tmp_path):
    """A model whose metadata says hop 128 gets hop-128 features: its patch count, times and tags are
    the original graph's on librosa's hop-128 mel of the same audio."""
    import librosa

    model = model_folder(tmp_path / "hop128", hop_length=128)
    output = tmp_path / "out"
    assert main(["--input", wav16k, "--output", str(output), "--model", model, "--direct_num_workers=1"]) == 0

    mel = librosa.feature.melspectrogram(y=librosa_load(wav16k), sr=16000, n_fft=512, hop_length=128, n_mels=96).T
    log_mel = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    theirs, _ = original_model("msd-musicnn")(np.stack([log_mel[s:s + 187] for s in range(0, 2501 - 186, 187)]))
    patches = sorted(read(output, "patches").to_pylist(), key=lambda r: r["patch"])
    (track,) = read(output, "tracks").to_pylist()
    assert track["n_patches"] == len(patches) == len(theirs) == 13  # 1 + 320000 // 128 = 2501 frames
    assert [p["start_s"] for p in patches] == pytest.approx([i * 1.496 for i in range(13)])  # 187 * 128 / 16000
    assert np.abs(np.array([p["activations"] for p in patches]) - theirs).max() < 1e-3


def failing_model(folder: Path, max_log_mel: float) -> str:
    """A --model folder whose SavedModel raises on any batch holding a log-mel value above max_log_mel
    (msd-musicnn's metadata; outputs of its shapes, zeros)."""
    import tensorflow as tf

    class Failing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 187, 96], tf.float32, name="log_mel_patches")])
        def serve(self, log_mel_patches):
            tf.debugging.assert_less(tf.reduce_max(log_mel_patches), max_log_mel, message="the model refuses this batch")
            n = tf.shape(log_mel_patches)[0]
            return {"activations": tf.zeros([n, 50]), "embedding": tf.zeros([n, 200])}

    module = Failing()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    (folder / "model.json").write_text(json.dumps(resolve_model("msd-musicnn").metadata))
    return str(folder)


@pytest.mark.integration
def test_a_model_that_always_raises_puts_each_track_in_errors(catalogue, tmp_path):
    output = tmp_path / "out"
    model = failing_model(tmp_path / "failing", max_log_mel=-1.0)
    assert main(["--input", str(catalogue), "--output", str(output), "--model", model, "--direct_num_workers=1"]) == 0

    audio = sorted(str(p) for p in catalogue.rglob("*") if p.is_file() and p.suffix != ".txt")
    errors = {Path(r["uri"]).name: r for r in read(output, "errors").to_pylist()}
    assert sorted(r["uri"] for r in errors.values()) == audio  # nothing lost, nothing twice
    assert read(output, "tracks").num_rows == read(output, "patches").num_rows == 0
    taggable = {"reference_16k.wav", "stereo_44k.flac", "stereo_48k.mp3", "short_2s.wav"}
    for name, row in errors.items():
        if name in taggable:
            assert (row["stage"], row["error"]) == ("inference", "InferenceFailed"), row
            assert "InvalidArgumentError" in row["message"] and "the model refuses this batch" in row["message"]
        else:
            assert (row["stage"], row["error"]) == EXPECTED_ERRORS[name]


@pytest.mark.integration
def test_an_inference_failure_costs_only_the_track_that_fails_alone(tmp_path):
    """Four tracks in one batch; the model refuses the loud one (log-mel 6.7, the quiet ones 4.7): the
    batch raises, each track is tried alone, and only the loud one is an error."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_audio(folder / f"quiet_{i}.wav", 0.1 * synth_music(5 + i, 6.0, 16000, 1), 16000, "wav16")
    write_audio(folder / "loud.wav", synth_music(5, 6.0, 16000, 1), 16000, "wav16")
    output = tmp_path / "out"
    model = failing_model(tmp_path / "failing", max_log_mel=5.5)
    assert main(["--input", str(folder), "--output", str(output), "--model", model, "--direct_num_workers=1"]) == 0

    assert sorted(Path(u).name for u in read(output, "tracks").column("uri").to_pylist()) == \
        ["quiet_0.wav", "quiet_1.wav", "quiet_2.wav"]
    (error,) = read(output, "errors").to_pylist()
    assert (Path(error["uri"]).name, error["stage"], error["error"]) == ("loud.wav", "inference", "InferenceFailed")


@pytest.mark.integration
def test_a_decoder_that_crashes_exhausts_memory_or_hangs_costs_one_file(tmp_path, monkeypatch, wav16k):
    """Decoding runs in child processes: a crash, a runaway allocation and a hang (tests.decoder_faults
    makes the decoder do each, by file name) cost their files; so do a FIFO, a vanished file and a file
    over --max-duration; the run goes on and tags the rest."""
    use_faulty_decoders(monkeypatch)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("decoder-crash.wav", "decoder-oom.wav", "decoder-hang.wav", "long_20s.wav"):
        shutil.copy(wav16k, folder / name)
    write_audio(folder / "short_5s.wav", synth_music(3, 5.0, 16000, 1), 16000, "wav16")
    os.mkfifo(folder / "y.wav")
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{folder / 'y.wav'}\n{folder / 'gone.wav'}\n")
    output = tmp_path / "out"
    assert main(["--input", str(folder), "--manifest", str(manifest), "--output", str(output),
                 "--decode-timeout", "5", "--max-duration", "10", "--direct_num_workers=1"]) == 0

    assert [Path(u).name for u in read(output, "tracks").column("uri").to_pylist()] == ["short_5s.wav"]
    errors = {Path(r["uri"]).name: (r["stage"], r["error"]) for r in read(output, "errors").to_pylist()}
    assert errors == {"decoder-crash.wav": ("decode", "DecoderCrashed"), "decoder-oom.wav": ("decode", "TooLarge"),
                      "decoder-hang.wav": ("decode", "Timeout"), "long_20s.wav": ("decode", "TooLong"),
                      "y.wav": ("read", "NotAFile"), "gone.wav": ("read", "NotFound")}


@pytest.mark.integration
def test_a_model_that_cannot_load_fails_the_run_in_one_line(wav16k, tmp_path, cli):
    """The model loads on a thread of its own; when it cannot load, no track is to blame: the run stops
    with one line and status 1, and commits nothing (not an InferenceFailed row per track)."""
    folder = tmp_path / "broken-model"
    shutil.copytree(resolve_model("msd-musicnn").local_path(), folder)
    (folder / "saved_model.pb").write_bytes(b"not a SavedModel")
    output = tmp_path / "out"
    result = cli("--input", wav16k, "--output", str(output), "--model", str(folder))
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("musicnn-beam: error: the model could not be loaded: "), line
    assert read(output, "runs").num_rows == read(output, "tracks").num_rows == read(output, "errors").num_rows == 0
