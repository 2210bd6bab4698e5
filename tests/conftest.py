"""Shared fixtures: converted models (`make test` builds them), loaded once per session and only for
the tests that ask; audio is generated here. Every test names its layer (unit, integration or e2e:
pyproject.toml's markers), checked at collection."""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence
from unittest import mock

import pytest

pytest.register_assert_rewrite("tests.servers")  # its assert helpers report values, as in a test

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.models.registry import known_models, models_dir, resolve_model


LAYERS = ("unit", "integration", "e2e")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is checked
def pytest_collection_modifyitems(config, items):
    """A test in no layer would run in none of `make test-unit`, `test-integration` and `test-e2e`: it
    is a collection error (reported as one, with -n too), as is a test in two."""
    for item in items:
        layers = sorted({mark.name for mark in item.iter_markers() if mark.name in LAYERS})
        if len(layers) != 1:
            item.ihook.pytest_collectreport(report=pytest.CollectReport(
                item.nodeid, "failed", result=[],
                longrepr=f"{item.name} needs exactly one of the markers {', '.join(LAYERS)}; it has "
                         f"{', '.join(layers) or 'none'}"))


@pytest.fixture(scope="session")
def converted_models() -> Path:
    missing = [m for m in known_models() if not (models_dir() / m / "model.json").is_file()]
    assert not missing, f"models not converted in {models_dir()}: {missing}; run the tests with `make test`"
    return models_dir()


@pytest.fixture(scope="session")
def loaded_model(converted_models) -> Callable:
    """loaded_model(name, precision="float32") -> models.serving.LoadedModel, each loaded once a session."""
    from musicnn_beam.models.serving import LoadedModel

    cache: dict[tuple[str, str], LoadedModel] = {}

    def load(name: str, precision: str = "float32") -> LoadedModel:
        if (name, precision) not in cache:
            cache[name, precision] = LoadedModel(resolve_model(name).local_path(), precision)
        return cache[name, precision]

    return load


@pytest.fixture(scope="session")
def recipe() -> FeatureRecipe:
    """MusiCNN's feature recipe, as msd-musicnn's metadata states it."""
    return resolve_model("msd-musicnn").recipe


def make_audio(directory: Path, name: str, seed: int, seconds: float, rate: int, channels: int, codec: str) -> str:
    path = directory / name
    write_audio(path, synth_music(seed, seconds, rate, channels), rate, codec)
    return str(path)


@pytest.fixture(scope="session")
def wav16k(tmp_path_factory) -> str:
    """20 s of music-like audio, 16 kHz mono 16-bit wav: the input on which we must equal the original."""
    return make_audio(tmp_path_factory.mktemp("wav16k"), "music_16k.wav", 7, 20.0, 16000, 1, "wav16")


def clear_fsspec_caches() -> None:
    """fsspec caches filesystem instances and their listings per process: an in-process CLI run must not
    see a listing from before the test's uploads."""
    import fsspec

    for protocol in ("s3", "gs", "file"):
        try:
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
        except (ImportError, ValueError):
            pass


def in_process(main: Callable[[list[str]], int], argv: Sequence[str]) -> int:
    """A command's main(argv) in this process, as a new process would start it: with fsspec's caches
    cleared, and the environment restored after (main sets TF_CPP_MIN_LOG_LEVEL, which would silence
    the subprocesses of later tests)."""
    clear_fsspec_caches()
    with mock.patch.dict(os.environ):
        return main(list(argv))


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@pytest.fixture
def command(capfd) -> Callable[..., subprocess.CompletedProcess]:
    """command(main, *argv): a command's main() in this process (in_process), reported as a subprocess
    would be: exit status, and what file descriptors 1 and 2 got. Warnings, logged or raised, go to
    stderr as in a process of its own (pytest's log and warnings capture would keep them off it)."""

    def run(main: Callable[[list[str]], int], *argv: str) -> subprocess.CompletedProcess:
        capfd.readouterr()  # not this run's
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
        try:
            with warnings.catch_warnings():
                warnings.resetwarnings()
                for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", category)  # Python's own defaults
                warnings.showwarning = _print_warning
                status = in_process(main, argv)
        finally:
            logging.getLogger().removeHandler(handler)
        return subprocess.CompletedProcess(list(argv), status, *capfd.readouterr())

    return run


@pytest.fixture
def cli(command) -> Callable[..., subprocess.CompletedProcess]:
    """cli(*argv): `python -m musicnn_beam.pipeline ARGV` as command() runs it."""
    from musicnn_beam.pipeline.cli import main

    return functools.partial(command, main)
