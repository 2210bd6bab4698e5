"""Run one measurement in a fresh subprocess: wall time, CPU time and peak RSS of that process alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    wall_s: float  # from just before the process starts to its exit
    cpu_s: float  # user + system CPU seconds of the process (and children it waited for)
    peak_rss_mib: float  # the process's peak resident set size
    returncode: int
    log: Path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Measured:
    """Run cmd from the repo root, stdout and stderr to log; os.wait4 gives this child's own rusage
    (getrusage(RUSAGE_CHILDREN) would give the maximum over all children ever waited for)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**child_env(), **(env or {})})
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return Measured(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
                    peak_rss_mib=usage.ru_maxrss / 1024, returncode=proc.returncode, log=log)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_worker(module: str, args: list[str], log: Path) -> tuple[Measured, dict]:
    """Run `python -m module ARGS --result FILE`; the worker writes its JSON result to FILE."""
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    measured = run_measured(python_module(module, *args, "--result", str(result)), log)
    if measured.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{module} {' '.join(args[:1])} failed (exit {measured.returncode}); see {log}:\n"
                           + tail(log))
    return measured, json.loads(result.read_text())


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def write_result(path: str, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=1))
