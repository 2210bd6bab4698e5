"""Catalogue storage: the CLI reads audio from S3 (moto) and GCS (gcp-storage-emulator) servers, started
on 127.0.0.1, keeps its store on S3 (delta-rs cannot use a GCS emulator: README, Output) or local disk,
and gives the same tables as a local run of the same files; a second run on S3 tags only what changed.

Endpoints and credentials come only from the standard environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; STORAGE_EMULATOR_HOST), which the server fixtures set.
"""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest

from musicnn_beam.models.registry import models_dir
from tests.faults import FAULTS, FaultyProxy
from tests.servers import (
    BAD_FILE, S3_ACCESS_KEY, S3_SECRET_KEY, Store, assert_exactly_once, assert_same_schemas, assert_same_tags,
    environment, file_name, read_outputs, read_table, run_cli,
)

pytest_plugins = ["tests.servers"]
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("converted_models")]

MODEL = "msd-musicnn"


@pytest.fixture(scope="module", params=["s3", "gs"])
def store(request) -> Store:
    return request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[request.param])


@pytest.fixture(scope="module")
def bucket_inputs(store, catalogue) -> list[str]:
    """The local catalogue uploaded under BUCKET/in/; returns the URIs of the uploaded files."""
    fs = store.fs()
    for path in sorted(p for p in catalogue.rglob("*") if p.is_file()):
        fs.put_file(str(path), store.url(f"in/{path.relative_to(catalogue).as_posix()}"))
    fs.invalidate_cache()
    uris = sorted(f"{store.protocol}://{p}" for p in fs.find(store.url("in/")))
    assert len(uris) == 4, uris
    return uris


def output_url(store: Store, request, tmp_path) -> str:
    """Where a test's store goes: in the bucket on S3; on local disk for GCS (no emulator serves the
    XML API delta-rs speaks)."""
    name = re.sub(r'[^A-Za-z0-9_.-]+', '-', request.node.name)
    return store.url(f"out/{name}") if store.protocol == "s3" else str(tmp_path / name)


def run_model(output: str) -> str:
    (run,) = read_table(output, "runs").to_pylist()
    return run["model"]


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_bucket_in_bucket_out_equals_local_run(store, bucket_inputs, local_run, form, request, tmp_path):
    source = store.url("in/") if form == "folder" else store.url("in/**")
    output = output_url(store, request, tmp_path)
    assert run_cli(["--input", source, "--output", output]) == 0

    outputs = read_outputs(output)
    assert_exactly_once(outputs, bucket_inputs)
    assert_same_schemas(outputs, local_run)
    assert_same_tags(outputs, local_run)
    assert run_model(output) == MODEL


def test_a_bucket_holding_something_else_is_refused(s3_server, bucket_inputs, request, tmp_path, capsys):
    output = output_url(s3_server, request, tmp_path)
    s3_server.fs().pipe_file(f"{output}/tracks/part-0.parquet", b"someone else's")
    assert run_cli(["--input", bucket_inputs[0], "--output", output]) == 2
    assert "is not a Delta table" in capsys.readouterr().err


def test_a_second_run_on_s3_tags_only_what_changed(s3_server, catalogue, request, tmp_path, capsys):
    """The store on S3, the audio on S3: a first run tags the catalogue; then two files are added, one
    is changed and one deleted; the second run tags exactly those three, marks one removed, and
    `current` and the history say so."""
    fs = s3_server.fs()
    music = s3_server.url("incremental/in")
    for path in sorted(p for p in catalogue.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{music}/{path.relative_to(catalogue).as_posix()}")
    output = output_url(s3_server, request, tmp_path)
    assert run_cli(["--input", f"{music}/", "--output", output]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert "4 listed, 0 skipped, 3 tagged" in first and "1 failed (NotAudio 1)" in first

    fs.put_file(str(catalogue / "a.mp3"), f"{music}/new/a-copy.mp3")  # two new files
    fs.put_file(str(catalogue / "b.flac"), f"{music}/new/b-copy.flac")
    fs.put_file(str(catalogue / "sub" / "c.wav"), f"{music}/b.flac")  # one changed: other content, same name
    fs.rm(f"{music}/a.mp3")  # one deleted
    fs.invalidate_cache()
    assert run_cli(["--input", f"{music}/", "--output", output]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert "5 listed, 2 skipped, 3 tagged" in second and ", 0 failed, 1 removed" in second

    runs = sorted(read_table(output, "runs").to_pylist(), key=lambda r: r["run_id"])
    one, two = runs[0]["run_id"], runs[1]["run_id"]
    current = {r["uri"].removeprefix(f"{music}/"): (r["status"], r["run_id"]) for r in
               read_table(output, "current").to_pylist()}
    with capsys.disabled():  # what `pytest -s` shows of the two runs
        print("", first, second, *(f"current: {uri} {status} {run}" for uri, (status, run) in sorted(current.items())),
              sep="\n")
    assert current == {"a.mp3": ("removed", two), "b.flac": ("tracked", two), "sub/c.wav": ("tracked", one),
                       BAD_FILE: ("error", one), "new/a-copy.mp3": ("tracked", two),
                       "new/b-copy.flac": ("tracked", two)}
    history = sorted((r["uri"].removeprefix(f"{music}/"), r["run_id"] == two) for r in
                     read_table(output, "tracks").to_pylist())
    assert history == [("a.mp3", False), ("b.flac", False), ("b.flac", True), ("new/a-copy.mp3", True),
                       ("new/b-copy.flac", True), ("sub/c.wav", False)]
    tracks = {(r["uri"], r["run_id"]): r for r in read_table(output, "tracks").to_pylist()}
    changed = tracks[(f"{music}/b.flac", two)]
    assert changed["sample_rate"] == 16000 and tracks[(f"{music}/b.flac", one)]["sample_rate"] == 22050


def test_manifest_in_bucket_carries_track_ids(store, bucket_inputs, catalogue, local_run, request, tmp_path):
    """A CSV manifest (uri,track_id) in the bucket naming two bucket files (one broken) and one local file:
    only those are tagged, and track_id is carried into tracks, patches and errors."""
    by_name = {file_name(u): u for u in bucket_inputs}
    local_file = str(catalogue / "sub" / "c.wav")
    ids = {by_name["a.mp3"]: "track-A", by_name[BAD_FILE]: "track-X", local_file: "track-C"}
    manifest = store.url(f"manifests/{request.node.name}.csv")
    store.fs().pipe_file(manifest, ("uri,track_id\n" + "".join(f"{u},{t}\n" for u, t in ids.items())).encode())
    output = output_url(store, request, tmp_path)
    assert run_cli(["--manifest", manifest, "--output", output]) == 0

    outputs = read_outputs(output)
    assert_exactly_once(outputs, list(ids))
    tracks = {r["uri"]: r for r in outputs["tracks"].to_pylist()}
    errors = {r["uri"]: r for r in outputs["errors"].to_pylist()}
    assert set(tracks) == {by_name["a.mp3"], local_file} and set(errors) == {by_name[BAD_FILE]}
    for uri, row in {**tracks, **errors}.items():
        assert row["track_id"] == ids[uri], row
    patches = outputs["patches"].to_pylist()
    assert patches and all(r["track_id"] == ids[r["uri"]] for r in patches)
    for table in outputs.values():
        assert table.schema.field("track_id").type == pa.string()
    # the tags do not depend on where a file was read from or how it was named
    names = {"a.mp3", "c.wav", BAD_FILE}
    reference = {t: _without_track_id(local_run[t].filter(_names_in(local_run[t], names))) for t in local_run}
    assert_same_tags({t: _without_track_id(outputs[t]) for t in outputs}, reference)


def _without_track_id(table):
    return table.drop_columns(["track_id"]) if "track_id" in table.column_names else table


def _names_in(table, names: set[str]):
    return pa.array([file_name(u) in names for u in table.column("uri").to_pylist()])


def test_model_from_bucket_gives_the_same_tags(s3_server, catalogue, catalogue_uris, local_run, tmp_path):
    """--model s3://.../msd-musicnn (a SavedModel folder with model.json) equals --model msd-musicnn."""
    fs = s3_server.fs()
    model_url = s3_server.url(f"models/{MODEL}")
    fs.put(str(models_dir() / MODEL), model_url, recursive=True)
    fs.invalidate_cache()
    assert fs.isfile(f"{model_url}/model.json") and fs.isfile(f"{model_url}/saved_model.pb")
    output = tmp_path / "tags"
    assert run_cli(["--input", str(catalogue), "--output", str(output), "--model", model_url]) == 0

    outputs = read_outputs(str(output))
    assert_exactly_once(outputs, catalogue_uris)
    assert_same_schemas(outputs, local_run)
    assert_same_tags(outputs, local_run)
    assert run_model(str(output)) == MODEL


def test_endpoints_and_credentials_never_printed(s3_server, gcs_server, cli):
    """A CLI run reading from both servers and writing to S3: its stdout/stderr (and its error rows)
    show neither the secret key, the access key, nor either endpoint."""
    fs3, fgs = s3_server.fs(), gcs_server.fs()
    fs3.pipe_file(s3_server.url("leak/in/broken.mp3"), b"not audio")
    fgs.pipe_file(gcs_server.url("leak/in/broken.flac"), b"not audio either")
    output = s3_server.url("leak/out")
    done = cli("--input", s3_server.url("leak/in/"), "--input", gcs_server.url("leak/in/**"), "--output", output)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-4000:]

    outputs = read_outputs(output)
    assert sorted(outputs["errors"].column("uri").to_pylist()) == [
        gcs_server.url("leak/in/broken.flac"), s3_server.url("leak/in/broken.mp3")]
    written = printed + json.dumps(outputs["errors"].to_pylist())
    for secret in (S3_SECRET_KEY, S3_ACCESS_KEY):
        assert secret not in written
    for store in (s3_server, gcs_server):
        assert store.endpoint not in written
        assert not re.search(rf"(127\.0\.0\.1|localhost):{store.port}\b", written), f"endpoint of {store.protocol}"


COPIES = 9


@pytest.fixture(scope="module")
def many_inputs(s3_server, catalogue) -> list[str]:
    """The catalogue nine times over under BUCKET/faults/in/ (36 files: 40 requests or more, so that
    every fault of every 10th request comes up)."""
    fs = s3_server.fs()
    for copy in range(COPIES):
        for path in sorted(p for p in catalogue.rglob("*") if p.is_file()):
            fs.put_file(str(path), s3_server.url(f"faults/in/{copy}/{path.relative_to(catalogue).as_posix()}"))
    fs.invalidate_cache()
    return sorted(f"s3://{p}" for p in fs.find(s3_server.url("faults/in/")))


def test_a_run_through_a_faulty_connection_completes_exactly_once(s3_server, many_inputs, local_run, tmp_path):
    """Every 10th request to S3 is answered 503, cut off by a TCP reset or held back 1.5 s: the
    clients' retries carry the run through, every input exactly once, the same tags."""
    output = tmp_path / "out"
    with FaultyProxy(s3_server.port, fault_every=10) as proxy, environment({"AWS_ENDPOINT_URL": proxy.endpoint}):
        assert run_cli(["--input", s3_server.url("faults/in/"), "--output", str(output)]) == 0
    print(f"requests through the proxy: {dict(proxy.counts)}")
    assert min(proxy.counts[fault] for fault in FAULTS) >= 1, proxy.counts
    outputs = read_outputs(str(output))
    assert_exactly_once(outputs, many_inputs)
    for copy in range(COPIES):
        mine = {t: outputs[t].filter(_under(outputs[t], f"/faults/in/{copy}/")) for t in outputs}
        assert_same_tags(mine, local_run)


def test_a_storage_outage_gives_read_errors(s3_server, many_inputs, tmp_path):
    """Listing works, then every object request fails (503) past the clients' retries: each input
    is a read-stage ReadFailed error, not a decode error, and the run still ends."""
    output = tmp_path / "out"
    quick = {"AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}
    with FaultyProxy(s3_server.port, fail_objects=True) as proxy, \
            environment({"AWS_ENDPOINT_URL": proxy.endpoint, **quick}):
        assert run_cli(["--input", s3_server.url("faults/in/0/"), "--output", str(output)]) == 0
    assert proxy.counts["error"] >= 4
    errors = read_outputs(str(output))["errors"].to_pylist()
    assert sorted(r["uri"] for r in errors) == [u for u in many_inputs if "/faults/in/0/" in u]
    assert {(r["stage"], r["error"]) for r in errors} == {("read", "ReadFailed")}, errors


def _under(table, folder: str):
    return pa.array([folder in u for u in table.column("uri").to_pylist()], type=pa.bool_())


def test_faults_on_the_store_during_the_run_and_its_commit_lose_nothing(s3_server, catalogue, catalogue_uris,
                                                                         local_run):
    """Every third request for the store's keys (the workers' files, the plan, each commit step) is
    answered 503 or cut off: the run still ends well, with every input exactly once and the tags of a
    clean run (a reset in the commit used to end the run half committed)."""
    output = s3_server.url("commit-faults/store")
    faults = ("error", "reset")
    with FaultyProxy(s3_server.port, fault_every=3, only_under="/" + output.removeprefix("s3://") + "/",
                     faults=faults) as proxy, environment({"AWS_ENDPOINT_URL": proxy.endpoint}):
        assert run_cli(["--input", str(catalogue), "--output", output]) == 0
    print(f"store requests through the proxy: {dict(proxy.counts)}")
    assert min(proxy.counts[fault] for fault in faults) >= 3, proxy.counts
    outputs = read_outputs(output)
    assert_exactly_once(outputs, catalogue_uris)
    assert_same_tags(outputs, local_run)
