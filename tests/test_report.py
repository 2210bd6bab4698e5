"""`python -m pipeline.report OUTPUT` prints the same table for an output in a bucket as for a local one."""
from __future__ import annotations

import subprocess

import pytest

pytest.register_assert_rewrite("tests.servers")  # its assert helpers report values, as in a test

from musicnn_beam.reports.text import common_prefix, format_report
from tests.servers import Store, run_cli

pytest_plugins = ["tests.servers"]


@pytest.mark.unit
@pytest.mark.parametrize("uris, expected", [
    (["/data/in/a.mp3", "/data/in/sub/c.wav", "/data/in/x.mp3"], "/data/in"),
    (["/data/in/sub/c.wav", "/data/in/sub/d.wav"], "/data/in/sub"),
    (["/a/x.mp3", "/b/y.mp3"], ""),  # only the root in common
    (["s3://bkt/in/a.mp3", "s3://bkt/in/sub/c.wav"], "s3://bkt/in"),
    (["s3://bkt/a.mp3", "s3://bkt/b.mp3"], "s3://bkt"),
    (["s3://bkt/in/a.mp3", "s3://other/in/a.mp3"], ""),
    (["gs://bkt/report/in/a.mp3", "gs://bkt/report/in/b.flac"], "gs://bkt/report/in"),
    (["gs://bkt/in/a.mp3", "s3://bkt/in/b.mp3"], ""),
    (["/bkt/in/a.mp3", "s3://bkt/in/b.mp3"], ""),
    (["file:///data/in/a.mp3", "file:///data/in/b.mp3"], "file:///data/in"),
    (["s3://bkt/in/a.mp3"], ""),
    (["/data/in/a.mp3"], ""),
    ([], ""),
])
def test_common_prefix(uris, expected):
    assert common_prefix(uris) == expected


# --- against the storage servers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_output(converted_models, catalogue, tmp_path_factory) -> str:
    output = tmp_path_factory.mktemp("report-local") / "out"
    assert run_cli(["--input", str(catalogue), "--output", str(output)]) == 0
    return str(output)


@pytest.fixture(scope="module", params=["s3", "gs"])
def store(request) -> Store:
    return request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[request.param])


@pytest.fixture(scope="module")
def bucket_output(converted_models, store, catalogue, tmp_path_factory) -> str:
    """The catalogue uploaded to BUCKET/report/in/ and tagged into BUCKET/report/out (for GCS, into a
    local store: no emulator serves the XML API delta-rs speaks)."""
    fs = store.fs()
    for path in sorted(p for p in catalogue.rglob("*") if p.is_file()):
        fs.put_file(str(path), store.url(f"report/in/{path.relative_to(catalogue).as_posix()}"))
    output = store.url("report/out") if store.protocol == "s3" else str(tmp_path_factory.mktemp("report-gs") / "out")
    assert run_cli(["--input", store.url("report/in/"), "--output", output]) == 0
    return output


@pytest.mark.integration
def test_bucket_report_equals_local_report(store, bucket_output, local_output):
    ours, theirs = format_report(bucket_output).splitlines(), format_report(local_output).splitlines()
    assert ours[0] == f"under {store.protocol}://{store.bucket}/report/in/"
    assert theirs[0].startswith("under /")
    assert ours[1:-1] == theirs[1:-1]  # all but the last run's line (its id and time)
    for report in (ours, theirs):
        assert report[-1].startswith("last run: run ") and "4 listed, 0 skipped, 3 tagged" in report[-1]


@pytest.mark.integration
def test_html_report_of_a_bucket(bucket_output, local_output):
    """The page reads a store in a bucket as a local one: the same numbers, the same figures."""
    from musicnn_beam.reports.page import render

    def glance(page: str) -> str:
        return page.split('<h2 id="glance">', 1)[1].split("</table>", 1)[0]

    ours, theirs = render(bucket_output), render(local_output)
    assert glance(ours) == glance(theirs) and "<td>tracked files</td><td class=\"num\">3</td>" in ours
    assert ours.count("data-figure=") == theirs.count("data-figure=") == 2 + 3 + 1  # growth, tags, 3 taggrams, map
    assert ours.count('<table class="similar">') == 3


@pytest.mark.integration
def test_cli_prints_the_report(store, bucket_output, command):
    done = _report(command, bucket_output)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == format_report(bucket_output) + "\n"

    missing = _report(command, store.url("report/nothing-here"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1, missing.stderr
    assert missing.stderr.startswith("musicnn-beam report: error: "), missing.stderr


@pytest.mark.unit
@pytest.mark.parametrize("argv", [[], ["a", "b"]], ids=["none", "two"])
def test_cli_wants_one_argument(argv, command):
    done = _report(command, *argv)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("musicnn-beam report: error: ")


@pytest.mark.unit
def test_cli_on_a_missing_local_folder(tmp_path, command):
    done = _report(command, str(tmp_path / "missing"))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("musicnn-beam report: error: ")


def _report(command, *argv: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.report ARGV`, its main() in this process (conftest.py's command)."""
    from musicnn_beam.pipeline.report import main

    return command(main, *argv)
