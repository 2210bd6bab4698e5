"""Decoding a local run's first files while the launcher starts up (transforms.decode_ahead)."""
from __future__ import annotations

from concurrent.futures import wait

import numpy as np
import pytest

from tests.conftest import make_audio
from musicnn_beam.transforms import decode_ahead
from musicnn_beam.transforms.audio import AudioInfo
from musicnn_beam.transforms.decode_ahead import DecodeAhead, Decoded, files_to_decode
from musicnn_beam.transforms.decoder_pipe import DecodeRequest
from musicnn_beam.transforms.decoders import DecoderPool
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.store.plan import RunFacts, will_tag
from musicnn_beam.transforms.sources import expand_input

RATE = 16000


@pytest.mark.unit
def test_a_file_decoded_ahead_is_replayed_in_order_then_removed(tmp_path):
    samples = np.random.default_rng(0).standard_normal(3 * decode_ahead.SAMPLES_PER_PUSH + 5).astype(np.float32)
    path = tmp_path / "samples"
    samples.tofile(path)
    info = AudioInfo(44100, 2, 12.3)
    pushed = []
    assert Decoded(str(path), info).decode(DecodeRequest("x", RATE, None), pushed.append) == info
    assert [len(p) for p in pushed] == [decode_ahead.SAMPLES_PER_PUSH] * 3 + [5]
    assert np.array_equal(np.concatenate(pushed), samples)
    assert not path.exists()


@pytest.mark.unit
def test_a_file_whose_decoding_failed_replays_what_came_then_its_error(tmp_path):
    path = tmp_path / "samples"
    np.ones(10, np.float32).tofile(path)
    pushed = []
    with pytest.raises(TaggingError, match="Corrupt"):
        Decoded(str(path), error=TaggingError("Corrupt", "bad frame")).decode(DecodeRequest("x", RATE, None), pushed.append)
    assert sum(len(p) for p in pushed) == 10 and not path.exists()


@pytest.mark.unit
def test_only_files_the_run_will_tag_are_decoded_ahead(tmp_path):
    """The launcher's choice is the run's own skip decision: a file the store holds in the same
    version is not decoded; new and changed ones are, in listing order, at most MAX_FILES."""
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"RIFF")
    run = RunFacts("R2", "msd-musicnn", "fp", "settings")
    a, b, c = expand_input(str(tmp_path))
    current = [{"uri": a.uri, "model": "msd-musicnn", "status": "tracked", "version": a.version, "fingerprint": "fp",
                "settings": "settings", "run_id": "R1", "error": None},
               {"uri": b.uri, "model": "msd-musicnn", "status": "tracked", "version": "older", "fingerprint": "fp",
                "settings": "settings", "run_id": "R1", "error": None}]

    def tags(file, current_rows):
        return will_tag(file, current_rows, run)

    assert [f.uri for f in files_to_decode([str(tmp_path)], lambda: current, tags)] == [b.uri, c.uri]
    assert files_to_decode([str(tmp_path)], lambda: None, tags) == []  # `current` too large to read here


@pytest.mark.integration
def test_what_is_decoded_ahead_is_what_the_decoder_streams(tmp_path, monkeypatch):
    music = tmp_path / "music"
    music.mkdir()
    make_audio(music, "a.mp3", 1, 6.0, 44100, 2, "mp3")
    make_audio(music, "b.flac", 2, 3.0, 22050, 1, "flac")
    make_audio(music, "c.wav", 3, 2.0, 16000, 1, "wav16")
    (music / "d.mp3").write_bytes(b"not audio at all")
    a, b, c, d = expand_input(str(music))
    samples = tmp_path / "samples"
    samples.mkdir()

    def streamed(file, max_duration_s=None):
        pool, chunks = DecoderPool(1), []
        try:
            info = pool.decode(DecodeRequest(file.uri, RATE, max_duration_s), chunks.append)
        finally:
            pool.close()
        return info, np.concatenate(chunks)

    def replayed(decoded: Decoded):
        chunks = []
        info = decoded.decode(DecodeRequest("ignored", RATE, None), chunks.append)
        return info, np.concatenate(chunks)

    monkeypatch.setattr(decode_ahead, "MAX_FILE_S", 4.0)
    ahead = DecodeAhead(str(samples), RATE, None, stall_timeout_s=60, processes=1)
    try:
        wait(ahead.submit([a, b, d]))  # taken before its decoding starts, a file is left to the worker
        info, got = replayed(ahead.take(b))
        expected_info, expected = streamed(b)
        assert info == expected_info and np.array_equal(got, expected)  # the same samples, bit for bit
        assert ahead.take(a) is None  # 6 s: past the cap, left to the pipeline (it streams it)
        with pytest.raises(TaggingError) as error:
            ahead.take(d).decode(DecodeRequest("ignored", RATE, None), lambda chunk: None)
        assert error.value.kind == "NotAudio"
        assert ahead.take(c) is None  # never submitted
        assert list(samples.iterdir()) == []  # every file taken was read and removed
        late = ahead.submit([c])  # the worker has started: its own decoders take the files now
        wait(late)
        assert late[0].result() is None and list(samples.iterdir()) == []
    finally:
        ahead.close()

    # The run's own limit is an error the file keeps, not a file left to the pipeline.
    ahead = DecodeAhead(str(samples), RATE, 1.0, stall_timeout_s=60, processes=1)
    try:
        wait(ahead.submit([b]))
        with pytest.raises(TaggingError) as error:
            ahead.take(b).decode(DecodeRequest("ignored", RATE, None), lambda chunk: None)
        assert error.value.kind == "TooLong"
    finally:
        ahead.close()


@pytest.mark.integration
@pytest.mark.usefixtures("converted_models")
def test_a_run_that_decodes_ahead_writes_the_same_rows(tmp_path, monkeypatch):
    from apache_beam.metrics.metric import MetricsFilter

    from musicnn_beam.pipeline.cli import run
    from tests.conftest import clear_fsspec_caches
    from musicnn_beam.store.read import read_table
    from musicnn_beam.transforms import tally

    music = tmp_path / "music"
    music.mkdir()
    make_audio(music, "a.mp3", 31, 4.0, 44100, 2, "mp3")
    make_audio(music, "b.flac", 32, 3.5, 22050, 1, "flac")
    (music / "x.mp3").write_bytes(b"not audio")

    def tagged(output: str) -> tuple[dict, list, list]:
        clear_fsspec_caches()
        result = run(["--input", str(music), "--output", output]).result
        counters = {c.key.metric.name: c.committed
                    for c in result.metrics().query(MetricsFilter().with_namespace(tally.NAMESPACE))["counters"]}
        tracks = sorted((t["uri"], t["activations"], t["embedding"]) for t in read_table(output, "tracks").to_pylist())
        errors = sorted((e["uri"], e["error"], e["message"]) for e in read_table(output, "errors").to_pylist())
        return counters, tracks, errors

    ahead_counters, ahead_tracks, ahead_errors = tagged(str(tmp_path / "ahead"))
    monkeypatch.setattr(decode_ahead, "start", lambda *args, **kwargs: None)
    counters, tracks, errors = tagged(str(tmp_path / "streamed"))
    print("\nfiles decoded ahead:", ahead_counters.get("files decoded ahead"))
    assert ahead_counters.get("files decoded ahead", 0) >= 1 and "files decoded ahead" not in counters
    assert ahead_tracks == tracks and len(tracks) == 2  # the same numbers, to the last bit
    assert ahead_errors == errors and [e[1] for e in errors] == ["NotAudio"]
