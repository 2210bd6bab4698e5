"""The Beam graph: input patterns -> tracks, patches and errors tables.

    patterns -> expand -> distinct (a shuffle: redistributes the files over workers)
      -> read + decode + resample + mel (CPU) -> RunInference, batches spanning tracks (CPU or GPU)
      -> per-track assembly -> Parquet
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from models.registry import ModelSpec
from transforms.extract import ERRORS, ExtractFeatures
from transforms.inference import TaggerModelHandler, patch_rows, track_row
from transforms.records import INFERENCE, ErrorRecord
from transforms.sinks import WriteTable
from transforms.sources import expand_input


@dataclass(frozen=True)
class TagSettings:
    model: ModelSpec
    patch_hop: int
    batch_patches: int = 64


def _failed_batch_to_errors(failure) -> list[dict]:
    """RunInference's dead letter (batch, (exception type, message, traceback)) -> a row per track."""
    batch, (exc_type, message, _) = failure
    return [ErrorRecord(t.uri, INFERENCE, exc_type.__name__, str(message)).__dict__ for t in batch]


class TagCatalogue(beam.PTransform):
    """PCollection of input patterns -> {"tracks", "patches", "errors"}: PCollections of row dicts."""

    def __init__(self, settings: TagSettings):
        super().__init__()
        self.settings = settings

    def expand(self, patterns):
        s = self.settings
        uris = (patterns
                | "Expand" >> beam.FlatMap(expand_input)
                | "Distinct" >> beam.Distinct())
        extracted = uris | "Extract" >> beam.ParDo(ExtractFeatures()).with_outputs(ERRORS, main="features")
        handler = TaggerModelHandler(s.model, patch_hop=s.patch_hop, batch_patches=s.batch_patches)
        predictions, failed = extracted.features | "Infer" >> RunInference(handler).with_exception_handling()
        tracks = predictions | "Tracks" >> beam.Map(track_row, s.model)
        patches = predictions | "Patches" >> beam.FlatMap(patch_rows)
        errors = ((extracted[ERRORS] | "ErrorRows" >> beam.Map(lambda e: e.__dict__),
                   failed.failed_inferences | "InferenceErrors" >> beam.FlatMap(_failed_batch_to_errors))
                  | "AllErrors" >> beam.Flatten())
        return {"tracks": tracks, "patches": patches, "errors": errors}


class WriteOutputs(beam.PTransform):
    def __init__(self, output: str):
        super().__init__()
        self.output = output

    def expand(self, tables):
        return {name: rows | WriteTable(self.output, name) for name, rows in tables.items()}
