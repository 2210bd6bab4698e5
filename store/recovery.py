"""What killed runs left in a store: a commit plan whose `current` merge went through is completed,
and the files no commit names (a run killed before its commit, or one that lost a conflict) are
removed once old enough that no run can still be writing them."""
from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Optional

from musicnn_beam.store.commit import apply_plan, committed
from musicnn_beam.store.location import delta_table, filesystem, join
from musicnn_beam.store.schema import HISTORY, STAGING

# A run's files that no commit names are removed by a later run once this old: a run still writing
# them is younger.
ORPHAN_HOURS = 24
# A commit plan whose `current` merge is committed is completed by a later run once this old (its own
# run would have finished it in seconds).
RECOVER_AFTER_S = 600


def recover(output: str, now: Optional[float] = None) -> list[str]:
    """Complete the commit plans whose `current` merge was committed (older than RECOVER_AFTER_S),
    and remove what no commit names once older than ORPHAN_HOURS: staging folders and the tables'
    data files. Returns the run ids completed."""
    now = time.time() if now is None else now
    fs, root = filesystem(output)
    completed = []
    staging = join(root, STAGING)
    for folder in (fs.ls(staging, detail=False) if fs.exists(staging) else []):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        plan_path = join(folder, "plan.json")
        age = now - max([_modified(info) for info in fs.find(folder, detail=True).values()] or [now])
        if fs.exists(plan_path) and age > RECOVER_AFTER_S:
            plan = json.loads(fs.cat_file(plan_path))
            if committed(join(output, "current"), run_id) or not any(w["table"] == "current" for w in plan["files"]):
                apply_plan(output, plan)
                completed.append(run_id)
                continue
        if age > ORPHAN_HOURS * 3600:
            fs.rm(folder, recursive=True)
    for name in [*HISTORY, "current"]:  # current: the files its merges replaced
        delta_table(join(output, name)).vacuum(retention_hours=ORPHAN_HOURS, dry_run=False, full=True,
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
