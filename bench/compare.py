"""Differences between two stores (one run each) (e.g. float32 vs bfloat16): |activation| max and mean,
per track (tracks table, joined on uri) and per patch (patches table, joined on uri and patch).

    python -m bench.compare summary OUTPUT [--result OUT.json]     tracks, their audio seconds, errors
    python -m bench.compare diff OUTPUT_A OUTPUT_B [--result ...]  activation differences, tracks and patches

bench.run calls these as subprocesses so that pyarrow never enlarges its own RSS (see bench.corpus).
"""
from __future__ import annotations

import argparse
import json
import sys

from pathlib import Path

import numpy as np


def read_table(output: Path, table: str, keys: tuple[str, ...]) -> dict[tuple, np.ndarray]:
    from musicnn_beam.store.read import read_table as store_table
    columns = store_table(str(output), table).select([*keys, "activations"]).to_pydict()
    return {tuple(columns[k][i] for k in keys): np.asarray(a, dtype=np.float64)
            for i, a in enumerate(columns["activations"])}


def activation_difference(a: Path, b: Path, table: str, keys: tuple[str, ...]) -> dict:
    left, right = read_table(a, table, keys), read_table(b, table, keys)
    common = sorted(set(left) & set(right))
    if not common:
        return {"rows": 0, "unmatched": len(left) + len(right), "max": float("nan"), "mean": float("nan")}
    diff = np.abs(np.stack([left[k] for k in common]) - np.stack([right[k] for k in common]))
    return {"rows": len(common), "unmatched": len(set(left) ^ set(right)),
            "max": float(diff.max()), "mean": float(diff.mean())}


def output_summary(output: Path) -> dict:
    """Tracks tagged, their total decoded duration, and the number of errors."""
    from musicnn_beam.store.read import read_table as store_table
    tracks = store_table(str(output), "tracks").select(["duration_s"])
    errors = store_table(str(output), "errors").select(["stage", "error", "message"])
    first = errors.slice(0, 1).to_pylist()
    return {"tracks": tracks.num_rows, "audio_s": float(sum(tracks.column("duration_s").to_pylist())),
            "errors": errors.num_rows,
            "first_error": f"{first[0]['stage']}: {first[0]['message']}" if first else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["summary", "diff"])
    parser.add_argument("outputs", nargs="+", type=Path)
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    if args.what == "summary":
        result = output_summary(args.outputs[0])
    else:
        a, b = args.outputs[:2]
        result = {"tracks": activation_difference(a, b, "tracks", ("uri",)),
                  "patches": activation_difference(a, b, "patches", ("uri", "patch"))}
    json.dump(result, sys.stdout)
    print()
    if args.result:
        from bench.proc import write_result
        write_result(args.result, result)


if __name__ == "__main__":
    main()
