"""The skip decision (transforms.incremental): which listed files a run tags, skips or marks removed."""
from __future__ import annotations

import pytest

from musicnn_beam.transforms.errors import KINDS, RETRIED
from musicnn_beam.store.plan import REASONS, Removed, RunFacts, Skipped, ToTag, decide, version_of
from musicnn_beam.transforms.records import ErrorRecord, InputFile

RUN = RunFacts(run_id="R2", model="msd-musicnn", fingerprint="f1", settings="patch_hop=187;precision=float32")


def state(status="tracked", version="v1", fingerprint="f1", settings=RUN.settings, error=None, uri="/a.mp3"):
    return {"uri": uri, "model": "msd-musicnn", "status": status, "track_id": None, "version": version,
            "fingerprint": fingerprint, "settings": settings, "run_id": "R1", "error": error, "message": None}


def one(names, states, run=RUN):
    (outcome,) = decide(names, states, run)
    return outcome


A = InputFile("/a.mp3", None, "v1")


def test_a_new_file_is_tagged():
    assert one([A], []) == ToTag(A, "new")


def test_an_unchanged_tagged_file_is_skipped_unopened():
    assert one([A], [state()]) == Skipped("/a.mp3")


@pytest.mark.parametrize("change, why", [({"version": "v2"}, "changed"), ({"fingerprint": "f2"}, "model or settings"),
                                         ({"settings": "patch_hop=93;precision=float32"}, "model or settings")])
def test_a_changed_file_model_or_setting_is_tagged_again(change, why):
    assert one([A], [state(**change)]) == ToTag(A, why)


def test_retag_tags_everything():
    assert one([A], [state()], RunFacts(**{**RUN.__dict__, "retag": True})) == ToTag(A, "retag")


def test_a_file_without_a_version_is_always_tagged():
    unknown = InputFile("/a.mp3", None, None)
    assert one([unknown], [state(version=None)]) == ToTag(unknown, "unversioned")


def test_every_reason_is_named():
    assert set(REASONS) == {"new", "returned", "retag", "unversioned", "changed", "model or settings", "retried"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_transient_errors_are_tried_again_permanent_ones_wait_for_a_change(kind):
    outcome = one([A], [state(status="error", error=kind)])
    assert outcome == (ToTag(A, "retried") if kind in RETRIED else Skipped("/a.mp3"))


def test_transient_kinds_are_the_read_inference_and_naming_ones():
    assert RETRIED == {"ConflictingTrackId", "NotFound", "PermissionDenied", "ReadFailed", "Timeout", "InferenceFailed"}
    assert RETRIED <= set(KINDS)


def test_a_file_that_left_the_listing_is_removed_once():
    removed = one([], [state()])
    assert isinstance(removed, Removed)
    assert removed.row["status"] == "removed" and removed.row["run_id"] == "R2" and removed.row["version"] == "v1"
    assert list(decide([], [{**state(), "status": "removed"}], RUN)) == []
    assert list(decide([], [], RUN)) == []


def test_a_removed_file_that_comes_back_is_tagged_again():
    assert one([A], [state(status="removed")]) == ToTag(A, "returned")


def test_names_of_one_file_merge_before_the_decision():
    listed, from_manifest = InputFile("/a.mp3", None, "v1"), InputFile("/a.mp3", "T1")
    assert one([from_manifest, listed], []) == ToTag(InputFile("/a.mp3", "T1", "v1"), "new")
    conflict = one([InputFile("/a.mp3", "T1", "v1"), InputFile("/a.mp3", "T2")], [state()])
    assert isinstance(conflict, ErrorRecord) and conflict.error == "ConflictingTrackId" and conflict.version == "v1"


def test_the_latest_state_row_decides():
    older, newer = {**state(version="v0"), "run_id": "R0"}, state()
    assert one([A], [newer, older]) == Skipped("/a.mp3")


@pytest.mark.parametrize("info,version", [
    ({"name": "b/a.mp3", "size": 10, "generation": "1700000000000001", "md5Hash": "x"}, "generation=1700000000000001"),
    ({"Key": "b/a.mp3", "size": 10, "ETag": '"9e107d9d372bb6826bd81d3542a419d6"'},
     "etag=9e107d9d372bb6826bd81d3542a419d6;size=10"),
    ({"name": "/a.mp3", "size": 10, "mtime": 1700000000.5}, "size=10;mtime_us=1700000000500000"),
    ({"name": "x", "size": 10}, None),
])
def test_versions_come_from_what_the_listing_holds(info, version):
    assert version_of(info) == version
