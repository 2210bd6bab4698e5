"""The run's commit: the files its workers wrote become visible in one finalising step.

Workers write Parquet files straight into the table folders (transforms.sinks); until a commit names
them, no Delta reader sees them. The finalising step (commit_run) first merges the run's rows into
`current`, from the snapshot the run's plan read and with no retry, so that of two runs that planned
on the same snapshot only the first commits (the other stops with StoreConflict and leaves nothing
visible); then it appends to tracks, patches and errors and adds the runs row. Each commit carries
the run's application transaction id, so that a retried finalisation skips what is done. The commit
plan is written to _staging before the first commit: a run killed after its `current` merge is
completed by the next run (store.recovery).

CommitRun is that step in the pipeline: the run's rows -> files in the table folders -> the totals
of the runs row -> commit_run.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Tuple

import apache_beam as beam
import fsspec
import pyarrow as pa

from musicnn_beam.store.errors import StoreConflict
from musicnn_beam.store.location import delta_table, filesystem, join, storage_options
from musicnn_beam.store.plan import StoreRun
from musicnn_beam.store.read import read_parquet
from musicnn_beam.store.schema import CURRENT_SCHEMA, HISTORY, RUNS_SCHEMA, STAGING, TABLES
from musicnn_beam.transforms.sinks import WriteBundleFiles

APP_ID = "musicnn-beam"


def _app(run_id: str):
    from deltalake import Transaction
    return Transaction(f"{APP_ID}/{run_id}", 1)


def committed(table_uri: str, run_id: str) -> bool:
    """Whether the run has committed to the table (its application transaction is in the log)."""
    return delta_table(table_uri).transaction_version(f"{APP_ID}/{run_id}") is not None


def add_action(table_root: str, written: dict):
    """A file a worker wrote (sinks: {"path", "size", "rows"}) -> its Delta add action."""
    from deltalake.transaction import AddAction
    relative = written["path"][len(table_root.rstrip("/")) + 1:]
    return AddAction(relative, written["size"], {}, int(time.time() * 1000), True,
                     json.dumps({"numRecords": written["rows"]}))


def commit_run(output: str, current_version: int, run: dict, written: Iterable[dict]) -> dict:
    """The finalising step: write the run's commit plan, then commit it (apply_plan). written: every
    file the run's workers wrote ({"table", "path", "size", "rows"}); run: its runs row."""
    written = list(written)
    # "state_version" is the key's name on disk since the first store: a plan a killed run of an earlier
    # release left must still complete.
    plan = {"run": run, "state_version": current_version, "files": written}
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
    if staged and not committed(current, run_id):
        source = pa.concat_tables([read_parquet(p) for p in staged]).cast(CURRENT_SCHEMA)
        try:
            (delta_table(current, plan["state_version"])
             .merge(source, "t.uri = s.uri AND t.model = s.model", source_alias="s", target_alias="t",
                    commit_properties=CommitProperties(app_transactions=[_app(run_id)], max_commit_retries=0))
             .when_matched_update_all().when_not_matched_insert_all().execute())
        except CommitFailedError as exc:
            if not committed(current, run_id):
                raise StoreConflict(f"another run committed to {output} while run {run_id} ran: nothing of "
                                    f"this run was committed; run again (it tags only what is still missing)") from exc
    for name, schema in HISTORY.items():
        uri = join(output, name)
        files = by_table.get(name, [])
        if files and not committed(uri, run_id):
            delta_table(uri).create_write_transaction([add_action(uri, w) for w in files], "append", schema,
                                                      commit_properties=CommitProperties(app_transactions=[_app(run_id)]))
    runs = join(output, "runs")
    if not committed(runs, run_id):
        write_deltalake(runs, runs_table([run]), mode="append", storage_options=storage_options(runs),
                        commit_properties=CommitProperties(app_transactions=[_app(run_id)]))
    fs, root = filesystem(output)
    staging = join(root, STAGING, run_id)
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    try:
        fs.rmdir(join(root, STAGING))  # local disk: the folder goes once empty (a bucket has no folders)
    except (OSError, NotImplementedError):
        pass


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
