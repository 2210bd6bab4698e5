"""The run's commit: the files its workers wrote become visible in one finalising step.

Workers write Parquet files straight into the table folders (transforms.sinks); until a commit names
them, no Delta reader sees them. The finalising step (commit_run) writes the run's runs row as a file
too, then the commit plan (every file, in _staging/RUN_ID/plan.json), then commits it in an order
that keeps one invariant at every instant: every `current` row's run has its tracks/patches or
errors rows committed. First the history appends (tracks, patches, errors), then the deciding merge
of the run's rows into `current`, from the snapshot the run's plan read and with no retry, so that of
two runs that planned on one snapshot only the first commits, then the runs row. History rows of a
run with no runs row are not (yet) part of the store: readers of the history join `runs`. A run that
loses the merge rolls its history appends back at once (StoreConflict); a killed one's plan is
completed or rolled back by the next run (store.recovery).

Each commit names files by path and carries the run's application transaction id: a step that is
done is skipped, and two processes completing one plan add nothing twice (Delta keys add actions by
path). Each step is retried after a transient storage error (a reset, a 503), first checking whether
it landed.

CommitRun is that step in the pipeline: the run's rows -> files in the table folders -> the totals
of the runs row -> commit_run.
"""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Tuple

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from musicnn_beam.store.errors import StoreConflict, writes_refused
from musicnn_beam.store.location import delta_table, filesystem, join
from musicnn_beam.store.plan import StoreRun
from musicnn_beam.store.read import read_parquet
from musicnn_beam.store.schema import CURRENT_SCHEMA, HISTORY, RUNS_SCHEMA, STAGING, TABLES
from musicnn_beam.transforms.sinks import WriteBundleFiles

APP_ID = "musicnn-beam"
# A step that fails for a reason that may pass (a reset connection, a 503, a slow-down) is tried
# again after each of these waits, then the run gives up (its plan is left for the next run).
RETRY_WAITS_S = (0.5, 1.0, 2.0, 4.0)


def _app(run_id: str):
    from deltalake import Transaction
    return Transaction(f"{APP_ID}/{run_id}", 1)


def committed(table_uri: str, run_id: str) -> bool:
    """Whether the run has committed to the table (its application transaction is in the log)."""
    return _has_committed(delta_table(table_uri), run_id)


def _has_committed(table, run_id: str) -> bool:
    return table.transaction_version(f"{APP_ID}/{run_id}") is not None


def add_action(table_root: str, written: dict):
    """A file a worker wrote (sinks: {"path", "size", "rows"}) -> its Delta add action."""
    from deltalake.transaction import AddAction
    return AddAction(_relative(table_root, written), written["size"], {}, int(time.time() * 1000), True,
                     json.dumps({"numRecords": written["rows"]}))


def _relative(table_root: str, written: dict) -> str:
    """A written file's path as the table's log names it."""
    return written["path"][len(table_root.rstrip("/")) + 1:]


def commit_run(output: str, current_version: int, run: dict, written: Iterable[dict]) -> dict:
    """The finalising step: write the run's runs row and its commit plan, then commit it (apply_plan).
    written: every file the run's workers wrote ({"table", "path", "size", "rows"}); run: its runs row."""
    # "state_version" is the key's name on disk since the first store: a plan a killed run of an earlier
    # release left must still complete. host and pid: whether the process that commits is gone
    # (store.recovery), the process that runs this step, which may be a worker the launcher started.
    plan = {"run": run, "state_version": current_version, "host": socket.gethostname(), "pid": os.getpid()}
    plan["files"] = [*written, _step("runs file", lambda: write_runs_file(output, run))]
    _step("plan", lambda: _write_plan(output, plan))
    apply_plan(output, plan)
    return run


def _write_plan(output: str, plan: dict) -> None:
    with fsspec.open(join(output, STAGING, plan["run"]["run_id"], "plan.json"), "w") as f:
        json.dump(plan, f, default=str)


def write_runs_file(output: str, run: dict) -> dict:
    """The run's runs row as a file in runs/, named after the run (a retry rewrites the same file):
    what the plan's last commit adds."""
    path = join(output, "runs", f"part-{run['run_id']}.parquet")
    with fsspec.open(path, "wb") as f:
        pq.write_table(runs_table([run]), f)
        size = f.tell()
    return {"table": "runs", "path": path, "size": size, "rows": 1}


def apply_plan(output: str, plan: dict) -> list[str]:
    """Commit a run's plan: the history appends, the deciding merge of `current`, the runs row; then
    its staging folder goes. Each step is skipped when the run's transaction id shows it done, so
    that a retry or a second process completing the plan adds nothing twice. Returns the tables this
    call committed to. A merge that another run's commit beat: the history appends are rolled back
    and StoreConflict is raised."""
    run_id = plan["run"]["run_id"]
    files = _by_table(plan["files"])
    if "runs" not in files and not committed(join(output, "runs"), run_id):  # an earlier release's plan
        files["runs"] = [write_runs_file(output, plan["run"])]
    done = [name for name in HISTORY if _step(name, lambda n=name: _append(output, n, files.get(n, []), run_id))]
    try:
        done += ["current"] if _step("current", lambda: _merge_current(output, plan, files.get("current", []))) else []
    except StoreConflict:
        roll_back(output, plan)
        raise
    done += ["runs"] if _step("runs", lambda: _append(output, "runs", files.get("runs", []), run_id)) else []
    _step("staging", lambda: remove_plan(output, run_id))
    return done


def roll_back(output: str, plan: dict) -> None:
    """Undo a run's history appends (remove actions for exactly its files, where its commit added
    them), then remove its plan: nothing of the run stays in the store. For a run whose merge of
    `current` did not go through and never will (it lost to another run, or its process is gone)."""
    files = _by_table(plan["files"])
    for name in HISTORY:
        _step(f"roll back {name}", lambda n=name: _remove(output, n, files.get(n, [])))
    _step("staging", lambda: remove_plan(output, plan["run"]["run_id"]))


def remove_plan(output: str, run_id: str) -> None:
    """The run's staging folder (its plan, its `current` rows) goes. _staging itself stays, even empty:
    removing it races other runs creating their folders in it (their mkdir fails)."""
    fs, root = filesystem(output)
    try:
        fs.rm(join(root, STAGING, run_id), recursive=True)
    except FileNotFoundError:
        pass  # removed already (a retry, or another process completing the same plan)


def _by_table(files: Iterable[dict]) -> dict[str, list[dict]]:
    by_table: dict[str, list[dict]] = {}
    for written in files:
        by_table.setdefault(written["table"], []).append(written)
    return by_table


def _step(name: str, do: Callable[[], Any]) -> Any:
    """One step of the commit (name: what it writes), tried again after a transient failure. Every
    step is idempotent (it first checks whether it is done), so that a retry after a failure that hid
    a success (the reply lost) does nothing twice."""
    for wait in (*RETRY_WAITS_S, None):
        try:
            return do()
        except Exception as exc:  # noqa: BLE001 - each storage raises its own types; _transient sorts them
            if wait is None or not _transient(exc):
                raise
            time.sleep(wait)


def _transient(exc: Exception) -> bool:
    """Whether a failure may pass on a retry: not a lost race, not the storage refusing writes (full,
    read-only, no permission), not a table that is not what the commit expects."""
    from deltalake.exceptions import DeltaProtocolError, SchemaMismatchError, TableNotFoundError
    lasting = (StoreConflict, DeltaProtocolError, SchemaMismatchError, TableNotFoundError,
               LookupError, ValueError, TypeError, AttributeError)  # the last four: a bug, not the storage
    return not isinstance(exc, lasting) and not writes_refused(exc)


def _append(output: str, name: str, files: list[dict], run_id: str) -> bool:
    """Add the run's files to a table in one commit carrying its transaction id, unless done.
    Returns whether this call committed."""
    from deltalake import CommitProperties
    if not files:
        return False
    uri = join(output, name)
    table = delta_table(uri)  # opened once: it says whether the run committed, and takes the commit
    if _has_committed(table, run_id):
        return False
    table.create_write_transaction([add_action(uri, w) for w in files], "append", TABLES[name],
                                   commit_properties=CommitProperties(app_transactions=[_app(run_id)]))
    return True


def _merge_current(output: str, plan: dict, files: list[dict]) -> bool:
    """The deciding commit: the run's rows merged into `current` as of the snapshot its plan read,
    with no retry, so that a commit since then (another run's) makes this one fail: StoreConflict.
    Returns whether this call committed."""
    from deltalake import CommitProperties
    from deltalake.exceptions import CommitFailedError
    current, run_id = join(output, "current"), plan["run"]["run_id"]
    if not files or committed(current, run_id):  # done: by this run before a retry, or by another process
        return False
    source = pa.concat_tables([read_parquet(w["path"]) for w in files]).cast(CURRENT_SCHEMA)
    try:
        (delta_table(current, plan["state_version"])
         .merge(source, "t.uri = s.uri AND t.model = s.model", source_alias="s", target_alias="t",
                commit_properties=CommitProperties(app_transactions=[_app(run_id)], max_commit_retries=0))
         .when_matched_update_all().when_not_matched_insert_all().execute())
    except CommitFailedError as exc:
        if not committed(current, run_id):
            raise StoreConflict(f"another run committed to {output} while run {run_id} ran: nothing of "
                                f"this run was committed; run again (it tags only what is still missing)") from exc
    return True


def _remove(output: str, name: str, files: list[dict]) -> bool:
    """Remove those of the files that the table holds, in one commit. Returns whether it committed."""
    from deltalake.transaction import RemoveAction
    uri = join(output, name)
    table = delta_table(uri)
    live = set(pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist())
    ours = [w for w in files if _relative(uri, w) in live]
    if not ours:
        return False
    now_ms = int(time.time() * 1000)
    table.create_write_transaction([RemoveAction(_relative(uri, w), True, now_ms, w["size"]) for w in ours],
                                   "append", TABLES[name])
    return True


def runs_table(rows: list[dict]) -> pa.Table:
    """Runs rows as the commit plan holds them (times as epoch seconds, failed_by_kind a dict) -> the runs table."""
    def utc(seconds):
        return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)
    rows = [{**r, "started": utc(r["started"]), "finished": utc(r.get("finished")),
             "failed_by_kind": list(r["failed_by_kind"].items())} for r in rows]
    return pa.Table.from_pylist(rows, schema=RUNS_SCHEMA)


RunEntry = Tuple[str, Any]  # (what, value): what CommitRun's branches tell RunTotals


class CommitRun(beam.PTransform):
    """The run's rows ({"tracks", "patches", "errors", "current"}, and {"listed", "skipped",
    "removed"} to count) -> Parquet files in the store's folders -> one commit (commit_run). Emits the
    runs row."""

    def __init__(self, run: StoreRun):
        super().__init__()
        self.run = run

    def expand(self, outputs):
        output, run_id = self.run.output, self.run.facts.run_id
        folders = {name: join(output, name) for name in HISTORY}
        folders["current"] = join(output, STAGING, run_id, "current")
        entries = [outputs[name] | f"Write{name.capitalize()}" >> beam.ParDo(
                       WriteBundleFiles(name, folder, TABLES[name], run_id))
                   | f"{name.capitalize()}Files" >> beam.Map(lambda written: ("file", written)).with_output_types(RunEntry)
                   for name, folder in folders.items()]
        entries += [outputs[name] | f"Count{name.capitalize()}" >> beam.Map(lambda _, n=name: (n, None)).with_output_types(RunEntry)
                    for name in ("listed", "skipped", "removed")]
        entries += [outputs["tracks"] | "Tagged" >> beam.Map(lambda t: ("tagged", t["duration_s"])).with_output_types(RunEntry),
                    outputs["errors"] | "Failed" >> beam.Map(lambda e: ("failed", e["error"])).with_output_types(RunEntry)]
        # One combine for all the totals, its partial sums taken in the producing stages: a combine per
        # count was ~60 more transforms and 10 more stages, 0.2 s of every run's fixed cost. Every
        # branch is typed RunEntry, so that the Flatten reads all of them with one coder (at 100,000
        # inputs, a Flatten of branches with different coders read one's bytes with another's coder).
        totals = tuple(entries) | "AllEntries" >> beam.Flatten() | "Totals" >> beam.CombineGlobally(RunTotals())
        return totals | "Commit" >> beam.Map(commit_totals, self.run)


class RunTotals(beam.CombineFn):
    """RunEntry elements -> what the commit needs: {"files": [written file], "listed", "skipped",
    "removed", "tagged": counts, "audio_s": tagged audio, "failed_by_kind": {error kind: count}}.
    Entries: ("file", a file WriteBundleFiles wrote), ("listed" | "skipped" | "removed", None),
    ("tagged", the track's audio seconds), ("failed", the error's kind)."""

    def create_accumulator(self) -> dict:
        return {"files": [], "listed": 0, "skipped": 0, "removed": 0, "tagged": 0, "audio_s": 0.0, "failed_by_kind": {}}

    def add_input(self, totals: dict, entry: tuple) -> dict:
        what, value = entry
        if what == "file":
            totals["files"].append(value)
        elif what == "failed":
            totals["failed_by_kind"][value] = totals["failed_by_kind"].get(value, 0) + 1
        else:
            totals[what] += 1
            if what == "tagged":
                totals["audio_s"] += value
        return totals

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for totals in accumulators:
            merged["files"] += totals["files"]
            for kind, count in totals["failed_by_kind"].items():
                merged["failed_by_kind"][kind] = merged["failed_by_kind"].get(kind, 0) + count
            for key in ("listed", "skipped", "removed", "tagged", "audio_s"):
                merged[key] += totals[key]
        return merged

    def extract_output(self, totals: dict) -> dict:
        return totals


def commit_totals(totals: dict, run: StoreRun) -> dict:
    """RunTotals' output -> the run's runs row, committed with the files its workers wrote."""
    finished = time.time()
    failed = totals["failed_by_kind"]
    row = {**run.row, "run_id": run.facts.run_id, "status": "finished", "model": run.facts.model,
           "fingerprint": run.facts.fingerprint, "settings": run.facts.settings,
           "finished": finished, "wall_s": finished - run.row["started"], "listed": totals["listed"],
           "skipped": totals["skipped"], "tagged": totals["tagged"], "failed": sum(failed.values()),
           "failed_by_kind": failed, "removed": totals["removed"], "audio_s": float(totals["audio_s"])}
    return commit_run(run.output, run.current_version, row, totals["files"])
