"""Beam's pipeline options, from the arguments that are not our flags (--runner, --direct_num_workers,
...). With no runner named, the pipeline runs in-process on Beam's FnApiRunner over all cores: Beam's
DirectRunner would first try to download the Prism runner."""
from __future__ import annotations

import difflib

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, _BeamArgumentParser

from musicnn_beam.pipeline.args import PROG, OneLineErrors

LOCAL_RUNNERS = {None, "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


class _BeamParser(OneLineErrors, _BeamArgumentParser):
    pass


def unknown_beam_args(beam_args: list[str], own_flags: set[str]) -> list[str]:
    """The arguments that no Beam options class knows, each with a suggestion when one is close
    (Beam itself only logs that it discards them, and the run goes on with the defaults)."""
    parser = _BeamParser(prog=PROG, allow_abbrev=False)
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
    """Beam options from the pass-through arguments, and the runner to give beam.Pipeline: with no
    runner named, the local in-process runner on all cores; else None (Beam's, by name)."""
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
