"""The skip path at catalogue scale: a store holding N tagged tracks and a manifest of those plus 100
new audio files. The first run must tag only the 100; a second, where nothing changed, tags nothing.

    python -m bench.skip [--tracks 10000,100000] [--new 100] [--append] [--out BENCHMARKS.md]

The N tracks are a synthetic store's (tests/synthetic_store.py: rows from random numbers, committed
as one run of the model's own fingerprint and the CLI's default settings); their files do not exist:
a run that opened one would fail it, and the counts would show it. The 100 are short generated
wavs. Each run is the CLI in a fresh process: wall time and peak RSS.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from bench import envinfo
from bench.proc import ROOT, python_module, run_measured
from tests.synthetic_store import MODEL, write, write_manifest

OUT = ROOT / "build" / "bench-skip"


def new_audio(folder: Path, count: int) -> list[Path]:
    """count short distinct wavs (3 s, 16 kHz): what arrived since the last run."""
    from musicnn_beam.demo.encode import write_audio
    from musicnn_beam.demo.synth import synth_music

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"new{i:03d}.wav"
        write_audio(path, synth_music(9000 + i, 3.0, 16000, 1), 16000, "wav16")
        paths.append(path)
    return paths


def run_cli(output: Path, manifest_path: Path, log: Path) -> dict:
    measured = run_measured(python_module("pipeline", "--manifest", str(manifest_path), "--output", str(output)), log)
    line = next((l for l in log.read_text().splitlines() if l.startswith("musicnn-beam: run ")), None)
    return {"wall_s": measured.wall_s, "rss_mib": measured.peak_rss_mib, "line": line,
            "ok": measured.returncode == 0, "log": log}


def measure(n: int, new_count: int) -> list[dict]:
    from musicnn_beam.models.registry import resolve_model

    model = resolve_model(MODEL)
    root = OUT / f"{n}"
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    write(root / "store", n, n_runs=1, fingerprint=model.fingerprint())
    print(f"  store of {n:,} tracks synthesised in {time.perf_counter() - start:.1f} s", flush=True)
    new = new_audio(root / "new", new_count)
    write_manifest(root / "manifest.parquet", n, new)
    rows = []
    for what in (f"{new_count} new files", "nothing changed"):
        result = run_cli(root / "store", root / "manifest.parquet", root / f"{what.replace(' ', '-')}.log")
        rows.append({"n": n, "what": what, **result})
        print(f"  {n:,} + {what}: {result['wall_s']:.1f} s, {result['rss_mib']:,.0f} MiB: {result['line']}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| tracks in the store | run | wall s | peak RSS MiB | what the run printed |",
             "| ---: | --- | ---: | ---: | --- |"]
    for r in rows:
        printed = r["line"].split(": ", 1)[1].split("; model")[0] if r["line"] else f"FAILED, see {r['log']}"
        lines.append(f"| {r['n']:,} | {r['what']} | {r['wall_s']:.1f} | {r['rss_mib']:,.0f} | {printed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = envinfo.entry_parser("python -m bench.skip", __doc__.split("\n\n")[0])
    parser.add_argument("--tracks", default="10000,100000", help="store sizes, comma-separated")
    parser.add_argument("--new", type=int, default=100, help="new audio files in the manifest")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(t) for t in args.tracks.split(",")):
        print(f"store of {n:,} tracks:", flush=True)
        rows += measure(n, args.new)
    entry = (envinfo.heading(f"the skip path (`python -m bench.skip`): a store of N tracks, a manifest of "
                             f"those plus {args.new} new files, model {MODEL}") + "\n" + table(rows) + "\n")
    ratio = [r for r in rows if r["what"] == "nothing changed"]
    if len(ratio) >= 2 and ratio[0]["wall_s"]:
        small, large = ratio[0], ratio[-1]
        entry += (f"\n- Nothing changed, {large['n']:,} against {small['n']:,} tracks: {large['wall_s']:.1f} / "
                  f"{small['wall_s']:.1f} s = {large['wall_s'] / small['wall_s']:.2f}x the time for "
                  f"{large['n'] / small['n']:.0f}x the tracks.\n")
    envinfo.publish(entry, args)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
