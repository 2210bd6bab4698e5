"""Catalogue stores written from random numbers instead of tagged audio, of any size, committed by
the store's own commit (store.commit.commit_run): for the reports' tests (their SQL against numpy, a
page's size on 50,000 tracks, hostile names), the similarity search's, and the benches at
catalogue scale (bench/skip.py, bench/similar.py).

Track i is the file uri_of(i) at version_of(i), tagged by MODEL with a run's default settings, first
by run i % n_runs. The first n_retagged tracks are tagged again by the last run (a second longer:
they changed; those it tagged first, not), the next n_removed have left (the last run marked them
removed). Activations and
embeddings are random but clustered: each track leans to one of LEANS tags, and its embedding to
that tag's centre. Errors are files of their own; patches are written only for the tracks named in
`with_patches`. Rows are made ROWS_PER_FILE at a time, in Arrow, as files a run's workers write.

Each run's commit adds its history (tracks, patches, errors) and its runs row. `current`, each
file's latest row (naming the run that wrote it), is merged once, by the last run's commit: a merge
scans the whole table, and one per run made 30 runs of 50,000 tracks three times as slow to write,
for the same rows.
"""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from musicnn_beam.models.registry import resolve_model
from musicnn_beam.store.commit import commit_run
from musicnn_beam.store.location import join
from musicnn_beam.store.open import open_store
from musicnn_beam.store.read import current_version
from musicnn_beam.store.schema import STAGING, TABLES, settings_key
from musicnn_beam.transforms.sinks import ROWS_PER_FILE

MODEL = "msd-musicnn"
_SPEC = resolve_model(MODEL)
CLASSES = _SPEC.classes
DIM = next(o["shape"][-1] for o in _SPEC.metadata["outputs"] if o["name"] == "embedding")
SETTINGS = settings_key(_SPEC.recipe.patch_frames, "float32")  # a run's defaults
PATCH_S = _SPEC.recipe.seconds_per_patch
KINDS = ["Corrupt", "NotAudio", "Truncated", "TooShort", "Silent"]
LEANS = 8  # the clusters: tags a track leans to


def uri_of(i: int) -> str:
    return f"/music/artist{i % 500:03d}/track{i:07d}.mp3"


def version_of(i: int) -> str:
    return f"etag=synthetic{i};size={1000 + i}"


@dataclass
class Synthetic:
    output: str
    uris: list[str]  # every track, tracked or removed (not the files in error)
    activations: np.ndarray  # (n_tracked, n_classes) float32: the tracked files' current rows
    durations: np.ndarray  # (n_tracked,) float64
    run_ids: list[str]
    tracked: list[str]  # uris tracked in current
    removed: list[str]
    errors: dict[str, list[str]]  # kind -> uris


def write(output: str | Path, n_tracks: int, n_runs: int = 3, n_errors: int = 0, n_removed: int = 0,
          n_retagged: int = 0, extra_uris: tuple[str, ...] = (), with_patches: tuple[str, ...] = (), seed: int = 0,
          error_message: str = "the header could not be read", fingerprint: str = "synthetic") -> Synthetic:
    """Write the store at output (local or a bucket URI) and commit its n_runs runs in order.
    extra_uris: tracks appended to the generated names (e.g. hostile ones); with_patches: tracks
    that get their patches; fingerprint: the model's, for a store a real run must find up to date."""
    output = str(output)
    open_store(output)
    rng = np.random.default_rng(seed)
    uris = [uri_of(i) for i in range(n_tracks - len(extra_uris))] + list(extra_uris)
    run_ids = [f"20260101T{i // 60:02d}{i % 60:02d}00Z-{i:06x}" for i in range(n_runs)]
    last = n_runs - 1
    centres = rng.normal(0, 3, (LEANS, DIM))
    files: list[list[dict]] = [[] for _ in run_ids]
    totals = [{"tagged": 0, "audio_s": 0.0} for _ in run_ids]
    kept: list[tuple[np.ndarray, np.ndarray]] = []  # (activations, durations) of the tracked rows, a chunk each
    patched = set(with_patches)

    def add(run: int, name: str, table: pa.Table, rows: np.ndarray | None = None) -> None:
        """The rows (a bool mask; None: all) of a table, as the run's: a file that its commit names,
        or for `current`, the last run's commit."""
        table = table if rows is None else table.filter(pa.array(rows))
        if len(table):
            run_id = table.schema.get_field_index("run_id")
            table = table.set_column(run_id, "run_id", pa.repeat(pa.scalar(run_ids[run]), len(table)))
            by = last if name == "current" else run
            files[by].append(_write_file(output, run_ids[by], name, table))
        if name == "tracks":
            totals[run]["tagged"] += len(table)
            totals[run]["audio_s"] += float(np.sum(table.column("duration_s").to_numpy()))

    for first in range(0, len(uris), ROWS_PER_FILE):
        i = np.arange(first, min(len(uris), first + ROWS_PER_FILE))
        lean = rng.integers(0, LEANS, len(i))
        activations = (rng.random((len(i), len(CLASSES))) ** 6 * 0.3).astype(np.float32)
        activations[np.arange(len(i)), lean] += 0.5
        embeddings = (centres[lean] + rng.normal(0, 1, (len(i), DIM))).astype(np.float32)
        durations = rng.uniform(20, 400, len(i))
        tagged_by = i % n_runs
        retagged = (i < n_retagged) & (tagged_by != last)  # a run tags a file once
        removed = (i >= n_retagged) & (i < n_retagged + n_removed)
        latest = np.where(retagged, last, tagged_by)  # the run of the tracks row `current` holds
        latest_durations = durations + retagged  # a retag: a second longer
        names = [uris[j] for j in i]
        track = {"uri": names, "version": [version_of(j) for j in i], "activations": _lists(activations),
                 "embedding": _lists(embeddings), "top_tags": _top_tags(activations)}
        n_patches = np.maximum(1, durations // PATCH_S).astype(np.int32)

        def tracks(duration_s: np.ndarray) -> pa.Table:
            return _table("tracks", len(i), **track, n_patches=n_patches, padded=False, duration_s=duration_s,
                          sample_rate=44100, channels=2)

        first_tagging = tracks(durations)
        current = _table("current", len(i), **track, status="tracked", fingerprint=fingerprint, settings=SETTINGS,
                         duration_s=latest_durations)
        for run in range(n_runs):
            add(run, "tracks", first_tagging, tagged_by == run)
            add(run, "current", current, (latest == run) & ~removed)
        add(last, "tracks", tracks(latest_durations), retagged)
        add(last, "current", _table("current", len(i), uri=names, version=track["version"], status="removed",
                                    fingerprint=fingerprint, settings=SETTINGS), removed)
        kept.append((activations[~removed], latest_durations[~removed]))
        for j in (j for j, name in enumerate(names) if name in patched):
            n = int(n_patches[j])
            patches = np.clip(activations[j] + rng.normal(0, 0.05, (n, len(CLASSES))), 0, 1).astype(np.float32)
            add(int(latest[j]), "patches", _table("patches", n, uri=[names[j]] * n, patch=np.arange(n, dtype=np.int32),
                                                  start_s=np.arange(n) * PATCH_S, activations=_lists(patches),
                                                  embedding=_lists(np.repeat(embeddings[j:j + 1], n, axis=0))))

    errors: dict[str, list[str]] = {}
    for run, run_id in enumerate(run_ids):
        numbers = range(run, n_errors, n_runs)  # error j is run j % n_runs's
        error = {"uri": [f"/music/broken/file{j:05d}.mp3" for j in numbers],
                 "error": [KINDS[j % len(KINDS)] for j in numbers], "message": [error_message] * len(numbers)}
        for uri, kind in zip(error["uri"], error["error"]):
            errors.setdefault(kind, []).append(uri)
        add(run, "errors", _table("errors", len(numbers), **error, stage="decode"))
        add(run, "current", _table("current", len(numbers), **error, status="error", fingerprint=fingerprint,
                                   settings=SETTINGS))
        row = run_row(run_id, run, fingerprint=fingerprint, listed=len(uris), tagged=totals[run]["tagged"],
                      audio_s=totals[run]["audio_s"], failed_by_kind=dict(sorted(Counter(error["error"]).items())),
                      removed=n_removed if run == last else 0)
        commit_run(output, current_version(output), row, files[run])
    left = set(range(n_retagged, n_retagged + n_removed))
    return Synthetic(output, uris, np.concatenate([a for a, _ in kept]), np.concatenate([d for _, d in kept]),
                     run_ids, tracked=[u for j, u in enumerate(uris) if j not in left],
                     removed=[uris[j] for j in sorted(left)], errors=errors)


def run_row(run_id: str, seq: int, fingerprint: str = "synthetic", listed: int = 0, tagged: int = 0,
            audio_s: float = 0.0, failed_by_kind: dict[str, int] | None = None, removed: int = 0) -> dict:
    """The runs row of a finished run of MODEL, the seq-th (0, 1, ...: an hour apart, a minute each)."""
    failed_by_kind = failed_by_kind or {}
    started = 1767225600 + 3600 * seq
    return {"run_id": run_id, "started": started, "finished": started + 60, "status": "finished", "model": MODEL,
            "fingerprint": fingerprint, "settings": SETTINGS, "package_version": "synthetic", "runner": "synthetic",
            "listed": listed, "skipped": 0, "tagged": tagged, "failed": sum(failed_by_kind.values()),
            "failed_by_kind": failed_by_kind, "removed": removed, "audio_s": audio_s, "wall_s": 60.0,
            "classes": CLASSES}


def commit(output: str, run: dict, tables: dict[str, pa.Table]) -> None:
    """Commit rows of any shape as one run (run: its runs row, see run_row): table name -> rows in its
    schema, written as the run's workers write them and committed by commit_run."""
    files = [_write_file(output, run["run_id"], name, table) for name, table in tables.items() if len(table)]
    commit_run(output, current_version(output), run, files)


def write_manifest(path: Path, n_tracks: int, new: Iterable[Path] = ()) -> None:
    """The manifest of write()'s n_tracks tracks (none in error or removed), at the versions the store
    holds, plus files that are not in the store (no version: each is looked up)."""
    new = [str(p) for p in new]
    pq.write_table(pa.table({"uri": [uri_of(i) for i in range(n_tracks)] + new,
                             "version": [version_of(i) for i in range(n_tracks)] + [None] * len(new)}), path)


def _write_file(output: str, run_id: str, name: str, table: pa.Table) -> dict:
    """One Parquet file where a run's workers put the table's rows (`current`'s: staged under the
    run), and what its commit needs of it ({"table", "path", "size", "rows"})."""
    folder = join(output, STAGING, run_id, name) if name == "current" else join(output, name)
    path = f"{folder}/part-{run_id}-{uuid.uuid4().hex}.parquet"
    with fsspec.open(path, "wb") as f:
        pq.write_table(table, f)
        size = f.tell()
    return {"table": name, "path": path, "size": size, "rows": len(table)}


def _table(name: str, n: int, **columns) -> pa.Table:
    """n rows of a table of MODEL's: the columns given (a scalar: the same in every row), model
    MODEL, the others null."""
    schema = TABLES[name]
    given = {"model": MODEL, **columns}
    return pa.table([_column(given[f.name], n, f.type) if f.name in given else pa.nulls(n, f.type) for f in schema],
                    schema=schema)


def _column(value, n: int, type_: pa.DataType) -> pa.Array:
    if isinstance(value, pa.Array):
        return value.cast(type_)
    if isinstance(value, (list, np.ndarray)):
        return pa.array(value, type_)
    return pa.repeat(pa.scalar(value, type_), n)


def _lists(rows: np.ndarray) -> pa.ListArray:
    """(m, d) -> m lists of d values, sharing the array's buffer."""
    m, d = rows.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, m * d + 1, d, dtype=np.int32)), pa.array(rows.ravel()))


def _top_tags(activations: np.ndarray, top: int = 5) -> pa.ListArray:
    """(m, n_classes) -> m lists of the `top` strongest tags, strongest first."""
    order = np.argsort(-activations, axis=1, kind="stable")[:, :top]
    return pa.ListArray.from_arrays(pa.array(np.arange(0, order.size + 1, top, dtype=np.int32)),
                                    pa.array(CLASSES).take(pa.array(order.ravel())))
