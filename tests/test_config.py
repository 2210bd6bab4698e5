"""Run profiles in configs/ parse into valid pipeline options; command-line flags override them."""
from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions, FlinkRunnerOptions,
                                                  GoogleCloudOptions, PipelineOptions, PortableOptions,
                                                  StandardOptions, WorkerOptions)

from musicnn_beam.pipeline.cli import build_parser
from musicnn_beam.pipeline.config import expand_config, profile_args
from musicnn_beam.pipeline.options import pipeline_options, unknown_beam_args

pytestmark = pytest.mark.unit

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OWN_FLAGS = {flag for action in build_parser()._actions for flag in action.option_strings}


def parse(profile: str, *cli: str):
    argv = expand_config(["--config", str(CONFIGS / f"{profile}.yaml"), "--output", "out", *cli], OWN_FLAGS)
    args, beam_args = build_parser().parse_known_args(argv)
    return args, PipelineOptions(beam_args)


@pytest.mark.parametrize("profile", ["local", "portable", "dataflow-gpu", "flink"])
def test_every_profile_option_is_known(profile):
    argv = expand_config(["--config", str(CONFIGS / f"{profile}.yaml"), "--output", "out"], OWN_FLAGS)
    _, beam_args = build_parser().parse_known_args(argv)
    assert beam_args and unknown_beam_args(beam_args, OWN_FLAGS) == []


def test_unknown_arguments_are_named_with_a_suggestion():
    assert unknown_beam_args(["--patch_hop", "93", "--runner", "DirectRunner", "--direct_num_workers=2"], OWN_FLAGS) == \
        ["'--patch_hop' (did you mean --patch-hop?)", "'93'"]
    assert unknown_beam_args(["--temp_locaton=gs://b/tmp"], OWN_FLAGS) == \
        ["'--temp_locaton=gs://b/tmp' (did you mean --temp_location?)"]
    assert unknown_beam_args(["--no-such-thing-at-all"], OWN_FLAGS) == ["'--no-such-thing-at-all'"]


def test_profiles_say_what_they_are_for():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == {"local", "portable", "dataflow-gpu", "flink"}

    _, local = parse("local")
    assert local.view_as(StandardOptions).runner is None
    assert local.view_as(DirectOptions).direct_num_workers == 1
    assert local.view_as(DirectOptions).direct_running_mode == "in_memory"

    _, portable = parse("portable")
    assert portable.view_as(StandardOptions).runner == "PortableRunner"
    assert portable.view_as(PortableOptions).environment_type == "EXTERNAL"

    args, dataflow = parse("dataflow-gpu")
    assert dataflow.view_as(StandardOptions).runner == "DataflowRunner"
    assert "use_runner_v2" in dataflow.view_as(DebugOptions).experiments
    assert "no_use_multiple_sdk_containers" not in dataflow.view_as(DebugOptions).experiments
    assert args.model_copies == 1  # the SDK processes (one per vCPU) share one model on the GPU
    assert any("worker_accelerator=type:nvidia" in o and "install-nvidia-driver" in o
               for o in dataflow.view_as(GoogleCloudOptions).dataflow_service_options)
    assert dataflow.view_as(WorkerOptions).machine_type.startswith("g2-")
    assert dataflow.view_as(WorkerOptions).sdk_container_image
    assert args.batch_size == 512

    _, flink = parse("flink")
    assert flink.view_as(StandardOptions).runner == "FlinkRunner"
    assert flink.view_as(FlinkRunnerOptions).flink_master and flink.view_as(FlinkRunnerOptions).flink_version


def test_command_line_overrides_the_profile():
    args, options = parse("dataflow-gpu", "--batch-size", "128", "--region=europe-west4")
    assert args.batch_size == 128
    assert options.view_as(GoogleCloudOptions).region == "europe-west4"


def test_profile_values_become_flags():
    assert profile_args({"batch_size": 8, "experiments": ["a", "b"], "save_main_session": True,
                         "use_public_ips": False}, {"--batch-size"}) == \
        ["--batch-size=8", "--experiments=a", "--experiments=b", "--save_main_session"]


@pytest.mark.parametrize("args, workers, mode", [
    ([], 1, "in_memory"),
    (["--direct_num_workers=2"], 2, "multi_processing"),
    (["--direct_num_workers=0"], 0, "multi_processing"),
    (["--direct_running_mode=multi_threading"], 1, "multi_threading"),  # asked for by name only
])
def test_the_local_runner_never_picks_multi_threading_itself(args, workers, mode):
    options, runner = pipeline_options(args)
    assert runner is not None
    assert (options.view_as(DirectOptions).direct_num_workers, options.view_as(DirectOptions).direct_running_mode) \
        == (workers, mode)
