"""Read + decode + resample + mel: one input URI -> TrackFeatures, or an ErrorRecord.

These stages run on CPU workers; what they emit is float16 mel power (12 KB per audio second),
so decoding and inference can run on different workers.
"""
from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam.transforms.window import GlobalWindows

from models.recipe import FeatureRecipe
from models.serving import configure_gpus
from transforms import features
from transforms.audio import DecodedAudio, decode_audio
from transforms.errors import TaggingError
from transforms.records import DECODE, FEATURES, READ, ErrorRecord, InputFile, TrackFeatures

ERRORS = "errors"

# Below this the track carries too little music to repeat-pad into a patch.
MIN_DURATION_S = 0.5
# Peak below -80 dBFS: nothing a tagger can hear (digital silence, or a near-silent file).
SILENCE_PEAK = 1e-4


def check_usable(audio: DecodedAudio, sample_rate: int) -> None:
    """Raise TaggingError for audio that decodes but cannot be tagged meaningfully.

    audio.samples: (n,) float32 at sample_rate.
    """
    seconds = audio.samples.shape[0] / sample_rate
    if seconds < MIN_DURATION_S:
        raise TaggingError("TooShort", f"{seconds:.3f} s of audio, under the {MIN_DURATION_S} s minimum")
    peak = float(np.max(np.abs(audio.samples)))
    if peak < SILENCE_PEAK:
        raise TaggingError("Silent", f"peak amplitude {peak:.2e} is below {SILENCE_PEAK:.0e} (-80 dBFS)")


def features_of(source: InputFile, decoded: DecodedAudio, recipe: FeatureRecipe) -> TrackFeatures:
    check_usable(decoded, recipe.sample_rate)
    return TrackFeatures(uri=source.uri, mel=features.mel_power(decoded.samples, recipe),
                         source_sample_rate=decoded.source_sample_rate, channels=decoded.channels,
                         duration_s=decoded.duration_s, track_id=source.track_id)


def extract(source: InputFile, recipe: FeatureRecipe) -> TrackFeatures | ErrorRecord:
    """Read, decode, check and compute the mel of one input; any failure becomes an ErrorRecord
    naming the stage (a bad file must never fail the run)."""
    stage = READ
    try:
        with fsspec.open(source.uri, "rb") as stream:  # a buffered stream on any filesystem, never read whole
            stage = DECODE
            decoded = decode_audio(stream, recipe.sample_rate)
        stage = FEATURES
        return features_of(source, decoded, recipe)
    except Exception as exc:  # noqa: BLE001
        return ErrorRecord.from_exception(source, stage, exc)


class ExtractFeatures(beam.DoFn):
    """InputFile -> TrackFeatures (the recipe's mel) on the main output, ErrorRecord on the `errors` output.

    Up to `prefetch` inputs are decoded ahead on a small thread pool (FFmpeg, soxr and TensorFlow
    release the GIL), so that decoding overlaps with the inference that runs downstream in the same
    worker thread; at most `prefetch` decoded tracks wait in memory.
    """

    def __init__(self, recipe: FeatureRecipe, prefetch: int = 2):
        self.recipe = recipe
        self.prefetch = prefetch

    def setup(self):
        configure_gpus()  # the mel runs in TensorFlow: on a GPU worker it must not take all memory
        self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="extract")

    def start_bundle(self):
        self._pending: collections.deque[Future] = collections.deque()

    @staticmethod
    def _output(result: TrackFeatures | ErrorRecord, windowed: bool = False):
        value = GlobalWindows.windowed_value(result) if windowed else result
        return beam.pvalue.TaggedOutput(ERRORS, value) if isinstance(result, ErrorRecord) else value

    def process(self, source: InputFile) -> Iterator:
        self._pending.append(self._pool.submit(extract, source, self.recipe))
        while len(self._pending) > self.prefetch or (self._pending and self._pending[0].done()):
            yield self._output(self._pending.popleft().result())

    def finish_bundle(self) -> Iterator:
        while self._pending:
            yield self._output(self._pending.popleft().result(), windowed=True)

    def teardown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
