"""The Parquet sink: files roll over, every row lands once, empty tables keep their schema."""
from __future__ import annotations

import apache_beam as beam
import pyarrow.dataset as ds
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from transforms.sinks import ERRORS_SCHEMA, WriteTable

pytestmark = pytest.mark.integration  # runs Beam pipelines


def _write(rows: list[dict], output: str, **kwargs) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(rows) | WriteTable(output, "errors", **kwargs)


def test_rows_roll_over_into_files_and_all_land_once(tmp_path):
    rows = [{"uri": f"u{i}", "track_id": None, "stage": "decode", "error": "NotAudio", "message": "m"}
            for i in range(25)]
    _write(rows, str(tmp_path), rows_per_file=4, rows_per_group=2)
    files = sorted(p.name for p in (tmp_path / "errors").iterdir())
    assert len(files) >= 7 and all(f.startswith("part-") and f.endswith(f"-of-{len(files):05d}.parquet") for f in files)
    table = ds.dataset(str(tmp_path / "errors"), format="parquet").to_table()
    assert sorted(table.column("uri").to_pylist()) == sorted(r["uri"] for r in rows)
    assert [p.name for p in tmp_path.iterdir()] == ["errors"]  # the temporary folder is gone


def test_empty_table_still_has_its_schema(tmp_path):
    _write([], str(tmp_path))
    table = ds.dataset(str(tmp_path / "errors"), format="parquet").to_table()
    assert table.num_rows == 0 and table.schema.remove_metadata() == ERRORS_SCHEMA
