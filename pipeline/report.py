"""Print an output folder as a table: top tags per track, then the errors.

    python -m pipeline.report OUTPUT_DIR
"""
from __future__ import annotations

import os
import sys

import pyarrow.dataset as ds

from transforms.sinks import table_path


def read_table(output: str, table: str) -> list[dict]:
    return ds.dataset(table_path(output, table), format="parquet").to_table().to_pylist()


def format_report(output: str, top: int = 3) -> str:
    tracks = sorted(read_table(output, "tracks"), key=lambda r: r["uri"])
    errors = sorted(read_table(output, "errors"), key=lambda r: r["uri"])
    uris = [r["uri"] for r in tracks + errors]
    prefix = os.path.commonpath(uris) if len(uris) > 1 else ""
    for row in tracks + errors:
        row["uri"] = os.path.relpath(row["uri"], prefix) if prefix else row["uri"]
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


if __name__ == "__main__":
    print(format_report(sys.argv[1]))
