"""Similar tracks at catalogue scale: `python -m pipeline.similar STORE URI --k 10` on a store whose
`current` holds N tracked tracks (random 200-value embeddings, msd-musicnn's size).

    python -m bench.similar [--tracks 100000,1000000] [--repeats 3] [--append] [--out BENCHMARKS.md]

The rows are synthesised in Arrow (no Python object per value) and written straight into the
store's `current` table with deltalake, a few large files as delta-rs cuts them. Each query is the
CLI in a fresh process: wall time (best of the repeats) and peak RSS (the highest), start-up included.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from bench import envinfo
from bench.proc import ROOT, python_module, run_measured

MODEL = "msd-musicnn"
SETTINGS = "patch_hop=187;precision=float32"
DIM = 200  # msd-musicnn's embedding (its model.json: outputs.embedding)
OUT = ROOT / "build" / "bench-similar"
ROWS_PER_BATCH = 100_000


def uri_of(i: int) -> str:
    return f"/catalogue/audio/{i:07d}.mp3"


def _lists(values: np.ndarray, size: int) -> pa.ListArray:
    """(m * size,) values -> m lists of `size`, sharing the array's buffer."""
    return pa.ListArray.from_arrays(pa.array(np.arange(0, len(values) + 1, size, dtype=np.int32)), pa.array(values))


def current_batches(n: int, classes: list[str], seed: int = 0) -> Iterator[pa.RecordBatch]:
    """n tracked `current` rows of MODEL, in the store's schema, ROWS_PER_BATCH at a time."""
    from musicnn_beam.store.tables import CURRENT_SCHEMA

    rng = np.random.default_rng(seed)
    names = pa.array(classes)
    for first in range(0, n, ROWS_PER_BATCH):
        m = min(n, first + ROWS_PER_BATCH) - first

        def same(value) -> pa.Array:
            return pa.array([value] * m, pa.string())

        columns = {
            "uri": pa.array([uri_of(i) for i in range(first, first + m)]), "model": same(MODEL),
            "status": same("tracked"), "track_id": same(None),
            "version": pa.array([f"etag=synthetic{i};size={1000 + i}" for i in range(first, first + m)]),
            "fingerprint": same("synthetic"), "settings": same(SETTINGS), "run_id": same("00000000T000000Z-synthetic"),
            "top_tags": pa.ListArray.from_arrays(pa.array(np.arange(0, 5 * m + 1, 5, dtype=np.int32)),
                                                 names.take(rng.integers(0, len(classes), 5 * m))),
            "activations": _lists(rng.random(m * len(classes), dtype=np.float32), len(classes)),
            "duration_s": pa.array(np.full(m, 30.0)), "error": same(None), "message": same(None),
            "embedding": _lists(rng.standard_normal(m * DIM, dtype=np.float32), DIM),
        }
        yield pa.RecordBatch.from_pydict(columns, schema=CURRENT_SCHEMA)


def synthesise_store(output: Path, n: int, classes: list[str]) -> None:
    """A store (every table, as a run creates them) whose `current` holds n tracked tracks of MODEL."""
    from deltalake import write_deltalake

    from musicnn_beam.store import tables as store

    store.open_store(str(output))
    reader = pa.RecordBatchReader.from_batches(store.CURRENT_SCHEMA, current_batches(n, classes))
    write_deltalake(store.join(str(output), "current"), reader, mode="append")


def query(output: Path, uri: str, log: Path) -> dict:
    measured = run_measured(python_module("musicnn_beam.pipeline.similar", str(output), uri, "--k", "10"), log)
    lines = log.read_text().splitlines()
    first = next((l for l in lines if l.strip().startswith("1 ")), None)
    return {"wall_s": measured.wall_s, "rss_mib": measured.peak_rss_mib, "first": first,
            "ok": measured.returncode == 0 and first is not None, "log": log}


def measure(n: int, repeats: int) -> dict:
    from musicnn_beam.models.registry import resolve_model

    root = OUT / f"{n}"
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    synthesise_store(root / "store", n, resolve_model(MODEL).classes)
    size_mb = sum(p.stat().st_size for p in (root / "store" / "current").glob("*.parquet")) / 1e6
    files = len(list((root / "store" / "current").glob("*.parquet")))
    print(f"  store of {n:,} tracks synthesised in {time.perf_counter() - start:.1f} s "
          f"({files} files, {size_mb:,.0f} MB)", flush=True)
    runs = [query(root / "store", uri_of(n // 2), root / f"query-{i}.log") for i in range(repeats)]
    for r in runs:
        print(f"  {n:,}: {r['wall_s']:.2f} s, {r['rss_mib']:,.0f} MiB: {r['first']}", flush=True)
    return {"n": n, "wall_s": min(r["wall_s"] for r in runs), "rss_mib": max(r["rss_mib"] for r in runs),
            "files": files, "size_mb": size_mb, "first": runs[0]["first"], "ok": all(r["ok"] for r in runs),
            "log": runs[0]["log"]}


def table(rows: list[dict], repeats: int) -> str:
    lines = [f"| tracks in `current` | Parquet files, MB | wall s (best of {repeats}) | peak RSS MiB | nearest |",
             "| ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        first = " ".join(r["first"].split()) if r["ok"] else f"FAILED, see {r['log']}"
        lines.append(f"| {r['n']:,} | {r['files']}, {r['size_mb']:,.0f} | {r['wall_s']:.2f} | {r['rss_mib']:,.0f} | {first} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = envinfo.entry_parser("python -m bench.similar", __doc__.split("\n\n")[0])
    parser.add_argument("--tracks", default="100000,1000000", help="store sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="queries per store (the best wall time is kept)")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(t) for t in args.tracks.split(",")):
        print(f"store of {n:,} tracks:", flush=True)
        rows.append(measure(n, args.repeats))
    entry = (envinfo.heading(f"similar tracks (`python -m bench.similar`): `python -m pipeline.similar STORE URI "
                             f"--k 10` over N tracked tracks, {DIM}-value embeddings, model {MODEL}")
             + "\n" + table(rows, args.repeats) + "\n")
    envinfo.publish(entry, args)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
