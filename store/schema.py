"""The store's layout: five Delta Lake tables under OUTPUT and their schemas (public: README, "Output"),
and the text of the `settings` column.

    tracks/   patches/   errors/   the history: every run appends its rows (each carries run_id)
    current/  one row per (uri, model): the latest finished result (tracked, error or removed),
              what the next run's plan reads
    runs/     one row per finished run: what it did
    _staging/RUN_ID/  a run's current rows and its commit plan until they are committed (store.commit)
"""
from __future__ import annotations

import pyarrow as pa

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

# What the plan reads of a `current` row (tags stay out: 100,000 rows are held as dicts).
PLAN_COLUMNS = ["uri", "model", "status", "track_id", "version", "fingerprint", "settings", "run_id", "error",
                "message"]


def settings_key(patch_hop: int, precision: str) -> str:
    """The settings a result depends on (the `settings` column)."""
    return f"patch_hop={patch_hop};precision={precision}"


def parse_settings(key: str) -> dict[str, str]:
    """settings_key's text -> {"patch_hop": "187", "precision": "float32"}."""
    return dict(part.split("=", 1) for part in key.split(";") if "=" in part)
