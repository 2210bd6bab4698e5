"""A run's life, from the checked arguments (pipeline/cli.py) to its outcome: clean up what killed
runs on the output left, decode ahead while TensorFlow imports, build the graph (pipeline/graph.py)
and run it, which commits the run; remove the run's temporary files. A run that cannot go on ends in
RunFailed (one line and an exit status), one whose store refuses to be written in StoreWriteFailed;
a dry run in DryRunDone (its plan in one line); a Dataflow template build in TemplateWritten."""
from __future__ import annotations

import argparse
from importlib import metadata
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from musicnn_beam.models.quiet import native_stderr_silenced
from musicnn_beam.models.registry import ModelSpec
from musicnn_beam.pipeline.console import showing_progress, workers_quiet
from musicnn_beam.pipeline.options import LOCAL_RUNNERS, in_process
from musicnn_beam.pipeline.temp_files import local_temp_prefix, new_run_folder, new_run_tag, remove_local_temp
from musicnn_beam.store.commit import CommitRun
from musicnn_beam.store.errors import StoreConflict, write_failed, writes_refused
from musicnn_beam.store.plan import REASONS, PlanRun, RunFacts, StoreRun, will_tag, new_run_id
from musicnn_beam.store.read import current_files, read_small_current
from musicnn_beam.store.schema import settings_key
from musicnn_beam.transforms import decode_ahead
from musicnn_beam.transforms.sources import InputSpec, ManifestError, NoMatch, is_local
from musicnn_beam.transforms.tally import NAMESPACE, RunTally


# The label of the run's store-writing steps (CommitRun): a failure Beam reports from under it is the store's.
COMMIT = "Commit"


class Launched(NamedTuple):
    """A finished run: its store, its id and Beam's result (the run's metrics)."""

    output: str
    run_id: str
    result: PipelineResult


class DryRunDone(Exception):
    """A dry run has planned: its one line."""


class TemplateWritten(Exception):
    """DataflowRunner wrote the job to --template_location instead of submitting it: nothing ran (yet)."""


class RunFailed(Exception):
    """The run stopped for a reason the user can act on: one line, and its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def launch(args: argparse.Namespace, model: ModelSpec, options: PipelineOptions, local_runner: object,
           current_version: Optional[int], started: float) -> Launched:
    """Run the pipeline the checked arguments (pipeline/cli.py) ask for on the store's `current` at
    current_version (None: no store yet); started: when the command was launched (the run's time
    counts from it). Raises RunFailed, StoreWriteFailed, DryRunDone or TemplateWritten."""
    patch_hop = model.recipe.patch_frames if args.patch_hop is None else args.patch_hop
    current = () if current_version is None else tuple(current_files(args.output, current_version))
    facts = RunFacts(run_id=new_run_id(), model=model.name, fingerprint=model.fingerprint(),
                     settings=settings_key(patch_hop, args.precision), retag=args.retag)
    remove_local_temp(local_temp_prefix(args.output), spare_running=True)  # what a killed run on this output left
    run_tag = new_run_tag(args.output)
    local = in_process(local_runner, options) and not args.dry_run
    if local:
        decode_ahead_of_run(args, model.recipe.sample_rate, facts, current, run_tag)  # while TensorFlow imports

    # TensorFlow comes in only now: its start-up chatter on stderr would bury a one-line usage error.
    with native_stderr_silenced(not args.verbose):
        from musicnn_beam.pipeline.graph import TagCatalogue, TagSettings
        from musicnn_beam.transforms.inference import ModelLoadFailed, forget_preloaded, preload_model

    try:
        settings = TagSettings(model=model, patch_hop=patch_hop, batch_size=args.batch_size, precision=args.precision,
                               inference_accelerator=args.inference_accelerator, model_copies=args.model_copies,
                               max_duration_s=args.max_duration, decode_timeout_s=args.decode_timeout, run_tag=run_tag)
        runner = options.view_as(StandardOptions).runner
        # Workers on this machine tally into a folder the progress line reads; remote ones: metrics only.
        progress_folder = new_run_folder(run_tag, "progress") if runner in LOCAL_RUNNERS else None
        run = StoreRun(output=args.output, facts=facts, current_version=current_version, current_files=current,
                       row={"started": started, "package_version": package_version(),
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
            _ = inputs | "Tag" >> TagCatalogue(settings, run) | COMMIT >> CommitRun(run)
        with showing_progress(progress_folder), workers_quiet(not args.verbose):
            result = pipeline.run()
            result.wait_until_finish()
        template = written_template(result, options)
        if template:
            raise TemplateWritten(template)
        if args.dry_run:
            raise DryRunDone(plan_line(result))
    except Exception as exc:
        status = {StoreConflict: 3, NoMatch: 2, ManifestError: 2, ModelLoadFailed: 1}
        for known, code in status.items():  # Beam re-raises what a step raised, wrapped
            if known.__name__ in str(exc) or isinstance(exc, known):
                raise RunFailed(_one_line(exc, known), code) from exc
        if writes_refused(exc) and f"'{COMMIT}/" in str(exc):  # Beam names the failing step: [while running 'Commit/...']
            raise write_failed(args.output, exc, "nothing of this run is visible") from exc
        raise
    finally:
        decode_ahead.stop()
        forget_preloaded()
        remove_local_temp(run_tag)
    return Launched(args.output, facts.run_id, result)


def decode_ahead_of_run(args: argparse.Namespace, sample_rate: int, facts: RunFacts, current: tuple[str, ...],
                        run_tag: str) -> None:
    """An in-process run of local files decodes its first files to tag while the launcher starts up
    (transforms.decode_ahead); the launcher reads the store's `current` files for that only when they
    are small."""
    if args.manifest or not all(is_local(pattern) for pattern in args.input):
        return
    folder = new_run_folder(run_tag, "decoded")
    decode_ahead.start(folder, args.input, lambda: read_small_current(current, facts.model, decode_ahead.MAX_CURRENT_ROWS),
                       lambda file, rows: will_tag(file, rows, facts), sample_rate, args.max_duration,
                       args.decode_timeout)


def written_template(result, options: PipelineOptions) -> Optional[str]:
    """Where the job went when DataflowRunner wrote it as a template (--template_location: our classic
    template build, and every Flex Template launch, whose launcher asks for one) rather than running
    it; None when a job ran."""
    location = options.view_as(GoogleCloudOptions).template_location
    if not location:
        return None
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

    return location if isinstance(result, DataflowPipelineResult) and not result.has_job else None


def plan_line(result) -> str:
    """A dry run's plan, from the pipeline's `plan: ...` counters (store.plan.outcome_apart)."""
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
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
