"""Stage-by-stage measurements, one stage per process (run by bench.run, each in a fresh subprocess).

    python -m bench.stages decode [--threads N | --isolated N] FILE...
                                              decode + downmix + resample to the model's rate (one thread
                                              unless N; --isolated: in N decoder processes)
    python -m bench.stages isolation FILE...  decoding here against one decoder process, file by file, 5 rounds
    python -m bench.stages features FILE...   decode first (untimed), then time mel_power + the compression
    python -m bench.stages model [--batches 1,8,32] [--precision float32] [--min-seconds 3]
                                              the converted model alone on (N, frames, mels) float32 patches,
                                              batch sizes interleaved over 3 rounds

Each prints and (with --result FILE) writes a JSON result; only the stage itself is timed.
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from musicnn_beam.models.recipe import FeatureRecipe


def recipe_of(model: str) -> "FeatureRecipe":
    """The model's feature recipe (sample rate, patch size ...), from its metadata."""
    from musicnn_beam.models.registry import resolve_model
    return resolve_model(model).recipe


def decode_stage(files: list[str], recipe: "FeatureRecipe", threads: int = 1) -> dict:
    """Decode every file; with threads > 1 on a thread pool, as the extract DoFn and Beam's worker
    threads decode: how far decoding scales within one Python process (the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from musicnn_beam.transforms.audio import decode_audio
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        durations = [decoded.duration_s for decoded in pool.map(decode_audio, files, [recipe.sample_rate] * len(files))]
    return {"audio_s": float(sum(durations)), "seconds": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu, "durations": durations, "threads": threads}


def isolated_decode_stage(files: list[str], recipe: "FeatureRecipe", processes: int = 1) -> dict:
    """decode_stage through decoder processes (transforms.decoders), `processes` of them fed by as many
    threads, the samples collected in this process as the pipeline's mel does: what isolation costs.
    The children are started before the clock (as a run starts them once); CPU includes theirs."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    from musicnn_beam.transforms.decoder_pipe import DecodeRequest
    from musicnn_beam.transforms.decoders import DecoderPool

    started = time.perf_counter()
    pool = DecoderPool(processes).start(wait=True)  # children start once a run, as the pipeline's do: not timed
    start_s = time.perf_counter() - started

    def decode(path: str) -> float:
        chunks: list[np.ndarray] = []
        return pool.decode(DecodeRequest(path, recipe.sample_rate, None), chunks.append).duration_s

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu, child_cpu = time.perf_counter(), time.process_time(), children_cpu()
    with ThreadPoolExecutor(processes) as threads:
        durations = list(threads.map(decode, files))
    seconds = time.perf_counter() - start
    pool.close()
    return {"audio_s": float(sum(durations)), "seconds": seconds, "processes": processes, "start_s": start_s,
            "cpu_s": time.process_time() - cpu + children_cpu() - child_cpu, "durations": durations}


def isolation_stage(files: list[str], recipe: "FeatureRecipe", rounds: int = 5) -> dict:
    """Decoding here against decoding in one decoder process: every file decoded both ways back to
    back, alternating which goes first, `rounds` times; each way's time is the sum over files of the
    file's fastest decode (as timeit takes the best: what the code costs, without this shared
    machine's hiccups, which made whole rounds differ by several per cent)."""
    from musicnn_beam.transforms.audio import decode_audio
    from musicnn_beam.transforms.decoder_pipe import DecodeRequest
    from musicnn_beam.transforms.decoders import DecoderPool

    pool = DecoderPool(1).start(wait=True)  # children start once a run, as the pipeline's do: not timed

    def here(path: str) -> float:
        return decode_audio(path, recipe.sample_rate).duration_s

    def isolated(path: str) -> float:
        chunks: list[np.ndarray] = []  # the samples collected here, as the pipeline's mel does
        return pool.decode(DecodeRequest(path, recipe.sample_rate, None), chunks.append).duration_s

    ways = {"here": here, "isolated": isolated}
    for way in ways.values():  # imports and first-call costs out of the way
        way(files[0])
    best = {name: [float("inf")] * len(files) for name in ways}
    durations = [0.0] * len(files)
    for round_ in range(rounds):
        for i, path in enumerate(files):
            for name in (list(ways) if (round_ + i) % 2 == 0 else list(ways)[::-1]):
                start = time.perf_counter()
                durations[i] = ways[name](path)
                best[name][i] = min(best[name][i], time.perf_counter() - start)
    pool.close()
    audio_s = float(sum(durations))
    return {"audio_s": audio_s, "rounds": rounds,
            "here": {"audio_s": audio_s, "seconds": sum(best["here"])},
            "isolated": {"audio_s": audio_s, "seconds": sum(best["isolated"])}}


def features_stage(files: list[str], recipe: "FeatureRecipe") -> dict:
    from musicnn_beam.transforms.audio import decode_audio
    from musicnn_beam.transforms.features import log_mel
    decoded = [decode_audio(path, recipe.sample_rate).samples for path in files]
    log_mel(decoded[0][:recipe.sample_rate], recipe)  # trace the tf.function once
    start, cpu = time.perf_counter(), time.process_time()
    frames = sum(log_mel(samples, recipe).shape[0] for samples in decoded)
    return {"audio_s": sum(len(s) for s in decoded) / recipe.sample_rate, "frames": int(frames),
            "seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}


def load_model(name: str, precision: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from musicnn_beam.models.registry import resolve_model
    from musicnn_beam.models.serving import LoadedModel
    return LoadedModel(resolve_model(name).local_path(), precision=precision)


def random_patches(n: int, recipe: "FeatureRecipe", seed: int = 0) -> np.ndarray:
    """(n, patch_frames, n_mels) float32 in the range of real log-mel values (0 to ~4)."""
    shape = (n, recipe.patch_frames, recipe.n_mels)
    return np.random.default_rng(seed).uniform(0.0, 3.0, shape).astype(np.float32)


def time_batch(model: Callable, recipe: "FeatureRecipe", batch: int, min_seconds: float) -> dict:
    """Warm up once at this batch size, then call the model until min_seconds have passed (at least once)."""
    x = random_patches(batch, recipe)
    model(x)
    calls = 0
    start, cpu = time.perf_counter(), time.process_time()
    while calls == 0 or time.perf_counter() - start < min_seconds:
        model(x)
        calls += 1
    seconds = time.perf_counter() - start
    return {"batch": batch, "patches": calls * batch, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "patches_per_s": calls * batch / seconds, "audio_s_per_s": calls * batch * recipe.seconds_per_patch / seconds}


def time_batches(model: Callable, recipe: "FeatureRecipe", batches: list[int], min_seconds: float,
                 rounds: int = 3) -> list[dict]:
    """time_batch for every batch size, interleaved: `rounds` rounds over all sizes, min_seconds / rounds
    each, so that load from other work on a shared machine spreads over all sizes alike."""
    inputs = {b: random_patches(b, recipe) for b in batches}
    for b in batches:
        model(inputs[b])  # warm-up
    totals = {b: {"patches": 0, "seconds": 0.0, "cpu_s": 0.0} for b in batches}
    for _ in range(rounds):
        for b in batches:
            calls = 0
            start, cpu = time.perf_counter(), time.process_time()
            while calls == 0 or time.perf_counter() - start < min_seconds / rounds:
                model(inputs[b])
                calls += 1
            totals[b]["patches"] += calls * b
            totals[b]["seconds"] += time.perf_counter() - start
            totals[b]["cpu_s"] += time.process_time() - cpu
    return [{"batch": b, **t, "patches_per_s": t["patches"] / t["seconds"],
             "audio_s_per_s": t["patches"] * recipe.seconds_per_patch / t["seconds"]} for b, t in totals.items()]


def model_stage(name: str, batches: list[int], precision: str, min_seconds: float) -> dict:
    try:
        model = load_model(name, precision)
    except KeyError as error:  # a SavedModel converted before it had this precision's signature
        return {"skipped": f"the converted model has no {error} signature (run `make models`)",
                "precision": precision, "rows": []}
    rows = time_batches(model, recipe_of(name), batches, min_seconds)
    return {"skipped": None, "precision": precision, "rows": rows}


def parse_batches(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["decode", "isolation", "features", "model"])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--model", default="msd-musicnn")
    parser.add_argument("--batches", default="1,8,32,64,128,256")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="decode: threads decoding at once")
    parser.add_argument("--isolated", type=int, default=0, metavar="N",
                        help="decode: in N decoder processes (transforms.decoders) instead of this one")
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    if args.stage in ("decode", "isolation", "features") and not args.files:
        parser.error(f"{args.stage} needs files")
    if args.stage == "decode":
        if args.isolated:
            result = isolated_decode_stage(args.files, recipe_of(args.model), args.isolated)
        else:
            result = decode_stage(args.files, recipe_of(args.model), args.threads)
    elif args.stage == "isolation":
        result = isolation_stage(args.files, recipe_of(args.model))
    elif args.stage == "features":
        result = features_stage(args.files, recipe_of(args.model))
    else:
        result = model_stage(args.model, parse_batches(args.batches), args.precision, args.min_seconds)
    print(result)
    if args.result:
        from bench.proc import write_result
        write_result(args.result, result)


if __name__ == "__main__":
    main()
