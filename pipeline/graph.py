"""The Beam graph: inputs -> tracks, patches and errors tables.

    patterns / manifests -> expand -> group the names of each file into one input (a shuffle: it
      also spreads the files over workers) -> read + decode + resample (decoder processes) + mel
      (CPU) -> RunInference, batches spanning tracks (CPU or GPU) -> per-track assembly -> Parquet
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from models.registry import ModelSpec
from transforms.errors import TaggingError
from transforms.decoders import DEFAULT_STALL_TIMEOUT_S
from transforms.extract import ERRORS, ExtractFeatures
from transforms.inference import TaggerModelHandler, patch_rows, track_row
from transforms.records import ErrorRecord, InputFile, TrackFeatures
from transforms.sinks import WriteTable
from transforms.sources import expand_input, file_identity, merge_names, read_manifest


@dataclass(frozen=True)
class TagSettings:
    model: ModelSpec
    patch_hop: int
    batch_size: Optional[int] = None  # patches per model call; None: chosen by the device
    precision: str = "float32"
    inference_accelerator: Optional[str] = None  # a Beam resource hint for the inference stage
    model_copies: Optional[int] = None  # models per machine shared by its worker processes; None: one per process
    max_duration_s: Optional[float] = None  # longer sources are errors (TooLong); None: no limit
    decode_timeout_s: float = DEFAULT_STALL_TIMEOUT_S  # a decoder silent this long is killed (Timeout)
    run_tag: Optional[str] = None  # names the run's shared model (Beam's files in TMPDIR start with it)


@dataclass(frozen=True)
class InputSpec:
    """What the user named: a file/folder/glob pattern, or a manifest."""

    pattern: Optional[str] = None
    manifest: Optional[str] = None


def expand_spec(spec: InputSpec) -> Iterator[tuple[str, InputFile]]:
    """InputSpec -> (file identity, InputFile) for every file it names, keyed for grouping."""
    files = read_manifest(spec.manifest) if spec.manifest else (InputFile(uri) for uri in expand_input(spec.pattern))
    for file in files:
        yield file_identity(file.uri), file


def errors_apart(value) -> Iterator:
    """ErrorRecords to the errors output, anything else to the main output."""
    yield beam.pvalue.TaggedOutput(ERRORS, value) if isinstance(value, ErrorRecord) else value


def _failed_batch_to_errors(failure) -> list[dict]:
    """RunInference's dead letter (batch, (exception type, repr, traceback lines)) -> a row per track.
    The handler itself turns a model failure into one error per failing track; this catches what
    fails around it."""
    batch, (exc_type, exc_repr, traceback_lines) = failure
    # The last traceback line is "module.Type: message"; the repr loses TensorFlow's messages.
    detail = traceback_lines[-1].strip().split(": ", 1)[-1] if traceback_lines else exc_repr
    error = TaggingError("InferenceFailed", f"{exc_type.__name__}: {detail}")
    return [ErrorRecord.of(InputFile(t.uri, t.track_id), error).row() for t in batch]


class TagCatalogue(beam.PTransform):
    """PCollection of InputSpec -> {"tracks", "patches", "errors"}: PCollections of row dicts."""

    def __init__(self, settings: TagSettings):
        super().__init__()
        self.settings = settings

    def expand(self, specs):
        s = self.settings
        recipe = s.model.recipe
        files = (specs
                 | "Expand" >> beam.FlatMap(expand_spec)
                 | "GroupNames" >> beam.GroupByKey()
                 | "OneInputPerFile" >> beam.MapTuple(lambda _, names: merge_names(names))
                 | "FileOrError" >> beam.FlatMap(errors_apart).with_outputs(ERRORS, main="files"))
        extract = ExtractFeatures(recipe, max_duration_s=s.max_duration_s, decode_timeout_s=s.decode_timeout_s)
        # Typed, so that Beam encodes (and sizes) tracks with TrackFeaturesCoder.
        extracted = files.files | "Extract" >> (beam.ParDo(extract).with_output_types(TrackFeatures)
                                                .with_outputs(ERRORS, main="features"))
        handler = TaggerModelHandler(s.model, patch_hop=s.patch_hop, batch_size=s.batch_size, precision=s.precision,
                                     model_copies=s.model_copies)
        infer = RunInference(handler, model_identifier=s.run_tag).with_exception_handling()
        if s.inference_accelerator:
            infer = infer.with_resource_hints(accelerator=s.inference_accelerator)
        results, failed = extracted.features | "Infer" >> infer
        predicted = results | "PredictionOrError" >> beam.FlatMap(errors_apart).with_outputs(ERRORS, main="tracks")
        tracks = predicted.tracks | "Tracks" >> beam.Map(track_row, s.model)
        patches = predicted.tracks | "Patches" >> beam.FlatMap(patch_rows, recipe)
        file_errors = ((files[ERRORS], extracted[ERRORS], predicted[ERRORS])
                       | "FileErrors" >> beam.Flatten()
                       | "ErrorRows" >> beam.Map(ErrorRecord.row))
        batch_errors = failed.failed_inferences | "BatchErrors" >> beam.FlatMap(_failed_batch_to_errors)
        errors = (file_errors, batch_errors) | "AllErrors" >> beam.Flatten()
        return {"tracks": tracks, "patches": patches, "errors": errors}


class WriteOutputs(beam.PTransform):
    def __init__(self, output: str):
        super().__init__()
        self.output = output

    def expand(self, tables):
        return {name: rows | WriteTable(self.output, name) for name, rows in tables.items()}
