"""Print an output folder as a table: top tags per track, then the errors.

    python -m pipeline.report OUTPUT      (a local folder or a URI: s3://..., gs://...)
"""
from __future__ import annotations

import os
import re
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from transforms.sinks import table_path

PROG = "musicnn-beam report"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ReportError(Exception):
    """An output that cannot be read: reported in one line, exit status 2."""


def read_table(output: str, table: str) -> pa.Table:
    """OUTPUT/TABLE (a folder of Parquet files) as one Table, local or on any fsspec filesystem."""
    # A fresh, uncached filesystem: a caller in the same process as the run that wrote OUTPUT (a test, a
    # notebook) would otherwise get fsspec's listing from before the write.
    fs, path = url_to_fs(table_path(output, table), skip_instance_cache=True)
    fs.invalidate_cache()
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if {"file", "local"} & set(protocols):
        return ds.dataset(path, format="parquet").to_table()
    # fsspec fetches each file and Arrow parses it from memory. Through pyarrow.fs.PyFileSystem(
    # FSSpecHandler(fs)) instead, Arrow's threads call back into Python, and the process aborted at exit
    # ("terminate called without an active exception") in about one run in 15, use_threads=False or not.
    files = sorted(f for f in fs.find(path) if not _hidden(f.removeprefix(f"{path}/")))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {path}")
    return pa.concat_tables([pq.read_table(pa.BufferReader(fs.cat_file(f))) for f in files],
                            promote_options="default")


def _hidden(relative: str) -> bool:
    """What pyarrow.dataset skips in a folder (so both branches read the same files): names under a
    folder or file whose name starts with "." or "_"."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def common_prefix(uris: list[str]) -> str:
    """The deepest folder above every URI, scheme kept: "s3://b/in", "/data/in". "" when there is none worth
    stripping: fewer than two URIs, mixed schemes or buckets, or only the root "/" in common."""
    if len(uris) < 2:
        return ""
    schemes, folders = set(), []
    for uri in uris:
        match = _SCHEME.match(uri)
        scheme = match.group(0) if match else ""
        schemes.add(scheme)
        folders.append(uri[len(scheme):].split("/")[:-1])  # folders only: no URI is left with an empty name
    if len(schemes) != 1:
        return ""
    common: list[str] = []
    for parts in zip(*folders):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    path = "/".join(common)  # after a scheme, the first part is the bucket: different buckets share nothing
    return schemes.pop() + path if path.strip("/") else ""


def _read_rows(output: str, table: str) -> list[dict]:
    try:
        return sorted(read_table(output, table).to_pylist(), key=lambda r: r["uri"])
    # Any failure to read is the output's fault (missing, not Parquet, storage unreachable: each filesystem
    # raises its own types, botocore's and gcsfs' among them), not a bug here.
    except Exception as exc:
        message = " ".join(str(exc).split())  # one line, whatever the filesystem put in the message
        raise ReportError(f"cannot read {table_path(output, table)}: {type(exc).__name__}: {message}") from exc


def format_report(output: str, top: int = 3) -> str:
    tracks, errors = _read_rows(output, "tracks"), _read_rows(output, "errors")
    prefix = common_prefix([r["uri"] for r in tracks + errors])
    for row in tracks + errors:
        row["uri"] = row["uri"].removeprefix(f"{prefix}/") if prefix else row["uri"]
    width = max([len(r["uri"]) for r in tracks + errors] + [5])
    lines = [f"under {prefix}/"] if prefix else []
    lines += [f"{'track':<{width}}  {'dur s':>6}  {'patches':>7}  top tags"]
    for row in tracks:
        scores = dict(zip(row["top_tags"], sorted(row["activations"], reverse=True)))
        tags = ", ".join(f"{tag} {scores[tag]:.2f}" for tag in row["top_tags"][:top])
        flag = " (padded)" if row["padded"] else ""
        lines.append(f"{row['uri']:<{width}}  {row['duration_s']:6.1f}  {row['n_patches']:7d}  {tags}{flag}")
    lines.append(f"{len(tracks)} tracks tagged, {len(errors)} errors")
    lines += [f"{r['uri']:<{width}}  {r['stage']}: {r['error']}: {r['message']}" for r in errors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"{PROG}: error: expected one argument, the output folder or URI (got {len(args)})",
              file=sys.stderr)
        return 2
    try:
        report = format_report(args[0])
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # All is printed: skip the interpreter's shutdown, where threads left by Beam's imports and fsspec's
    # event loop made the process abort now and then (exit -6 after a complete report), as pipeline.cli does.
    os._exit(code)
