"""Real servers for the tests, started as subprocesses on free ports on 127.0.0.1 and stopped at teardown.

- S3: moto's server (`moto_server`); s3fs/botocore find it through AWS_ENDPOINT_URL.
- GCS: gcp-storage-emulator (in memory); gcsfs finds it through STORAGE_EMULATOR_HOST.
- Beam's portable path: the local job service and an EXTERNAL SDK worker pool (the path Flink and
  Dataflow Runner v2 use). The pool starts each worker with the bare `python` on PATH, so it runs with
  this interpreter's bin folder first on PATH and with the storage variables set.

The storage fixtures set the standard environment variables for the whole session (and restore them
afterwards), so code under test needs no endpoint or credential arguments. Use them from a test module:

    from tests.servers import gcs_server, s3_server  # noqa: F401  (pytest fixtures)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent  # the venv's bin: moto_server, gcp-storage-emulator, python

# Credentials for moto: any value works; a distinctive secret lets tests grep output for leaks.
S3_ACCESS_KEY = "musicnn-test-access-key"
S3_SECRET_KEY = "musicnn-test-secret-9f3c2e7a"
S3_REGION = "us-east-1"
BUCKET = "musicnn-test"


class ServerFailed(RuntimeError):
    """A server did not start (or died); the message carries its output."""


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = HOST) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1 only
            return 200 <= response.status < 500
    except OSError:
        return False


def _console_script(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        raise ServerFailed(f"{name} is not installed next to {sys.executable} (pip install '.[test]')")
    return str(path)


@dataclass
class Server:
    """A subprocess whose stdout+stderr go to a log file (a pipe nobody reads would fill and block it)."""

    name: str
    command: list[str]
    port: int
    env: dict[str, str] | None = None
    cwd: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    def start(self, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> "Server":
        fd, log = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        self.log_path = Path(log)
        with os.fdopen(fd, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerFailed(f"{self.name} exited with {self.process.returncode} while starting: "
                                   f"{' '.join(self.command)}\n{self.log()}")
            if ready():
                return self
            time.sleep(0.2)
        output = self.log()
        self.stop()
        raise ServerFailed(f"{self.name} not ready after {timeout_s:.0f} s on port {self.port}: "
                           f"{' '.join(self.command)}\n{output}")

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and everything it started (the worker pool's workers share its session)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc is not None:
            try:  # workers may outlive the pool's main process in the same process group
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None


@contextmanager
def running(server: Server, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> Iterator[Server]:
    server.start(ready, timeout_s)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables; restore the old values afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, value)
        yield


# --- storage servers ------------------------------------------------------------------------------

@dataclass
class Store:
    """A storage server with one bucket: `url("in/a.mp3")` -> "s3://BUCKET/in/a.mp3"."""

    protocol: str  # "s3" or "gs"
    bucket: str
    endpoint: str  # http://127.0.0.1:PORT
    port: int
    env: dict[str, str] = field(repr=False)  # what the fixture put in os.environ (credentials: not in reprs)
    server: Server = field(repr=False)

    def url(self, path: str = "") -> str:
        return f"{self.protocol}://{self.bucket}/{path.lstrip('/')}"

    def fs(self):
        """A fresh fsspec filesystem (not fsspec's cached instance, which may predate the environment)."""
        import fsspec

        fs = fsspec.filesystem(self.protocol, skip_instance_cache=True)
        fs.invalidate_cache()
        return fs


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
    }


def gcs_env(endpoint: str) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": endpoint,
        # Without this, gcsfs probes every bucket for hierarchical namespace support and each call waits.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


# Variables that would send a test's traffic elsewhere or pick up the machine's own credentials.
_S3_ISOLATION = {"AWS_PROFILE": None, "AWS_SESSION_TOKEN": None, "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                 "AWS_CONFIG_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
_GCS_ISOLATION = {"GOOGLE_CLOUD_PROJECT": "musicnn-test"}


@contextmanager
def _store(protocol: str, bucket: str, server: Server, ready_path: str, env: dict[str, str],
           isolation: dict[str, str | None]) -> Iterator[Store]:
    """Run a storage server, point the environment at it, create the bucket."""
    with running(server, lambda: http_ok(f"http://{HOST}:{server.port}{ready_path}")):
        with environment({**isolation, **env}):
            store = Store(protocol, bucket, f"http://{HOST}:{server.port}", server.port, env, server)
            store.fs().mkdir(bucket)
            yield store


def s3_store(bucket: str = BUCKET):
    port = free_port()
    server = Server("moto_server", [_console_script("moto_server"), "-H", HOST, "-p", str(port)], port)
    return _store("s3", bucket, server, "/moto-api/", s3_env(f"http://{HOST}:{port}"), _S3_ISOLATION)


# gcp-storage-emulator lacks objects.move (POST .../o/SRC/moveTo/o/DEST), which real GCS serves and which
# gcsfs >= 2026.x tries first in every mv(): the emulator answers 501, gcsfs retries that 6 times with
# backoff (about 30 s per file) before it falls back to copy + delete. The launcher below adds the route
# (copy, then delete the source: what the API does) and runs the emulator's own `start` command.
_GCS_EMULATOR_LAUNCHER = """
import sys
from http import HTTPStatus
from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

def move(request, response, storage, *args, **kwargs):
    bucket, source, dest = (request.params[k] for k in ("bucket_name", "object_id", "dest_object_id"))
    try:
        moved = objects._copy(request.base_url, storage, bucket, source, bucket, dest)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    objects._delete(storage, bucket, source)
    response.json(moved)

route = r"/b/(?P<bucket_name>[-.\\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/(?P<dest_object_id>.*[^/]+)$"
server.HANDLERS = tuple((rf"^{prefix}{route}", {"POST": move}) for prefix in ("/storage/v1", "")) + server.HANDLERS
main(sys.argv[1:])
"""


def gcs_store(bucket: str = BUCKET):
    port = free_port()
    server = Server("gcp-storage-emulator",
                    [sys.executable, "-c", _GCS_EMULATOR_LAUNCHER, "start", "--host", HOST, "--port", str(port),
                     "--in-memory"], port)
    return _store("gs", bucket, server, "/storage/v1/b", gcs_env(f"http://{HOST}:{port}"), _GCS_ISOLATION)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Store]:
    """moto's S3 server with bucket BUCKET; AWS_* variables point at it for the session."""
    with s3_store() as store:
        yield store


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Store]:
    """gcp-storage-emulator with bucket BUCKET; STORAGE_EMULATOR_HOST points at it for the session."""
    with gcs_store() as store:
        yield store


# --- Beam's portable path -------------------------------------------------------------------------

def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Beam processes: this interpreter's bin first on PATH (the worker pool runs the
    bare `python`), the repository importable, plus EXTRA (e.g. the storage variables)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN_DIR), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env.pop("PYTHONHOME", None)
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def job_service(tmp_path_factory) -> Iterator[Server]:
    """Beam's local job service (a portable job server running the FnApiRunner): `.port`, `.log()`."""
    port = free_port()
    staging = tmp_path_factory.mktemp("beam-staging")
    server = Server("beam-job-service",
                    [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                     "--port", str(port), "--staging_dir", str(staging)],
                    port, env=worker_environment(), cwd=str(staging))
    with running(server, lambda: port_open(port), timeout_s=60) as started:
        yield started


@pytest.fixture(scope="session")
def worker_pool(tmp_path_factory, s3_server, gcs_server) -> Iterator[Server]:
    """An EXTERNAL SDK worker pool (`--environment_type EXTERNAL --environment_config 127.0.0.1:PORT`);
    its workers reach the storage servers through the same variables as the tests. `.port`, `.log()`."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("beam-workers")
    server = Server("beam-worker-pool",
                    [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                     "--service_port", str(port)],
                    port, env=worker_environment({**s3_server.env, **gcs_server.env}), cwd=str(workdir))
    with running(server, lambda: port_open(port), timeout_s=60) as started:
        yield started


# --- pipeline runs shared by test_storage and test_portable ---------------------------------------
# (fixtures registered through `pytest_plugins = ["tests.servers"]` exist once per session, so both
# modules compare against the same local run)

TABLE_NAMES = ("tracks", "patches", "errors")
BAD_FILE = "x.mp3"


def make_catalogue(root: Path) -> Path:
    """A few short files in several codecs, one nested, one too short for a patch, one broken."""
    from tests.conftest import make_audio

    (root / "sub").mkdir(parents=True, exist_ok=True)
    make_audio(root, "a.mp3", 11, 6.0, 44100, 2, "mp3")
    make_audio(root, "b.flac", 12, 7.0, 22050, 1, "flac")
    make_audio(root / "sub", "c.wav", 13, 2.5, 16000, 1, "wav16")  # under one patch: padded
    (root / BAD_FILE).write_bytes(b"not audio")
    return root


def run_cli(argv: list[str]) -> int:
    """The CLI's main() in this process (tests/conftest.py's in_process): its exit status."""
    from musicnn_beam.pipeline.cli import main
    from tests.conftest import in_process

    return in_process(main, argv)


def run_cli_subprocess(argv: list[str], cwd: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGV` in CWD with the current environment (the storage variables included)."""
    return subprocess.run([sys.executable, "-m", "musicnn_beam.pipeline", *argv], cwd=str(cwd), env=worker_environment(),
                          capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def read_table(output: str, table: str):
    """A pyarrow Table of the store's TABLE as of its latest commit, local or on S3, as any Delta
    reader sees it."""
    from musicnn_beam.store.read import read_table as store_read_table

    return store_read_table(output, table)


def read_outputs(output: str) -> dict:
    return {table: read_table(output, table) for table in TABLE_NAMES}


def file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def assert_exactly_once(outputs: dict, expected_uris: list[str]) -> None:
    tracks = outputs["tracks"].column("uri").to_pylist()
    errors = outputs["errors"].column("uri").to_pylist()
    assert sorted(tracks + errors) == sorted(expected_uris)
    assert len(set(tracks + errors)) == len(tracks + errors)
    patch_uris = set(outputs["patches"].column("uri").to_pylist())
    assert patch_uris == set(tracks), "patches must belong to tagged tracks, and every track has patches"


def assert_same_schemas(outputs: dict, reference: dict) -> None:
    for table in TABLE_NAMES:
        assert outputs[table].schema.remove_metadata() == reference[table].schema.remove_metadata(), table


def assert_same_tags(outputs: dict, reference: dict, atol: float = 1e-6) -> None:
    """Per track and per patch, by file name: the same activations (and embeddings, and errors)."""
    import numpy as np

    def by_name(table, *keys):
        rows = {}
        for row in table.to_pylist():
            key = (file_name(row["uri"]), *(row[k] for k in keys))
            assert key not in rows, f"duplicate row {key}"
            rows[key] = row
        return rows

    ours, theirs = by_name(outputs["tracks"]), by_name(reference["tracks"])
    assert sorted(ours) == sorted(theirs)
    for key, row in ours.items():
        ref = theirs[key]
        for column in ("n_patches", "padded", "sample_rate", "channels", "model"):
            assert row[column] == ref[column], (key, column)
        assert abs(row["duration_s"] - ref["duration_s"]) < 1e-9, key
        np.testing.assert_allclose(row["activations"], ref["activations"], rtol=0, atol=atol, err_msg=str(key))
        np.testing.assert_allclose(row["embedding"], ref["embedding"], rtol=1e-5, atol=1e-5, err_msg=str(key))

    ours, theirs = by_name(outputs["patches"], "patch"), by_name(reference["patches"], "patch")
    assert sorted(ours) == sorted(theirs)
    for key, row in ours.items():
        assert row["start_s"] == theirs[key]["start_s"], key
        np.testing.assert_allclose(row["activations"], theirs[key]["activations"], rtol=0, atol=atol,
                                   err_msg=str(key))
        np.testing.assert_allclose(row["embedding"], theirs[key]["embedding"], rtol=1e-5, atol=1e-5,
                                   err_msg=str(key))

    ours, theirs = by_name(outputs["errors"]), by_name(reference["errors"])
    assert {k: (r["stage"], r["error"]) for k, r in ours.items()} == \
           {k: (r["stage"], r["error"]) for k, r in theirs.items()}


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Path:
    """Local input folder: a.mp3, b.flac, sub/c.wav (padded), x.mp3 (broken)."""
    return make_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="session")
def catalogue_uris(catalogue) -> list[str]:
    return sorted(str(p) for p in catalogue.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def local_run(catalogue, catalogue_uris, tmp_path_factory) -> dict:
    """The reference: the default (in-process) runner on the local catalogue, local output; its tables."""
    output = tmp_path_factory.mktemp("local-run") / "tags"
    assert run_cli(["--input", str(catalogue), "--output", str(output)]) == 0
    outputs = read_outputs(str(output))
    assert_exactly_once(outputs, catalogue_uris)
    assert outputs["tracks"].num_rows == 3 and outputs["errors"].num_rows == 1
    return outputs
