"""Command line: `python -m pipeline` / `musicnn-beam`.

Our flags are parsed here; every other argument is a Beam pipeline option and passes through
(--runner, --direct_num_workers, ...). With no runner named, the pipeline runs in-process on Beam's
FnApiRunner over all cores: Beam's DirectRunner would first try to download the Prism runner.

A run: check the arguments and the store (without listing the inputs: the pipeline lists them once),
complete or clean up what killed runs left, read the version of the store's state, run the
pipeline (which commits the run), print its runs row.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from importlib import metadata
from typing import Iterator, NamedTuple, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, _BeamArgumentParser
from apache_beam.runners.runner import PipelineResult

from musicnn_beam.models.quiet import QUIET_ENV, native_stderr_silenced
from musicnn_beam.models.recipe import RecipeError
from musicnn_beam.models.registry import DEFAULT_MODEL, PRECISIONS, ModelNotFound, resolve_model
from musicnn_beam.pipeline.config import ConfigError, expand_config
from musicnn_beam.transforms import decode_ahead
from musicnn_beam.store import tables as store
from musicnn_beam.transforms.decoders import DEFAULT_STALL_TIMEOUT_S
from musicnn_beam.store.plan import RunFacts, is_tagged, settings_key
from musicnn_beam.transforms.sources import ManifestError, NoMatch, check_input, is_local, read_manifest_columns

PROG = "musicnn-beam"
# Past this a track is TooLong, found in bounded time: a 6-hour track's whole run peaks at 1.8 GB RSS
# (BENCHMARKS.md), held by its mel (12 KB per audio second); longer ones are the user's call.
DEFAULT_MAX_DURATION_S = 6 * 3600.0
LOCAL_RUNNERS = {None, "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class _OneLineErrors:
    """For argparse parsers: a bad argument raises UsageError (one line) instead of printing the
    whole usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {PROG} --help)")


class _Parser(_OneLineErrors, argparse.ArgumentParser):
    pass


class _BeamParser(_OneLineErrors, _BeamArgumentParser):
    pass


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _quiet_beam_resource_warning(record: logging.LogRecord) -> bool:
    # Beam 2.77's RunInference imports `resource` in the same try block as a torch-only module, so
    # without torch it warns on every batch that memory usage cannot be fetched. Nothing is wrong.
    return "Resource module is not available" not in record.getMessage()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, allow_abbrev=False, description="Tag audio files with MusiCNN; write tags and embeddings as Parquet.",
        epilog="Any other argument is passed to Beam as a pipeline option (--runner, --direct_num_workers, ...).")
    parser.add_argument("--input", action="append", default=[], metavar="PATH",
                        help="a file, a folder (searched recursively for audio files) or a glob, local or "
                             "any fsspec URI (gs://, s3://); repeatable")
    parser.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="a .txt (one URI a line), .csv or .parquet (columns uri, optional track_id and version) "
                             "list of inputs; repeatable")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder or URI of the store: Delta Lake tables tracks/, patches/, errors/, "
                             "current/ and runs/; a run adds to what earlier runs wrote")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"a model name or the URI of a SavedModel folder with model.json (default: {DEFAULT_MODEL})")
    parser.add_argument("--patch-hop", type=positive_int, default=None, metavar="FRAMES",
                        help="frames between patch starts (default: the patch length, 187: no overlap)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="PATCHES",
                        help="patches per model call (default: 8 on CPU, 512 on GPU)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="float32",
                        help="float32 (default) gives the original's numbers; bfloat16 is the CPU fast path "
                             "(AVX512-BF16/AMX), float16 the GPU one")
    parser.add_argument("--inference-accelerator", metavar="HINT", default=None,
                        help="Beam resource hint for the inference stage only, e.g. "
                             "'type:nvidia-l4;count:1;install-nvidia-driver'")
    parser.add_argument("--model-copies", type=positive_int, default=None, metavar="N",
                        help="load N models per machine, shared by all its worker processes (Beam's "
                             "model_copies), e.g. 1 for one GPU fed by a decoding process per core "
                             "(default: one model per worker process)")
    parser.add_argument("--max-duration", type=positive_float, default=DEFAULT_MAX_DURATION_S, metavar="SECONDS",
                        help=f"a longer source is an error (TooLong), found in bounded time "
                             f"(default: {DEFAULT_MAX_DURATION_S:g}, 6 hours)")
    parser.add_argument("--decode-timeout", type=positive_float, default=DEFAULT_STALL_TIMEOUT_S, metavar="SECONDS",
                        help=f"a decoder that makes no progress this long is killed and its file is an error "
                             f"(Timeout) (default: {DEFAULT_STALL_TIMEOUT_S:g})")
    parser.add_argument("--retag", action="store_true",
                        help="tag every input again, even those the store holds a result for")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the inputs, join them with the store and print what a run would do; "
                             "tag and write nothing")
    parser.add_argument("--config", metavar="FILE", help="a YAML run profile (configs/); flags given here override it")
    parser.add_argument("--verbose", action="store_true",
                        help="also print what TensorFlow, CUDA and Beam's workers log as they start and fail")
    return parser


def check_sources(patterns: list[str], manifests: list[str]) -> None:
    """What can be checked without listing the inputs (the pipeline lists them, once)."""
    if not patterns and not manifests:
        raise UsageError(f"name the audio with --input or --manifest (see {PROG} --help)")
    for pattern in patterns:
        try:
            check_input(pattern)
        except NoMatch as exc:
            raise UsageError(str(exc)) from exc
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read input {pattern!r}: {exc}") from exc
    for manifest in manifests:
        try:
            read_manifest_columns(manifest)
        except (OSError, ValueError, ManifestError) as exc:
            raise UsageError(f"cannot read manifest {manifest!r}: {exc}") from exc


def open_store(output: str, create: bool = True) -> Optional[int]:
    """Check OUTPUT is (or can become) a store, finish what killed runs left; returns the version of
    the state the run decides on. create=False: change nothing (None: no store yet)."""
    try:
        if not create:
            return store.open_store(output, create=False)
        store.open_store(output)
        store.recover(output)  # may commit (a killed run's plan, a vacuum): the version is read after it
        return store.state_version(output)
    except store.StoreError as exc:
        raise UsageError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - whatever the storage raises, the user gets one line
        message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())  # delta-rs colours its errors
        raise UsageError(f"output {output!r} is not writable as a store: {type(exc).__name__}: {message}") from exc


def unknown_beam_args(beam_args: list[str], own_flags: set[str]) -> list[str]:
    """The arguments that no Beam options class knows, each with a suggestion when one is close
    (Beam itself only logs that it discards them, and the run goes on with the defaults)."""
    parser = _BeamParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():  # as PipelineOptions.get_all_options
        cls._add_argparse_args(parser)  # noqa: SLF001 - Beam's own way to list its options
    _, unknown = parser.parse_known_args(beam_args)
    known = sorted(own_flags | {flag for action in parser._actions for flag in action.option_strings})
    described = []
    for arg in unknown:
        close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1) if arg.startswith("--") else []
        described.append(f"{arg!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    return described


class ReusedViewsOptions(PipelineOptions):
    """Beam's options, each view (view_as) built once. Beam asks for a view at every transform it
    applies and every type it checks (view_as(TypeOptions): about 450 times a run), and each builds
    and runs an argparse parser: 0.1 s of every run's fixed cost. Views share the options' values
    (view_as's contract), so reusing one is the same as building it again."""

    def view_as(self, cls):
        views = self.__dict__.setdefault("_reused_views", {})  # not self._x = ...: Beam's __setattr__ refuses it
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]


def pipeline_options(beam_args: list[str]) -> tuple[PipelineOptions, object]:
    """Beam options from the pass-through arguments; with no runner named, the local in-process runner
    on all cores."""
    options = ReusedViewsOptions(beam_args)
    if options.view_as(StandardOptions).runner is not None:
        return options, None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    direct = options.view_as(DirectOptions)
    named = " ".join(beam_args)
    if "--direct_num_workers" not in named:
        # One worker: its threads decode a file per core ahead (decoder processes) and TensorFlow
        # uses every core; two workers were no faster on 2 cores (BENCHMARKS.md).
        direct.direct_num_workers = 1
    if "--direct_running_mode" not in named:
        # Never multi_threading: its data channel garbles a Flatten fed by large inputs of several
        # stages (the skip join at 100,000 files lost files or read garbage; Beam's own large-input
        # test of that mode is flaky, apache/beam#21104). Several workers: separate processes.
        direct.direct_running_mode = "in_memory" if direct.direct_num_workers == 1 else "multi_processing"
    return options, FnApiRunner()


def in_process(local_runner: object, options: PipelineOptions) -> bool:
    """Whether the run's one worker is this process (the local runner's in_memory mode)."""
    return local_runner is not None and options.view_as(DirectOptions).direct_running_mode == "in_memory"


def decode_ahead_of_run(args: argparse.Namespace, recipe, facts: RunFacts, state_files: tuple[str, ...],
                        run_tag: str) -> None:
    """An in-process run of local files decodes its first files to tag while the launcher starts up
    (transforms.decode_ahead); the launcher reads the store's state for that only when it is small."""
    if args.manifest or not all(is_local(pattern) for pattern in args.input):
        return
    folder = tempfile.mkdtemp(prefix=f"{run_tag}-decoded-")  # removed with the run's temporary files
    decode_ahead.start(folder, args.input, lambda: store.read_small_state(state_files, facts.model, decode_ahead.MAX_STATE_ROWS),
                       lambda file, states: is_tagged(file, states, facts), recipe.sample_rate, args.max_duration,
                       args.decode_timeout)


def run(argv: list[str]) -> "Launched":
    parser = build_parser()
    own_flags = {flag for action in parser._actions for flag in action.option_strings}
    try:
        argv = expand_config(argv, own_flags)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    args, beam_args = parser.parse_known_args(argv)
    unknown = unknown_beam_args(beam_args, own_flags)
    if unknown:
        raise UsageError(f"unrecognised by {PROG} and Beam: {', '.join(unknown)} (see {PROG} --help)")
    options, local_runner = pipeline_options(beam_args)
    try:
        model = resolve_model(args.model)
        recipe = model.recipe  # a model whose features we cannot compute would get wrong tags
        if model.is_named and options.view_as(StandardOptions).runner in LOCAL_RUNNERS:
            model.local_path()  # fail now, not on the worker, when the model was never converted
    except (ModelNotFound, RecipeError) as exc:
        raise UsageError(str(exc)) from exc
    patch_hop = recipe.patch_frames if args.patch_hop is None else args.patch_hop
    check_sources(args.input, args.manifest)
    state_version = open_store(args.output, create=not args.dry_run)
    state_files = () if state_version is None else tuple(store.state_files(args.output, state_version))
    facts = RunFacts(run_id=store.new_run_id(), model=model.name, fingerprint=model.fingerprint(),
                     settings=settings_key(patch_hop, args.precision), retag=args.retag)
    remove_local_temp(local_temp_prefix(args.output), spare_running=True)  # what a killed run on this output left
    run_tag = new_run_tag(args.output)
    local = in_process(local_runner, options) and not args.dry_run
    if local:
        decode_ahead_of_run(args, recipe, facts, state_files, run_tag)  # while TensorFlow imports

    # TensorFlow comes in only now: its start-up chatter on stderr would bury a one-line usage error.
    with native_stderr_silenced(not args.verbose):
        from musicnn_beam.pipeline.graph import CommitRun, InputSpec, PlanRun, StoreRun, TagCatalogue, TagSettings
        from musicnn_beam.transforms.inference import ModelLoadFailed, forget_preloaded, preload_model
        from musicnn_beam.transforms.tally import RunTally

    try:
        settings = TagSettings(model=model, patch_hop=patch_hop, batch_size=args.batch_size, precision=args.precision,
                               inference_accelerator=args.inference_accelerator, model_copies=args.model_copies,
                               max_duration_s=args.max_duration, decode_timeout_s=args.decode_timeout, run_tag=run_tag)
        runner = options.view_as(StandardOptions).runner
        # Workers on this machine tally into a folder the progress line reads; remote ones: metrics only.
        progress_folder = tempfile.mkdtemp(prefix=f"{run_tag}-progress-") if runner in LOCAL_RUNNERS else None
        run = StoreRun(output=args.output, facts=facts, state_version=state_version, state_files=state_files,
                       row={"started": time.time(), "package_version": package_version(),
                            "runner": runner or "FnApiRunner (in-process)", "classes": model.classes},
                       tally=RunTally(progress_folder))
        if local and args.model_copies is None:
            preload_model(model, args.precision, args.batch_size)  # loads while the pipeline is built
        specs = [InputSpec(pattern=p) for p in args.input] + [InputSpec(manifest=m) for m in args.manifest]
        pipeline = beam.Pipeline(runner=local_runner, options=options)
        inputs = pipeline | "Inputs" >> beam.Create(specs)
        if args.dry_run:
            _ = inputs | "Plan" >> PlanRun(run)
        else:
            _ = inputs | "Tag" >> TagCatalogue(settings, run) | "Commit" >> CommitRun(run)
        with showing_progress(progress_folder), workers_quiet(not args.verbose):
            result = pipeline.run()
            result.wait_until_finish()
        template = written_template(result, options)
        if template:
            raise TemplateWritten(template)
        if args.dry_run:
            raise DryRunDone(plan_line(result))
    except Exception as exc:
        status = {store.StoreConflict: 3, NoMatch: 2, ManifestError: 2, ModelLoadFailed: 1}
        for known, code in status.items():  # Beam re-raises what a step raised, wrapped
            if known.__name__ in str(exc) or isinstance(exc, known):
                raise RunFailed(_one_line(exc, known), code) from exc
        raise
    finally:
        decode_ahead.stop()
        forget_preloaded()
        remove_local_temp(run_tag)
    return Launched(args.output, facts.run_id, result)


class Launched(NamedTuple):
    """A finished run: its store, its id and Beam's result (the run's metrics)."""

    output: str
    run_id: str
    result: PipelineResult


@contextlib.contextmanager
def showing_progress(folder: Optional[str]) -> Iterator[None]:
    if folder is None:
        yield
        return
    from musicnn_beam.pipeline.progress import ProgressLine

    with ProgressLine(folder, prefix=f"{PROG}: "):
        yield


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


class DryRunDone(Exception):
    """A dry run has planned: its one line."""


class TemplateWritten(Exception):
    """DataflowRunner wrote the job to --template_location instead of submitting it: nothing ran (yet)."""


def written_template(result, options: PipelineOptions) -> Optional[str]:
    """Where the job went when DataflowRunner wrote it as a template (--template_location: our classic
    template build, and every Flex Template launch, whose launcher asks for one) rather than running
    it; None when a job ran."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    location = options.view_as(GoogleCloudOptions).template_location
    if not location:
        return None
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

    return location if isinstance(result, DataflowPipelineResult) and not result.has_job else None


def plan_line(result) -> str:
    """A dry run's plan, from the pipeline's `plan: ...` counters (graph.decision_apart)."""
    from apache_beam.metrics.metric import MetricsFilter

    from musicnn_beam.pipeline.graph import METRICS
    from musicnn_beam.store.plan import REASONS

    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(METRICS))["counters"]}
    plan = {name.removeprefix("plan: "): n for name, n in counters.items() if name.startswith("plan: ")}
    reasons = {r: plan.pop(r) for r in REASONS if plan.get(r)}
    skipped, removed = plan.pop("skipped", 0), plan.pop("removed", 0)
    to_tag = sum(reasons.values())
    listed = to_tag + skipped + sum(plan.values())
    why = [f"{n} {r}" for r, n in reasons.items()]
    for amount, known, unit in ((f"{counters.get('to tag: bytes', 0) / 1e6:,.1f}",
                                 counters.get("to tag: files with a size", 0), "MB to read"),
                                (f"{counters.get('to tag: audio ms', 0) / 3.6e6:,.2f}",
                                 counters.get("to tag: files with a duration", 0), "audio h")):
        if known:
            why.append(f"{amount} {unit}" + ("" if known == to_tag else f" for {known} of them"))
    detail = f" ({', '.join(why)})" if why else ""
    failing = "".join(f", {n} {kind}" for kind, n in sorted(plan.items()))
    return (f"dry run: {listed} listed: {to_tag} to tag{detail}, {skipped} skipped, {removed} to mark removed"
            f"{failing}; nothing tagged or written")


class RunFailed(Exception):
    """The run stopped for a reason the user can act on: one line, and its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _one_line(exc: BaseException, known: type) -> str:
    """The message of the `known` exception a Beam failure carries (its text after the type name)."""
    text = str(exc)
    marker = f"{known.__name__}: "
    text = text[text.rindex(marker) + len(marker):] if marker in text else text
    return " ".join(text.split("\n", 1)[0].split(" [while running ", 1)[0].split())


def package_version() -> str:
    try:
        return metadata.version("musicnn-beam")
    except metadata.PackageNotFoundError:
        return "unknown"


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


def local_temp_prefix(output: str) -> str:
    """How the temporary files of runs on OUTPUT start, in this machine's temporary folder (Beam's
    shared-model files, named after the run's model tag)."""
    return f"{PROG}-{hashlib.sha256(output.rstrip('/').encode()).hexdigest()[:12]}-"


def new_run_tag(output: str) -> str:
    """Names a run's temporary files: the output's prefix, then the launcher's pid (see
    remove_local_temp), then a random part."""
    return f"{local_temp_prefix(output)}{os.getpid()}-{uuid.uuid4().hex[:12]}"


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
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.getLogger().addFilter(_quiet_beam_resource_warning)
    if "--verbose" not in argv:
        quiet_console()
    try:
        output, run_id, _ = run(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except DryRunDone as done:
        print(f"{PROG}: {done}")
        return 0
    except TemplateWritten as written:
        print(f"{PROG}: wrote the Dataflow job template to {written}; nothing was tagged")
        return 0
    from musicnn_beam.reports.text import run_line

    row = store.read_run(output, run_id)
    print(f"{PROG}: {run_line(row)}; store {output}")
    return 0


def console_main() -> None:
    """Entry point of `python -m pipeline` and the console script."""
    from musicnn_beam.pipeline import exit_after_output

    exit_after_output(main())
