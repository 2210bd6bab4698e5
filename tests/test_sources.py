"""Inputs: folders, globs and manifests, and each file's version from its listing."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicnn_beam.transforms.records import ErrorRecord, InputFile
from musicnn_beam.transforms.sources import (ManifestError, NoMatch, check_input, expand_input, file_identity, merge_names,
                                normalise_uri, read_manifest, read_manifest_columns, version_of, with_version)

pytestmark = pytest.mark.unit


def uris(pattern: str) -> list[str]:
    return [f.uri for f in expand_input(pattern)]


@pytest.fixture
def tree(tmp_path):
    for name in ["a.mp3", "sub/b.FLAC", "sub/deep/c.wav", "sub/cover.jpg", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_is_walked_for_audio_files_only(tree):
    assert [p[len(str(tree)) + 1:] for p in uris(str(tree))] == ["a.mp3", "sub/b.FLAC", "sub/deep/c.wav"]


def test_globs_take_what_they_match(tree):
    assert [p[len(str(tree)) + 1:] for p in uris(f"{tree}/sub/**/*")] == \
        ["sub/b.FLAC", "sub/cover.jpg", "sub/deep/c.wav"]
    assert [p[len(str(tree)) + 1:] for p in uris(f"{tree}/**/*.wav")] == ["sub/deep/c.wav"]


def test_a_named_file_is_taken_whatever_its_name(tree):
    assert uris(str(tree / "notes.txt")) == [str(tree / "notes.txt")]


@pytest.mark.parametrize("pattern", ["missing.mp3", "missing/", "*.ogg", "nowhere/*.mp3"])
def test_a_pattern_that_names_nothing_fails_the_listing_and_the_launch_check_lists_nothing(tree, pattern):
    with pytest.raises(NoMatch, match="no file matches"):
        list(expand_input(str(tree / pattern)))
    if pattern.startswith("*"):
        check_input(str(tree / pattern))  # the folder exists: only the run's listing can tell
    else:
        with pytest.raises(NoMatch, match="no file matches"):
            check_input(str(tree / pattern))


def test_the_listing_gives_each_file_its_version(tree):
    (a,) = [f for f in expand_input(str(tree)) if f.uri.endswith("a.mp3")]
    stat = (tree / "a.mp3").stat()
    assert a.version == f"size=1;mtime_us={round(stat.st_mtime * 1e6)}" and a.size == 1
    assert with_version(InputFile(a.uri)) == a  # a manifest's file without one gets the same from the storage
    (tree / "a.mp3").write_bytes(b"xy")
    assert [f.version for f in expand_input(str(tree / "a.mp3"))] != [a.version]


def test_manifest_formats(tmp_path):
    (tmp_path / "m.txt").write_text("# catalogue\ns3://b/one.mp3\n\n/local/two.flac\n   \n")
    assert list(read_manifest(str(tmp_path / "m.txt"))) == [InputFile("s3://b/one.mp3"), InputFile("/local/two.flac")]

    (tmp_path / "m.csv").write_text("track_id,uri,artist\nT1,gs://b/one.mp3,x\n,/two.flac,y\n")
    assert list(read_manifest(str(tmp_path / "m.csv"))) == [InputFile("gs://b/one.mp3", "T1"), InputFile("/two.flac")]

    pq.write_table(pa.table({"uri": ["/a.mp3", "/b.mp3"], "track_id": [7, None], "version": ["e1", None]}),
                   tmp_path / "m.parquet")
    assert list(read_manifest(str(tmp_path / "m.parquet"))) == [InputFile("/a.mp3", "7", "e1"), InputFile("/b.mp3")]
    assert read_manifest_columns(str(tmp_path / "m.parquet")) == ["uri", "track_id", "version"]


def test_a_manifest_may_give_durations(tmp_path):
    (tmp_path / "m.csv").write_text("uri,duration_s\n/a.mp3,241.5\n/b.mp3,\n")
    assert list(read_manifest(str(tmp_path / "m.csv"))) == [InputFile("/a.mp3", duration_s=241.5), InputFile("/b.mp3")]
    (tmp_path / "bad.csv").write_text("uri,duration_s\n/a.mp3,four minutes\n")
    with pytest.raises(ManifestError, match="'four minutes' is not a number"):
        list(read_manifest(str(tmp_path / "bad.csv")))


def test_manifest_without_uri_column_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("path,track_id\n/a.mp3,1\n")
    with pytest.raises(ManifestError, match="no `uri` column"):
        list(read_manifest(str(tmp_path / "m.csv")))
    with pytest.raises(ManifestError, match="no `uri` column"):
        read_manifest_columns(str(tmp_path / "m.csv"))


def test_a_manifest_that_lists_nothing_fails_the_listing(tmp_path):
    (tmp_path / "m.txt").write_text("# nothing yet\n")
    with pytest.raises(NoMatch, match="lists no input"):
        list(read_manifest(str(tmp_path / "m.txt")))


@pytest.mark.parametrize("uri,normal", [
    ("/music/a/../a/x.mp3", "/music/a/x.mp3"),
    ("/music//a/./x.mp3", "/music/a/x.mp3"),
    ("file:///music/a/x.mp3", "/music/a/x.mp3"),
    ("  /music/x.mp3\n", "/music/x.mp3"),
    ("gcs://bucket/a/x.mp3", "gs://bucket/a/x.mp3"),
    ("gs://bucket/a/x.mp3", "gs://bucket/a/x.mp3"),
    ("s3a://bucket/a/x.mp3", "s3://bucket/a/x.mp3"),
    ("s3://bucket/a/../x.mp3", "s3://bucket/a/../x.mp3"),  # in a bucket, `..` is part of the key
])
def test_uris_are_written_one_way(uri, normal):
    assert normalise_uri(uri) == normal


def test_relative_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalise_uri("sub/../x.mp3") == f"{tmp_path}/x.mp3"


def test_a_folder_scan_and_a_dotted_path_give_the_same_uri(tree):
    assert uris(f"{tree}/sub/../sub/deep") == [f"{tree}/sub/deep/c.wav"]


def test_a_symlink_and_its_target_are_one_file(tree):
    (tree / "alias.mp3").symlink_to(tree / "a.mp3")
    assert file_identity(str(tree / "alias.mp3")) == file_identity(str(tree / "a.mp3")) == str(tree / "a.mp3")
    assert file_identity("s3://b/a.mp3") == "s3://b/a.mp3"


def test_names_of_one_file_merge_into_one_input():
    assert merge_names([InputFile("/m/b.mp3"), InputFile("/m/a.mp3")]) == InputFile("/m/a.mp3")
    assert merge_names([InputFile("/m/a.mp3"), InputFile("/m/a.mp3", "T1"), InputFile("/m/b.mp3", "T1")]) == \
        InputFile("/m/a.mp3", "T1")


def test_different_track_ids_for_one_file_are_an_error():
    merged = merge_names([InputFile("/m/a.mp3", "T2"), InputFile("/m/a.mp3", "T1"), InputFile("/m/a.mp3")])
    assert isinstance(merged, ErrorRecord)
    assert merged.row() == {"uri": "/m/a.mp3", "track_id": None, "stage": "input", "error": "ConflictingTrackId",
                            "message": "named with 2 track_ids: 'T1', 'T2'", "version": None}


@pytest.mark.parametrize("info,version", [
    ({"name": "b/a.mp3", "size": 10, "generation": "1700000000000001", "md5Hash": "x"}, "generation=1700000000000001"),
    ({"Key": "b/a.mp3", "size": 10, "ETag": '"9e107d9d372bb6826bd81d3542a419d6"'},
     "etag=9e107d9d372bb6826bd81d3542a419d6;size=10"),
    ({"name": "/a.mp3", "size": 10, "mtime": 1700000000.5}, "size=10;mtime_us=1700000000500000"),
    ({"name": "x", "size": 10}, None),
])
def test_versions_come_from_what_the_listing_holds(info, version):
    assert version_of(info) == version
