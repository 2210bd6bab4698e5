"""The catalogue store: Delta Lake tables under OUTPUT (local disk, s3://, gs://), written with
deltalake (delta-rs: no JVM, no catalog service).

    tracks/   patches/   errors/   the history: every run appends its rows (each carries run_id)
    current/  one row per (uri, model): the latest finished result (tracked, error or removed),
              what the next run's skip decision reads
    runs/     one row per finished run: what it did
    _staging/RUN_ID/  a run's current rows and its commit plan until they are committed

Workers write Parquet files straight into the table folders; until a commit names them, no Delta
reader sees them. One finalising step commits a run (commit_run): first the merge into `current`,
from the snapshot the run's skip decision read and with no retry, so that of two runs that decided
on the same state only the first commits (the other stops with StoreConflict and leaves nothing
visible); then the appends to tracks, patches and errors and the runs row. Each commit carries the
run's application transaction id, so that a retried finalisation skips what is done. The plan is
written to _staging before the first commit: a run killed after its `current` merge is completed by
the next run (recover). Files of runs that never committed are removed once older than ORPHAN_HOURS.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Iterable, Iterator, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

# What the finalising step appends, and the columns every table has: public (README, "Output").
TRACKS_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("track_id", pa.string()),
    ("n_patches", pa.int32()),
    ("padded", pa.bool_()),
    ("duration_s", pa.float64()),
    ("sample_rate", pa.int32()),
    ("channels", pa.int32()),
    ("activations", pa.list_(pa.float32())),
    ("embedding", pa.list_(pa.float32())),
    ("top_tags", pa.list_(pa.string())),
    ("model", pa.string()),
    ("version", pa.string()),
    ("run_id", pa.string()),
])

PATCHES_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("track_id", pa.string()),
    ("patch", pa.int32()),
    ("start_s", pa.float64()),
    ("activations", pa.list_(pa.float32())),
    ("embedding", pa.list_(pa.float32())),
    ("model", pa.string()),
    ("run_id", pa.string()),
])

ERRORS_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("track_id", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("message", pa.string()),
    ("model", pa.string()),
    ("version", pa.string()),
    ("run_id", pa.string()),
])

CURRENT_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("model", pa.string()),
    ("status", pa.string()),  # tracked, error or removed
    ("track_id", pa.string()),
    ("version", pa.string()),  # the input's identity when its result was made (size + mtime, ETag, generation)
    ("fingerprint", pa.string()),
    ("settings", pa.string()),
    ("run_id", pa.string()),  # the run that wrote this row
    ("top_tags", pa.list_(pa.string())),
    ("activations", pa.list_(pa.float32())),
    ("duration_s", pa.float64()),
    ("error", pa.string()),
    ("message", pa.string()),
    # Last: a column added after stores were first written; an older store's `current` gets it when a
    # run opens it (open_store), and Delta appends added columns.
    ("embedding", pa.list_(pa.float32())),  # the tracks row's (mean over patches), for `tracked`
])

RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("started", pa.timestamp("us", tz="UTC")),
    ("finished", pa.timestamp("us", tz="UTC")),
    ("status", pa.string()),
    ("model", pa.string()),
    ("fingerprint", pa.string()),
    ("settings", pa.string()),
    ("package_version", pa.string()),
    ("runner", pa.string()),
    ("listed", pa.int64()),
    ("skipped", pa.int64()),
    ("tagged", pa.int64()),
    ("failed", pa.int64()),
    ("failed_by_kind", pa.map_(pa.string(), pa.int64())),
    ("removed", pa.int64()),
    ("audio_s", pa.float64()),
    ("wall_s", pa.float64()),
    ("classes", pa.list_(pa.string())),
])

HISTORY = {"tracks": TRACKS_SCHEMA, "patches": PATCHES_SCHEMA, "errors": ERRORS_SCHEMA}
TABLES = {**HISTORY, "current": CURRENT_SCHEMA, "runs": RUNS_SCHEMA}
# Columns a table gained after stores were first written (each at the table's end): a store without
# them is upgraded by the first run that opens it, not refused.
ADDED_COLUMNS = {"current": ("embedding",)}
STAGING = "_staging"
APP_ID = "musicnn-beam"
# A run's files that no commit names (it was killed, or lost a conflict) are removed by a later run
# once this old: a run still writing them is younger.
ORPHAN_HOURS = 24
# A plan whose `current` merge is committed is completed by a later run once this old (its own run
# would have finished it in seconds).
RECOVER_AFTER_S = 600


class StoreError(Exception):
    """OUTPUT cannot be used as a store (it holds something else): one line, exit status 2."""


class StoreConflict(Exception):
    """Another run committed to the store after this run read its state: nothing of this run was committed."""


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def storage_options(uri: str) -> Optional[dict]:
    """delta-rs's options for a URI: it reads credentials from the environment as fsspec does; an
    http:// S3 endpoint (a local S3 server) must be allowed by name."""
    if uri.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {"AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))}
        if endpoint:
            options.update(AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true" if endpoint.startswith("http://") else "false")
        return options
    return None


def _delta(uri: str, version: Optional[int] = None):
    from deltalake import DeltaTable
    return DeltaTable(uri, version=version, storage_options=storage_options(uri))


def _app(run_id: str):
    from deltalake import Transaction
    return Transaction(f"{APP_ID}/{run_id}", 1)


def _committed(table_uri: str, run_id: str) -> bool:
    return _delta(table_uri).transaction_version(f"{APP_ID}/{run_id}") is not None


def _fs(output: str):
    fs, root = url_to_fs(output, skip_instance_cache=True)
    fs.invalidate_cache()
    return fs, root.rstrip("/")


def open_store(output: str, create: bool = True) -> Optional[int]:
    """Check OUTPUT holds only this store's tables (or nothing), create the missing ones; returns
    the version of `current` a run's skip decision reads. create=False (a dry run) changes nothing,
    and returns None when there is no store yet. Raises StoreError."""
    fs, root = _fs(output)
    if fs.exists(root) and not fs.isdir(root):
        raise StoreError(f"{output} is a file, not a folder for the store's tables")
    entries = fs.ls(root, detail=False) if fs.exists(root) else []
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name not in TABLES and name != STAGING:
            raise StoreError(f"{output} holds {name!r}, which is not a table of this store "
                             f"({', '.join(TABLES)}): choose another --output")
    for name, schema in TABLES.items():
        uri, folder = join(output, name), join(root, name)
        entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False)] if fs.isdir(folder) else []
        if entries and "_delta_log" not in entries:  # empty: a run started at the same moment is creating it
            raise StoreError(f"{uri} is not a Delta table (no _delta_log): not a store this tool wrote")
        if not create and not entries:
            if name == "current":
                return None
            continue
        have = pa.schema(_open_or_create(uri, schema).schema().to_arrow()).names
        added = schema.names[len(have):]
        if have != schema.names[:len(have)] or not set(added) <= set(ADDED_COLUMNS.get(name, ())):
            raise StoreError(f"{uri} has columns {', '.join(have)}, not this store's {name} table's")
        if added and create:  # a dry run reads only STATE_COLUMNS, which every version has
            _add_embedding(output)
    return state_version(output)


def _add_embedding(output: str) -> None:
    """Upgrade the `current` table of a store written before it had `embedding`: add the column and
    fill it for the tracked rows from their tracks rows (same uri, model and run), in one commit, so
    that similarity search finds every track without a join against the history. A run that read the
    state before this commit loses its race (StoreConflict), as against any other commit."""
    tracks = _delta(join(output, "tracks")).to_pyarrow_dataset()
    source = tracks.scanner(columns=["uri", "model", "run_id", "embedding"]).to_reader()  # streamed
    try:
        (_delta(join(output, "current"))
         .merge(source, "t.uri = s.uri AND t.model = s.model AND t.run_id = s.run_id AND t.status = 'tracked'",
                source_alias="s", target_alias="t", merge_schema=True)
         .when_matched_update({"embedding": "s.embedding"}).execute())
    except Exception:  # noqa: BLE001 - another run upgraded it first (its commit conflicts with ours)
        if "embedding" not in pa.schema(_delta(join(output, "current")).schema().to_arrow()).names:
            raise


def state_version(output: str) -> int:
    """The version of `current`: the state a run's skip decision reads."""
    return _delta(join(output, "current")).version()


def _open_or_create(uri: str, schema: pa.Schema):
    """The Delta table at uri, created when there is none. Two runs started at once on a new store
    both create it: one wins, the other opens what the winner wrote (once its first commit is there)."""
    from deltalake import DeltaTable
    for attempt in range(10):
        try:
            return _delta(uri)
        except Exception:  # noqa: BLE001 - no table (yet): each storage says so its own way
            try:
                return DeltaTable.create(uri, schema, storage_options=storage_options(uri))
            except Exception:  # noqa: BLE001 - created meanwhile by another run: open it on the next try
                time.sleep(0.1 * (attempt + 1))
    return _delta(uri)


def state_files(output: str, version: int) -> list[str]:
    """The Parquet files of `current` at `version`: what the skip decision reads, a file per worker."""
    return _delta(join(output, "current"), version).file_uris()


# What the skip decision reads of a `current` row (tags stay out: 100,000 rows are held as dicts).
STATE_COLUMNS = ["uri", "model", "status", "track_id", "version", "fingerprint", "settings", "run_id", "error",
                 "message"]


def read_state(file_uri: str, model: str) -> Iterator[dict]:
    """The `current` rows of one model in one of its files (fsspec: any storage), STATE_COLUMNS only."""
    rows = _read_parquet(file_uri, STATE_COLUMNS).to_pylist()  # delta-rs writes string_view: no filters
    yield from (row for row in rows if row["model"] == model)


def read_small_state(file_uris: Iterable[str], model: str, max_rows: int) -> Optional[list[dict]]:
    """read_state over all of `current`'s files, or None when they hold more than max_rows rows (told
    by the files' footers, before reading any)."""
    file_uris = list(file_uris)
    rows = 0
    for uri in file_uris:
        with fsspec.open(uri, "rb") as f:
            rows += pq.ParquetFile(f).metadata.num_rows
    if rows > max_rows:
        return None
    return [row for uri in file_uris for row in read_state(uri, model)]


def add_action(table_root: str, written: dict):
    """A file a worker wrote (sinks: {"path", "size", "rows"}) -> its Delta add action."""
    from deltalake.transaction import AddAction
    relative = written["path"][len(table_root.rstrip("/")) + 1:]
    return AddAction(relative, written["size"], {}, int(time.time() * 1000), True,
                     json.dumps({"numRecords": written["rows"]}))


def commit_run(output: str, state_version: int, run: dict, written: Iterable[dict]) -> dict:
    """The finalising step: write the run's plan, then commit it (apply_plan). written: every file
    the run's workers wrote ({"table", "path", "size", "rows"}); run: its runs row."""
    written = list(written)
    plan = {"run": run, "state_version": state_version, "files": written}
    with fsspec.open(join(output, STAGING, run["run_id"], "plan.json"), "w") as f:
        json.dump(plan, f, default=str)
    apply_plan(output, plan)
    return run


def apply_plan(output: str, plan: dict) -> None:
    """Commit a run; each step is skipped when the run's transaction id shows it done."""
    from deltalake import CommitProperties, write_deltalake
    from deltalake.exceptions import CommitFailedError
    run, run_id = plan["run"], plan["run"]["run_id"]
    by_table: dict[str, list[dict]] = {}
    for written in plan["files"]:
        by_table.setdefault(written["table"], []).append(written)
    current = join(output, "current")
    staged = [w["path"] for w in by_table.get("current", [])]
    if staged and not _committed(current, run_id):
        source = pa.concat_tables([_read_parquet(p) for p in staged]).cast(CURRENT_SCHEMA)
        try:
            (_delta(current, plan["state_version"])
             .merge(source, "t.uri = s.uri AND t.model = s.model", source_alias="s", target_alias="t",
                    commit_properties=CommitProperties(app_transactions=[_app(run_id)], max_commit_retries=0))
             .when_matched_update_all().when_not_matched_insert_all().execute())
        except CommitFailedError as exc:
            if not _committed(current, run_id):
                raise StoreConflict(f"another run committed to {output} while run {run_id} ran: nothing of "
                                    f"this run was committed; run again (it tags only what is still missing)") from exc
    for name, schema in HISTORY.items():
        uri = join(output, name)
        files = by_table.get(name, [])
        if files and not _committed(uri, run_id):
            _delta(uri).create_write_transaction([add_action(uri, w) for w in files], "append", schema,
                                                 commit_properties=CommitProperties(app_transactions=[_app(run_id)]))
    runs = join(output, "runs")
    if not _committed(runs, run_id):
        write_deltalake(runs, runs_table([run]), mode="append", storage_options=storage_options(runs),
                        commit_properties=CommitProperties(app_transactions=[_app(run_id)]))
    fs, root = _fs(output)
    staging = join(root, STAGING, run_id)
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    try:
        fs.rmdir(join(root, STAGING))  # local disk: the folder goes once empty (a bucket has no folders)
    except (OSError, NotImplementedError):
        pass


def runs_table(rows: list[dict]) -> pa.Table:
    """Runs rows as the plan holds them (times as epoch seconds, failed_by_kind a dict) -> the runs table."""
    def utc(seconds):
        return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
    rows = [{**r, "started": utc(r["started"]), "finished": utc(r.get("finished")),
             "failed_by_kind": list(r["failed_by_kind"].items())} for r in rows]
    return pa.Table.from_pylist(rows, schema=RUNS_SCHEMA)


def _read_parquet(uri: str, columns: Optional[list[str]] = None) -> pa.Table:
    """One Parquet file. Not pq.read_table: that goes through pyarrow.dataset, whose import (Acero's
    library) is 0.2 s of a short run's fixed cost."""
    with fsspec.open(uri, "rb") as f:
        return pq.ParquetFile(f).read(columns=columns)


def recover(output: str, now: Optional[float] = None) -> list[str]:
    """What killed runs left: complete the plans whose `current` merge was committed (older than
    RECOVER_AFTER_S), and remove what no commit names once older than ORPHAN_HOURS: staging folders
    and the tables' data files. Returns the run ids completed."""
    now = time.time() if now is None else now
    fs, root = _fs(output)
    completed = []
    staging = join(root, STAGING)
    for folder in (fs.ls(staging, detail=False) if fs.exists(staging) else []):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        plan_path = join(folder, "plan.json")
        age = now - max([_modified(info) for info in fs.find(folder, detail=True).values()] or [now])
        if fs.exists(plan_path) and age > RECOVER_AFTER_S:
            plan = json.loads(fs.cat_file(plan_path))
            if _committed(join(output, "current"), run_id) or not any(w["table"] == "current" for w in plan["files"]):
                apply_plan(output, plan)
                completed.append(run_id)
                continue
        if age > ORPHAN_HOURS * 3600:
            fs.rm(folder, recursive=True)
    for name in [*HISTORY, "current"]:  # current: the files its merges replaced
        _delta(join(output, name)).vacuum(retention_hours=ORPHAN_HOURS, dry_run=False, full=True,
                                          enforce_retention_duration=False)
    return completed


def _modified(info: dict) -> float:
    """When a listed file was last written (each fsspec filesystem names it its own way)."""
    for key in ("mtime", "LastModified", "updated", "last_modified"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return float(value)
    return time.time()  # no date: treat as new (never removed early)


def read_table(output: str, name: str) -> pa.Table:
    """A table as of its latest commit (what any Delta reader sees), in the README's types."""
    return _as_documented(_delta(join(output, name)).to_pyarrow_table(), name)


def read_run(output: str, run_id: str) -> Optional[dict]:
    """A run's row in the runs table, or None. Each run appends one file to it: the files are read
    newest first, each alone (no pyarrow.dataset, see _read_parquet), until one holds the run."""
    runs = join(output, "runs")
    actions = pa.table(_delta(runs).get_add_actions(flatten=True)).to_pydict()  # an arro3 table
    for _, path in sorted(zip(actions["modification_time"], actions["path"]), reverse=True):
        rows = _as_documented(_read_parquet(join(runs, path)), "runs").to_pylist()
        found = [row for row in rows if row["run_id"] == run_id]
        if found:
            return found[0]
    return None


def _as_documented(table: pa.Table, name: str) -> pa.Table:
    """A table as delta-rs reads it -> the README's column types (delta-rs reads strings back as
    string_view), with the columns added since (ADDED_COLUMNS) as nulls where no run has added them."""
    for column in ADDED_COLUMNS.get(name, ()):
        if column not in table.column_names:
            table = table.append_column(TABLES[name].field(column), pa.nulls(len(table), TABLES[name].field(column).type))
    return table.select(TABLES[name].names).cast(TABLES[name])


def new_run_id() -> str:
    """Sortable by start time: 20261130T131500Z-1a2b3c."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
