"""What the commands print, and what they keep off the console: TensorFlow's, CUDA's and Beam's notes
(shown with --verbose), the progress line while a run goes, and a quick exit once all is printed."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, NoReturn, Optional

from musicnn_beam.models.quiet import QUIET_ENV
from musicnn_beam.pipeline.args import PROG


def quiet_console() -> None:
    """A plain run prints its summary, real warnings and errors only: TensorFlow's and CUDA's later
    notes (e.g. "failed call to cuInit" on a machine without a GPU) are not logged, and Beam's worker
    does not log a step's failure that the run reports itself in one line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # they log, with its traceback, what the run raises
    # Worker processes' own log lines, relayed at their level: their start-up notes are warnings
    # ("No semi_persistent_directory found"); their errors still show.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def hide_beam_resource_warning() -> None:
    """Beam 2.77's RunInference imports `resource` in the same try block as a torch-only module, so
    without torch it warns on every batch that memory usage cannot be fetched. Nothing is wrong."""
    logging.getLogger().addFilter(_not_beam_resource_warning)  # once: a filter already there is not added again


def _not_beam_resource_warning(record: logging.LogRecord) -> bool:
    return "Resource module is not available" not in record.getMessage()


@contextlib.contextmanager
def workers_quiet(quiet: bool) -> Iterator[None]:
    """Worker processes started meanwhile on this machine import TensorFlow quietly (models/quiet.py)."""
    before = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1" if quiet else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[QUIET_ENV]
        else:
            os.environ[QUIET_ENV] = before


@contextlib.contextmanager
def showing_progress(folder: Optional[str]) -> Iterator[None]:
    """The progress line (pipeline/progress.py) of the tallies in folder, meanwhile; None: no line (a
    remote runner's workers tally into its metrics only)."""
    if folder is None:
        yield
        return
    from musicnn_beam.pipeline.progress import ProgressLine  # here: it imports Beam, which report and similar need not

    with ProgressLine(folder, prefix=f"{PROG}: "):
        yield


def exit_after_output(code: int) -> NoReturn:
    """Flush stdout and stderr, then leave without the interpreter's shutdown: with everything printed
    and closed, the threads of TensorFlow, Beam (gRPC) and fsspec's event loop would make it take over
    a second for nothing, and now and then abort it (exit -6 after a complete report)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
