"""The catalogue store: Delta Lake tables under OUTPUT (local disk, s3://, gs://), written with
deltalake (delta-rs: no JVM, no catalog service).

    schema.py    the five tables, their schemas and the settings text
    location.py  the tables' URIs, storage options and filesystem
    errors.py    StoreError, StoreUnreadable, StoreDamaged, StoreConflict, and the one-line message of an error
    open.py      open_store: check, create and upgrade the tables, finish killed runs
    check.py     damage: log entries that do not parse, data files missing or cut, columns not ours
    read.py      one way to open a table; a reader per table (read_table, read_run, read_current)
    plan.py      the plan: which listed inputs a run tags, skips or marks removed (PlanRun)
    commit.py    the run's one commit (commit_run, CommitRun)
    recovery.py  what interrupted runs left: plans completed or rolled back, files no commit names removed
"""
