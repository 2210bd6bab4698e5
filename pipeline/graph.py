"""The Beam graph of a run, as the README draws it:

    patterns / manifests -> listing, joined with the store's `current` rows for this model -> the plan
      (tag / skip / removed: store.plan.PlanRun) -> read + decode + resample (decoder processes) + mel
      (CPU: transforms.extract) -> RunInference, batches spanning tracks (CPU or GPU) -> per-track
      assembly -> Parquet files in the table folders -> one finalising step commits them
      (store.commit.CommitRun)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from musicnn_beam.models.registry import ModelSpec
from musicnn_beam.store.plan import PlanRun, RunFacts, StoreRun, current_row_of_error, current_row_of_track
from musicnn_beam.transforms.decoders import DEFAULT_STALL_TIMEOUT_S
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.extract import ERRORS, ExtractFeatures
from musicnn_beam.transforms.inference import ModelLoadFailed, TaggerModelHandler, patch_rows, track_row
from musicnn_beam.transforms.records import ErrorRecord, InputFile, TrackFeatures
from musicnn_beam.transforms.tally import RunTally


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


def errors_apart(value) -> Iterator:
    """ErrorRecords to the errors output, anything else to the main output."""
    yield beam.pvalue.TaggedOutput(ERRORS, value) if isinstance(value, ErrorRecord) else value


def _failed_batch_to_errors(failure) -> list[ErrorRecord]:
    """RunInference's dead letter (batch, (exception type, repr, traceback lines)) -> an error per track.
    The handler itself turns a model failure into one error per failing track; this catches what
    fails around it."""
    batch, (exc_type, exc_repr, traceback_lines) = failure
    # The last traceback line is "module.Type: message"; the repr loses TensorFlow's messages.
    detail = traceback_lines[-1].strip().split(": ", 1)[-1] if traceback_lines else exc_repr
    if issubclass(exc_type, ModelLoadFailed):
        raise ModelLoadFailed(detail)  # no track's fault: the run fails, as when the model fails in set-up
    error = TaggingError("InferenceFailed", f"{exc_type.__name__}: {detail}")
    return [ErrorRecord.of(InputFile(t.uri, t.track_id, t.version), error) for t in batch]


def _with(row: dict, **columns) -> dict:
    return {**row, **columns}


def _tagged_row(prediction, model: ModelSpec, run_id: str, tally: RunTally) -> dict:
    row = _with(track_row(prediction, model), run_id=run_id)
    tally.tagged(row["duration_s"])
    return row


def _error_row(error: ErrorRecord, facts: RunFacts, tally: RunTally) -> dict:
    tally.failed(error.kind)
    return _with(error.row(), model=facts.model, run_id=facts.run_id)


class TagCatalogue(beam.PTransform):
    """PCollection of InputSpec -> {"tracks", "patches", "errors", "current"}: row dicts, and
    {"listed", "skipped", "removed"}: what the runs row counts. Only inputs the store has no result
    for are opened."""

    def __init__(self, settings: TagSettings, run: StoreRun):
        super().__init__()
        self.settings = settings
        self.run = run

    def expand(self, specs):
        s, facts = self.settings, self.run.facts
        recipe = s.model.recipe
        plan = specs | "Plan" >> PlanRun(self.run)
        extract = ExtractFeatures(recipe, max_duration_s=s.max_duration_s, decode_timeout_s=s.decode_timeout_s)
        # The files to tag are spread afresh: the join's groups (one per listed file, most of them
        # skipped) are done with before decoding starts, and a night's few new files do not stay on
        # the workers that happened to join them.
        to_tag = plan["files"] | "Spread" >> beam.Reshuffle()
        # Typed, so that Beam encodes (and sizes) tracks with TrackFeaturesCoder.
        extracted = to_tag | "Extract" >> (beam.ParDo(extract).with_output_types(TrackFeatures)
                                           .with_outputs(ERRORS, main="features"))
        handler = TaggerModelHandler(s.model, patch_hop=s.patch_hop, batch_size=s.batch_size, precision=s.precision,
                                     model_copies=s.model_copies)
        infer = RunInference(handler, model_identifier=s.run_tag).with_exception_handling()
        if s.inference_accelerator:
            infer = infer.with_resource_hints(accelerator=s.inference_accelerator)
        results, failed = extracted.features | "Infer" >> infer
        predicted = results | "PredictionOrError" >> beam.FlatMap(errors_apart).with_outputs(ERRORS, main="tracks")
        tracks = predicted.tracks | "Tracks" >> beam.Map(_tagged_row, s.model, facts.run_id, self.run.tally)
        patches = predicted.tracks | "Patches" >> beam.FlatMap(
            lambda p: (_with(r, model=facts.model, run_id=facts.run_id) for r in patch_rows(p, recipe)))
        batch_errors = failed.failed_inferences | "BatchErrors" >> beam.FlatMap(_failed_batch_to_errors)
        errors = ((plan["errors"], extracted[ERRORS], predicted[ERRORS], batch_errors)
                  | "AllErrors" >> beam.Flatten()
                  | "ErrorRows" >> beam.Map(_error_row, facts, self.run.tally))
        current = ((tracks | "TrackCurrent" >> beam.Map(current_row_of_track, facts),
                    errors | "ErrorCurrent" >> beam.Map(current_row_of_error, facts),
                    plan["removed"])
                   | "AllCurrent" >> beam.Flatten())
        return {"tracks": tracks, "patches": patches, "errors": errors, "current": current,
                "listed": plan["listed"], "skipped": plan["skipped"], "removed": plan["removed"]}
