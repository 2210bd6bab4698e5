"""Bundle files: rows roll over into Parquet files in the table's folder, each reported with what its
commit needs (size, rows), every row once."""
from __future__ import annotations

import os

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from musicnn_beam.transforms.sinks import WriteBundleFiles
from musicnn_beam.store.schema import ERRORS_SCHEMA

pytestmark = pytest.mark.integration  # runs Beam pipelines


def check_reported(folder: str, expected_uris: list[str]):
    """assert_that's matcher: the files reported are those in the folder, each with its size and rows."""
    def check(reported: list[dict]) -> None:
        on_disk = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        assert len(on_disk) >= 7 and all(os.path.basename(f).startswith("part-R1-") for f in on_disk)
        assert sorted(w["path"] for w in reported) == on_disk
        for written in reported:
            assert written["table"] == "errors" and written["size"] == os.path.getsize(written["path"])
            assert written["rows"] == pq.read_metadata(written["path"]).num_rows
        uris = [u for f in on_disk for u in pq.read_table(f).column("uri").to_pylist()]
        assert sorted(uris) == sorted(expected_uris)
    return check


def test_rows_roll_over_into_files_and_all_land_once(tmp_path):
    rows = [{"uri": f"u{i}", "track_id": None, "stage": "decode", "error": "NotAudio", "message": "m",
             "model": "msd-musicnn", "version": "v", "run_id": "R1"} for i in range(25)]
    folder = str(tmp_path / "errors")
    with beam.Pipeline(runner=FnApiRunner()) as p:
        files = (p | beam.Create(rows)
                 | beam.ParDo(WriteBundleFiles("errors", folder, ERRORS_SCHEMA, "R1", rows_per_file=4, rows_per_group=2)))
        assert_that(files, check_reported(folder, [r["uri"] for r in rows]))
    assert os.listdir(folder)  # the matcher ran on the written files
