"""Command line: `python -m pipeline` / `musicnn-beam`; the one module the entry points import.

Our flags are parsed and checked here; every other argument is a Beam pipeline option and passes
through (--runner, --direct_num_workers, ...: pipeline/options.py). A bad argument is one line and
exit status 2, found before TensorFlow is imported (seconds, and its start-up notes on stderr).

A run: check the arguments and the store (without listing the inputs: the pipeline lists them once)
and that the store can be written (exit status 4 when it cannot), complete or clean up what killed
runs left, read the version of the store's `current`, run the pipeline (pipeline/run.py: it commits
the run), print its runs row.
"""
from __future__ import annotations

import argparse
import sys
import time

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from musicnn_beam.models.recipe import RecipeError
from musicnn_beam.models.registry import DEFAULT_MODEL, PRECISIONS, ModelNotFound, ModelSpec, resolve_model
from musicnn_beam.pipeline.args import PROG, ArgumentParser, UsageError, positive_float, positive_int
from musicnn_beam.pipeline.config import ConfigError, expand_config
from musicnn_beam.pipeline.console import exit_after_output, hide_beam_resource_warning, quiet_console
from musicnn_beam.pipeline.options import LOCAL_RUNNERS, pipeline_options, unknown_beam_args
from musicnn_beam.pipeline.run import DryRunDone, Launched, RunFailed, TemplateWritten, launch
from musicnn_beam.store.errors import StoreError, StoreWriteFailed
from musicnn_beam.store.open import check_writable, open_store
from musicnn_beam.store.read import read_run
from musicnn_beam.transforms.decoders import DEFAULT_MAX_DURATION_S, DEFAULT_STALL_TIMEOUT_S
from musicnn_beam.transforms.sources import ManifestError, NoMatch, check_input, read_manifest_columns


# The exit status of a run whose store refuses to be written (full, read-only, no permission).
STORE_NOT_WRITTEN = 4


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Tag audio files with MusiCNN; write tags and embeddings to a store of Delta Lake tables.",
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


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, PipelineOptions, object]:
    """-> our flags (a --config profile's under them), Beam's options and the runner to give beam.Pipeline
    (pipeline/options.py). Raises UsageError for a flag that neither we nor Beam know."""
    parser = build_parser()
    own_flags = {flag for action in parser._actions for flag in action.option_strings}
    try:
        argv = expand_config(argv, own_flags)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    args, beam_args = parser.parse_known_args(argv)
    unknown = unknown_beam_args(beam_args, own_flags)
    if unknown:
        parser.error(f"unrecognised by {PROG} and Beam: {', '.join(unknown)}")
    options, local_runner = pipeline_options(beam_args)
    return args, options, local_runner


def check_model(name: str, options: PipelineOptions) -> ModelSpec:
    """The model --model names, known and with features we can compute (reading its recipe checks
    them: a model whose features we cannot compute would get wrong tags)."""
    try:
        model = resolve_model(name)
        model.recipe  # noqa: B018 - raises RecipeError
        if model.is_named and options.view_as(StandardOptions).runner in LOCAL_RUNNERS:
            model.local_path()  # fail now, not on the worker, when the model was never converted
    except (ModelNotFound, RecipeError) as exc:
        raise UsageError(str(exc)) from exc
    return model


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


def run(argv: list[str]) -> Launched:
    """Check the arguments, then run (pipeline/run.py). Raises UsageError, StoreWriteFailed, or what
    launch raises."""
    started = time.time()  # the run's time is the whole run's, from its launch to its commit
    args, options, local_runner = parse_arguments(argv)
    model = check_model(args.model, options)
    check_sources(args.input, args.manifest)
    try:
        if not args.dry_run:
            check_writable(args.output)  # a store the run cannot write fails now, not after the work
        opened = open_store(args.output, create=not args.dry_run)
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
    for repair in opened.repairs:  # what interrupted runs left, completed or rolled back
        print(f"{PROG}: {repair}")
    return launch(args, model, options, local_runner, opened.version, started)


def main(argv: list[str] | None = None) -> int:
    """The command, in this process: prints what it has to say, returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    hide_beam_resource_warning()
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
    except StoreWriteFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return STORE_NOT_WRITTEN
    except DryRunDone as done:
        print(f"{PROG}: {done}")
        return 0
    except TemplateWritten as written:
        print(f"{PROG}: wrote the Dataflow job template to {written}; nothing was tagged")
        return 0
    from musicnn_beam.reports.text import run_line

    row = read_run(output, run_id)
    print(f"{PROG}: {run_line(row)}; store {output}")
    return 0


def console_main() -> None:
    """Entry point of `python -m pipeline` and the console script."""
    exit_after_output(main())
