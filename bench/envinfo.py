"""The heading of a benchmark entry: date (UTC), machine and library versions."""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.proc import ROOT

PACKAGES = ("tensorflow", "apache-beam", "numpy", "av", "soxr", "librosa", "pyarrow")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what `nproc` prints
    except AttributeError:
        return os.cpu_count() or 1


def total_memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def version(package: str) -> str:
    for name in (package, f"{package}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def ffmpeg_version() -> str:
    try:
        import av
    except ImportError:
        return "n/a"
    libs = av.library_versions
    avcodec = ".".join(map(str, libs.get("libavcodec", ())))
    return f"FFmpeg {getattr(av, 'ffmpeg_version_info', '?')} (libavcodec {avcodec})"


def machine_line() -> str:
    return f"{cpu_model()}, {cpu_count()} cores (nproc), {total_memory_gib():.1f} GiB memory, {platform.system()} {platform.release()}"


def versions_line() -> str:
    packages = ", ".join(f"{p} {version(p)}" for p in PACKAGES)
    return f"Python {platform.python_version()}, {packages}, {ffmpeg_version()}"


def code_line() -> str:
    """The commit measured, and whether the working tree differed from it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def heading(title: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"## {now}: {title}\n\n- Machine: {machine_line()}\n- Versions: {versions_line()}\n"
            f"- Code: {code_line()}\n")


INTRO = """# Benchmarks

Throughput of musicnn-beam against the original musicnn 0.1.0 path on the same CPU and the same
files, in audio seconds per wall-clock second (audio-s/s), with the peak resident memory of each
process. Reproduce with `make bench` (or `.venv/bin/python -m bench.run [--minutes 20]
[--skip-long]`); model throughput against batch size on whatever device TensorFlow sees (a GPU
included) with `.venv/bin/python -m bench.gpu_batch --append`. Each run appends an entry below.
Shared machines are noisy: compare the ratios within one entry rather than numbers across entries.
"""


def entry_parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """A bench command's parser, with its --append and --out (where publish() appends the entry)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    parser.add_argument("--append", action="store_true", help="append the entry to --out")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    return parser


def publish(entry: str, args: argparse.Namespace) -> None:
    """Print a bench command's entry, and append it to args.out when asked (entry_parser's flags)."""
    print("\n" + entry)
    if args.append:
        append(args.out, entry)
        print(f"appended to {args.out}")


def append(path: Path, text: str) -> None:
    """Append an entry to the benchmarks file, creating it with its introduction first."""
    existing = path.read_text() if path.is_file() else INTRO
    path.write_text(existing.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
