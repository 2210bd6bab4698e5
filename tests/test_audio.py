"""transforms.audio must reproduce musicnn's input path: librosa.load(path, sr=16000)."""

from __future__ import annotations

import errno
import io
import os
import pickle
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr

from musicnn_beam.demo.bad import write_bad_inputs
from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.transforms import probe
from musicnn_beam.transforms.audio import AUDIO_EXTENSIONS, decode_audio
from musicnn_beam.transforms.errors import TaggingError

pytestmark = pytest.mark.unit

SR = 16000  # musicnn's input rate (librosa.load(path, sr=16000))

EXT = {"mp3": "mp3", "flac": "flac", "wav16": "wav", "wav24": "wav", "wavf32": "wav", "ogg": "ogg", "opus": "opus", "m4a": "m4a"}

# name -> (codec, sample_rate, channels, duration_s, seed)
FILES = {
    "mono16k": ("wav16", 16000, 1, 6.0, 1),
    "stereo44k_wav": ("wav16", 44100, 2, 6.0, 2),
    "stereo48k_flac": ("flac", 48000, 2, 6.0, 3),
    "mono22k_wav24": ("wav24", 22050, 1, 6.0, 4),
    "stereo32k_float": ("wavf32", 32000, 2, 6.0, 5),
    "six44k_wav": ("wav16", 44100, 6, 4.0, 6),
    "rate8000": ("wav16", 8000, 1, 3.3, 7),
    "rate11025": ("wav16", 11025, 2, 3.3, 8),
    "rate96000": ("wav16", 96000, 1, 3.3, 9),
    "mp3": ("mp3", 44100, 2, 8.0, 10),
    "ogg": ("ogg", 44100, 2, 8.0, 11),
    "opus": ("opus", 48000, 2, 8.0, 12),
    "m4a": ("m4a", 44100, 2, 8.0, 13),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (path, source PCM (channels, n) float32)."""
    root = tmp_path_factory.mktemp("audio")
    out = {}
    for name, (codec, rate, channels, duration, seed) in FILES.items():
        pcm = synth_music(seed, duration, rate, channels)
        path = root / f"{name}.{EXT[codec]}"
        write_audio(path, pcm, rate, codec)
        out[name] = (path, pcm)
    return out


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, str]:
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def _librosa(path: Path) -> np.ndarray:
    return librosa.load(str(path), sr=SR)[0]


def test_16k_mono_wav_is_librosa_exactly(files):
    path, _ = files["mono16k"]
    ours = decode_audio(path, SR)
    ref = _librosa(path)
    assert ours.samples.dtype == np.float32 and ours.samples.shape == ref.shape
    assert np.max(np.abs(ours.samples - ref)) < 1e-7
    assert (ours.source_sample_rate, ours.channels) == (16000, 1)


@pytest.mark.parametrize("name", ["stereo44k_wav", "stereo48k_flac", "mono22k_wav24", "stereo32k_float", "six44k_wav"])
def test_resampled_matches_librosa(files, name):
    path, pcm = files[name]
    ours = decode_audio(path, SR)
    ref = _librosa(path)
    assert ours.samples.shape == ref.shape
    assert np.max(np.abs(ours.samples - ref)) < 1e-5
    _, rate, channels, duration, _ = FILES[name]
    assert (ours.source_sample_rate, ours.channels) == (rate, channels)
    assert ours.duration_s == pytest.approx(pcm.shape[1] / rate)


def test_downmix_is_channel_mean_not_ffmpeg_downmix(tmp_path):
    x = synth_music(20, 2.0, 16000, 1)[0] * 0.8
    path = tmp_path / "lr.wav"
    write_audio(path, np.stack([x, 0.25 * x]), 16000, "wav16")
    stereo, _ = sf.read(str(path), dtype="float32", always_2d=True)  # (n, 2), the quantised source
    ours = decode_audio(path, SR).samples
    np.testing.assert_array_equal(ours, stereo.T.mean(axis=0))
    # FFmpeg's mono downmix would give 0.707 * (L + R): clearly different.
    assert np.max(np.abs(ours - 0.7071 * stereo.sum(axis=1))) > 0.1


def _aligned_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 4096) -> tuple[float, int]:
    """Best normalised correlation over lags within +-max_lag, and that lag (decoded relative to reference)."""
    n = len(reference) + len(decoded)
    spectrum = np.fft.rfft(decoded, 2 * n) * np.conj(np.fft.rfft(reference, 2 * n))
    xcorr = np.fft.irfft(spectrum, 2 * n)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    values = xcorr[lags]
    best = int(np.argmax(values))
    lag = int(lags[best])
    a = reference[max(0, -lag):]
    b = decoded[max(0, lag):]
    m = min(len(a), len(b))
    return float(np.corrcoef(a[:m], b[:m])[0, 1]), lag


@pytest.mark.parametrize("name", ["mp3", "ogg", "opus", "m4a"])
def test_lossy_formats_decode_aligned(files, name):
    path, pcm = files[name]
    _, rate, channels, duration, _ = FILES[name]
    ours = decode_audio(path, SR)
    assert (ours.source_sample_rate, ours.channels) == (rate, channels)
    assert abs(ours.duration_s - duration) < 0.1
    reference = soxr.resample(pcm.mean(axis=0), rate, SR, quality="HQ")
    correlation, lag = _aligned_correlation(reference, ours.samples)
    assert correlation > 0.95
    if name in ("mp3", "opus", "m4a"):
        # FFmpeg drops encoder delay (LAME tag, Opus pre-skip, mp4 edit list): no offset at all.
        assert abs(lag) <= 1


def test_m4a_tail_padding_is_cut(files):
    path, pcm = files["m4a"]
    ours = decode_audio(path, SR)
    assert ours.duration_s == pcm.shape[1] / 44100  # not rounded up to a whole 1024-sample AAC frame
    assert ours.samples.shape[0] == int(np.ceil(pcm.shape[1] * 16000 / 44100))


@pytest.mark.parametrize("name", ["rate8000", "rate11025", "rate96000"])
def test_odd_rates(files, name):
    path, pcm = files[name]
    ours = decode_audio(path, SR)
    ref = _librosa(path)
    assert ours.samples.shape == ref.shape
    assert ours.samples.shape[0] == int(np.ceil(pcm.shape[1] * 16000 / FILES[name][1]))
    assert np.max(np.abs(ours.samples - ref)) < 1e-5


@pytest.mark.parametrize(
    "name, kind",
    [("empty.mp3", "EmptyFile"), ("truncated.flac", "Truncated"), ("not_audio.mp3", "NotAudio"), ("random.ogg", "NotAudio"),
     ("corrupt.mp3", "Corrupt"), ("video_only.mp4", "NoAudioStream"), ("no_samples.wav", "EmptyAudio"),
     ("rate_1hz.wav", "UnsupportedFormat")],
)
def test_bad_inputs_raise(bad_inputs, name, kind):
    with pytest.raises(TaggingError) as caught:
        decode_audio(bad_inputs[name], SR)
    assert caught.value.kind == kind
    # no path (FFmpeg appends the name it was given): the same file gives the same message wherever it lies
    assert bad_inputs[name] not in caught.value.message and "<none>" not in caught.value.message
    if kind == "Truncated":
        assert "20.000" in caught.value.message  # both durations are reported
    again = pickle.loads(pickle.dumps(caught.value))  # errors cross Beam process boundaries
    assert (again.kind, again.message) == (caught.value.kind, caught.value.message)


def test_silent_and_short_decode(bad_inputs):
    silent = decode_audio(bad_inputs["silent.wav"], SR)
    assert silent.samples.shape == (160000,) and not np.any(silent.samples)
    short = decode_audio(bad_inputs["short_2s.wav"], SR)
    assert short.samples.shape == (32000,) and short.duration_s == 2.0


def test_truncated_mp3_and_complete_files_not_flagged(files, tmp_path):
    data = files["mp3"][0].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 3])  # the LAME/Xing header still declares 8 s
    with pytest.raises(TaggingError) as caught:
        decode_audio(cut, SR)
    assert caught.value.kind == "Truncated"
    for name in ("mp3", "ogg", "opus", "m4a", "stereo48k_flac", "stereo44k_wav"):
        decode_audio(files[name][0], SR)  # encoder delay / padding must not look like truncation


@pytest.mark.parametrize("name", ["stereo48k_flac", "m4a"])
def test_file_object_equals_path(files, name):
    path, _ = files[name]
    from_path = decode_audio(path, SR)
    with open(path, "rb") as f:
        from_file = decode_audio(f, SR)
    from_bytes = decode_audio(io.BytesIO(path.read_bytes()), SR)
    np.testing.assert_array_equal(from_file.samples, from_path.samples)
    np.testing.assert_array_equal(from_bytes.samples, from_path.samples)
    assert from_file.duration_s == from_path.duration_s


def test_empty_file_object():
    with pytest.raises(TaggingError) as caught:
        decode_audio(io.BytesIO(b""), SR)
    assert caught.value.kind == "EmptyFile"


def test_a_file_that_cannot_be_opened_is_permission_denied_not_empty(tmp_path, monkeypatch):
    """FFmpeg could not open it and nor can Python: the size (not the bytes read) says it is not empty.
    The open fails as it does for a user without read permission (these tests run as root, which reads
    every file; tests/test_decoders.py drops root's override for real)."""
    path = tmp_path / "locked.mp3"
    path.write_bytes(b"ID3" + bytes(4000))

    def refused(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))

    monkeypatch.setattr(probe, "open", refused, raising=False)
    with pytest.raises(TaggingError) as caught:
        raise probe.open_failure(path, av.error.PermissionError(errno.EACCES, "Permission denied"))
    assert (caught.value.kind, caught.value.message) == ("PermissionDenied", "permission denied (EACCES)")


def test_a_symlink_loop_is_not_a_file(tmp_path):
    path, other = tmp_path / "a.mp3", tmp_path / "b.mp3"
    os.symlink(other, path)
    os.symlink(path, other)
    with pytest.raises(TaggingError) as caught:
        decode_audio(path, SR)
    assert (caught.value.kind, caught.value.message) == ("NotAFile", "too many levels of symbolic links (ELOOP)")


def test_a_missing_file_is_not_found_in_words(tmp_path):
    with pytest.raises(TaggingError) as caught:
        decode_audio(tmp_path / "gone.mp3", SR)
    assert (caught.value.kind, caught.value.message) == ("NotFound", "no such file or directory (ENOENT)")


def test_streaming_resampler_equals_one_shot():
    """The streaming soxr path must equal librosa's one-shot soxr.resample (checked at 30 s), its
    length included."""
    from musicnn_beam.transforms.audio import _MonoResampler

    rng = np.random.default_rng(0)
    for rate in (44100, 48000, 16000, 8000):
        x = (0.3 * rng.standard_normal(30 * rate + 7)).astype(np.float32)
        streamed = _MonoResampler(rate, 16000)
        chunks = [out for start in range(0, x.shape[0], 1152) for out in streamed.push(x[start : start + 1152])]
        chunks += list(streamed.finish(x.shape[0]))
        one_shot = x if rate == 16000 else soxr.resample(x, rate, 16000, quality="HQ")
        expected = int(np.ceil(x.shape[0] * 16000 / rate))
        one_shot = librosa.util.fix_length(one_shot, size=expected)  # what librosa.resample(fix=True) returns
        assert sum(len(c) for c in chunks) == expected
        np.testing.assert_allclose(np.concatenate(chunks), one_shot, atol=1e-6, rtol=0)


def test_extensions():
    assert {".mp3", ".flac", ".wav", ".ogg", ".opus", ".m4a", ".aiff", ".wma", ".webm"} <= AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in AUDIO_EXTENSIONS)


def test_vbr_mp3_without_xing_header_is_not_truncated(tmp_path):
    """Without a Xing/Info header FFmpeg guesses mp3 duration from the bitrate: that is no declaration."""
    from fractions import Fraction

    import av

    quiet_then_loud = np.concatenate([synth_music(2, 8, 44100, 2) * 0.03, synth_music(5, 8, 44100, 2)], axis=1)
    path = tmp_path / "vbr_no_xing.mp3"
    with av.open(str(path), "w", format="mp3", container_options={"write_xing": "0"}) as container:
        stream = container.add_stream("libmp3lame", rate=44100)
        stream.layout = "stereo"
        stream.codec_context.flags |= av.codec.context.Flags.qscale
        stream.codec_context.global_quality = 6 * 118  # VBR -V 6: the bitrate follows the music
        for start in range(0, quiet_then_loud.shape[1], 4096):
            block = np.ascontiguousarray(quiet_then_loud[:, start : start + 4096])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert abs(decode_audio(path, SR).duration_s - 16.0) < 0.1


@pytest.mark.parametrize("codec,rate,keep", [("wav16", 44100, 0.97), ("wav24", 22050, 0.5), ("ogg", 44100, 0.97),
                                             ("ogg", 44100, 0.5), ("opus", 48000, 0.97)])
def test_a_cut_wav_or_ogg_is_truncated(tmp_path, codec, rate, keep):
    """The wav data chunk states its size, an Ogg stream ends with an end-of-stream page: a file cut
    short (even by 3 %) is Truncated, not a shorter track."""
    whole = tmp_path / f"whole.{EXT[codec]}"
    write_audio(whole, synth_music(8, 8.0, rate, 2), rate, codec)
    assert decode_audio(whole, SR).duration_s == pytest.approx(8.0, abs=0.01)
    cut = tmp_path / f"cut.{EXT[codec]}"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TaggingError) as caught:
        decode_audio(cut, SR)
    assert caught.value.kind == "Truncated"


def test_a_stream_whose_rate_and_channels_change_is_decoded(tmp_path):
    """Three mp3 streams back to back (mono 44.1 kHz, stereo 44.1 kHz, stereo 22.05 kHz): FFmpeg's
    resampler follows the changes; every second is decoded, at the first stream's rate."""
    def without_id3(data: bytes) -> bytes:
        size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
        return data[10 + size:] if data[:3] == b"ID3" else data

    parts = []
    for i, (rate, channels) in enumerate([(44100, 1), (44100, 2), (22050, 2)]):
        path = tmp_path / f"part{i}.mp3"
        write_audio(path, synth_music(20 + i, 3.0, rate, channels), rate, "mp3")
        parts.append(without_id3(path.read_bytes()))
    mixed = tmp_path / "mixed.mp3"
    mixed.write_bytes(b"".join(parts))
    decoded = decode_audio(mixed, SR)
    assert (decoded.source_sample_rate, decoded.channels) == (44100, 1)
    assert 9.0 <= decoded.duration_s < 9.2  # three 3 s parts and their encoder padding
    assert decoded.samples.shape[0] == int(np.ceil(round(decoded.duration_s * 44100) * SR / 44100))


def test_too_long_stops_decoding_at_the_limit(files):
    path, _ = files["mp3"]  # 8 s
    with pytest.raises(TaggingError) as caught:
        decode_audio(path, SR, max_duration_s=5.0)
    assert caught.value.kind == "TooLong"
    assert decode_audio(path, SR, max_duration_s=8.5).duration_s == pytest.approx(8.0, abs=0.1)


def test_what_decodes_before_time_zero_is_dropped(tmp_path):
    """A Vorbis stream whose granule positions ask to drop 128 samples at the start (encoders do):
    FFmpeg stamps them before time 0; we drop them, so our length is the stream's stated one and
    libsndfile's (the original's decoder), and the samples line up with libsndfile's."""
    import av

    from tests.oggpages import vorbis_with_start_trim

    plain = tmp_path / "plain.ogg"
    write_audio(plain, synth_music(11, 8.0, 44100, 2), 44100, "ogg")
    with av.open(str(plain)) as container:
        per_packet = [sum(f.samples for f in p.decode()) for p in container.demux(audio=0) if p.size]
    trimmed = tmp_path / "trimmed.ogg"
    trimmed.write_bytes(vorbis_with_start_trim(plain.read_bytes(), per_packet, trim=128))

    ours = decode_audio(trimmed, 44100).samples  # the file's own rate: no resampling in between
    theirs, _ = sf.read(str(trimmed), dtype="float32", always_2d=True)
    assert len(ours) == len(theirs) == sum(per_packet) - 128
    # libsndfile itself drops its 128 samples one packet late (after its first 1024); from there on
    # every sample is the same, where keeping the pre-roll would shift all of them by 128.
    np.testing.assert_allclose(ours[1024:], theirs.mean(axis=1)[1024:], rtol=0, atol=1e-6)


def test_libsndfile_reads_what_ffmpeg_cannot(tmp_path):
    """A MAT5 file (libsndfile writes and reads it; FFmpeg has no demuxer for it) decodes through
    libsndfile, as librosa.load (the original's path) reads it."""
    import av

    path = tmp_path / "matlab.mat"
    sf.write(str(path), synth_music(12, 3.0, 22050, 2).T, 22050, format="MAT5", subtype="FLOAT")
    with pytest.raises(av.FFmpegError):
        av.open(str(path))
    decoded = decode_audio(path, SR)
    assert (decoded.source_sample_rate, decoded.channels, decoded.duration_s) == (22050, 2, 3.0)
    np.testing.assert_allclose(decoded.samples, _librosa(path), rtol=0, atol=1e-5)


def _claim_huge_length(path: Path, codec: str) -> bytes:
    """The file with its header's length field at an extreme: FLAC STREAMINFO total samples, the mp3
    Xing frame count, the Ogg last page's granule position."""
    import struct

    from tests.oggpages import ogg_crc, pages

    data = bytearray(path.read_bytes())
    if codec == "flac":  # 36 bits after sample rate, channels and bits per sample, from byte 21's low nibble
        data[21] |= 0x0F
        data[22:26] = b"\xff\xff\xff\xff"
    elif codec == "mp3":
        xing = data.find(b"Xing") if data.find(b"Xing") >= 0 else data.find(b"Info")
        assert int.from_bytes(data[xing + 4:xing + 8], "big") & 1, "a frame count is stated"
        data[xing + 8:xing + 12] = b"\x7f\xff\xff\xff"
    else:
        last = list(pages(bytes(data)))[-1]
        page = bytearray(last)
        struct.pack_into("<q", page, 6, 1 << 62)
        struct.pack_into("<I", page, 22, 0)
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        data[len(data) - len(page):] = page
    return bytes(data)


@pytest.mark.parametrize("codec", ["flac", "mp3", "ogg"])
def test_a_header_claim_sizes_no_allocation(tmp_path, codec):
    """A header claiming an enormous length (once: MemoryError, 'Unable to allocate 86.2 GiB') is a
    claim: decoding reads what is there, in bounded memory, and the file is Truncated."""
    import resource

    whole = tmp_path / f"whole.{EXT[codec]}"
    write_audio(whole, synth_music(9, 4.0, 44100, 2), 44100, codec)
    hostile = tmp_path / f"claims.{EXT[codec]}"
    hostile.write_bytes(_claim_huge_length(whole, codec))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TaggingError) as caught:
        decode_audio(hostile, SR)
    assert caught.value.kind == "Truncated", caught.value
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: no giant buffer
