"""Writing a run's rows: Parquet files, a bundle at a time, straight into the store's table folders,
through fsspec so that local disk, gs:// and s3:// work the same on every runner.

A file is invisible to every Delta reader until the run's finalising step commits it
(store.commit); a bundle that fails and is retried leaves files that no commit names, which a later
run removes (store.recovery).
"""
from __future__ import annotations

import uuid
from typing import Iterator

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms.window import GlobalWindows

# Rows are held as Python objects only until a row group is written (a patches row is ~8 KB as
# Python floats, ~1 KB in Parquet): memory per bundle stays bounded whatever the catalogue's size.
ROWS_PER_GROUP = 2048
ROWS_PER_FILE = 100_000


class WriteBundleFiles(beam.DoFn):
    """Rows -> Parquet files in `folder`, streamed a row group at a time; emits each file as
    {"table", "path", "size", "rows"}, what its commit needs."""

    def __init__(self, table: str, folder: str, schema: pa.Schema, run_id: str,
                 rows_per_file: int = ROWS_PER_FILE, rows_per_group: int = ROWS_PER_GROUP):
        self.table = table
        self.folder = folder.rstrip("/")
        self.schema = schema
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.rows_per_group = rows_per_group

    def start_bundle(self):
        self._rows: list[dict] = []
        self._file = self._writer = self._path = None
        self._rows_in_file = 0

    def _write_group(self) -> None:
        if self._writer is None:
            self._path = f"{self.folder}/part-{self.run_id}-{uuid.uuid4().hex}.parquet"
            self._file = fsspec.open(self._path, "wb").open()
            self._writer = pq.ParquetWriter(self._file, self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
        self._rows_in_file += len(self._rows)
        self._rows = []

    def _close_file(self) -> dict:
        if self._rows:
            self._write_group()
        self._writer.close()
        size = self._file.tell()
        self._file.close()
        written = {"table": self.table, "path": self._path, "size": size, "rows": self._rows_in_file}
        self._file, self._writer, self._rows_in_file = None, None, 0
        return written

    def process(self, row: dict) -> Iterator[dict]:
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_group:
            self._write_group()
            if self._rows_in_file >= self.rows_per_file:
                yield self._close_file()

    def finish_bundle(self):
        if self._rows or self._writer is not None:
            yield GlobalWindows.windowed_value(self._close_file())
