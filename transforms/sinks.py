"""The output contract: three Parquet datasets (tracks/, patches/, errors/) and model.json.

Column names and types here are public (README, "Output"); tests check them.
"""
from __future__ import annotations

import json

import apache_beam as beam
import fsspec
import pyarrow as pa

TRACKS_SCHEMA = pa.schema([
    ("uri", pa.string()),
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
    ("patch", pa.int32()),
    ("start_s", pa.float64()),
    ("activations", pa.list_(pa.float32())),
    ("embedding", pa.list_(pa.float32())),
])

ERRORS_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("stage", pa.string()),
    ("error", pa.string()),
    ("message", pa.string()),
])

TABLES = {"tracks": TRACKS_SCHEMA, "patches": PATCHES_SCHEMA, "errors": ERRORS_SCHEMA}
MODEL_FILE = "model.json"


def table_path(output: str, table: str) -> str:
    return f"{output.rstrip('/')}/{table}"


class WriteTable(beam.PTransform):
    """dict rows -> Parquet files under OUTPUT/TABLE/ (an empty table still gets one file with its schema)."""

    def __init__(self, output: str, table: str):
        super().__init__(label=f"Write{table.capitalize()}")
        self.output = output
        self.table = table

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(
            f"{table_path(self.output, self.table)}/part", schema=TABLES[self.table], file_name_suffix=".parquet")


def write_model_metadata(output: str, metadata: dict) -> None:
    with fsspec.open(f"{output.rstrip('/')}/{MODEL_FILE}", "w") as f:
        json.dump(metadata, f, indent=2)
