"""The original musicnn 0.1.0 path as one standalone process, for the throughput comparison.

models/original.py's path (musicnn's extractor.batch_data() + extractor(): librosa features, the
shipped graph and checkpoint at batch 1), the graph built once for all files.

    python -m bench.original FILE... [--model msd-musicnn] [--result OUT.json]
"""
from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default="msd-musicnn")
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    from musicnn_beam.models.original import original_model, original_tags  # imports TensorFlow

    start = time.perf_counter()
    original_model(args.model)
    built = time.perf_counter()
    n_patches = sum(len(original_tags(path, args.model)[0]) for path in args.files)
    done = time.perf_counter()
    result = {"n_patches": n_patches, "graph_build_s": built - start, "tagging_s": done - built}
    print(result)
    if args.result:
        from bench.proc import write_result
        write_result(args.result, result)


if __name__ == "__main__":
    main()
