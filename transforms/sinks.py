"""The output contract: three Parquet datasets (tracks/, patches/, errors/) and model.json, written
through fsspec so that local disk, gs:// and s3:// work the same on every runner.

Column names and types here are public (README, "Output"); tests check them.

Files are written as Beam's file sinks do: each bundle writes its files under a temporary folder,
and one finalising step, fed only with the files of bundles that succeeded, moves them into place
(a retried bundle's leftovers are never published) and removes the temporary folder.
"""
from __future__ import annotations

import json
import uuid
from typing import Iterable, Iterator

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms.window import GlobalWindows
from fsspec.core import url_to_fs

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
])

PATCHES_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("track_id", pa.string()),
    ("patch", pa.int32()),
    ("start_s", pa.float64()),
    ("activations", pa.list_(pa.float32())),
    ("embedding", pa.list_(pa.float32())),
])

ERRORS_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("track_id", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("message", pa.string()),
])

TABLES = {"tracks": TRACKS_SCHEMA, "patches": PATCHES_SCHEMA, "errors": ERRORS_SCHEMA}
MODEL_FILE = "model.json"
# Rows are held as Python objects only until a row group is written (a patches row is ~8 KB as
# Python floats, ~1 KB in Parquet): memory per bundle stays bounded whatever the catalogue's size.
ROWS_PER_GROUP = 2048
# Bundles write under OUTPUT/.temp-TABLE-RUN/ until the run publishes them; a run that was killed leaves
# such folders, and the next run on OUTPUT removes them.
TEMP_PREFIX = ".temp-"
ROWS_PER_FILE = 100_000


def table_path(output: str, table: str) -> str:
    return f"{output.rstrip('/')}/{table}"


class _WriteBundleFiles(beam.DoFn):
    """Rows -> Parquet files in a temporary folder, streamed a row group at a time; emits each file's path."""

    def __init__(self, temp_dir: str, schema: pa.Schema, rows_per_file: int, rows_per_group: int):
        self.temp_dir = temp_dir
        self.schema = schema
        self.rows_per_file = rows_per_file
        self.rows_per_group = rows_per_group

    def start_bundle(self):
        self._rows: list[dict] = []
        self._file = self._writer = self._path = None
        self._rows_in_file = 0

    def _write_group(self) -> None:
        if self._writer is None:
            self._path = f"{self.temp_dir}/{uuid.uuid4().hex}.parquet"
            self._file = fsspec.open(self._path, "wb").open()
            self._writer = pq.ParquetWriter(self._file, self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
        self._rows_in_file += len(self._rows)
        self._rows = []

    def _close_file(self) -> str:
        if self._rows:
            self._write_group()
        self._writer.close()
        self._file.close()
        path, self._file, self._writer, self._rows_in_file = self._path, None, None, 0
        return path

    def process(self, row: dict) -> Iterator[str]:
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_group:
            self._write_group()
            if self._rows_in_file >= self.rows_per_file:
                yield self._close_file()

    def finish_bundle(self):
        if self._rows or self._writer is not None:
            yield GlobalWindows.windowed_value(self._close_file())


def publish(written: Iterable[str], temp_dir: str, final_dir: str, schema: pa.Schema) -> list[str]:
    """Move the written files to final_dir as part-NNNNN-of-NNNNN.parquet; an empty table gets one
    empty file, so that readers always find its schema."""
    fs, temp_root = url_to_fs(temp_dir)
    _, final_root = url_to_fs(final_dir)
    sources = sorted(url_to_fs(p)[1] for p in written)
    fs.makedirs(final_root, exist_ok=True)
    total = max(len(sources), 1)
    targets = [f"{final_root}/part-{i:05d}-of-{total:05d}.parquet" for i in range(total)]
    if sources:
        for source, target in zip(sources, targets):
            fs.mv(source, target)
    else:
        with fs.open(targets[0], "wb") as f:
            pq.write_table(schema.empty_table(), f)
    if fs.exists(temp_root):
        fs.rm(temp_root, recursive=True)
    return targets


class WriteTable(beam.PTransform):
    """dict rows -> Parquet files under OUTPUT/TABLE/ on any fsspec filesystem."""

    def __init__(self, output: str, table: str, rows_per_file: int = ROWS_PER_FILE,
                 rows_per_group: int = ROWS_PER_GROUP):
        super().__init__(label=f"Write{table.capitalize()}")
        self.output = output
        self.table = table
        self.rows_per_file = rows_per_file
        self.rows_per_group = rows_per_group

    def expand(self, rows):
        schema = TABLES[self.table]
        final_dir = table_path(self.output, self.table)
        temp_dir = f"{self.output.rstrip('/')}/{TEMP_PREFIX}{self.table}-{uuid.uuid4().hex[:12]}"
        return (rows
                | "WriteFiles" >> beam.ParDo(_WriteBundleFiles(temp_dir, schema, self.rows_per_file, self.rows_per_group))
                | "Collect" >> beam.combiners.ToList()
                | "Publish" >> beam.Map(publish, temp_dir, final_dir, schema))


def write_model_metadata(output: str, metadata: dict) -> None:
    with fsspec.open(f"{output.rstrip('/')}/{MODEL_FILE}", "w") as f:
        json.dump(metadata, f, indent=2)
