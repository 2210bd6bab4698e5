"""Beam's portable path (the one Flink and Dataflow Runner v2 take): the CLI submits to Beam's local job
service, and the work runs in an EXTERNAL SDK worker pool, in other processes than the launcher's.

The CLI runs as a subprocess from an unrelated working directory, so nothing depends on the test
process' state; its tables must equal the default in-process run's on the same files.
"""
from __future__ import annotations

import pytest

from tests.servers import (
    HOST, Server, Store, assert_exactly_once, assert_same_schemas, assert_same_tags, read_outputs, run_cli_subprocess,
)

pytest_plugins = ["tests.servers"]
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("converted_models")]


def portable_args(job_service: Server, worker_pool: Server) -> list[str]:
    return ["--runner", "PortableRunner", "--job_endpoint", f"{HOST}:{job_service.port}",
            "--environment_type", "EXTERNAL", "--environment_config", f"{HOST}:{worker_pool.port}"]


def test_external_worker_pool_equals_local_run(job_service, worker_pool, catalogue, catalogue_uris, local_run,
                                               tmp_path):
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    output = tmp_path / "tags"
    done = run_cli_subprocess(["--input", str(catalogue), "--output", str(output),
                               *portable_args(job_service, worker_pool)], cwd=workdir)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "Starting worker" in worker_pool.log(), "the work must run in the pool's workers"

    outputs = read_outputs(str(output))
    assert_exactly_once(outputs, catalogue_uris)
    assert_same_schemas(outputs, local_run)
    assert_same_tags(outputs, local_run)


def test_external_workers_read_and_write_buckets(job_service, worker_pool, s3_server: Store, gcs_server: Store,
                                                 catalogue, local_run, tmp_path):
    """Workers reach the storage servers through the standard variables only (the pool's environment):
    input from GCS, the store on S3 (delta-rs cannot use a GCS emulator)."""
    fs = gcs_server.fs()
    for path in sorted(p for p in catalogue.rglob("*") if p.is_file()):
        fs.put_file(str(path), gcs_server.url(f"portable/in/{path.relative_to(catalogue).as_posix()}"))
    fs.invalidate_cache()
    inputs = sorted(f"gs://{p}" for p in fs.find(gcs_server.url("portable/in/")))
    output = s3_server.url("portable/out")
    done = run_cli_subprocess(["--input", gcs_server.url("portable/in/"), "--output", output,
                               *portable_args(job_service, worker_pool)], cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]

    outputs = read_outputs(output)
    assert_exactly_once(outputs, inputs)
    assert_same_schemas(outputs, local_run)
    assert_same_tags(outputs, local_run)
