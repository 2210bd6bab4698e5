"""Dataflow: the Flex Template's metadata has one parameter per CLI flag, its entry point turns the launcher's
`--switch=true` into our flags, the image and the make target are wired to them; and the job our Dataflow
profile asks for, written by DataflowRunner with `--template_location FILE` (no account, no network: the
GCS emulator is the temp and staging bucket): Runner v2, the GPU service option, our worker image, the
machine type, and with --inference-accelerator the accelerator hint on the inference step alone.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from musicnn_beam.pipeline.cli import build_parser

pytest_plugins = ["tests.servers"]

ROOT = Path(__file__).resolve().parent.parent
METADATA = ROOT / "deploy" / "dataflow" / "metadata.json"
LAUNCH = ROOT / "deploy" / "dataflow" / "launch.py"
PROFILE = ROOT / "configs" / "dataflow-gpu.yaml"
HINT = "type:nvidia-l4;count:1;install-nvidia-driver"
ACCELERATOR_URN = "beam:resources:accelerator:v1"


def cli_actions() -> dict[str, argparse.Action]:
    """The CLI's flags (without --help), by name without the dashes."""
    return {flag[2:]: action for action in build_parser()._actions if not isinstance(action, argparse._HelpAction)
            for flag in action.option_strings}


def parameters() -> dict[str, dict]:
    params = json.loads(METADATA.read_text())["parameters"]
    by_name = {p["name"]: p for p in params}
    assert len(by_name) == len(params), "a parameter is listed twice"
    return by_name


def launch_module():
    spec = importlib.util.spec_from_file_location("musicnn_beam_flex_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matches(param: dict, value: str) -> bool:
    return all(re.fullmatch(regex, value) for regex in param.get("regexes", []))


@pytest.mark.unit
def test_the_metadata_has_one_parameter_per_cli_flag():
    metadata = json.loads(METADATA.read_text())
    assert metadata["name"] and metadata["description"]
    params, actions = parameters(), cli_actions()
    assert sorted(params) == sorted(actions)
    for name, param in params.items():
        assert re.fullmatch(r"[a-zA-Z][-_.a-zA-Z0-9]*", name), name
        assert isinstance(param["label"], str) and param["label"].strip(), name
        assert isinstance(param["helpText"], str) and param["helpText"].strip(), name
        assert param["isOptional"] is (not actions[name].required), name
        for regex in param.get("regexes", []):
            re.compile(regex)


@pytest.mark.unit
def test_the_parameters_accept_what_the_cli_accepts():
    params = parameters()
    for name, action in cli_actions().items():
        if action.choices:
            assert all(matches(params[name], choice) for choice in action.choices), name
            assert not matches(params[name], "float64"), name
        if action.nargs == 0:  # a switch: the launcher passes the parameter's value
            assert matches(params[name], "true") and matches(params[name], "false"), name
        if isinstance(action, argparse._AppendAction):  # repeatable on the command line, once in a template
            assert re.search(r"\bonce\b", params[name]["helpText"]), name
    assert matches(params["output"], "gs://bucket/tags") and not matches(params["output"], "")


@pytest.mark.unit
def test_the_launcher_turns_switch_values_into_flags():
    launch = launch_module()
    switches = {f"--{name}" for name, action in cli_actions().items() if action.nargs == 0}
    assert launch.switches() == switches
    assert launch.translate(["--retag=true", "--dry-run=false", "--verbose=", "--input=gs://b/a=b.wav",
                             "--output=gs://b/tags", "--runner=DataflowRunner"]) == \
        ["--retag", "--input=gs://b/a=b.wav", "--output=gs://b/tags", "--runner=DataflowRunner"]
    assert launch.translate(["--dry-run=True", "--verbose=1"]) == ["--dry-run", "--verbose"]
    assert launch.translate(["--retag=maybe"]) == ["--retag=maybe"]  # left for the CLI to refuse in one line


@pytest.mark.unit
def test_every_parameter_as_the_launcher_passes_it_parses():
    """Each parameter as `--name=value` (a value its regexes accept), through the entry point's
    translation, is understood by the CLI's parser: nothing left over for Beam."""
    launch, params, actions = launch_module(), parameters(), cli_actions()
    samples = ["true", "float16", "3", "2.5", "gs://bucket/x.yaml", HINT]
    argv = [f"--{name}={next(s for s in samples if matches(param, s))}" for name, param in params.items()]
    args, rest = build_parser().parse_known_args(launch.translate(argv))
    assert rest == []
    for name, action in actions.items():
        assert getattr(args, action.dest) not in (None, False, []), name


@pytest.mark.unit
def test_the_image_is_also_the_flex_template_launcher():
    dockerfile = (ROOT / "Dockerfile").read_text()
    body = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    launcher = re.search(r"^COPY --from=gcr\.io/dataflow-templates-base/python(\d)(\d+)-template-launcher-base:(\S+) "
                         r"/opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher$",
                         body, re.M)
    assert launcher, "the Flex Template launcher binary is not copied in"
    beam_python = re.search(r"^FROM apache/beam_python(\d)\.(\d+)_sdk:", body, re.M)
    assert launcher.group(1, 2) == beam_python.group(1, 2), "the launcher's Python must be the image's"
    assert launcher[3] != "latest", "pin the launcher image by tag"
    entry = re.search(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)$", body, re.M)
    assert entry and re.search(rf"^COPY deploy/dataflow/launch\.py {re.escape(entry[1])}$", body, re.M)


@pytest.mark.e2e
def test_make_flex_template_builds_the_spec_from_the_image_and_the_metadata():
    done = subprocess.run(["make", "-n", "flex-template", "IMAGE=registry.example/p/worker:1", "TEMPLATE_BUCKET=b"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    assert ("gcloud dataflow flex-template build gs://b/templates/musicnn-beam.json --image registry.example/p/worker:1 "
            "--sdk-language PYTHON --metadata-file deploy/dataflow/metadata.json") in command
    missing = subprocess.run(["make", "-n", "flex-template"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "set IMAGE" in missing.stderr


# --- the job itself -------------------------------------------------------------------------------

# Beam looks for Application Default Credentials with 4 retries and exponential backoff (about 25 s), then
# connects anonymously. Marking the lookup done, with no credentials, reaches the same end at once: the
# run has no account, and the emulator needs none.
ANONYMOUS = "import apache_beam.internal.gcp.auth as auth; auth._Credentials._credentials_init = True; "
CLI = ANONYMOUS + "from musicnn_beam.pipeline.cli import console_main; console_main()"
# What a Flex Template launch runs: our entry point, as a script, with `--name=value` arguments.
FLEX_ENTRY_POINT = ANONYMOUS + f"import runpy; runpy.run_path({str(LAUNCH)!r}, run_name='__main__')"


def write_template(bootstrap: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    from tests.servers import worker_environment

    return subprocess.run([sys.executable, "-c", bootstrap, *argv], cwd=str(cwd), env=worker_environment(),
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def gcs_input(gcs_server, tmp_path_factory) -> str:
    from tests.conftest import make_audio

    local = tmp_path_factory.mktemp("dataflow-input")
    fs = gcs_server.fs()
    fs.put_file(make_audio(local, "a.wav", 3, 2.0, 16000, 1, "wav16"), gcs_server.url("dataflow/in/a.wav"))
    fs.invalidate_cache()
    return gcs_server.url("dataflow/in/")


def accelerator_transforms(pipeline) -> tuple[dict[str, bytes], list[str]]:
    """The pipeline proto's accelerator hints by environment, and the names of the transforms that run in a
    hinted environment."""
    hinted = {env_id: env.resource_hints[ACCELERATOR_URN] for env_id, env in pipeline.components.environments.items()
              if ACCELERATOR_URN in env.resource_hints}
    names = [t.unique_name for t in pipeline.components.transforms.values() if t.environment_id in hinted]
    return hinted, names


@pytest.mark.e2e
@pytest.mark.usefixtures("converted_models")
@pytest.mark.parametrize("placement", ["gpu-workers", "inference-only", "flex-launch"])
def test_the_dataflow_profile_writes_the_job_we_mean(placement, gcs_server, gcs_input, tmp_path):
    """gpu-workers: the profile as it is; inference-only: without worker_accelerator, with
    --inference-accelerator (README); flex-launch: the profile through the Flex Template's entry point, with
    arguments as the launcher passes them, the job written into the staging bucket as a launch does."""
    from apache_beam.portability.api import beam_runner_api_pb2

    from musicnn_beam.store.read import read_table

    profile = yaml.safe_load(PROFILE.read_text())
    config, extra = PROFILE, []
    if placement == "inference-only":  # README: drop worker_accelerator, hint the inference step
        profile.pop("dataflow_service_options")
        config = tmp_path / "inference-only.yaml"
        config.write_text(yaml.safe_dump(profile))
        extra = ["--inference-accelerator", HINT]
    output, fs = tmp_path / "store", gcs_server.fs()
    if placement == "flex-launch":
        job_location = gcs_server.url("dataflow/staging/template_launches/launch-1/job_object")
        done = write_template(FLEX_ENTRY_POINT, [
            f"--input={gcs_input}", f"--output={output}", f"--config={config}", "--retag=false", "--dry-run=false",
            "--verbose=false", "--runner=DataflowRunner", "--project=demo-project", "--region=us-central1",
            "--job_name=musicnn-beam-nightly", f"--temp_location={gcs_server.url('dataflow/tmp')}",
            f"--staging_location={gcs_server.url('dataflow/staging')}", f"--template_location={job_location}"],
            cwd=tmp_path)
        fs.invalidate_cache()
        written = json.loads(fs.cat_file(job_location))
    else:
        job_location = str(tmp_path / "job.json")
        done = write_template(CLI, ["--config", str(config), "--project", "demo-project",
                                    "--temp_location", gcs_server.url("dataflow/tmp"),
                                    "--staging_location", gcs_server.url("dataflow/staging"),
                                    "--template_location", job_location, "--input", gcs_input,
                                    "--output", str(output), *extra], cwd=ROOT)
        written = json.loads(Path(job_location).read_text())
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"musicnn-beam: wrote the Dataflow job template to {job_location}; nothing was tagged" in done.stdout
    assert read_table(str(output), "runs").num_rows == 0  # the store was opened, nothing committed

    job = written["environment"]
    assert "use_runner_v2" in job["experiments"]
    (pool,) = job["workerPools"]
    assert pool["machineType"] == profile["worker_machine_type"] == "g2-standard-8"
    assert pool["autoscalingSettings"]["maxNumWorkers"] == profile["max_num_workers"]
    images = {image["containerImage"] for image in pool["sdkHarnessContainerImages"]}
    assert images == {profile["sdk_container_image"]}

    pipeline = beam_runner_api_pb2.Pipeline()
    pipeline.ParseFromString(fs.cat_file(job["sdkPipelineOptions"]["options"]["pipelineUrl"]))
    hinted, names = accelerator_transforms(pipeline)
    worker_accelerator = [o for o in job.get("serviceOptions", []) if o.startswith("worker_accelerator=")]
    if placement == "inference-only":
        assert worker_accelerator == []
        assert list(hinted.values()) == [HINT.encode()]
        assert any("RunInference" in n for n in names), names
        assert all("Infer" in n for n in names), names  # the inference step and its parts, nothing else
        environments = {image["environmentId"] for image in pool["sdkHarnessContainerImages"]}
        assert set(hinted) < environments  # the hinted environment is one of the job's containers
    else:
        assert worker_accelerator == [f"worker_accelerator={HINT}"]
        assert not hinted and len(pool["sdkHarnessContainerImages"]) == 1
    if placement == "flex-launch":
        assert written["name"] == "musicnn-beam-nightly"  # the launch's job name over the profile's
