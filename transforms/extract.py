"""Read + decode + resample + mel: one input URI -> TrackFeatures, or an ErrorRecord.

These stages run on CPU workers; what they emit is float16 mel power (12 KB per audio second),
so decoding and inference can run on different workers.
"""
from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import fsspec
import numpy as np

from models.serving import configure_gpus
from transforms import features
from transforms.audio import DecodedAudio, decode_audio
from transforms.records import DECODE, FEATURES, READ, ErrorRecord, InputFile, TrackFeatures

ERRORS = "errors"

# Below this the track carries too little music to repeat-pad into a 3 s patch.
MIN_DURATION_S = 0.5
# Peak below -80 dBFS: nothing a tagger can hear (digital silence, or a near-silent file).
SILENCE_PEAK = 1e-4


class UnusableAudio(ValueError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def check_usable(audio: DecodedAudio) -> None:
    """Raise UnusableAudio for audio that decodes but cannot be tagged meaningfully."""
    seconds = audio.samples.shape[0] / features.SAMPLE_RATE
    if seconds < MIN_DURATION_S:
        raise UnusableAudio("TooShort", f"{seconds:.3f} s of audio, under the {MIN_DURATION_S} s minimum")
    peak = float(np.max(np.abs(audio.samples)))
    if peak < SILENCE_PEAK:
        raise UnusableAudio("Silent", f"peak amplitude {peak:.2e} is below {SILENCE_PEAK:.0e} (-80 dBFS)")


def extract(source: InputFile, decoded: DecodedAudio) -> TrackFeatures:
    check_usable(decoded)
    return TrackFeatures(uri=source.uri, mel=features.mel_power(decoded.samples),
                         source_sample_rate=decoded.source_sample_rate, channels=decoded.channels,
                         duration_s=decoded.duration_s, track_id=source.track_id)


class ExtractFeatures(beam.DoFn):
    """InputFile -> TrackFeatures on the main output, ErrorRecord on the `errors` output.

    The file is read as a stream (fsspec's buffered file on any filesystem), never whole.
    """

    def setup(self):
        configure_gpus()  # the mel runs in TensorFlow: on a GPU worker it must not take all memory

    def process(self, source: InputFile) -> Iterator:
        stage = READ
        try:
            with fsspec.open(source.uri, "rb") as stream:
                stage = DECODE
                decoded = decode_audio(stream)
            stage = FEATURES
            yield extract(source, decoded)
        except Exception as exc:  # a bad file must never fail the run: it becomes an error row
            yield beam.pvalue.TaggedOutput(ERRORS, ErrorRecord.from_exception(source, stage, exc))
