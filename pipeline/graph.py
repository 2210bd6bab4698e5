"""The Beam graph: inputs and the store's state -> the run's rows in the store's tables, committed once.

    patterns / manifests -> listing (each file's version from it) -+
    the store's `current` rows for this model ---------------------+-> join per file (a shuffle: it
      also spreads the files over workers) -> skip / tag / removed -> read + decode + resample
      (decoder processes) + mel (CPU) -> RunInference, batches spanning tracks (CPU or GPU) ->
      per-track assembly -> Parquet files in the table folders -> one finalising step commits them
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Tuple

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from musicnn_beam.models.registry import ModelSpec
from musicnn_beam.store import tables as store
from musicnn_beam.transforms.decoders import DEFAULT_STALL_TIMEOUT_S
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.extract import ERRORS, ExtractFeatures
from musicnn_beam.store.plan import (Removed, RunFacts, Skipped, current_row_of_error, current_row_of_track, decide,
                                    settings_key)
from musicnn_beam.transforms.inference import ModelLoadFailed, TaggerModelHandler, patch_rows, track_row
from musicnn_beam.transforms.records import ErrorRecord, InputFile, TrackFeatures
from musicnn_beam.transforms.sinks import WriteBundleFiles
from musicnn_beam.transforms.sources import expand_input, file_identity, read_manifest, with_version
from musicnn_beam.transforms.tally import NAMESPACE as METRICS, RunTally, counter

SKIPPED, CURRENT = "skipped", "current"


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

    @property
    def key(self) -> str:
        return settings_key(self.patch_hop, self.precision)


@dataclass(frozen=True)
class StoreRun:
    """The run as the store records it: where, which snapshot of `current` its decision reads, and
    the facts of its runs row that the launcher knows."""

    output: str
    facts: RunFacts
    state_version: Optional[int]  # None: no store yet (a dry run on a new output)
    state_files: tuple[str, ...]
    row: dict = field(default_factory=dict)  # runs-row fields known at launch (started, runner, ...)
    tally: RunTally = RunTally()  # how its workers count what they have done (metrics, progress line)


@dataclass(frozen=True)
class InputSpec:
    """What the user named: a file/folder/glob pattern, or a manifest."""

    pattern: Optional[str] = None
    manifest: Optional[str] = None


def expand_spec(spec: InputSpec) -> Iterator[tuple[str, InputFile]]:
    """InputSpec -> (file identity, InputFile) for every file it names, keyed for the join."""
    files = read_manifest(spec.manifest) if spec.manifest else expand_input(spec.pattern)
    for file in files:
        yield file_identity(file.uri), file


def errors_apart(value) -> Iterator:
    """ErrorRecords to the errors output, anything else to the main output."""
    yield beam.pvalue.TaggedOutput(ERRORS, value) if isinstance(value, ErrorRecord) else value


def decision_apart(value, tally: RunTally) -> Iterator:
    """decide()'s outcomes, each to its output: inputs to tag (main), errors, skipped, current rows;
    each counted in a Beam metric (`plan: new`, `plan: skipped`, ...) and listed inputs in the tally."""
    if isinstance(value, Removed):
        counter("plan: removed").inc()
        yield beam.pvalue.TaggedOutput(CURRENT, value.row)
        return
    tally.listed(skipped=isinstance(value, Skipped))
    if isinstance(value, ErrorRecord):
        counter(f"plan: {value.error}").inc()
        yield beam.pvalue.TaggedOutput(ERRORS, value)
    elif isinstance(value, Skipped):
        counter("plan: skipped").inc()
        yield beam.pvalue.TaggedOutput(SKIPPED, value)
    else:
        counter(f"plan: {value.reason}").inc()
        _count_what_to_read(value.file)
        yield value.file


def _count_what_to_read(file: InputFile) -> None:
    """What a dry run can say of the files to tag before opening them: their bytes (from the
    listing) and audio (where a manifest gives durations)."""
    if file.size is not None:
        counter("to tag: bytes").inc(file.size)
        counter("to tag: files with a size").inc()
    if file.duration_s is not None:
        counter("to tag: audio ms").inc(round(file.duration_s * 1000))
        counter("to tag: files with a duration").inc()


class PlanRun(beam.PTransform):
    """PCollection of InputSpec -> what the run does with each listed file, as decision_apart's
    outputs: "files" (to tag), "errors", "skipped", "current" (removed rows). The listing is joined
    with the store's `current` rows for this model (transforms.incremental.decide)."""

    def __init__(self, run: StoreRun):
        super().__init__()
        self.run = run

    def expand(self, specs):
        facts = self.run.facts
        # Both sides of the join typed alike: keys encoded by different coders never meet (Beam infers
        # (str, Any) for one side and Any for the other, and the join then lost files at 100,000 inputs).
        listed = specs | "List" >> beam.FlatMap(expand_spec).with_output_types(Tuple[str, Any])
        state = (specs.pipeline
                 | "StateFiles" >> beam.Create(list(self.run.state_files))
                 | "ReadState" >> beam.FlatMap(store.read_state, facts.model)
                 | "KeyState" >> beam.Map(lambda row: (file_identity(row["uri"]), row)).with_output_types(Tuple[str, Any]))
        joined = {"names": listed, "state": state} | "JoinState" >> beam.CoGroupByKey()
        decided = (joined
                   | "Decide" >> beam.FlatMap(decide_file, facts)
                   | "DecisionApart" >> beam.FlatMap(decision_apart, self.run.tally)
                                              .with_outputs(ERRORS, SKIPPED, CURRENT, main="files"))
        listed_files = joined | "ListedFiles" >> beam.Filter(lambda kv: bool(kv[1]["names"]))
        return {"files": decided.files, "errors": decided[ERRORS], "skipped": decided[SKIPPED],
                "current": decided[CURRENT], "listed": listed_files}


def decide_file(keyed: tuple[str, dict], run: RunFacts) -> Iterator:
    """The join's group for one file -> decide(). A file only a version-less manifest names gets its
    version from the storage here, after the shuffle: the requests are spread over the workers."""
    _, group = keyed
    names = list(group["names"])
    if names and all(n.version is None for n in names):
        names[0] = with_version(names[0])
    return decide(names, group["state"], run)


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
    tally.failed(error.error)
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
        # Typed, so that Beam encodes (and sizes) tracks with TrackFeaturesCoder.
        # The files to tag are spread afresh: the join's groups (one per listed file, most of them
        # skipped) are done with before decoding starts, and a night's few new files do not stay on
        # the workers that happened to join them.
        to_tag = plan["files"] | "Spread" >> beam.Reshuffle()
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
                    plan["current"])
                   | "AllCurrent" >> beam.Flatten())
        return {"tracks": tracks, "patches": patches, "errors": errors, "current": current,
                "listed": plan["listed"], "skipped": plan["skipped"], "removed": plan["current"]}


class CommitRun(beam.PTransform):
    """The run's rows -> Parquet files in the store's folders -> one commit (transforms.store.commit_run).
    Emits the runs row."""

    def __init__(self, run: StoreRun):
        super().__init__()
        self.run = run

    def expand(self, outputs):
        output, run_id = self.run.output, self.run.facts.run_id
        folders = {name: store.join(output, name) for name in store.HISTORY}
        folders["current"] = store.join(output, store.STAGING, run_id, "current")
        entries = [outputs[name] | f"Write{name.capitalize()}" >> beam.ParDo(
                       WriteBundleFiles(name, folder, store.TABLES[name], run_id))
                   | f"{name.capitalize()}Files" >> beam.Map(lambda written: ("file", written)).with_output_types(RunEntry)
                   for name, folder in folders.items()]
        entries += [outputs[name] | f"Count{name.capitalize()}" >> beam.Map(lambda _, n=name: (n, None)).with_output_types(RunEntry)
                    for name in ("listed", "skipped", "removed")]
        entries += [outputs["tracks"] | "Tagged" >> beam.Map(lambda t: ("tagged", t["duration_s"])).with_output_types(RunEntry),
                    outputs["errors"] | "Failed" >> beam.Map(lambda e: ("failed", e["error"])).with_output_types(RunEntry)]
        # One combine for all the totals, its partial sums taken in the producing stages: a combine per
        # count was ~60 more transforms and 10 more stages, 0.2 s of every run's fixed cost. Every
        # branch is typed RunEntry, so that the Flatten reads all of them with one coder (at 100,000
        # inputs, a Flatten of branches with different coders read one's bytes with another's coder).
        totals = tuple(entries) | "AllEntries" >> beam.Flatten() | "Totals" >> beam.CombineGlobally(RunTotals())
        return totals | "Commit" >> beam.Map(_commit, self.run)


RunEntry = Tuple[str, Any]  # (what, value): what CommitRun's branches tell RunTotals


class RunTotals(beam.CombineFn):
    """RunEntry elements -> what the commit needs: {"files": [written file], "listed", "skipped",
    "removed", "tagged": counts, "audio_s": tagged audio, "failed_by_kind": {error kind: count}}.
    Entries: ("file", a file WriteBundleFiles wrote), ("listed" | "skipped" | "removed", None),
    ("tagged", the track's audio seconds), ("failed", the error's kind)."""

    def create_accumulator(self) -> dict:
        return {"files": [], "listed": 0, "skipped": 0, "removed": 0, "tagged": 0, "audio_s": 0.0, "failed_by_kind": {}}

    def add_input(self, totals: dict, entry: tuple) -> dict:
        what, value = entry
        if what == "file":
            totals["files"].append(value)
        elif what == "failed":
            totals["failed_by_kind"][value] = totals["failed_by_kind"].get(value, 0) + 1
        else:
            totals[what] += 1
            if what == "tagged":
                totals["audio_s"] += value
        return totals

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for totals in accumulators:
            merged["files"] += totals["files"]
            for kind, count in totals["failed_by_kind"].items():
                merged["failed_by_kind"][kind] = merged["failed_by_kind"].get(kind, 0) + count
            for key in ("listed", "skipped", "removed", "tagged", "audio_s"):
                merged[key] += totals[key]
        return merged

    def extract_output(self, totals: dict) -> dict:
        return totals


def _commit(totals: dict, run: StoreRun) -> dict:
    finished = time.time()
    failed = totals["failed_by_kind"]
    row = {**run.row, "run_id": run.facts.run_id, "status": "finished", "model": run.facts.model,
           "fingerprint": run.facts.fingerprint, "settings": run.facts.settings,
           "finished": finished, "wall_s": finished - run.row["started"], "listed": totals["listed"],
           "skipped": totals["skipped"], "tagged": totals["tagged"], "failed": sum(failed.values()),
           "failed_by_kind": failed, "removed": totals["removed"], "audio_s": float(totals["audio_s"])}
    return store.commit_run(run.output, run.state_version, row, totals["files"])
