"""Read + decode + resample (in a decoder process) + mel: one input URI -> TrackFeatures, or an ErrorRecord.

These stages run on CPU workers; what they emit is float16 mel power (12 KB per audio second),
so decoding and inference can run on different workers.
"""
from __future__ import annotations

import collections
import functools
import os
import pickle
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.shared import Shared

from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.models.serving import configure_gpus
from musicnn_beam.transforms import decode_ahead, features
from musicnn_beam.transforms.decoder_pipe import DecodeRequest
from musicnn_beam.transforms.decoders import DEFAULT_STALL_TIMEOUT_S, DecoderPool, worker_pool
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.records import ErrorRecord, InputFile, TrackFeatures
from musicnn_beam.transforms.tally import counter, distribution

ERRORS = "errors"

# Below this the track carries too little music to repeat-pad into a patch.
MIN_DURATION_S = 0.5
# Peak below -80 dBFS: nothing a tagger can hear (digital silence, or a near-silent file).
SILENCE_PEAK = 1e-4


def check_usable(mel: features.MelStream) -> None:
    """Raise TaggingError for audio that decodes but cannot be tagged meaningfully."""
    if not mel.finite:
        raise TaggingError("Corrupt", "the audio holds NaN or infinite samples")
    seconds = mel.n_samples / mel.recipe.sample_rate
    if seconds < MIN_DURATION_S:
        raise TaggingError("TooShort", f"{seconds:.3f} s of audio, under the {MIN_DURATION_S} s minimum")
    if mel.peak < SILENCE_PEAK:
        raise TaggingError("Silent", f"peak amplitude {mel.peak:.2e} is below {SILENCE_PEAK:.0e} (-80 dBFS)")


def extract(source: InputFile, recipe: FeatureRecipe, decoders: "DecoderPool | decode_ahead.Decoded",
            max_duration_s: Optional[float]) -> TrackFeatures | ErrorRecord:
    """Decode one input through `decoders` (a pool's decoder process, or what one wrote ahead of the
    run: decode_ahead.Decoded), streaming its samples into the mel; check it. A bad file becomes an
    ErrorRecord (it must never fail the run)."""
    mel = features.MelStream(recipe)
    try:
        info = decoders.decode(DecodeRequest(source.uri, recipe.sample_rate, max_duration_s), mel.push)
        check_usable(mel)
    except TaggingError as error:
        return ErrorRecord.of(source, error)
    return TrackFeatures(uri=source.uri, mel=mel.finish(), source_sample_rate=info.source_sample_rate,
                         channels=info.channels, duration_s=info.duration_s, track_id=source.track_id,
                         version=source.version)


def timed_extract(source: InputFile, recipe: FeatureRecipe, decoders: DecoderPool, max_duration_s: Optional[float]
                  ) -> tuple[TrackFeatures | ErrorRecord, float, bool]:
    """extract(), from the samples the launcher decoded ahead where it did (transforms.decode_ahead);
    the seconds it took, and whether it was decoded ahead."""
    started = time.perf_counter()
    ahead = decode_ahead.take(source)
    result = extract(source, recipe, ahead or decoders, max_duration_s)
    return result, time.perf_counter() - started, ahead is not None


class TrackFeaturesCoder(beam.coders.Coder):
    """TrackFeatures on the wire: pickled (protocol 5: the mel's buffers whole), with a size estimate
    that does not pickle. Beam samples element sizes for its metrics by encoding them, which for a
    10-hour track's mel (430 MB) cost that much memory again, and CPU on every sampled track."""

    def encode(self, value: TrackFeatures) -> bytes:
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded: bytes) -> TrackFeatures:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: TrackFeatures) -> int:
        return value.mel.nbytes + len(value.uri) + 100

    def to_type_hint(self):
        return TrackFeatures


beam.coders.registry.register_coder(TrackFeatures, TrackFeaturesCoder)


class ExtractFeatures(beam.DoFn):
    """InputFile -> TrackFeatures (the recipe's mel) on the main output, ErrorRecord on the `errors` output.

    Up to `prefetch` inputs are prefetched, each decoded in a decoder process (transforms.decoders)
    whose samples a thread here turns into the mel as they come, so that decoding overlaps with the
    inference that runs downstream in the same worker thread; at most `prefetch` decoded tracks
    wait in memory.
    """

    def __init__(self, recipe: FeatureRecipe, max_duration_s: Optional[float] = None,
                 decode_timeout_s: float = DEFAULT_STALL_TIMEOUT_S, prefetch: Optional[int] = None):
        self.recipe = recipe
        self.max_duration_s = max_duration_s
        self.decode_timeout_s = decode_timeout_s
        self.prefetch = prefetch or max(2, os.cpu_count() or 1)  # a file per core decoding at once
        # The decoder pool of this transform, one per worker process, shared by its instances: a
        # pipeline's own (a later run in the same process, e.g. in tests, starts children that see
        # its environment).
        self._shared_decoders = Shared()

    def setup(self):
        configure_gpus()  # the mel runs in TensorFlow: on a GPU worker it must not take all memory
        self._decoders = self._shared_decoders.acquire(functools.partial(worker_pool, self.decode_timeout_s))
        self._decoders.start(self.prefetch)  # they start while TensorFlow and the model load
        self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="extract")

    def start_bundle(self):
        self._pending: collections.deque[Future] = collections.deque()

    @staticmethod
    def _output(timed: tuple[TrackFeatures | ErrorRecord, float, bool], windowed: bool = False):
        result, seconds, ahead = timed
        # Recorded here, in the bundle's thread: Beam's metrics belong to the thread running the step.
        distribution("extract ms per track").update(round(seconds * 1000))
        if ahead:
            counter("files decoded ahead").inc()
        value = GlobalWindows.windowed_value(result) if windowed else result
        return beam.pvalue.TaggedOutput(ERRORS, value) if isinstance(result, ErrorRecord) else value

    def process(self, source: InputFile) -> Iterator:
        self._pending.append(self._pool.submit(timed_extract, source, self.recipe, self._decoders, self.max_duration_s))
        while len(self._pending) > self.prefetch or (self._pending and self._pending[0].done()):
            yield self._output(self._pending.popleft().result())

    def finish_bundle(self) -> Iterator:
        while self._pending:
            yield self._output(self._pending.popleft().result(), windowed=True)

    def teardown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Let go of the pool. Shared holds it weakly, and strongly only while it is the process's
        # latest shared object: its children stop once it is collected (DecoderPool), or with the process.
        self._decoders = None
