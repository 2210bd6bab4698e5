"""Airflow DAG `musicnn_beam_nightly`: tag what changed in the catalogue every night.

One task runs `python -m musicnn_beam.pipeline --input ... --output ... [--config ...] --runner=...`
(the installed CLI, `musicnn-beam`) through the Apache Beam provider's BeamRunPythonPipelineOperator,
with the interpreter of an environment where musicnn-beam is installed. This file imports Airflow and
the Beam provider only: the pipeline runs in its own process and its own environment (Airflow and the
pipeline pin different versions of the same packages). A run tags only the files that are new or
changed since the store's last run; the store's `runs` table holds one row per finished run.

Settings, read when a run starts: a DAG param (a manual run's conf) wins, else the Airflow Variable:

    param    Variable               what it is
    input    musicnn_beam_input     the catalogue: folder, glob or URI (gs://, s3://); required
    output   musicnn_beam_output    the store (folder or URI); required
    config   musicnn_beam_config    a run profile YAML (configs/ in the repo); optional
    runner   musicnn_beam_runner    the Beam runner; default FnApiRunner, the CLI's own local runner
                                    (Beam's DirectRunner may hand the graph to Prism, which it downloads)
    python   musicnn_beam_python    the interpreter that has musicnn-beam installed; default python3

Variables can also come from the environment (AIRFLOW_VAR_MUSICNN_BEAM_INPUT=...), as the test does.

The CLI's exit status fails the task when it is not 0: 2 is a bad argument or an output that is not a
store, 3 means another run committed to the store first (it committed nothing; the next night tags
what is still missing). max_active_runs=1 keeps two runs of this DAG off one store.

Deploying on Cloud Composer (Airflow 3):
1. Install the pipeline where the task runs: this repo's package (a wheel from `pip wheel --no-deps .`
   in a package repository Composer reads) as a Composer PyPI package; a Dataflow job's workers run
   the image built from the repo's Dockerfile instead. The environment needs the Beam and Google
   providers (Composer images normally ship both). If the pipeline's pins clash with Composer's,
   install it in a venv of its own on the workers and point musicnn_beam_python at its python.
2. Set the Variables: `gcloud composer environments run ENV --location REGION variables set --
   musicnn_beam_input gs://BUCKET/music`, the same for musicnn_beam_output (gs://BUCKET/tags); for a
   Dataflow GPU job, musicnn_beam_runner=DataflowRunner and musicnn_beam_config pointing at a copy of
   configs/dataflow-gpu.yaml that Composer can read (e.g. /home/airflow/gcs/data/dataflow-gpu.yaml).
3. Upload this file: `gcloud composer environments storage dags import --environment ENV --location
   REGION --source deploy/airflow/musicnn_beam_dag.py`.
With DataflowRunner the provider also names the job (task id plus a suffix), passes --project and
--region from the Google connection (google_cloud_default; these override the profile's), and
follows the job through the Dataflow API until it ends. That path is not tested here (no GCP).
Models: a named model must be converted where the job runs (MUSICNN_BEAM_MODELS, see the README), or
pass the URI of a converted model folder (a profile's `model:`).

Tested by tests/test_airflow.py (`make test`): two nightly runs with dag.test() over a local catalogue
that grows in between, in the environment `make airflow` builds from deploy/airflow/requirements.txt.
"""
from __future__ import annotations

import pendulum
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.sdk import DAG, Param


class _BeamRunPythonCLI(BeamRunPythonPipelineOperator):
    """The provider's operator with the interpreter templated too: it comes from a param or a Variable,
    read when the task runs (reading Variables while parsing a DAG file costs a query per parse)."""

    template_fields = (*BeamRunPythonPipelineOperator.template_fields, "py_interpreter")


def _setting(name: str, default: str | None = None, required: bool = False) -> str:
    """A template: the param NAME if given, else the Variable musicnn_beam_NAME, else DEFAULT (a
    required one fails the run on rendering, naming the missing Variable)."""
    variable = f"var.value.musicnn_beam_{name}" if required else f"var.value.get('musicnn_beam_{name}', {default!r})"
    return f"{{{{ params.{name} or {variable} }}}}"


with DAG(
    dag_id="musicnn_beam_nightly",
    description="MusiCNN tags for what changed in the catalogue (musicnn-beam)",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,  # a missed night is caught up by the next run: it tags everything still missing
    max_active_runs=1,  # two runs on one store conflict: the later one to commit exits 3
    # None stays None (an unset profile is left out of the command line) instead of becoming "None".
    render_template_as_native_obj=True,
    params={
        name: Param(None, type=["null", "string"], description=description)
        for name, description in {
            "input": "catalogue (folder, glob or URI); default: Variable musicnn_beam_input",
            "output": "store (folder or URI); default: Variable musicnn_beam_output",
            "config": "run profile YAML; default: Variable musicnn_beam_config, else none",
            "runner": "Beam runner; default: Variable musicnn_beam_runner, else FnApiRunner",
            "python": "interpreter with musicnn-beam installed; default: Variable musicnn_beam_python, "
                      "else python3",
        }.items()
    },
    tags=["musicnn-beam"],
) as dag:
    _BeamRunPythonCLI(
        task_id="tag_catalogue",
        py_interpreter=_setting("python", "python3"),
        py_options=["-m"],
        py_file="musicnn_beam.pipeline",  # `python -m musicnn_beam.pipeline`: the installed CLI, nothing to upload next to the DAG
        runner=_setting("runner", "FnApiRunner"),
        pipeline_options={
            "input": _setting("input", required=True),
            "output": _setting("output", required=True),
            "config": _setting("config"),
        },
    )
