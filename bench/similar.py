"""Similar tracks at catalogue scale: `python -m pipeline.similar STORE URI --k 10` on a store whose
`current` holds N tracked tracks (random embeddings of msd-musicnn's 200 values).

    python -m bench.similar [--tracks 100000,1000000] [--repeats 3] [--append] [--out BENCHMARKS.md]

The store is a synthetic one (tests/synthetic_store.py: rows from random numbers, committed as one
run; `current`'s files as delta-rs's merge cuts them). Each query is the CLI in a fresh process:
wall time (best of the repeats) and peak RSS (the highest), start-up included.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from bench import envinfo
from bench.proc import ROOT, python_module, run_measured
from tests.synthetic_store import DIM, MODEL, uri_of, write

OUT = ROOT / "build" / "bench-similar"


def query(output: Path, uri: str, log: Path) -> dict:
    measured = run_measured(python_module("musicnn_beam.pipeline.similar", str(output), uri, "--k", "10"), log)
    lines = log.read_text().splitlines()
    first = next((l for l in lines if l.strip().startswith("1 ")), None)
    return {"wall_s": measured.wall_s, "rss_mib": measured.peak_rss_mib, "first": first,
            "ok": measured.returncode == 0 and first is not None, "log": log}


def measure(n: int, repeats: int) -> dict:
    root = OUT / f"{n}"
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    write(root / "store", n, n_runs=1)
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
