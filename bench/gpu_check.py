"""The GPU path in one device run (issue 13): the model's batch sweep in float32, float16 and with XLA,
the numbers against CPU float32, and the CLI end to end with decoding processes feeding one model.

    python -m bench.gpu_check [--quick] [--out FILE]      (bench/gpu_check.sh runs it on a device)

Everything goes to one markdown file. GPU utilisation and memory come from `nvidia-smi`, sampled
every 0.5 s during each measurement (absent on a machine without it). On a CPU-only machine the same
steps run on the CPU (--quick: small batches, 2 minutes of audio): how the script is tried before a
device run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bench import envinfo
from bench.proc import ROOT, python_module, run_measured, run_worker
from bench.stages import load_model, recipe_of, time_batch

MODEL = "msd-musicnn"
BATCHES = [64, 128, 256, 512, 1024, 2048, 4096]
QUICK_BATCHES = [8, 16]
TOLERANCE = {"float32": 1e-3, "float16": 0.02, "float32+xla": 1e-3, "float16+xla": 0.02}
OUT_DIR = ROOT / "build" / "gpu-check"


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB) of GPU 0 every 0.5 s, while the `with` runs."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "GpuSampler":
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                utilisation, memory = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((utilisation, memory))

    def __exit__(self, *exc_info) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait()

    def summary(self) -> str:
        if not self.samples:
            return "-"
        utilisation = [u for u, _ in self.samples]
        return (f"{np.mean(utilisation):.0f} % mean, {max(utilisation):.0f} % max; "
                f"{max(m for _, m in self.samples):,.0f} MiB")


def variants() -> dict[str, Callable[[], Callable]]:
    """name -> loader of a callable (N, frames, mels) float32 -> (activations, embedding)."""
    def xla(precision: str) -> Callable:
        import tensorflow as tf
        model = load_model(MODEL, precision)
        compiled = tf.function(lambda x: model._serve(log_mel_patches=x), jit_compile=True)  # noqa: SLF001

        def call(patches: np.ndarray):
            out = compiled(tf.convert_to_tensor(patches))
            return out["activations"].numpy(), out["embedding"].numpy()
        return call

    return {"float32": lambda: load_model(MODEL, "float32"), "float16": lambda: load_model(MODEL, "float16"),
            "float32+xla": lambda: xla("float32"), "float16+xla": lambda: xla("float16")}


def sweep(quick: bool) -> list[dict]:
    import tensorflow as tf
    recipe = recipe_of(MODEL)
    rows = []
    for name, load in variants().items():
        try:
            model = load()
        except Exception as exc:  # noqa: BLE001 - a variant this device cannot run is a row saying so
            rows.append({"variant": name, "batch": None, "note": f"skipped: {type(exc).__name__}: {exc}"[:160]})
            continue
        for batch in QUICK_BATCHES if quick else BATCHES:
            with GpuSampler() as gpu:
                try:
                    row = time_batch(model, recipe, batch, 0.3 if quick else 2.0)
                except tf.errors.ResourceExhaustedError:
                    rows.append({"variant": name, "batch": batch, "note": "out of device memory"})
                    break
            rows.append({**row, "variant": name, "gpu": gpu.summary(), "note": ""})
            print(f"  {name} batch {batch}: {row['audio_s_per_s']:,.0f} audio-s/s, GPU {gpu.summary()}", flush=True)
    return rows


def real_patches(seconds: float, seed: int = 11) -> np.ndarray:
    """Log-compressed mel patches of music-like audio the demo's synthesiser makes, as the pipeline
    computes them: (N, frames, mels) float32."""
    from musicnn_beam.demo.synth import synth_music
    from musicnn_beam.transforms import features

    recipe = recipe_of(MODEL)
    mel = features.MelStream(recipe)
    mel.push(synth_music(seed, seconds, recipe.sample_rate, 1)[0].astype(np.float32))
    frames = features.MelFrames.of(mel.finish())
    patches, _ = features.to_patches(frames.frames(0, len(frames)), recipe.patch_frames, recipe.patch_frames)
    return recipe.compress(patches).astype(np.float32)


def tolerance(quick: bool) -> list[dict]:
    """Each variant's activations on the same real patches against CPU float32: the largest difference."""
    import tensorflow as tf
    patches = real_patches(60.0 if quick else 600.0)
    with tf.device("/CPU:0"):
        reference, _ = load_model(MODEL, "float32")(patches)
    rows = []
    for name, load in variants().items():
        try:
            activations, _ = load()(patches)
        except Exception as exc:  # noqa: BLE001
            rows.append({"variant": name, "note": f"skipped: {type(exc).__name__}: {exc}"[:160]})
            continue
        worst = float(np.abs(activations.astype(np.float32) - reference).max())
        rows.append({"variant": name, "patches": len(patches), "max_abs": worst, "tolerance": TOLERANCE[name],
                     "ok": worst <= TOLERANCE[name]})
        print(f"  {name}: max |difference| {worst:.2e} against CPU float32 (tolerance {TOLERANCE[name]})", flush=True)
    return rows


def catalogue(minutes: float, copies: int) -> Path:
    """The bench's corpus of `minutes` (synthesised once, cached) under `copies` names each: hard links,
    so that 2 hours cost the synthesis of 20 minutes."""
    corpus = [Path(p) for p in run_worker("bench.corpus", ["--minutes", f"{minutes:g}"], OUT_DIR / "corpus.log")[1]["corpus"]]
    folder = OUT_DIR / "catalogue"
    shutil.rmtree(folder, ignore_errors=True)
    for copy in range(copies):
        (folder / f"copy{copy}").mkdir(parents=True)
        for f in corpus:
            os.link(f, folder / f"copy{copy}" / f.name)
    return folder


def end_to_end(quick: bool) -> list[dict]:
    """The CLI on a generated catalogue (2.4 hours; --quick: 2 minutes), one model shared by N decoding
    worker processes, for a few N."""
    folder = catalogue(2, 1) if quick else catalogue(20, 7)
    cores = os.cpu_count() or 1
    rows = []
    for workers in ([1] if quick else sorted({max(1, cores // 2), cores, cores + cores // 2})):
        output = OUT_DIR / f"cli-{workers}"
        shutil.rmtree(output, ignore_errors=True)
        args = ["--input", str(folder), "--output", str(output), "--model-copies", "1",
                f"--direct_num_workers={workers}"]
        with GpuSampler() as gpu:
            measured = run_measured(python_module("pipeline", *args), OUT_DIR / f"cli-{workers}.log")
        summary = run_worker("bench.compare", ["summary", str(output)], OUT_DIR / f"summary-{workers}.log")[1]
        rows.append({"workers": workers, "wall_s": measured.wall_s, "cpu_s": measured.cpu_s,
                     "audio_s": summary["audio_s"], "tracks": summary["tracks"], "errors": summary["errors"],
                     "rate": summary["audio_s"] / measured.wall_s, "gpu": gpu.summary(),
                     "rss_mib": measured.peak_rss_mib, "exit": measured.returncode})
        print(f"  {workers} worker processes: {rows[-1]['rate']:,.0f} audio-s/s, GPU {gpu.summary()}", flush=True)
    return rows


def render(device: str, sweep_rows: list[dict], tolerance_rows: list[dict], e2e_rows: list[dict]) -> str:
    best = max((r for r in sweep_rows if "audio_s_per_s" in r), key=lambda r: r["audio_s_per_s"], default=None)
    lines = [envinfo.heading(f"the GPU path (`bench/gpu_check.sh`), {MODEL}, on {device}"), "",
             "| model alone | batch | audio-s/s | patches/s | GPU | note |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in sweep_rows:
        if "audio_s_per_s" in r:
            lines.append(f"| {r['variant']} | {r['batch']} | {r['audio_s_per_s']:,.0f} | {r['patches_per_s']:,.0f} | "
                         f"{r['gpu']} | {r['note']} |")
        else:
            lines.append(f"| {r['variant']} | {r['batch'] or '-'} | - | - | - | {r['note']} |")
    lines += ["", "| against CPU float32 | patches | max abs difference | tolerance | within |",
              "| --- | ---: | ---: | ---: | --- |"]
    for r in tolerance_rows:
        if "max_abs" in r:
            lines.append(f"| {r['variant']} | {r['patches']} | {r['max_abs']:.2e} | {r['tolerance']} | "
                         f"{'yes' if r['ok'] else '**no**'} |")
        else:
            lines.append(f"| {r['variant']} | - | - | - | {r['note']} |")
    lines += ["", "| CLI end to end | worker processes | audio s | wall s | audio-s/s | CPU s | GPU | peak RSS MiB | tracks / errors |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in e2e_rows:
        lines.append(f"| `--model-copies 1` | {r['workers']} | {r['audio_s']:,.0f} | {r['wall_s']:.1f} | {r['rate']:,.0f} | "
                     f"{r['cpu_s']:.0f} | {r['gpu']} | {r['rss_mib']:,.0f} | {r['tracks']} / {r['errors']} (exit {r['exit']}) |")
    if best and e2e_rows:
        top = max(e2e_rows, key=lambda r: r["rate"])
        lines += ["", f"- End to end at best {top['rate']:,.0f} audio-s/s ({top['workers']} worker processes) = "
                      f"{top['rate'] / best['audio_s_per_s']:.2f} of the model alone at its best "
                      f"({best['variant']}, batch {best['batch']}: {best['audio_s_per_s']:,.0f}); "
                      f"CPU {top['cpu_s'] / top['wall_s']:.1f} of {os.cpu_count()} cores busy: "
                      + ("model-bound" if top["rate"] >= 0.8 * best["audio_s_per_s"] else
                         "decode-bound" if top["cpu_s"] / top["wall_s"] >= 0.8 * (os.cpu_count() or 1) else
                         "neither saturated: look at the batching and the feeding")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, 2 minutes of audio: a try on a CPU")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "gpu-check.md")
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    from bench.gpu_batch import setup_devices

    tf.get_logger().setLevel("ERROR")  # XLA compiles once per batch shape: its retracing notes are expected
    devices, device = setup_devices()
    print("TensorFlow devices:\n" + "\n".join(f"  {d}" for d in devices), flush=True)
    started = time.perf_counter()
    print("Model alone:", flush=True)
    sweep_rows = sweep(args.quick)
    print("Against CPU float32:", flush=True)
    tolerance_rows = tolerance(args.quick)
    print("End to end:", flush=True)
    e2e_rows = end_to_end(args.quick)
    text = render(device, sweep_rows, tolerance_rows, e2e_rows)
    text += f"- {time.perf_counter() - started:.0f} s in all; raw rows: {args.out.with_suffix('.json').name}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"sweep": sweep_rows, "tolerance": tolerance_rows, "end_to_end": e2e_rows}, indent=1, default=str))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
