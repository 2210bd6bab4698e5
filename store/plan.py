"""The skip decision: which listed inputs a run tags, which it skips and which have left the catalogue.

An input is skipped when the store's latest finished result for it (its `current` row for this
model) was made from the same input version (size + mtime, ETag + size, generation, or a
manifest's `version`) with the same model fingerprint and settings, and is a track or a permanent
error. Everything else is tagged: new and changed files, transient errors (RETRIED kinds), results of
another model version or other settings, files whose version the listing could not give.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from musicnn_beam.transforms.errors import RETRIED
from musicnn_beam.transforms.records import ErrorRecord, InputFile
from musicnn_beam.transforms.sources import merge_names

TRACKED, ERROR, REMOVED = "tracked", "error", "removed"


@dataclass(frozen=True)
class RunFacts:
    """What a run's results are made with: a result made otherwise is not this run's to keep."""

    run_id: str
    model: str
    fingerprint: str
    settings: str
    retag: bool = False


@dataclass(frozen=True)
class Skipped:
    """A listed input whose result the store holds already (counted, never opened)."""

    uri: str


@dataclass(frozen=True)
class Removed:
    """A file that left the listing: its `current` row (the state row, status removed). Its history stays."""

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


def settings_key(patch_hop: int, precision: str) -> str:
    """The settings a result depends on (the store's `settings` column)."""
    return f"patch_hop={patch_hop};precision={precision}"


def parse_settings(key: str) -> dict[str, str]:
    """settings_key's text -> {"patch_hop": "187", "precision": "float32"}."""
    return dict(part.split("=", 1) for part in key.split(";") if "=" in part)


def reason_to_tag(state: Optional[dict], file: InputFile, run: RunFacts) -> Optional[str]:
    """Why the listed file must be tagged (one of REASONS), or None when the state row (this model's
    current row for it) answers for it."""
    checks = (("new", state is None),
              ("returned", state is not None and state["status"] == REMOVED),
              ("retag", run.retag),
              ("unversioned", file.version is None),
              ("changed", state is not None and state["version"] != file.version),
              ("model or settings", state is not None and (state["fingerprint"] != run.fingerprint
                                                           or state["settings"] != run.settings)),
              ("retried", state is not None and state["error"] in RETRIED))
    return next((why for why, applies in checks if applies), None)


def decide(names: Iterable[InputFile], states: Iterable[dict], run: RunFacts
           ) -> Iterator[ToTag | ErrorRecord | Skipped | Removed]:
    """One file (all the names the listing gave it, its state rows for this model) -> what to do.

    names empty: the file left the listing; its current row becomes `removed` (once). states empty:
    a new file.
    """
    names, states = list(names), sorted(states, key=lambda r: r["run_id"] or "")
    state = states[-1] if states else None
    if not names:
        if state is not None and state["status"] != REMOVED:
            yield Removed({**state, "status": REMOVED, "run_id": run.run_id})
        return
    file = merge_names(names)
    if isinstance(file, ErrorRecord):
        yield file
        return
    why = reason_to_tag(state, file, run)
    yield Skipped(file.uri) if why is None else ToTag(file, why)


def is_tagged(file: InputFile, states: Iterable[dict], run: RunFacts) -> bool:
    """Whether the run tags a listed file that has only this name (what decide() says of it)."""
    return any(isinstance(outcome, ToTag) for outcome in decide([file], states, run))


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


def version_of(info: dict) -> Optional[str]:
    """An fsspec listing entry -> the object's version, from what the listing holds (no request):
    a GCS generation, an S3 ETag with the size, a local size with the mtime in microseconds."""
    if info.get("generation") is not None:
        return f"generation={info['generation']}"
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag={str(etag).strip(chr(34))};size={info.get('size')}"
    if info.get("mtime") is not None:
        return f"size={info.get('size')};mtime_us={round(float(info['mtime']) * 1e6)}"
    return None
