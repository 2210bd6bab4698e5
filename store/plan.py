"""The plan: which listed inputs a run tags, which it skips and which have left the catalogue.

An input is skipped when the store's latest finished result for it (its `current` row for this
model) was made from the same input version (size + mtime, ETag + size, generation, or a
manifest's `version`) with the same model fingerprint and settings, and is a track or a permanent
error. Everything else is tagged: new and changed files, transient errors (RETRIED kinds), results of
another model version or other settings, files whose version the listing could not give.

PlanRun is the plan in the pipeline: the listing joined with `current` (a shuffle, which also spreads
the files over the workers), then plan_file for each file.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Tuple

import apache_beam as beam

from musicnn_beam.store.read import read_current
from musicnn_beam.transforms.errors import RETRIED
from musicnn_beam.transforms.records import ErrorRecord, InputFile
from musicnn_beam.transforms.sources import expand_spec, file_identity, merge_names, with_version
from musicnn_beam.transforms.tally import RunTally, counter

TRACKED, ERROR, REMOVED = "tracked", "error", "removed"


@dataclass(frozen=True)
class RunFacts:
    """What a run's results are made with: a result made otherwise is not this run's to keep."""

    run_id: str
    model: str
    fingerprint: str
    settings: str
    retag: bool = False


def new_run_id() -> str:
    """Sortable by start time: 20261130T131500Z-1a2b3c."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class StoreRun:
    """The run as the store records it: where, which snapshot of `current` its plan reads, and the
    facts of its runs row that the launcher knows."""

    output: str
    facts: RunFacts
    current_version: Optional[int]  # None: no store yet (a dry run on a new output)
    current_files: tuple[str, ...]
    row: dict = field(default_factory=dict)  # runs-row fields known at launch (started, runner, ...)
    tally: RunTally = RunTally()  # how its workers count what they have done (metrics, progress line)


@dataclass(frozen=True)
class Skipped:
    """A listed input whose result the store holds already (counted, never opened)."""

    uri: str


@dataclass(frozen=True)
class Removed:
    """A file that left the listing: its `current` row, status removed. Its history stays."""

    row: dict


@dataclass(frozen=True)
class ToTag:
    """A listed input this run tags, and why (one of REASONS)."""

    file: InputFile
    reason: str


# Why a listed file is tagged, in the order the checks are made: no result yet; its last result was
# `removed` (it came back); --retag; the listing gave no version; its content changed; another
# model fingerprint or other settings made the result; the result is an error the next run retries.
REASONS = ("new", "returned", "retag", "unversioned", "changed", "model or settings", "retried")


def reason_to_tag(current: Optional[dict], file: InputFile, run: RunFacts) -> Optional[str]:
    """Why the listed file must be tagged (one of REASONS), or None when its `current` row for this
    model answers for it."""
    checks = (("new", current is None),
              ("returned", current is not None and current["status"] == REMOVED),
              ("retag", run.retag),
              ("unversioned", file.version is None),
              ("changed", current is not None and current["version"] != file.version),
              ("model or settings", current is not None and (current["fingerprint"] != run.fingerprint
                                                             or current["settings"] != run.settings)),
              ("retried", current is not None and current["error"] in RETRIED))
    return next((why for why, applies in checks if applies), None)


def plan_file(names: Iterable[InputFile], current_rows: Iterable[dict], run: RunFacts
              ) -> Iterator[ToTag | ErrorRecord | Skipped | Removed]:
    """One file (all the names the listing gave it, its `current` rows for this model) -> what to do.

    names empty: the file left the listing; its current row becomes `removed` (once). current_rows
    empty: a new file.
    """
    names, current_rows = list(names), sorted(current_rows, key=lambda r: r["run_id"] or "")
    current = current_rows[-1] if current_rows else None
    if not names:
        if current is not None and current["status"] != REMOVED:
            yield Removed({**current, "status": REMOVED, "run_id": run.run_id})
        return
    file = merge_names(names)
    if isinstance(file, ErrorRecord):
        yield file
        return
    why = reason_to_tag(current, file, run)
    yield Skipped(file.uri) if why is None else ToTag(file, why)


def will_tag(file: InputFile, current_rows: Iterable[dict], run: RunFacts) -> bool:
    """Whether the run tags a listed file that has only this name (what plan_file says of it)."""
    return any(isinstance(outcome, ToTag) for outcome in plan_file([file], current_rows, run))


def current_row_of_track(track: dict, run: RunFacts) -> dict:
    """A tracks row (inference.track_row) -> its `current` row."""
    return {"uri": track["uri"], "model": run.model, "status": TRACKED, "track_id": track["track_id"],
            "version": track["version"], "fingerprint": run.fingerprint, "settings": run.settings,
            "run_id": run.run_id, "top_tags": track["top_tags"], "activations": track["activations"],
            "duration_s": track["duration_s"], "error": None, "message": None, "embedding": track["embedding"]}


def current_row_of_error(error: dict, run: RunFacts) -> dict:
    """An errors row (ErrorRecord.row) -> its `current` row."""
    return {"uri": error["uri"], "model": run.model, "status": ERROR, "track_id": error["track_id"],
            "version": error["version"], "fingerprint": run.fingerprint, "settings": run.settings,
            "run_id": run.run_id, "top_tags": None, "activations": None, "duration_s": None,
            "error": error["error"], "message": error["message"], "embedding": None}


class PlanRun(beam.PTransform):
    """PCollection of InputSpec -> what the run does with each listed file: {"files": InputFiles to
    tag, "errors": ErrorRecords, "skipped": Skipped, "removed": the removed files' `current` rows,
    "listed": the join's groups of the listed files}. Each outcome is counted (outcome_apart)."""

    def __init__(self, run: StoreRun):
        super().__init__()
        self.run = run

    def expand(self, specs):
        facts = self.run.facts
        # Both sides of the join typed alike: keys encoded by different coders never meet (Beam infers
        # (str, Any) for one side and Any for the other, and the join then lost files at 100,000 inputs).
        listed = specs | "List" >> beam.FlatMap(expand_spec).with_output_types(Tuple[str, Any])
        current = (specs.pipeline
                   | "CurrentFiles" >> beam.Create(list(self.run.current_files))
                   | "ReadCurrent" >> beam.FlatMap(read_current, facts.model)
                   | "KeyCurrent" >> beam.Map(lambda row: (file_identity(row["uri"]), row))
                                         .with_output_types(Tuple[str, Any]))
        joined = {"names": listed, "current": current} | "JoinCurrent" >> beam.CoGroupByKey()
        planned = (joined
                   | "PlanFile" >> beam.FlatMap(plan_group, facts)
                   | "OutcomeApart" >> beam.FlatMap(outcome_apart, self.run.tally)
                                             .with_outputs("errors", "skipped", "removed", main="files"))
        listed_files = joined | "ListedFiles" >> beam.Filter(lambda kv: bool(kv[1]["names"]))
        return {"files": planned.files, "errors": planned.errors, "skipped": planned.skipped,
                "removed": planned.removed, "listed": listed_files}


def plan_group(keyed: tuple[str, dict], run: RunFacts) -> Iterator:
    """The join's group for one file -> plan_file(). A file only a version-less manifest names gets
    its version from the storage here, after the shuffle: the requests are spread over the workers."""
    _, group = keyed
    names = list(group["names"])
    if names and all(n.version is None for n in names):
        names[0] = with_version(names[0])
    return plan_file(names, group["current"], run)


def outcome_apart(outcome, tally: RunTally) -> Iterator:
    """plan_file()'s outcomes, each to its output: inputs to tag (main), errors, skipped, removed
    rows; each counted in a Beam metric (`plan: new`, `plan: skipped`, ...) and listed inputs in the tally."""
    if isinstance(outcome, Removed):
        counter("plan: removed").inc()
        yield beam.pvalue.TaggedOutput("removed", outcome.row)
        return
    tally.listed(skipped=isinstance(outcome, Skipped))
    if isinstance(outcome, ErrorRecord):
        counter(f"plan: {outcome.kind}").inc()
        yield beam.pvalue.TaggedOutput("errors", outcome)
    elif isinstance(outcome, Skipped):
        counter("plan: skipped").inc()
        yield beam.pvalue.TaggedOutput("skipped", outcome)
    else:
        counter(f"plan: {outcome.reason}").inc()
        _count_what_to_read(outcome.file)
        yield outcome.file


def _count_what_to_read(file: InputFile) -> None:
    """What a dry run can say of the files to tag before opening them: their bytes (from the
    listing) and audio (where a manifest gives durations)."""
    if file.size is not None:
        counter("to tag: bytes").inc(file.size)
        counter("to tag: files with a size").inc()
    if file.duration_s is not None:
        counter("to tag: audio ms").inc(round(file.duration_s * 1000))
        counter("to tag: files with a duration").inc()
