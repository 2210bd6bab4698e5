"""The plan (store.plan): which listed files a run tags, skips or marks removed."""
from __future__ import annotations

import pytest

from musicnn_beam.transforms.errors import KINDS, RETRIED
from musicnn_beam.store.plan import REASONS, Removed, RunFacts, Skipped, ToTag, plan_file
from musicnn_beam.transforms.records import ErrorRecord, InputFile

pytestmark = pytest.mark.unit

RUN = RunFacts(run_id="R2", model="msd-musicnn", fingerprint="f1", settings="patch_hop=187;precision=float32")


def current_row(status="tracked", version="v1", fingerprint="f1", settings=RUN.settings, error=None, uri="/a.mp3"):
    return {"uri": uri, "model": "msd-musicnn", "status": status, "track_id": None, "version": version,
            "fingerprint": fingerprint, "settings": settings, "run_id": "R1", "error": error, "message": None}


def one(names, rows, run=RUN):
    (outcome,) = plan_file(names, rows, run)
    return outcome


A = InputFile("/a.mp3", None, "v1")


def test_a_new_file_is_tagged():
    assert one([A], []) == ToTag(A, "new")


def test_an_unchanged_tagged_file_is_skipped_unopened():
    assert one([A], [current_row()]) == Skipped("/a.mp3")


@pytest.mark.parametrize("change, why", [({"version": "v2"}, "changed"), ({"fingerprint": "f2"}, "model or settings"),
                                         ({"settings": "patch_hop=93;precision=float32"}, "model or settings")])
def test_a_changed_file_model_or_setting_is_tagged_again(change, why):
    assert one([A], [current_row(**change)]) == ToTag(A, why)


def test_retag_tags_everything():
    assert one([A], [current_row()], RunFacts(**{**RUN.__dict__, "retag": True})) == ToTag(A, "retag")


def test_a_file_without_a_version_is_always_tagged():
    unknown = InputFile("/a.mp3", None, None)
    assert one([unknown], [current_row(version=None)]) == ToTag(unknown, "unversioned")


def test_every_reason_is_named():
    assert set(REASONS) == {"new", "returned", "retag", "unversioned", "changed", "model or settings", "retried"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_transient_errors_are_tried_again_permanent_ones_wait_for_a_change(kind):
    outcome = one([A], [current_row(status="error", error=kind)])
    assert outcome == (ToTag(A, "retried") if kind in RETRIED else Skipped("/a.mp3"))


def test_transient_kinds_are_the_read_inference_and_naming_ones():
    assert RETRIED == {"ConflictingTrackId", "NotFound", "PermissionDenied", "ReadFailed", "Timeout", "InferenceFailed"}
    assert RETRIED <= set(KINDS)


def test_a_file_that_left_the_listing_is_removed_once():
    removed = one([], [current_row()])
    assert isinstance(removed, Removed)
    assert removed.row["status"] == "removed" and removed.row["run_id"] == "R2" and removed.row["version"] == "v1"
    assert list(plan_file([], [{**current_row(), "status": "removed"}], RUN)) == []
    assert list(plan_file([], [], RUN)) == []


def test_a_removed_file_that_comes_back_is_tagged_again():
    assert one([A], [current_row(status="removed")]) == ToTag(A, "returned")


def test_names_of_one_file_merge_before_the_plan():
    listed, from_manifest = InputFile("/a.mp3", None, "v1"), InputFile("/a.mp3", "T1")
    assert one([from_manifest, listed], []) == ToTag(InputFile("/a.mp3", "T1", "v1"), "new")
    conflict = one([InputFile("/a.mp3", "T1", "v1"), InputFile("/a.mp3", "T2")], [current_row()])
    assert isinstance(conflict, ErrorRecord) and conflict.kind == "ConflictingTrackId" and conflict.version == "v1"


def test_the_latest_current_row_decides():
    older, newer = {**current_row(version="v0"), "run_id": "R0"}, current_row()
    assert one([A], [newer, older]) == Skipped("/a.mp3")
