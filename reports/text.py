"""A store's current view as text: per model, every file's latest result (top tags, error or removed),
and the last run (`python -m pipeline.report STORE`); and a runs row in one line, as a run ends."""
from __future__ import annotations

import re

from musicnn_beam.store.location import join
from musicnn_beam.store.read import read_table

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ReportError(Exception):
    """A report that cannot be made as asked (no such model in the store): reported in one line, exit
    status 2."""


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


def format_report(output: str, top: int = 3, model: str | None = None) -> str:
    """The text report; model: that model's rows only (None: every model's). Raises ReportError,
    StoreUnreadable."""
    def rows(table: str) -> list[dict]:
        return [r for r in read_table(output, table).to_pylist() if model is None or r["model"] == model]

    current = sorted(rows("current"), key=lambda r: (r["model"], r["status"] != "tracked", r["uri"]))
    if model is not None and not current:
        raise ReportError(f"no model {model!r} in {join(output, 'current')}")
    runs = sorted(rows("runs"), key=lambda r: r["finished"])
    prefix = common_prefix([r["uri"] for r in current])
    width = max([len(r["uri"].removeprefix(f"{prefix}/") if prefix else r["uri"]) for r in current] + [5])
    lines = [f"under {prefix}/"] if prefix else []
    for model in sorted({r["model"] for r in current}):
        rows = [r for r in current if r["model"] == model]
        counts = {s: sum(r["status"] == s for r in rows) for s in ("tracked", "error", "removed")}
        lines += ["", f"model {model}: {counts['tracked']} tracked, {counts['error']} errors, {counts['removed']} removed",
                  f"{'track':<{width}}  {'dur s':>6}  top tags"]
        for row in rows:
            uri = row["uri"].removeprefix(f"{prefix}/") if prefix else row["uri"]
            if row["status"] == "tracked":
                scores = dict(zip(row["top_tags"], sorted(row["activations"], reverse=True)))
                tags = ", ".join(f"{tag} {scores[tag]:.2f}" for tag in row["top_tags"][:top])
                lines.append(f"{uri:<{width}}  {row['duration_s']:6.1f}  {tags}")
            elif row["status"] == "error":
                lines.append(f"{uri:<{width}}  {'-':>6}  error {row['error']}: {row['message']}")
            else:
                lines.append(f"{uri:<{width}}  {'-':>6}  removed (run {row['run_id']})")
    if runs:
        lines += ["", f"last run: {run_line(runs[-1])}"]
    return "\n".join(lines).lstrip("\n")


def run_line(run: dict) -> str:
    """A runs row in one line, as the CLI prints it at the end of a run."""
    kinds = dict(run["failed_by_kind"] or [])
    failed = f"{run['failed']} failed" + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else "")
    return (f"run {run['run_id']} {run['status']} in {run['wall_s']:.1f} s: {run['listed']} listed, "
            f"{run['skipped']} skipped, {run['tagged']} tagged ({run['audio_s']:.1f} audio s), {failed}, "
            f"{run['removed']} removed; model {run['model']} ({run['fingerprint']}), {run['settings']}")
