"""The Beam graph: inputs -> tracks, patches and errors tables.

    patterns / manifests -> expand -> distinct (a shuffle: spreads the files over workers)
      -> read + decode + resample + mel (CPU) -> RunInference, batches spanning tracks (CPU or GPU)
      -> per-track assembly -> Parquet
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from models.registry import ModelSpec
from transforms.extract import ERRORS, ExtractFeatures
from transforms.inference import TaggerModelHandler, patch_rows, track_row
from transforms.records import INFERENCE, ErrorRecord, InputFile
from transforms.sinks import WriteTable
from transforms.sources import expand_input, read_manifest


@dataclass(frozen=True)
class TagSettings:
    model: ModelSpec
    patch_hop: int
    batch_size: Optional[int] = None  # patches per model call; None: chosen by the device
    precision: str = "float32"
    inference_accelerator: Optional[str] = None  # a Beam resource hint for the inference stage
    model_copies: Optional[int] = None  # models per machine shared by its worker processes; None: one per process


@dataclass(frozen=True)
class Source:
    """What the user named: a file/folder/glob pattern, or a manifest."""

    pattern: Optional[str] = None
    manifest: Optional[str] = None


def expand_source(source: Source) -> Iterator[tuple]:
    """Source -> (uri, track_id) tuples: plain tuples, so that Distinct has a deterministic key."""
    if source.manifest:
        yield from (tuple(f) for f in read_manifest(source.manifest))
    else:
        yield from ((uri, None) for uri in expand_input(source.pattern))


def _failed_batch_to_errors(failure) -> list[dict]:
    """RunInference's dead letter (batch, (exception type, message, traceback)) -> a row per track."""
    batch, (exc_type, message, _) = failure
    return [ErrorRecord(t.uri, INFERENCE, exc_type.__name__, str(message), t.track_id).row() for t in batch]


class TagCatalogue(beam.PTransform):
    """PCollection of Source -> {"tracks", "patches", "errors"}: PCollections of row dicts."""

    def __init__(self, settings: TagSettings):
        super().__init__()
        self.settings = settings

    def expand(self, sources):
        s = self.settings
        inputs = (sources
                  | "Expand" >> beam.FlatMap(expand_source)
                  | "Distinct" >> beam.Distinct()
                  | "AsInputFile" >> beam.MapTuple(InputFile))
        extracted = inputs | "Extract" >> beam.ParDo(ExtractFeatures()).with_outputs(ERRORS, main="features")
        handler = TaggerModelHandler(s.model, patch_hop=s.patch_hop, batch_size=s.batch_size, precision=s.precision,
                                     model_copies=s.model_copies)
        infer = RunInference(handler).with_exception_handling()
        if s.inference_accelerator:
            infer = infer.with_resource_hints(accelerator=s.inference_accelerator)
        predictions, failed = extracted.features | "Infer" >> infer
        tracks = predictions | "Tracks" >> beam.Map(track_row, s.model)
        patches = predictions | "Patches" >> beam.FlatMap(patch_rows)
        errors = ((extracted[ERRORS] | "ErrorRows" >> beam.Map(ErrorRecord.row),
                   failed.failed_inferences | "InferenceErrors" >> beam.FlatMap(_failed_batch_to_errors))
                  | "AllErrors" >> beam.Flatten())
        return {"tracks": tracks, "patches": patches, "errors": errors}


class WriteOutputs(beam.PTransform):
    def __init__(self, output: str):
        super().__init__()
        self.output = output

    def expand(self, tables):
        return {name: rows | WriteTable(self.output, name) for name, rows in tables.items()}
