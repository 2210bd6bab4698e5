"""Model throughput against batch size on whatever device TensorFlow sees (a GPU if there is one).

    python -m bench.gpu_batch [--model msd-musicnn] [--batches 1,8,32,64,128,256,512,1024]
                              [--precision float32,float16,bfloat16] [--quick] [--append] [--out BENCHMARKS.md]

The converted model (transforms.inference.LoadedModel, one serving signature per precision) is fed
float32 (N, frames, mels) patches from host memory each call, as the pipeline does, so host-to-device
copies are included. Each batch size is warmed up once, then timed for --min-seconds. A precision the
converted model has no signature for is reported as skipped; a batch that runs out of device memory
ends that precision's sweep. --quick: batches 1,8,32 and 0.3 s each (a smoke test on a CPU).
"""
from __future__ import annotations

import argparse
import sys

from bench import envinfo
from bench.stages import load_model, parse_batches, recipe_of, time_batch

DEFAULT_BATCHES = "1,8,32,64,128,256,512,1024"
QUICK_BATCHES = "1,8,32"


def setup_devices() -> tuple[list[str], str]:
    """Enable memory growth on every GPU (before anything is placed on one); return the devices and a label."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    devices = [f"{d.device_type}: {d.name}" for d in tf.config.list_physical_devices()]
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return devices, f"GPU ({', '.join(names)}; the model runs on the first)"
    return devices, f"CPU only ({envinfo.cpu_model()}, {envinfo.cpu_count()} cores)"


def sweep(model_name: str, precision: str, batches: list[int], min_seconds: float) -> list[dict]:
    """One row per batch size: {precision, batch, patches, seconds, patches_per_s, audio_s_per_s, note}."""
    import tensorflow as tf
    try:
        model = load_model(model_name, precision)
    except NotImplementedError as error:
        return [{"precision": precision, "batch": None, "note": f"skipped: {error}"}]
    except KeyError as error:  # converted before this precision had a signature
        return [{"precision": precision, "batch": None,
                 "note": f"skipped: the converted model has no {error} signature (run `make models`)"}]
    rows = []
    for batch in batches:
        try:
            row = time_batch(model, recipe_of(model_name), batch, min_seconds)
        except tf.errors.ResourceExhaustedError:
            rows.append({"precision": precision, "batch": batch, "note": "out of device memory; larger batches skipped"})
            break
        rows.append({**row, "precision": precision, "note": ""})
        print(f"  {precision} batch {batch}: {row['patches_per_s']:.1f} patches/s, "
              f"{row['audio_s_per_s']:.0f} audio-s/s", flush=True)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| precision | batch | patches | seconds | patches/s | audio-s/s | x batch 1 | note |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    batch1 = {r["precision"]: r["patches_per_s"] for r in rows if r.get("batch") == 1 and "patches_per_s" in r}
    for r in rows:
        if "patches_per_s" not in r:
            lines.append(f"| {r['precision']} | {r['batch'] or '-'} | - | - | - | - | - | {r['note']} |")
            continue
        speedup = f"{r['patches_per_s'] / batch1[r['precision']]:.2f}" if r["precision"] in batch1 else "-"
        lines.append(f"| {r['precision']} | {r['batch']} | {r['patches']} | {r['seconds']:.2f} | {r['patches_per_s']:,.1f} | "
                     f"{r['audio_s_per_s']:,.0f} | {speedup} | {r['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = envinfo.entry_parser("python -m bench.gpu_batch", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="msd-musicnn")
    parser.add_argument("--batches", help=f"comma-separated batch sizes (default {DEFAULT_BATCHES}; --quick: {QUICK_BATCHES})")
    parser.add_argument("--precision", default="float32,float16,bfloat16", help="comma-separated precisions")
    parser.add_argument("--min-seconds", type=float, help="seconds timed per batch size (default 2; --quick: 0.3)")
    parser.add_argument("--quick", action="store_true", help="small batches, short timings: a smoke test")
    args = parser.parse_args(argv)
    batches = parse_batches(args.batches or (QUICK_BATCHES if args.quick else DEFAULT_BATCHES))
    min_seconds = args.min_seconds if args.min_seconds is not None else (0.3 if args.quick else 2.0)

    recipe = recipe_of(args.model)
    devices, device_label = setup_devices()
    print("TensorFlow devices:\n" + "\n".join(f"  {d}" for d in devices), flush=True)
    rows = [row for precision in args.precision.split(",") if precision.strip()
            for row in sweep(args.model, precision.strip(), batches, min_seconds)]
    entry = (envinfo.heading(f"model throughput against batch size, {args.model}, on {device_label}") + "\n"
             + render(rows) + "\n\n"
             + f"- One patch = {recipe.patch_frames} frames = {recipe.seconds_per_patch:.3f} s of audio; float32 patches "
               "fed from host memory "
               f"each call; {min_seconds:g} s timed per batch size after one warm-up call.\n")
    envinfo.publish(entry, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
