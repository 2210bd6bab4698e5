"""Inputs: folders, globs and manifests."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.records import ErrorRecord, InputFile
from transforms.sources import (ManifestError, expand_input, file_identity, merge_names, normalise_uri,
                                read_manifest)


@pytest.fixture
def tree(tmp_path):
    for name in ["a.mp3", "sub/b.FLAC", "sub/deep/c.wav", "sub/cover.jpg", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_is_walked_for_audio_files_only(tree):
    assert [p[len(str(tree)) + 1:] for p in expand_input(str(tree))] == ["a.mp3", "sub/b.FLAC", "sub/deep/c.wav"]


def test_globs_take_what_they_match(tree):
    assert [p[len(str(tree)) + 1:] for p in expand_input(f"{tree}/sub/**/*")] == \
        ["sub/b.FLAC", "sub/cover.jpg", "sub/deep/c.wav"]
    assert [p[len(str(tree)) + 1:] for p in expand_input(f"{tree}/**/*.wav")] == ["sub/deep/c.wav"]


def test_a_named_file_is_taken_whatever_its_name(tree):
    assert list(expand_input(str(tree / "notes.txt"))) == [str(tree / "notes.txt")]
    assert list(expand_input(str(tree / "missing.mp3"))) == []


def test_manifest_formats(tmp_path):
    (tmp_path / "m.txt").write_text("# catalogue\ns3://b/one.mp3\n\n/local/two.flac\n   \n")
    assert list(read_manifest(str(tmp_path / "m.txt"))) == [InputFile("s3://b/one.mp3"), InputFile("/local/two.flac")]

    (tmp_path / "m.csv").write_text("track_id,uri,artist\nT1,gs://b/one.mp3,x\n,/two.flac,y\n")
    assert list(read_manifest(str(tmp_path / "m.csv"))) == [InputFile("gs://b/one.mp3", "T1"), InputFile("/two.flac")]

    pq.write_table(pa.table({"uri": ["/a.mp3", "/b.mp3"], "track_id": [7, None]}), tmp_path / "m.parquet")
    assert list(read_manifest(str(tmp_path / "m.parquet"))) == [InputFile("/a.mp3", "7"), InputFile("/b.mp3")]


def test_manifest_without_uri_column_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("path,track_id\n/a.mp3,1\n")
    with pytest.raises(ManifestError, match="no `uri` column"):
        list(read_manifest(str(tmp_path / "m.csv")))


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
    assert list(expand_input(f"{tree}/sub/../sub/deep")) == [f"{tree}/sub/deep/c.wav"]


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
                            "message": "named with 2 track_ids: 'T1', 'T2'"}
