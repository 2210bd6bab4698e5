"""What the HTML report shows of a store: SQL over its Delta tables where the rows are, and small numpy
functions over the bounded results.

The SQL runs in deltalake's own engine (QueryBuilder: DataFusion, already inside the pinned deltalake),
which reads local disk and buckets with the store's storage options and streams the tables: a store of
any size is aggregated in memory bounded by the groups (tags, error kinds, runs), and every row list
it returns is bounded (LIMIT) before it reaches Python. DuckDB would need its delta or httpfs
extension, downloaded at run time, to read a store in a bucket; through pyarrow datasets it fails on
the string_view columns delta-rs writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from musicnn_beam.store.read import open_table
from musicnn_beam.store.schema import TABLES
from musicnn_beam.transforms.tags import top_tags

# Everything the page shows is bounded by these, whatever the store's size.
MAP_POINTS = 2000  # tracks on the catalogue map: a deterministic sample (by a hash of the URI)
TAGGRAMS = 12  # tracks shown with a taggram and their neighbours (--track beyond this is dropped)
SAMPLE_TRACKS = 4  # tracks shown when no --track is given
ERROR_KINDS = 30  # error kinds listed (the known kinds are 20; a store's `error` column is free text)
ERROR_EXAMPLES = 5  # example files per error kind
MAX_PATCHES = 20000  # patches read for one taggram (20,000 x 3 s = 16 h: past --max-duration's default)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # the tag spread: box 25-75, median, whiskers 5-95


class ViewError(Exception):
    """The store cannot give the view asked for (no such model, no tracks)."""


@dataclass
class Growth:
    """The catalogue after each run of a model, runs in the order they finished.

    seq (n,) int: 1..n; tracks, audio_h (n,) float: tracked files and their audio hours after the run;
    errors: kind -> (n,) int, the files each run failed on."""

    run_ids: list[str]
    seq: np.ndarray
    tracks: np.ndarray
    audio_h: np.ndarray
    errors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ErrorGroup:
    kind: str
    count: int
    examples: list[tuple[str, str]]  # (uri, message)


@dataclass
class Shown:
    """A track shown with its taggram: starts (n,) seconds, taggram (n_classes, n) float32."""

    uri: str
    duration_s: float
    top: list[tuple[str, float]]
    starts: np.ndarray
    taggram: np.ndarray


def literal(value: str) -> str:
    """A string as an SQL literal: file names are the users', a quote in one must not end the string."""
    return "'" + value.replace("'", "''") + "'"


class StoreView:
    """The store's tables registered for SQL; sql() returns a pyarrow Table. Raises StoreUnreadable."""

    def __init__(self, output: str):
        from deltalake import QueryBuilder
        self.builder = QueryBuilder()
        self.columns: dict[str, list[str]] = {}
        for name in TABLES:
            table = open_table(output, name)
            self.columns[name] = list(pa.schema(table.schema().to_arrow()).names)
            self.builder.register(name, table)

    def sql(self, query: str) -> pa.Table:
        return pa.table(self.builder.execute(query).read_all())


# --- the SQL ------------------------------------------------------------------------------------------

def model_counts(view: StoreView) -> dict[str, int]:
    """Model name -> its tracked files in `current` (models with only errors or removals count 0)."""
    rows = view.sql("SELECT model, sum(CASE WHEN status = 'tracked' THEN 1 ELSE 0 END) AS n "
                    "FROM current GROUP BY model").to_pylist()
    return {r["model"]: int(r["n"] or 0) for r in rows}


def choose_model(counts: dict[str, int], wanted: str | None) -> str:
    """The model a page shows: the one asked for, else the one with the most tracks (then by name)."""
    if wanted is not None:
        if wanted not in counts:
            known = ", ".join(sorted(counts)) or "none"
            raise ViewError(f"no model {wanted!r} in the store (models: {known})")
        return wanted
    if not counts:
        raise ViewError("the store's current view is empty: nothing has been tagged yet")
    return sorted(counts, key=lambda m: (-counts[m], m))[0]


def glance(view: StoreView, model: str) -> dict:
    """{tracked, removed, in_error, errors (error_kinds), audio_h, runs} for one model's current view."""
    m = literal(model)
    status = {r["status"]: r for r in view.sql(
        f"SELECT status, count(*) AS n, sum(duration_s) AS audio_s FROM current WHERE model = {m} GROUP BY status"
    ).to_pylist()}
    runs = view.sql(f"SELECT count(*) AS n FROM runs WHERE model = {m}").to_pylist()[0]["n"]
    return {"tracked": int(status.get("tracked", {}).get("n", 0)),
            "removed": int(status.get("removed", {}).get("n", 0)),
            "in_error": int(status.get("error", {}).get("n", 0)),
            "errors": error_kinds(view, model),
            "audio_h": float(status.get("tracked", {}).get("audio_s") or 0.0) / 3600,
            "runs": int(runs)}


def classes(view: StoreView, model: str) -> list[str]:
    """The model's tag names, the order of every `activations`, from its latest run."""
    rows = view.sql(f"SELECT classes FROM runs WHERE model = {literal(model)} ORDER BY finished DESC LIMIT 1").to_pylist()
    if not rows:
        raise ViewError(f"the store has no run of model {model}")
    return list(rows[0]["classes"])


def growth(view: StoreView, model: str) -> Growth:
    """How the catalogue grew run by run: a file counts from the run that first tagged it, with the
    duration of its latest tagging, until the run that wrote its `removed` or error row in `current`
    (earlier removals that came back are not in the store: between runs the line can run high, and it
    ends on the current view's numbers)."""
    m = literal(model)
    runs = view.sql(f"SELECT run_id, failed_by_kind FROM runs WHERE model = {m} ORDER BY finished, run_id").to_pylist()
    ordered = (f"r AS (SELECT run_id, row_number() OVER (ORDER BY finished, run_id) AS seq FROM runs WHERE model = {m}), "
               f"t AS (SELECT tr.uri, r.seq, tr.duration_s, "
               f"lag(tr.duration_s) OVER (PARTITION BY tr.uri ORDER BY r.seq) AS prev, "
               f"row_number() OVER (PARTITION BY tr.uri ORDER BY r.seq DESC) AS newest "
               f"FROM tracks tr JOIN r ON tr.run_id = r.run_id WHERE tr.model = {m})")
    added = view.sql(f"WITH {ordered} SELECT seq, sum(CASE WHEN prev IS NULL THEN 1 ELSE 0 END) AS n, "
                     f"sum(duration_s - coalesce(prev, 0.0)) AS audio_s FROM t GROUP BY seq").to_pylist()
    left = view.sql(f"WITH {ordered} SELECT r.seq, count(t.uri) AS n, sum(coalesce(t.duration_s, 0.0)) AS audio_s "
                    f"FROM current c JOIN r ON c.run_id = r.run_id LEFT JOIN t ON t.uri = c.uri AND t.newest = 1 "
                    f"WHERE c.model = {m} AND c.status <> 'tracked' GROUP BY r.seq").to_pylist()
    n = len(runs)
    kinds = sorted({k for run in runs for k, _ in (run["failed_by_kind"] or [])})
    errors = {k: np.zeros(n, np.int64) for k in kinds}
    for i, run in enumerate(runs):
        for kind, count in run["failed_by_kind"] or []:
            errors[kind][i] = count
    tracks, audio_s = cumulative(n, [(r["seq"], r["n"], r["audio_s"]) for r in added],
                                 [(r["seq"], r["n"], r["audio_s"]) for r in left])
    return Growth([r["run_id"] for r in runs], np.arange(1, n + 1), tracks, audio_s / 3600, errors)


def tag_distribution(view: StoreView, model: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each of the model's tags (names: its classes, in order): (counts (n_classes,) int64: the
    tracks that carry it among their top 3, spread (n_classes, 5) float64: the 5th, 25th, 50th, 75th
    and 95th percentiles of its mean activation over the tracks, NaN when there are none).
    Percentiles are DataFusion's t-digest estimates: near enough for a box plot, in bounded memory."""
    m = literal(model)
    top = view.sql(f"SELECT tag, count(*) AS n FROM (SELECT unnest(array_slice(top_tags, 1, 3)) AS tag FROM current "
                   f"WHERE model = {m} AND status = 'tracked') GROUP BY tag").to_pylist()
    quantiles = ", ".join(f"approx_percentile_cont(a, {q}) AS q{i}" for i, q in enumerate(QUANTILES))
    spread = view.sql(f"SELECT i, {quantiles} FROM (SELECT unnest(range(0, array_length(activations))) AS i, "
                      f"unnest(activations) AS a FROM current WHERE model = {m} AND status = 'tracked') "
                      f"GROUP BY i").to_pylist()
    counts = np.zeros(len(names), np.int64)
    index = {name: i for i, name in enumerate(names)}
    for row in top:
        if row["tag"] in index:
            counts[index[row["tag"]]] = row["n"]
    table = np.full((len(names), len(QUANTILES)), np.nan)
    for row in spread:
        if 0 <= row["i"] < len(names):
            table[row["i"]] = [row[f"q{j}"] for j in range(len(QUANTILES))]
    return counts, table


def error_groups(view: StoreView, model: str) -> list[ErrorGroup]:
    """The current view's errors by kind, most files first, with ERROR_EXAMPLES files each (by URI)."""
    examples = view.sql(f"SELECT error, uri, message FROM (SELECT error, uri, message, row_number() OVER "
                        f"(PARTITION BY error ORDER BY uri) AS k FROM current WHERE model = {literal(model)} "
                        f"AND status = 'error') WHERE k <= {ERROR_EXAMPLES} ORDER BY error, uri").to_pylist()
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for row in examples:
        by_kind.setdefault(row["error"], []).append((row["uri"], row["message"] or ""))
    return [ErrorGroup(kind, n, by_kind.get(kind, [])) for kind, n in error_kinds(view, model).items()]


def error_kinds(view: StoreView, model: str) -> dict[str, int]:
    """Error kind -> the model's files in error with it in the current view: the ERROR_KINDS largest,
    most files first (then by kind)."""
    rows = view.sql(f"SELECT error, count(*) AS n FROM current WHERE model = {literal(model)} AND status = 'error' "
                    f"GROUP BY error ORDER BY n DESC, error LIMIT {ERROR_KINDS}").to_pylist()
    return {r["error"]: int(r["n"]) for r in rows}


def map_sample(view: StoreView, model: str, limit: int = MAP_POINTS) -> tuple[list[str], list[str], np.ndarray]:
    """(uris, top tag of each, embeddings (n, d) float32) of at most `limit` tracked files: those whose
    URI hashes lowest, so the sample is the same on every page and mostly stays as the store grows.
    The mean embedding comes from `current` where it has the column, else from the `tracks` row it
    names (a store written before `current` carried it)."""
    m = literal(model)
    has_column = "embedding" in view.columns["current"]
    embedding = "coalesce(c.embedding, t.embedding)" if has_column else "t.embedding"
    rows = view.sql(f"SELECT c.uri, c.top_tags[1] AS tag, {embedding} AS embedding FROM "
                    f"(SELECT * FROM current WHERE model = {m} AND status = 'tracked' "
                    f"ORDER BY md5(uri) LIMIT {int(limit)}) c "
                    f"LEFT JOIN tracks t ON t.uri = c.uri AND t.model = c.model AND t.run_id = c.run_id "
                    f"ORDER BY md5(c.uri)").to_pylist()
    rows = [r for r in rows if r["embedding"]]
    if not rows:
        return [], [], np.zeros((0, 2), np.float32)
    width = max(len(r["embedding"]) for r in rows)
    rows = [r for r in rows if len(r["embedding"]) == width]  # one model: one width; guards a mixed store
    return [r["uri"] for r in rows], [r["tag"] for r in rows], np.asarray([r["embedding"] for r in rows], np.float32)


def sample_uris(view: StoreView, model: str, n: int = SAMPLE_TRACKS) -> list[str]:
    """n tracked files, the same on every page (lowest hash of the URI)."""
    rows = view.sql(f"SELECT uri FROM current WHERE model = {literal(model)} AND status = 'tracked' "
                    f"ORDER BY md5(uri) LIMIT {int(n)}").to_pylist()
    return [r["uri"] for r in rows]


def shown_tracks(view: StoreView, model: str, uris: list[str], names: list[str]) -> tuple[list[Shown], list[str]]:
    """The taggrams of the tracked files among `uris` (the first TAGGRAMS), from the patches of their
    current result (one scan of `patches` for them all; MAX_PATCHES each at most); returns (shown,
    uris that are not tracked files of the model)."""
    uris = list(dict.fromkeys(uris))[:TAGGRAMS]
    if not uris:
        return [], []
    m = literal(model)
    rows = {r["uri"]: r for r in view.sql(
        f"SELECT uri, run_id, duration_s, activations FROM current WHERE model = {m} AND status = 'tracked' "
        f"AND uri IN ({', '.join(literal(u) for u in uris)})").to_pylist()}
    patches: dict[str, list[dict]] = {uri: [] for uri in rows}
    if rows:
        results = " OR ".join(f"(uri = {literal(u)} AND run_id = {literal(r['run_id'])})" for u, r in rows.items())
        for row in view.sql(f"SELECT uri, start_s, activations FROM (SELECT uri, start_s, activations, row_number() "
                            f"OVER (PARTITION BY uri ORDER BY start_s) AS k FROM patches WHERE model = {m} AND "
                            f"({results})) WHERE k <= {MAX_PATCHES}").to_pylist():
            patches[row["uri"]].append(row)
    shown = []
    for uri in (u for u in uris if u in rows):
        starts = np.asarray([p["start_s"] for p in patches[uri]], np.float64)
        acts = (np.asarray([p["activations"] for p in patches[uri]], np.float32) if len(starts)
                else np.zeros((0, len(names)), np.float32))
        starts, matrix = taggram(starts, acts)
        row = rows[uri]
        top = top_tags(np.asarray(row["activations"], np.float32), names)
        shown.append(Shown(uri, float(row["duration_s"] or 0.0), top, starts, matrix))
    return shown, [u for u in uris if u not in rows]


# --- numerics over bounded results ---------------------------------------------------------------------

Changes = list[tuple[int, int, float]]


def cumulative(n_runs: int, added: Changes, left: Changes) -> tuple[np.ndarray, np.ndarray]:
    """Per-run changes -> totals after each run. added, left: (seq 1..n_runs, files, audio seconds)
    per run. Returns (files (n_runs,) float64, audio seconds (n_runs,) float64)."""
    files, audio = np.zeros(n_runs), np.zeros(n_runs)
    for sign, changes in ((1, added), (-1, left)):
        for seq, count, seconds in changes:
            if 1 <= seq <= n_runs:
                files[seq - 1] += sign * (count or 0)
                audio[seq - 1] += sign * (seconds or 0.0)
    return np.cumsum(files), np.cumsum(audio)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(n, d) float -> (n, 2) float32: the centred rows on their first two principal axes (SVD), each
    axis's sign chosen so that its largest loading is positive (the same map on every page).
    Fewer than 2 rows or dimensions give zeros where there is no axis."""
    x = np.asarray(x, np.float64)
    out = np.zeros((len(x), 2), np.float32)
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes = axes * np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    out[:, :len(axes)] = centred @ axes.T
    return out


def taggram(starts: np.ndarray, activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patches -> the taggram musicnn plots: starts (n,) seconds, activations (n, n_classes) ->
    (starts sorted (n,), (n_classes, n) float32: tags down, time across)."""
    order = np.argsort(starts, kind="stable")
    return np.asarray(starts, np.float64)[order], np.asarray(activations, np.float32)[order].T.copy()
