"""Reading the store: one way to open a table (open_table), its rows as the README types them
(read_table), a run's row (read_run), and `current` as the plan reads it (current_version,
current_files, read_current). Every reader raises StoreUnreadable, one line naming the table."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from musicnn_beam.store.errors import unreadable
from musicnn_beam.store.location import delta_table, join
from musicnn_beam.store.schema import ADDED_COLUMNS, PLAN_COLUMNS, TABLES


def open_table(output: str, name: str, version: Optional[int] = None):
    """The store's table `name` as a deltalake DeltaTable, as of `version` (None: its latest commit).
    Any failure is the store's (missing, not Delta, storage unreachable: each storage raises its own
    types), not a bug of the caller: StoreUnreadable."""
    uri = join(output, name)
    try:
        return delta_table(uri, version)
    except Exception as exc:  # noqa: BLE001 - see above
        raise unreadable(uri, exc) from exc


def read_table(output: str, name: str) -> pa.Table:
    """A table as of its latest commit (what any Delta reader sees), in the README's types."""
    table = open_table(output, name)
    try:
        return _as_documented(table.to_pyarrow_table(), name)
    except Exception as exc:  # noqa: BLE001 - a data file that cannot be read: as open_table
        raise unreadable(join(output, name), exc) from exc


def read_run(output: str, run_id: str) -> Optional[dict]:
    """A run's row in the runs table, or None. Each run appends one file to it: the files are read
    newest first, each alone (no pyarrow.dataset, see read_parquet), until one holds the run."""
    runs = join(output, "runs")
    actions = pa.table(open_table(output, "runs").get_add_actions(flatten=True)).to_pydict()  # an arro3 table
    for _, path in sorted(zip(actions["modification_time"], actions["path"]), reverse=True):
        rows = _as_documented(read_parquet(join(runs, path)), "runs").to_pylist()
        found = [row for row in rows if row["run_id"] == run_id]
        if found:
            return found[0]
    return None


def current_version(output: str) -> int:
    """The version of `current`: the snapshot a run's plan reads."""
    return open_table(output, "current").version()


def current_files(output: str, version: int) -> list[str]:
    """The Parquet files of `current` at `version`: what the plan reads, a file per worker."""
    return open_table(output, "current", version).file_uris()


def read_current(file_uri: str, model: str) -> Iterator[dict]:
    """The `current` rows of one model in one of its files (fsspec: any storage), PLAN_COLUMNS only."""
    rows = read_parquet(file_uri, PLAN_COLUMNS).to_pylist()  # delta-rs writes string_view: no filters
    yield from (row for row in rows if row["model"] == model)


def read_small_current(file_uris: Iterable[str], model: str, max_rows: int) -> Optional[list[dict]]:
    """read_current over all of `current`'s files, or None when they hold more than max_rows rows
    (told by the files' footers, before reading any)."""
    file_uris = list(file_uris)
    rows = 0
    for uri in file_uris:
        try:
            with fsspec.open(uri, "rb") as f:
                rows += pq.ParquetFile(f).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - as read_parquet
            raise unreadable(uri, exc) from exc
    if rows > max_rows:
        return None
    return [row for uri in file_uris for row in read_current(uri, model)]


def read_parquet(uri: str, columns: Optional[list[str]] = None) -> pa.Table:
    """One Parquet file of the store. Not pq.read_table: that goes through pyarrow.dataset, whose
    import (Acero's library) is 0.2 s of a short run's fixed cost."""
    try:
        with fsspec.open(uri, "rb") as f:
            return pq.ParquetFile(f).read(columns=columns)
    except Exception as exc:  # noqa: BLE001 - as open_table
        raise unreadable(uri, exc) from exc


def _as_documented(table: pa.Table, name: str) -> pa.Table:
    """A table as delta-rs reads it -> the README's column types (delta-rs reads strings back as
    string_view), with the columns added since (ADDED_COLUMNS) as nulls where no run has added them."""
    for column in ADDED_COLUMNS.get(name, ()):
        if column not in table.column_names:
            table = table.append_column(TABLES[name].field(column), pa.nulls(len(table), TABLES[name].field(column).type))
    return table.select(TABLES[name].names).cast(TABLES[name])
