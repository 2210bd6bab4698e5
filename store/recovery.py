"""What interrupted runs left in a store, repaired by the next run before it reads `current`: a
commit plan whose merge of `current` went through is completed at once (its history is committed
already; its runs row is added); one whose merge did not go through is rolled back (its history
appends removed) once its process is certainly gone: at once when it ran on this machine, else a day
(ORPHAN_HOURS) later. Until then its history rows are not part of the store (no runs row names
them). The files that no commit names (a run killed before its commit, a retried bundle's) are
removed once old enough that no run can still be writing them."""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from typing import Optional

from musicnn_beam.store.commit import apply_plan, committed, roll_back
from musicnn_beam.store.location import delta_table, filesystem, join
from musicnn_beam.store.schema import HISTORY, STAGING

# A run's files that no commit names are removed by a later run once this old, and a plan from
# another machine rolled back: a run still writing them, or still committing, is younger.
ORPHAN_HOURS = 24


def recover(output: str, now: Optional[float] = None) -> list[str]:
    """Complete or roll back the commit plans that interrupted runs left in _staging, and remove what
    no commit names once older than ORPHAN_HOURS: staging folders without a plan and the tables'
    unnamed data files. Returns what it did, a line each (`completed the commit of run X`, `rolled
    back run X`)."""
    now = time.time() if now is None else now
    fs, root = filesystem(output)
    done = []
    staging = join(root, STAGING)
    for folder in (fs.ls(staging, detail=False) if fs.exists(staging) else []):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        written = max([_modified(info) for info in fs.find(folder, detail=True).values()] or [now])
        old = now - written > ORPHAN_HOURS * 3600
        plan = _read_plan(fs, join(folder, "plan.json"))
        if plan is not None and _merged(output, plan):
            if apply_plan(output, plan):
                done.append(f"completed the commit of run {run_id}")
        elif plan is not None and (old or _process_gone(plan)):
            roll_back(output, plan)
            done.append(f"rolled back run {run_id}")
        elif old:  # no plan: a run killed before its commit (or a write probe); its files are no one's
            fs.rm(folder, recursive=True)
    for name in [*HISTORY, "current"]:  # current: the files its merges replaced
        delta_table(join(output, name)).vacuum(retention_hours=ORPHAN_HOURS, dry_run=False, full=True,
                                               enforce_retention_duration=False)
    return done


def _read_plan(fs, path: str) -> Optional[dict]:
    """A run's commit plan, or None: none written, or one being written (it does not parse yet)."""
    try:
        return json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return None


def _merged(output: str, plan: dict) -> bool:
    """Whether the plan's deciding commit, its merge of `current`, went through (a run with no
    `current` rows has none to make): from then on the plan is completed, never rolled back."""
    return committed(join(output, "current"), plan["run"]["run_id"]) or not any(
        w["table"] == "current" for w in plan["files"])


def _process_gone(plan: dict) -> bool:
    """Whether the process that commits the plan is certainly gone: it ran on this machine and its
    pid is no process, or is this process (which has no commit under way while it opens the store:
    a run of it that gave up, or a restarted container's launcher with the same small pid). A plan
    from another machine (or an earlier release's, which names none): no."""
    return plan.get("host") == socket.gethostname() and (plan["pid"] == os.getpid() or not process_running(plan["pid"]))


def process_running(pid: int) -> bool:
    """Whether a process of this machine with this pid is alive (any user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


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
