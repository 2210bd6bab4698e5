"""A catalogue store written straight from numbers, without tagging audio: any size in seconds, for
the HTML report's tests (its aggregations against numpy, its size on 50,000 tracks, hostile names).

Tracks are spread over the runs (track i first tagged by run i % n_runs), some tagged again by the
last run (retagged), some left (removed by the last run); activations and embeddings are random but
clustered by top tag; patches are written only for the tracks named in `with_patches`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from musicnn_beam.store import tables as store

ROOT = Path(__file__).resolve().parent.parent
MODEL = "msd-musicnn"
CLASSES = json.loads((ROOT / "models" / "metadata" / f"{MODEL}.json").read_text())["classes"]
KINDS = ["Corrupt", "NotAudio", "Truncated", "TooShort", "Silent"]
PATCH_S = 2.992


@dataclass
class Synthetic:
    output: str
    uris: list[str]  # every file, tracked and not
    activations: np.ndarray  # (n_tracks, n_classes) float32: the current rows' (tracked ones)
    durations: np.ndarray  # (n_tracks,) float64
    run_ids: list[str]
    tracked: list[str]  # uris tracked in current
    removed: list[str]
    errors: dict[str, list[str]]  # kind -> uris


def write(root: Path, n_tracks: int, n_runs: int = 3, n_errors: int = 0, n_removed: int = 0, n_retagged: int = 0,
          extra_uris: tuple[str, ...] = (), with_patches: tuple[str, ...] = (), seed: int = 0,
          error_message: str = "the header could not be read") -> Synthetic:
    """Write the store under root. extra_uris: tracked files appended to the generated names (e.g.
    hostile ones); with_patches: tracked files that get their patches."""
    output = str(root)
    store.open_store(output)
    rng = np.random.default_rng(seed)
    uris = [f"/music/artist{i % 500:03d}/track{i:06d}.mp3" for i in range(n_tracks - len(extra_uris))] + list(extra_uris)
    n, k = len(uris), len(CLASSES)
    run_ids = [f"20260101T{i // 60:02d}{i % 60:02d}00Z-{i:06x}" for i in range(n_runs)]
    # Clustered: each track leans to one of 8 tags, and its embedding to that tag's centre.
    lean = rng.integers(0, 8, n)
    activations = (rng.random((n, k)) ** 6 * 0.3).astype(np.float32)
    activations[np.arange(n), lean] += 0.5
    centres = rng.normal(0, 3, (8, 200))
    embeddings = (centres[lean] + rng.normal(0, 1, (n, 200))).astype(np.float32)
    durations = rng.uniform(20, 400, n)
    first_run = np.arange(n) % n_runs
    retagged = set(range(n_retagged))
    removed = set(range(n_retagged, n_retagged + n_removed))
    last = run_ids[-1]

    def top(i):
        return [CLASSES[j] for j in np.argsort(-activations[i], kind="stable")[:5]]

    tracks = [dict(uri=uris[i], track_id=None, n_patches=int(durations[i] // PATCH_S), padded=False,
                   duration_s=float(durations[i]), sample_rate=44100, channels=2, activations=activations[i],
                   embedding=embeddings[i], top_tags=top(i), model=MODEL, version="v1", run_id=run_ids[first_run[i]])
              for i in range(n)]
    # A retag: the same file tagged again by the last run, a second longer (it changed).
    tracks += [{**tracks[i], "duration_s": tracks[i]["duration_s"] + 1.0, "run_id": last} for i in retagged]
    latest = {t["uri"]: t for t in tracks}
    current = []
    for i, uri in enumerate(uris):
        t = latest[uri]
        if i in removed:
            current.append(dict(uri=uri, model=MODEL, status="removed", track_id=None, version="v1", fingerprint="f",
                                settings="patch_hop=187;precision=float32", run_id=last))
        else:
            current.append(dict(uri=uri, model=MODEL, status="tracked", track_id=None, version="v1", fingerprint="f",
                                settings="patch_hop=187;precision=float32", run_id=t["run_id"], top_tags=t["top_tags"],
                                activations=t["activations"], duration_s=t["duration_s"], embedding=t["embedding"]))
    errors: dict[str, list[str]] = {}
    error_rows = []
    for j in range(n_errors):
        kind, uri = KINDS[j % len(KINDS)], f"/music/broken/file{j:05d}.mp3"
        errors.setdefault(kind, []).append(uri)
        row = dict(uri=uri, track_id=None, stage="decode", error=kind, message=error_message, model=MODEL,
                   version="v1", run_id=run_ids[j % n_runs])
        error_rows.append(row)
        current.append(dict(uri=uri, model=MODEL, status="error", track_id=None, version="v1", fingerprint="f",
                            settings="patch_hop=187;precision=float32", run_id=row["run_id"], error=kind,
                            message=error_message))
    patches = []
    for uri in with_patches:
        t = latest[uri]
        for p in range(max(1, t["n_patches"])):
            patches.append(dict(uri=uri, track_id=None, patch=p, start_s=p * PATCH_S,
                                activations=np.clip(t["activations"] + rng.normal(0, 0.05, k), 0, 1).astype(np.float32),
                                embedding=t["embedding"], model=MODEL, run_id=t["run_id"]))
    runs = [dict(run_id=r, started=1767225600 + 3600 * i, finished=1767225600 + 3600 * i + 60, status="finished",
                 model=MODEL, fingerprint="f", settings="patch_hop=187;precision=float32", package_version="0.1.0",
                 runner="synthetic", listed=n, skipped=0, tagged=int(sum(first_run == i)),
                 failed=sum(1 for e in error_rows if e["run_id"] == r),
                 failed_by_kind={kind: sum(1 for e in error_rows if e["run_id"] == r and e["error"] == kind)
                                 for kind in sorted({e["error"] for e in error_rows if e["run_id"] == r})},
                 removed=len(removed) if r == last else 0, audio_s=0.0, wall_s=60.0, classes=CLASSES)
            for i, r in enumerate(run_ids)]
    for name, rows in (("tracks", tracks), ("current", current), ("errors", error_rows), ("patches", patches)):
        if rows:
            schema = store.TABLES[name]
            table = pa.Table.from_pylist([{c: row.get(c) for c in schema.names} for row in rows], schema=schema)
            write_deltalake(store.join(output, name), table, mode="append")
    write_deltalake(store.join(output, "runs"), store.runs_table(runs), mode="append")
    tracked = [u for i, u in enumerate(uris) if i not in removed]
    keep = np.asarray([i not in removed for i in range(n)])
    current_durations = np.asarray([latest[u]["duration_s"] for u in uris])
    return Synthetic(output, uris, activations[keep], current_durations[keep], run_ids, tracked,
                     [uris[i] for i in sorted(removed)], errors)
