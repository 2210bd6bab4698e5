"""The Beam graph: inputs -> tracks, patches and errors tables.

    patterns / manifests -> expand -> group the names of each file into one input (a shuffle: it
      also spreads the files over workers) -> read + decode + resample + mel (CPU) -> RunInference, batches spanning tracks (CPU or GPU)
      -> per-track assembly -> Parquet
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from models.registry import ModelSpec
from transforms.errors import TaggingError
from transforms.extract import ERRORS, ExtractFeatures
from transforms.inference import TaggerModelHandler, patch_rows, track_row
from transforms.records import INFERENCE, ErrorRecord, InputFile
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


def one_input_per_file(names_of_one_file: tuple[str, Iterable[InputFile]]) -> Iterator:
    """The grouped names of one file -> its InputFile, or an ErrorRecord on the errors output."""
    merged = merge_names(names_of_one_file[1])
    yield beam.pvalue.TaggedOutput(ERRORS, merged) if isinstance(merged, ErrorRecord) else merged


def _failed_batch_to_errors(failure) -> list[dict]:
    """RunInference's dead letter (batch, (exception type, repr, traceback lines)) -> a row per track."""
    batch, (exc_type, exc_repr, traceback_lines) = failure
    # The last traceback line is "module.Type: message"; the repr loses TensorFlow's messages.
    detail = traceback_lines[-1].strip().split(": ", 1)[-1] if traceback_lines else exc_repr
    error = TaggingError("InferenceFailed", f"{exc_type.__name__}: {detail}")
    return [ErrorRecord.from_exception(InputFile(t.uri, t.track_id), INFERENCE, error).row() for t in batch]


class TagCatalogue(beam.PTransform):
    """PCollection of InputSpec -> {"tracks", "patches", "errors"}: PCollections of row dicts."""

    def __init__(self, settings: TagSettings):
        super().__init__()
        self.settings = settings

    def expand(self, specs):
        s = self.settings
        inputs = (specs
                  | "Expand" >> beam.FlatMap(expand_spec)
                  | "GroupNames" >> beam.GroupByKey()
                  | "OneInputPerFile" >> beam.FlatMap(one_input_per_file).with_outputs(ERRORS, main="files"))
        recipe = s.model.recipe
        extracted = inputs.files | "Extract" >> beam.ParDo(ExtractFeatures(recipe)).with_outputs(ERRORS, main="features")
        handler = TaggerModelHandler(s.model, patch_hop=s.patch_hop, batch_size=s.batch_size, precision=s.precision,
                                     model_copies=s.model_copies)
        infer = RunInference(handler).with_exception_handling()
        if s.inference_accelerator:
            infer = infer.with_resource_hints(accelerator=s.inference_accelerator)
        predictions, failed = extracted.features | "Infer" >> infer
        tracks = predictions | "Tracks" >> beam.Map(track_row, s.model)
        patches = predictions | "Patches" >> beam.FlatMap(patch_rows, recipe)
        errors = ((inputs[ERRORS] | "InputErrorRows" >> beam.Map(ErrorRecord.row),
                   extracted[ERRORS] | "ErrorRows" >> beam.Map(ErrorRecord.row),
                   failed.failed_inferences | "InferenceErrors" >> beam.FlatMap(_failed_batch_to_errors))
                  | "AllErrors" >> beam.Flatten())
        return {"tracks": tracks, "patches": patches, "errors": errors}


class WriteOutputs(beam.PTransform):
    def __init__(self, output: str):
        super().__init__()
        self.output = output

    def expand(self, tables):
        return {name: rows | WriteTable(self.output, name) for name, rows in tables.items()}
