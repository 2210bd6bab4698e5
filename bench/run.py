"""`make bench`: whole-process and stage-by-stage throughput against the original musicnn, one run, same files.

    python -m bench.run [--minutes 20] [--out BENCHMARKS.md] [--skip-long]

Every measurement runs in a fresh subprocess; its peak RSS is that process's own (os.wait4).
Whole-process rows time everything from process start to exit (interpreter, TensorFlow import, graph
or model load); stage rows time only the stage, after its set-up. Audio seconds of the corpus are the
total decoded duration of its files. The table is printed and appended to BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import envinfo
from bench.proc import ROOT, python_module, run_measured, run_worker
from bench.stages import recipe_of

OUT_DIR = ROOT / "build" / "bench-out"
LOGS = OUT_DIR / "logs"
MODEL = "msd-musicnn"
MODEL_BATCHES = "1,8,32,64,128,256"
AUDIO_S_PER_PATCH = recipe_of(MODEL).seconds_per_patch
STARTUP_CLIP_MIN = 0.05  # a 3-second track: tagging it is all start-up (imports, model load, runner)


@dataclass(frozen=True)
class Row:
    what: str
    audio_s: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    rss_mib: float | None = None
    note: str = ""

    @property
    def rate(self) -> float | None:
        return self.audio_s / self.wall_s if self.audio_s and self.wall_s else None


# --- measurements ------------------------------------------------------------------------------

def run_json(module: str, args: list[str], log: str) -> dict:
    """A helper subprocess whose JSON result we need (keeps pyarrow and the synthesis out of this process)."""
    return run_worker(module, args, LOGS / log)[1]


def measure_original(files: list[Path], audio_s: float | None) -> list[Row]:
    measured, result = run_worker("bench.original", [*map(str, files), "--model", MODEL], LOGS / "original.log")
    covered = result["n_patches"] * AUDIO_S_PER_PATCH
    return [Row("(b) original musicnn, whole process (librosa + TF graph, batch 1)", audio_s, measured.wall_s,
                measured.cpu_s, measured.peak_rss_mib, "reference"),
            Row("(b') original, tagging only (after TF import and graph build)", audio_s, result["tagging_s"], None,
                measured.peak_rss_mib, f"graph build {result['graph_build_s']:.1f} s; patches cover {covered:.0f} s")]


def measure_cli(label: str, inputs: list[Path], name: str, extra: list[str], audio_s: float | None,
                env: dict[str, str] | None = None) -> tuple[Row, Path]:
    """Our CLI as a user runs it; audio seconds from its tracks table unless given."""
    output = OUT_DIR / name
    args = [a for i in inputs for a in ("--input", str(i))] + ["--output", str(output), *extra]
    measured = run_measured(python_module("pipeline", *args), LOGS / f"{name}.log", env)
    if measured.returncode != 0:
        return Row(label, None, measured.wall_s, measured.cpu_s, measured.peak_rss_mib,
                   f"FAILED (exit {measured.returncode}), see {measured.log.relative_to(ROOT)}"), output
    summary = run_json("bench.compare", ["summary", str(output)], f"summary-{name}.log")
    note = f"{summary['tracks']} tracks, {summary['errors']} errors"
    if summary["errors"]:
        note += f" (FAILED {summary['first_error'][:120]})"
    tagged_s = audio_s if audio_s and summary["tracks"] else summary["audio_s"]
    return Row(label, tagged_s or None, measured.wall_s, measured.cpu_s, measured.peak_rss_mib, note), output


def measure_stage(stage: str, label: str, files: list[Path], extra: tuple[str, ...] = ()) -> Row:
    measured, result = run_worker("bench.stages", [*extra, stage, *map(str, files)],
                                  LOGS / f"stage-{stage}{''.join(extra)}.log")
    return Row(label, result["audio_s"], result["seconds"], result["cpu_s"], measured.peak_rss_mib, "stage only")


def twice(files: list[Path], name: str = "corpus-twice") -> Path:
    """A folder holding every corpus file under two names: the CLI tags it as twice the corpus."""
    folder = OUT_DIR / name
    folder.mkdir()
    for copy in ("a", "b"):
        for f in files:
            os.link(f, folder / f"{copy}-{f.name}")
    return folder


def measure_model(precision: str) -> list[Row]:
    measured, result = run_worker("bench.stages", ["model", "--model", MODEL, "--batches", MODEL_BATCHES,
                                                   "--precision", precision], LOGS / f"stage-model-{precision}.log")
    label = f"(c) model alone, {precision}"
    if result["skipped"]:
        return [Row(f"{label}: skipped", note=result["skipped"])]
    rows = [Row(f"{label}, batch {r['batch']}", r["patches"] * AUDIO_S_PER_PATCH, r["seconds"], r["cpu_s"],
                measured.peak_rss_mib, f"{r['patches_per_s']:.1f} patches/s") for r in result["rows"]]
    best = max(rows, key=lambda r: r.rate or 0)
    return rows + [Row(f"{label}, best (batch {best.what.rsplit(' ', 1)[1]})", best.audio_s, best.wall_s, best.cpu_s,
                       best.rss_mib, best.note)]


def import_tensorflow_once(i: int) -> Row:
    """`import tensorflow` alone, as a user's bare interpreter does it (Keras included): the yardstick of
    the fixed cost."""
    # "0" is TensorFlow's default (Keras imported with it): this process imported our models package,
    # which sets TF_USE_LEGACY_KERAS=1 for itself and its children.
    measured = run_measured([sys.executable, "-c", "import tensorflow"], LOGS / f"import-tensorflow-{i}.log",
                            {"TF_USE_LEGACY_KERAS": "0"})
    return Row("(g) `import tensorflow` alone, a bare interpreter", None, measured.wall_s, measured.cpu_s,
               measured.peak_rss_mib)


def fastest(rows: list[Row]) -> Row:
    """The fastest of a measurement's takes, with every take's time in its note."""
    best = min(rows, key=lambda r: r.wall_s or float("inf"))
    times = f"best of {len(rows)}: {', '.join(_fmt(r.wall_s) for r in rows)} s"
    return Row(best.what, best.audio_s, best.wall_s, best.cpu_s, best.rss_mib,
               f"{best.note}; {times}" if best.note else times)


STARTUP_ROUNDS = 3


def startup_rows(album: list[Path], clip: Path) -> list[Row]:
    """What a run pays besides tagging: `import tensorflow` alone, the CLI on a 3-s clip, on a 10-track
    album once and twice (the difference is the steady state), and the model alone. Taken in rounds,
    one of each per round, the fastest of each kept: a slow spell of a shared machine then falls on
    all four alike, not on the one measured at the time (the ratios compare them)."""
    doubled = twice(album, "album-twice")
    takes: dict[str, list[Row]] = {"tf": [], "clip": [], "album": [], "twice": []}

    def take(key: str, measure: Callable[[], Row]) -> list[Row]:
        takes[key].append(measure())
        return [takes[key][-1]]

    for i in range(STARTUP_ROUNDS):
        attempt(f"round {i + 1}: import tensorflow alone", lambda: take("tf", lambda: import_tensorflow_once(i)))
        attempt(f"round {i + 1}: CLI, a 3-s clip", lambda: take("clip", lambda: measure_cli(
            "(g0) our CLI, defaults, one 3-s clip", [clip], f"cli-clip-{i}", [], None)[0]))
        attempt(f"round {i + 1}: CLI, the album", lambda: take("album", lambda: measure_cli(
            f"(g1) our CLI, defaults, the album ({len(album)} tracks of 3-5 min)", [album[0].parent],
            f"cli-album-{i}", [], None)[0]))
        attempt(f"round {i + 1}: CLI, the album twice", lambda: take("twice", lambda: measure_cli(
            f"(g2) our CLI, defaults, the album twice ({2 * len(album)} files)", [doubled],
            f"cli-album-twice-{i}", [], None)[0]))
    rows = [fastest(found) for found in takes.values() if found]
    return rows + attempt("model float32", lambda: measure_model("float32"))


def startup_lines(rows: list[Row]) -> list[str]:
    """Issue 14's three ratios, from startup_rows."""
    tf_alone = next((r for r in rows if r.what.startswith("(g) ") and r.wall_s), None)
    clip, once, doubled = (next((r for r in rows if r.what.startswith(p) and r.wall_s), None)
                           for p in ("(g0)", "(g1)", "(g2)"))
    model = find(rows, "(c) model alone, float32, best")
    lines = []
    if tf_alone and clip:
        lines.append(f"- Fixed cost: the clip run {clip.wall_s:.2f} s - `import tensorflow` alone {tf_alone.wall_s:.2f} s "
                     f"= **{clip.wall_s - tf_alone.wall_s:+.2f} s** (target: at most +1.0 s)")
    if once and doubled and once.rate and doubled.wall_s > once.wall_s:
        steady = (doubled.audio_s - once.audio_s) / (doubled.wall_s - once.wall_s)
        lines.append(f"- Steady state, the album's second copy in (g2) over (g1): ({doubled.audio_s:,.0f} - "
                     f"{once.audio_s:,.0f}) audio s / ({doubled.wall_s:.1f} - {once.wall_s:.1f}) s = {steady:.1f} "
                     f"audio-s/s; the album's whole-process rate {once.rate:.1f} audio-s/s = **{once.rate / steady:.2f}** "
                     f"of it (target: at least 0.75)")
        if model:
            lines.append(f"- Steady state / model alone (float32, best batch): {steady:.1f} / {model.rate:.1f} = "
                         f"**{steady / model.rate:.2f}** (target: at least 0.95)")
    return lines


def attempt(label: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """Run one measurement; a failure becomes a row saying so instead of ending the benchmark."""
    print(f"- {label}", flush=True)
    try:
        rows = measure()
    except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
        print(f"  failed: {error}", file=sys.stderr, flush=True)
        last = [line for line in str(error).splitlines() if line.strip()][-1]
        return [Row(f"{label}: FAILED", note=f"{last.strip()[:160]} (log in build/bench-out/logs/)")]
    for row in rows:
        rate = f"{row.rate:.1f} audio-s/s" if row.rate else ""
        print(f"  {row.what}: {rate} {_fmt(row.wall_s)} s, {_fmt(row.rss_mib, 0)} MiB {row.note}", flush=True)
    return rows


# --- the table ---------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_table(rows: list[Row], original_rate: float | None) -> str:
    lines = ["| what | audio s | wall s | audio-s/s | x original | CPU s | peak RSS MiB | note |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ratio = f"{r.rate / original_rate:.2f}" if r.rate and original_rate else "-"
        lines.append(f"| {r.what} | {_fmt(r.audio_s, 0)} | {_fmt(r.wall_s)} | {_fmt(r.rate)} | {ratio} | "
                     f"{_fmt(r.cpu_s)} | {_fmt(r.rss_mib, 0)} | {r.note} |")
    return "\n".join(lines)


def find(rows: list[Row], prefix: str) -> Row | None:
    return next((r for r in rows if r.what.startswith(prefix) and r.rate), None)


def derived_lines(rows: list[Row]) -> list[str]:
    cli, best = find(rows, "(a) our CLI, defaults"), find(rows, "(c) model alone, float32, best")
    lines = []
    if cli and best:
        lines.append(f"- Pipeline efficiency (CLI audio-s/s / model-alone best audio-s/s): "
                     f"{cli.rate:.1f} / {best.rate:.1f} = **{cli.rate / best.rate:.2f}**")
    cli_bf16, best_bf16 = find(rows, "(e) our CLI, --precision bfloat16"), find(rows, "(c) model alone, bfloat16, best")
    if cli_bf16 and best_bf16:
        lines.append(f"- Pipeline efficiency, bfloat16: {cli_bf16.rate:.1f} / {best_bf16.rate:.1f} = "
                     f"**{cli_bf16.rate / best_bf16.rate:.2f}**")
    startup = next((r for r in rows if r.what.startswith("(a0)") and r.wall_s), None)
    if cli and startup:
        lines.append(f"- Of (a)'s {cli.wall_s:.1f} s, {startup.wall_s:.1f} s are the fixed start-up (row a0): imports, "
                     f"model load, runner")
    doubled = find(rows, "(a2) our CLI")
    if cli and doubled and best and doubled.wall_s > cli.wall_s:
        steady = (doubled.audio_s - cli.audio_s) / (doubled.wall_s - cli.wall_s)
        lines.append(f"- Steady state, the second corpus's worth in (a2) over (a): ({doubled.audio_s:,.0f} - "
                     f"{cli.audio_s:,.0f}) audio s / ({doubled.wall_s:.1f} - {cli.wall_s:.1f}) s = {steady:.1f} "
                     f"audio-s/s = **{steady / best.rate:.2f}** of the model alone (float32)")
    return lines


# --- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="minutes of audio in the corpus (default 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="file the results are appended to")
    parser.add_argument("--skip-long", action="store_true", help="skip the 60-minute and 10-hour tracks")
    parser.add_argument("--only", choices=["hostile", "startup"], help="only the rows of one group: hostile = "
                        "decoding isolation's cost and the 10-hour track; startup = the fixed cost and a 10-track "
                        "album once and twice")
    return parser.parse_args(argv)


def hostile_rows(files: list[Path], ten_hours: Path | None) -> list[Row]:
    """What isolating decoders costs (the same files decoded here and in decoder processes), the peak
    RSS of a 6-hour track (the longest a default run tags), and of a 10-hour file (TooLong, found in
    bounded time)."""
    rows = attempt("decoding here and in a decoder process, alternated", lambda: measure_isolation(files))
    rows += attempt("decode, 2 decoder processes", lambda: [measure_stage(
        "decode", "(f) decode + resample in 2 decoder processes (isolated)", files, ("--isolated", "2"))])
    rows += attempt("whole runs, decoders isolated and not, alternated", lambda: measure_isolation_cli(files))
    if ten_hours is not None:
        six_hours = ten_hours.with_name("hours-6h.wav")
        label = "(f) our CLI, one 6-hour 16 kHz wav, defaults: the longest track a default run tags"
        rows += attempt(label, lambda: [measure_cli(label, [six_hours], "cli-6h", [], None)[0]])
        label = "(f) our CLI, one 10-hour 16 kHz wav, defaults (--max-duration 6 h: TooLong)"
        rows += attempt(label, lambda: [measure_cli(label, [ten_hours], "cli-10h-default", [], None)[0]])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    LOGS.mkdir(parents=True)
    print("Audio (generated once, cached under build/bench-audio/):", flush=True)
    long_minutes = [] if args.only else [5] if args.skip_long else [5, 60]
    clips = [] if args.only == "hostile" else [STARTUP_CLIP_MIN]
    hours = [] if args.skip_long or args.only == "startup" else ["--hours", "6", "--hours", "10"]
    album = [] if args.only == "hostile" else ["--album"]
    audio = run_json("bench.corpus", ["--minutes", f"{args.minutes:g}", *hours, *album,
                                      *[a for m in [*clips, *long_minutes] for a in ("--long", f"{m:g}")]],
                     "corpus.log")
    files = [Path(p) for p in audio["corpus"]]
    ten_hours = Path(audio["hours"]["10"]) if hours else None
    print("Measuring (each in a fresh process):", flush=True)
    if args.only == "hostile":
        return _append(args, hostile_rows(files, ten_hours), None, files, [])
    startup_clip = Path(audio["long"][f"{STARTUP_CLIP_MIN:g}"])
    album = [Path(p) for p in audio["album"]]
    if args.only == "startup":
        return _append(args, startup_rows(album, startup_clip), None, files, [])

    corpus_dir = files[0].parent
    long_tracks = [(m, Path(audio["long"][str(m)])) for m in long_minutes]
    rows: list[Row] = []
    decode_rows = attempt("decode", lambda: [measure_stage("decode", "(c) decode + resample alone (1 thread)", files)])
    audio_s = decode_rows[0].audio_s  # the corpus's total decoded duration
    rows += attempt("original", lambda: measure_original(files, audio_s))
    rows += attempt("CLI", lambda: [measure_cli("(a) our CLI, defaults, whole process", [corpus_dir], "cli-float32", [], audio_s)[0]])
    rows += attempt("CLI start-up", lambda: [measure_cli("(a0) our CLI, defaults, one 3-s clip: the fixed start-up cost",
                                                         [startup_clip], "cli-startup", [], None)[0]])
    rows += attempt("CLI, corpus twice", lambda: [measure_cli(f"(a2) our CLI, defaults, the corpus twice ({2 * len(files)} files)",
                                                              [twice(files)], "cli-twice", [], 2 * audio_s)[0]])
    rows += attempt("CLI bfloat16", lambda: [measure_cli("(e) our CLI, --precision bfloat16, whole process", [corpus_dir],
                                                         "cli-bfloat16", ["--precision", "bfloat16"], audio_s)[0]])
    precision_notes = precision_difference(OUT_DIR / "cli-float32", OUT_DIR / "cli-bfloat16")
    rows += decode_rows
    rows += attempt("decode, 2 threads", lambda: [measure_stage("decode", "(c) decode + resample, 2 threads in one process",
                                                                files, ("--threads", "2"))])
    rows += attempt("features", lambda: [measure_stage("features", "(c) features alone (mel_power + the compression)", files)])
    rows += attempt("model float32", lambda: measure_model("float32"))
    rows += attempt("model bfloat16", lambda: measure_model("bfloat16"))
    for minutes, path in long_tracks:
        label = f"(d) our CLI, one {minutes}-min 44.1 kHz stereo flac"
        rows += attempt(label, lambda: [measure_cli(label, [path], f"cli-{minutes}min", [], None)[0]])
    if args.skip_long:
        rows.append(Row("(d) our CLI, one 60-min track: skipped", note="--skip-long"))
    rows += hostile_rows(files, ten_hours)
    rows += startup_rows(album, startup_clip)
    return _append(args, rows, audio_s, files, precision_notes)


def _append(args: argparse.Namespace, rows: list[Row], audio_s: float | None, files: list[Path],
            precision_notes: list[str]) -> int:
    rows.sort(key=lambda r: r.what[1] if r.what.startswith("(") else "z")  # (a), (b), ... as in the issue; stable
    original = find(rows, "(b) original")
    table = render_table(rows, original.rate if original else None)
    n_mp3 = sum(f.suffix == ".mp3" for f in files)
    audio_s = audio_s or (rows[0].audio_s if rows and args.only != "startup" else None)
    scope = f", only the {args.only} rows (--only {args.only})" if args.only else ""
    title = (f"`make bench`{scope}, {audio_s / 60:.1f} min corpus ({len(files)} tracks of 150-160 s, {n_mp3} mp3 + "
             f"{len(files) - n_mp3} flac, 44.1 kHz stereo), model {MODEL}" if audio_s else
             f"`make bench`{scope}, model {MODEL}")
    notes = derived_lines(rows) + startup_lines(rows) + isolation_lines(rows) + precision_notes + [
        "- Whole-process rows include interpreter start, imports (TensorFlow, Beam) and model load; stage rows "
        "time the stage alone after a warm-up. CPU s / wall s = cores in use. x original = audio-s/s over (b)'s.",
        f"- Peak RSS is each process's own (os.wait4); Linux counts in it the launcher's RSS at fork, here "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB.",
    ]
    entry = envinfo.heading(title) + "\n" + table + "\n\n" + "\n".join(notes) + "\n"
    print("\n" + entry)
    envinfo.append(args.out, entry)
    print(f"appended to {args.out}")
    return 0


def measure_isolation(files: list[Path]) -> list[Row]:
    measured, result = run_worker("bench.stages", ["isolation", *map(str, files)], LOGS / "stage-isolation.log")
    here, isolated = result["here"], result["isolated"]
    note = f"each file decoded both ways back to back, {result['rounds']} times; sum of each file's best"
    return [Row("(f) decode + resample in this process (1 thread), isolation's baseline", here["audio_s"],
                here["seconds"], None, measured.peak_rss_mib, note),
            Row("(f) decode + resample in 1 decoder process (isolated)", isolated["audio_s"], isolated["seconds"],
                None, measured.peak_rss_mib, note)]


ISOLATED_RUN = "(f) our CLI, the corpus twice (16 files), decoders in processes (as always)"
IN_PROCESS_RUN = "(f) our CLI, the corpus twice (16 files), decoding in the worker's threads (no isolation)"


def measure_isolation_cli(files: list[Path], rounds: int = 2) -> list[Row]:
    """What isolation costs a whole run: the same run with decoders in processes and (bench only,
    decoders.IN_PROCESS_ENV) in the worker's threads, alternated `rounds` times; the faster of each."""
    from musicnn_beam.transforms.decoders import IN_PROCESS_ENV
    folder = OUT_DIR / "corpus-twice" if (OUT_DIR / "corpus-twice").exists() else twice(files)
    runs: dict[str, list[Row]] = {ISOLATED_RUN: [], IN_PROCESS_RUN: []}
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for label in order:
            env = {IN_PROCESS_ENV: "1"} if label == IN_PROCESS_RUN else {}
            name = f"cli-isolation-{'in-process' if env else 'processes'}-{round_}"
            runs[label].append(measure_cli(label, [folder], name, [], None, env)[0])
    best = []
    for label, rows in runs.items():
        row = min(rows, key=lambda r: r.wall_s)
        best.append(Row(row.what, row.audio_s, row.wall_s, row.cpu_s, row.rss_mib,
                        f"{row.note}; best of {rounds} alternated runs: {', '.join(f'{r.wall_s:.1f}' for r in rows)} s"))
    return best


def isolation_lines(rows: list[Row]) -> list[str]:
    lines = []
    here, isolated = find(rows, "(f) decode + resample in this process"), find(rows, "(f) decode + resample in 1 decoder")
    if here and isolated:
        lines.append(f"- Decoding isolation's cost, one decoder process against decoding in this process, the same "
                     f"files, each file's best of its alternated decodes: {isolated.rate:.1f} / {here.rate:.1f} "
                     f"audio-s/s = **{isolated.rate / here.rate:.3f}** "
                     f"({(1 - isolated.rate / here.rate) * 100:+.1f} % throughput lost)")
    whole, threads = find(rows, ISOLATED_RUN), find(rows, IN_PROCESS_RUN)
    if whole and threads:
        lines.append(f"- What isolation costs a whole run (decoding overlaps the mel and the model): "
                     f"{whole.rate:.1f} / {threads.rate:.1f} audio-s/s = **{whole.rate / threads.rate:.3f}** "
                     f"({(1 - whole.rate / threads.rate) * 100:+.1f} % throughput lost)")
    return lines


def precision_difference(float32_out: Path, bfloat16_out: Path) -> list[str]:
    try:
        diff = run_json("bench.compare", ["diff", str(float32_out), str(bfloat16_out)], "diff-precision.log")
        tracks, patches = diff["tracks"], diff["patches"]
    except Exception as error:  # noqa: BLE001
        return [f"- bfloat16 vs float32 activations: could not compare ({error})"]
    return [f"- bfloat16 vs float32 CLI activations, |difference|: per track max {tracks['max']:.2e}, mean "
            f"{tracks['mean']:.2e} ({tracks['rows']} tracks); per patch max {patches['max']:.2e}, mean "
            f"{patches['mean']:.2e} ({patches['rows']} patches)"]


if __name__ == "__main__":
    sys.exit(main())
