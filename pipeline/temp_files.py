"""A run's temporary files on this machine (its progress folder, its samples decoded ahead, Beam's
shared-model files), named after the run so that the run removes them at its end, and the next run on
the same output removes what a killed one left."""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
import time
import uuid

from musicnn_beam.pipeline.args import PROG
from musicnn_beam.store.recovery import process_running


def local_temp_prefix(output: str) -> str:
    """How the temporary files of runs on OUTPUT start, in this machine's temporary folder (Beam's
    shared-model files, named after the run's model tag)."""
    return f"{PROG}-{hashlib.sha256(output.rstrip('/').encode()).hexdigest()[:12]}-"


def new_run_tag(output: str) -> str:
    """Names a run's temporary files: the output's prefix, then the launcher's pid (see
    remove_local_temp), then a random part."""
    return f"{local_temp_prefix(output)}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def new_run_folder(run_tag: str, what: str) -> str:
    """A new folder of the run's temporary files (what: "progress", "decoded"), removed with them."""
    return tempfile.mkdtemp(prefix=f"{run_tag}-{what}-")


def remove_local_temp(prefix: str, spare_running: bool = False) -> None:
    """Remove this machine's temporary files and folders whose names start with prefix. With
    spare_running, those of a run whose launcher still runs are kept (a run on the same output
    started meanwhile must not take its files: its samples decoded ahead, its progress folder)."""
    for path in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), prefix) + "*"):
        if spare_running and _launcher_running(os.path.basename(path)[len(prefix):]):
            continue
        try:
            if os.path.isdir(path):  # the progress folder, the samples decoded ahead
                _remove_folder(path)
            else:  # Beam's shared-model files
                os.remove(path)
        except OSError:
            pass  # gone already, or not ours to remove


def _launcher_running(rest_of_name: str) -> bool:
    """Whether the process a run tag names (new_run_tag: "PID-...") is alive."""
    pid = rest_of_name.split("-", 1)[0]
    return pid.isdigit() and process_running(int(pid))


def _remove_folder(path: str) -> None:
    """Workers' tally threads may still write into it: moved aside first, so that none can put a file
    back while it is being emptied."""
    gone = f"{path}.removed"
    os.rename(path, gone)
    for _ in range(3):
        shutil.rmtree(gone, ignore_errors=True)
        if not os.path.exists(gone):
            return
        time.sleep(0.1)
