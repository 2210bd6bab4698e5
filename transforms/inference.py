"""Batched MusiCNN inference through Beam's RunInference, and per-track assembly.

Batches span tracks: RunInference's BatchElements groups TrackFeatures weighted by their patch
count; the handler cuts every track into patches, runs all of them through the model in fixed-size
chunks and splits the outputs back per track. RunInference loads the model once per worker process
and shares it between the process's threads, or (model_copies) once per machine for all its
worker processes.
"""
from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.models.registry import ModelSpec
from musicnn_beam.models.serving import DEFAULT_BATCH_SIZE, LoadedModel
from musicnn_beam.transforms import features
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.tags import top_tags
from musicnn_beam.transforms.records import ErrorRecord, InputFile, TrackFeatures, TrackPrediction

TOP_K = 5


def count_patches(track: TrackFeatures, patch_frames: int, patch_hop: int) -> int:
    return features.n_patches(len(track.mel), patch_frames, patch_hop)


class ModelLoadFailed(RuntimeError):
    """The model could not be loaded: the run fails (no track is to blame)."""


class PatchTagger:
    """The model as RunInference holds it: float16 mel patches (N, frames, mels), any N ->
    activations (N, classes) and embeddings (N, dim), float32.

    Patches are log-compressed (the recipe's compression) and run batch_size at a time (float32
    patches take twice the memory; None: the device's default). It is a plain callable taking a
    whole batch: through Beam's cross-process proxy (--model-copies) that is one round trip a
    batch, and half the bytes of float32 input.
    """

    def __init__(self, model: LoadedModel, recipe: FeatureRecipe, batch_size: Optional[int] = None):
        self.model = model
        self.recipe = recipe
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE[model.device]

    def __call__(self, mel_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chunk, n = self.batch_size, len(mel_patches)
        outputs = [self.model(self.recipe.compress(_padded_to(mel_patches[i:i + chunk], chunk)))
                   for i in range(0, n, chunk)]
        return np.concatenate([a for a, _ in outputs])[:n], np.concatenate([e for _, e in outputs])[:n]


class LoadingTagger:
    """A PatchTagger whose model loads, and runs its batch shape once on zeros, on a thread of its
    own, so that a worker's first files decode meanwhile (the load and the first call's graph
    set-up are 0.6 s of every run's fixed cost on CPU). The thread first traces the mel's graph,
    which the worker's first file needs before the model. A call waits for the model."""

    def __init__(self, load: Callable[[], LoadedModel], recipe: FeatureRecipe, batch_size: Optional[int] = None):
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-load")
        self._tagger: Future = self._loader.submit(self._load_and_warm, load, recipe, batch_size)
        self._loader.shutdown(wait=False)

    @staticmethod
    def _load_and_warm(load: Callable[[], LoadedModel], recipe: FeatureRecipe,
                       batch_size: Optional[int]) -> PatchTagger:
        features.trace_mel(recipe)
        tagger = PatchTagger(load(), recipe, batch_size)
        try:
            tagger(np.zeros((1, recipe.patch_frames, recipe.n_mels), np.float16))
        except Exception:  # noqa: BLE001 - a model that refuses a batch is judged on real ones, track by track
            pass
        return tagger

    def __call__(self, mel_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            tagger = self._tagger.result()
        except Exception as exc:  # noqa: BLE001 - whatever the loading raised, the run stops on it
            raise ModelLoadFailed(_could_not_load(exc)) from exc
        return tagger(mel_patches)


# Models a launcher started loading for the in-process worker it is about to run (preload_model).
_PRELOADED: dict[tuple, LoadingTagger] = {}


def preload_model(model: ModelSpec, precision: str, batch_size: Optional[int]) -> None:
    """Load a model, and trace the mel, in this process for a run whose worker is this process (the
    in-process runner): its handler takes the model in load_model instead of loading its own. Both
    are Python work (0.5 s), done here before the pipeline is built; the first call's graph set-up
    (0.3-0.4 s in TensorFlow's C++, which lets go of the GIL) then runs on the loader's thread while
    the pipeline is built, instead of after it, at the start of the inference stage."""
    path = model.local_path()
    try:
        features.trace_mel(model.recipe)
        loaded = LoadedModel(path, precision)
    except Exception as exc:  # noqa: BLE001 - whatever the loading raised, the run stops on it, as in a worker
        raise ModelLoadFailed(_could_not_load(exc)) from exc
    _PRELOADED[(path, precision, model.recipe, batch_size)] = LoadingTagger(lambda: loaded, model.recipe, batch_size)


def forget_preloaded() -> None:
    """Drop what preload_model started and no run took (a run that failed before its inference)."""
    _PRELOADED.clear()


def _could_not_load(exc: BaseException) -> str:
    return f"the model could not be loaded: {type(exc).__name__}: {exc}"


def _padded_to(patches: np.ndarray, n: int) -> np.ndarray:
    """patches (k <= n, ...) with n - k zero patches after them. The model always sees one batch
    shape: on a CPU, oneDNN keeps buffers for every input shape it has run (measured: 5-10 MB per
    extra shape, and a track's last chunk could be any of batch_size shapes)."""
    if len(patches) == n:
        return patches
    return np.concatenate([patches, np.zeros((n - len(patches), *patches.shape[1:]), patches.dtype)])


def predict_tracks(tracks: Sequence[TrackFeatures], tagger: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                   patch_frames: int, patch_hop: int, max_patches_per_call: int = 512) -> list[TrackPrediction]:
    """Run the model over all patches of several tracks at once.

    Each track's float16 mel (T, M) is cut into (P, patch_frames, M) patches; the patches of all
    tracks go to the tagger (a PatchTagger, or Beam's proxy of one) in calls of at most
    max_patches_per_call (18 MB of float16 patches: a 10-hour track is not cut whole at once,
    12,000 patches being 430 MB); outputs are split per track.
    """
    padded = [len(t.mel) < patch_frames for t in tracks]
    counts = [features.n_patches(len(t.mel), patch_frames, patch_hop) for t in tracks]
    # (track, first patch, last patch) pieces, grouped into calls of at most max_patches_per_call
    calls: list[list[tuple[int, int, int]]] = [[]]
    room = max_patches_per_call
    for i, count in enumerate(counts):
        first = 0
        while first < count:
            if room == 0:
                calls.append([])
                room = max_patches_per_call
            last = min(count, first + room)
            calls[-1].append((i, first, last))
            room -= last - first
            first = last
    activations, embeddings = [], []
    for call in calls:
        parts = [_patches(tracks[i].mel, patch_frames, patch_hop, first, last) for i, first, last in call]
        patches = parts[0] if len(parts) == 1 else np.concatenate(parts)
        a, e = tagger(patches)
        activations.append(a)
        embeddings.append(e)
    activations, embeddings = np.concatenate(activations), np.concatenate(embeddings)
    bounds = np.cumsum([0] + counts)
    no_mel = np.zeros((0, 0), np.float16)  # the predictions carry the track's facts, not its mel
    return [TrackPrediction(track=dataclasses.replace(t, mel=no_mel), activations=activations[lo:hi],
                            embeddings=embeddings[lo:hi], padded=pad,
                            patch_starts=features.patch_starts(len(t.mel), patch_frames, patch_hop))
            for t, pad, lo, hi in zip(tracks, padded, bounds[:-1], bounds[1:])]


def _patches(mel: features.MelFrames | np.ndarray, patch_frames: int, patch_hop: int, first: int, last: int
             ) -> np.ndarray:
    """Patches [first, last) of a track's mel: (last - first, patch_frames, M)."""
    frames = features.MelFrames.of(mel)
    if len(frames) < patch_frames:
        return features.to_patches(frames.frames(0, len(frames)), patch_frames, patch_hop)[0]
    span = frames.frames(first * patch_hop, (last - 1) * patch_hop + patch_frames)  # only these patches' frames
    return features.to_patches(span, patch_frames, patch_hop)[0]


class TaggerModelHandler(ModelHandler[TrackFeatures, "TrackPrediction | ErrorRecord", PatchTagger]):
    """RunInference's view of a converted MusiCNN/VGG SavedModel.

    batch_size: patches per model call (None: chosen by the device the worker has). BatchElements
    gathers tracks into batches of MIN_BATCH_PATCHES to MAX_BATCH_PATCHES patches (its adaptive size
    counts patches, through element_size_fn); a longer track comes alone.
    model_copies: None loads one model per worker process, shared by its threads. A number loads
    that many per machine, each in the worker process that asked for it first, and every worker
    process calls them through Beam's proxy (multi_process_shared): one model on a GPU fed by many
    decoding processes.
    """

    MIN_BATCH_PATCHES = 64
    MAX_BATCH_PATCHES = 2048

    def __init__(self, model: ModelSpec, patch_hop: int, batch_size: Optional[int] = None,
                 precision: str = "float32", model_copies: Optional[int] = None):
        self.model = model
        self.patch_hop = patch_hop
        self.batch_size = batch_size
        self.precision = precision
        super().__init__(min_batch_size=self.MIN_BATCH_PATCHES, max_batch_size=self.MAX_BATCH_PATCHES,
                         element_size_fn=functools.partial(count_patches, patch_frames=model.recipe.patch_frames,
                                                           patch_hop=patch_hop),
                         model_copies=model_copies)

    def load_model(self) -> LoadingTagger:
        path, precision = self.model.local_path(), self.precision  # a missing model fails the set-up at once
        preloaded = _PRELOADED.pop((path, precision, self.model.recipe, self.batch_size), None)
        return preloaded or LoadingTagger(lambda: LoadedModel(path, precision), self.model.recipe, self.batch_size)

    def run_inference(self, batch: Sequence[TrackFeatures], model: "PatchTagger | LoadingTagger",
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[TrackPrediction | ErrorRecord]:
        """The batch's predictions; when the batch raises, each track is tried alone, so that only a
        track that fails alone is lost (as an InferenceFailed ErrorRecord), not its batch mates."""
        try:
            return predict_tracks(batch, model, self.model.recipe.patch_frames, self.patch_hop)
        except ModelLoadFailed:
            raise  # no track is to blame
        except Exception as exc:  # noqa: BLE001 - which track made it fail is found out below
            if len(batch) == 1:
                return [_inference_failure(batch[0], exc)]
        return [self._predict_alone(track, model) for track in batch]

    def _predict_alone(self, track: TrackFeatures, model: PatchTagger) -> TrackPrediction | ErrorRecord:
        try:
            return predict_tracks([track], model, self.model.recipe.patch_frames, self.patch_hop)[0]
        except Exception as exc:  # noqa: BLE001
            return _inference_failure(track, exc)

    def get_num_bytes(self, batch: Sequence[TrackFeatures]) -> int:
        return sum(t.mel.nbytes for t in batch)

    def get_metrics_namespace(self) -> str:
        return "musicnn_beam"


def _inference_failure(track: TrackFeatures, exc: BaseException) -> ErrorRecord:
    error = TaggingError("InferenceFailed", f"{type(exc).__name__}: {exc}")
    return ErrorRecord.of(InputFile(track.uri, track.track_id, track.version), error)


def track_row(prediction: TrackPrediction, model: ModelSpec, top_k: int = TOP_K) -> dict:
    """Per-track summary: mean activations and embedding over patches, top tags."""
    track = prediction.track
    mean_activations = prediction.activations.mean(axis=0)
    return {
        "uri": track.uri,
        "track_id": track.track_id,
        "n_patches": int(len(prediction.activations)),
        "padded": bool(prediction.padded),
        "duration_s": float(track.duration_s),
        "sample_rate": int(track.source_sample_rate),
        "channels": int(track.channels),
        "activations": mean_activations.astype(np.float32).tolist(),
        "embedding": prediction.embeddings.mean(axis=0).astype(np.float32).tolist(),
        "top_tags": [tag for tag, _ in top_tags(mean_activations, model.classes, top_k)],
        "model": model.name,
        "version": track.version,
    }


def patch_rows(prediction: TrackPrediction, recipe: FeatureRecipe) -> Iterator[dict]:
    seconds_per_frame = recipe.seconds_per_frame
    for i, (start, acts, emb) in enumerate(zip(prediction.patch_starts, prediction.activations, prediction.embeddings)):
        yield {"uri": prediction.track.uri, "track_id": prediction.track.track_id, "patch": i, "start_s": float(start * seconds_per_frame),
               "activations": acts.tolist(), "embedding": emb.tolist()}
