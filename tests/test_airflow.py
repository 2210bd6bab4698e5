"""The Airflow DAG (deploy/airflow/musicnn_beam_dag.py) run for real: Airflow 3 in its own venv
(`make airflow`), a sqlite metadata database, dag.test() on two logical dates over a local catalogue
that grows in between; the task runs our CLI through the Beam provider's operator with this venv's
python. The second night tags only the new files; the store's runs table holds both runs; a run
whose CLI fails fails its task."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_audio
from tests.servers import read_table

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("converted_models")]

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "deploy" / "airflow"
DAG_ID = "musicnn_beam_nightly"
TASK_ID = "tag_catalogue"

# Run by the Airflow venv's python: dag.test() on one logical date, in this process (no scheduler,
# no executor), then one JSON line with the run's and the task's states.
DAG_TEST = """
import json, runpy, sys
import pendulum
dag = runpy.run_path(sys.argv[1])["dag"]
run = dag.test(logical_date=pendulum.parse(sys.argv[2]), run_conf=json.loads(sys.argv[3]))
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print("DAG_TEST " + json.dumps({"run": str(run.state), "tasks": states}))
"""


def airflow_venv() -> Path:
    value = os.environ.get("MUSICNN_BEAM_AIRFLOW_VENV")
    if not value or not (Path(value) / ".installed").is_file():
        pytest.skip("no Airflow environment: MUSICNN_BEAM_AIRFLOW_VENV is unset or not built "
                    "(`make test` builds it with `make airflow` and sets it)")
    return Path(value)


class Airflow:
    """Airflow commands in its venv with a throwaway AIRFLOW_HOME; Variables from the environment."""

    def __init__(self, venv: Path, home: Path, variables: dict[str, str]):
        self.venv = venv
        self.env = {**os.environ,
                    "AIRFLOW_HOME": str(home),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                    **{f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()}}
        self.script = home / "dag_test.py"
        self.script.write_text(DAG_TEST)

    def run(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], env=self.env, capture_output=True,
                                text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{' '.join(args)}: exit {result.returncode}\n{result.stdout[-3000:]}" \
                                       f"\n{result.stderr[-3000:]}"
        return result

    def dag_test(self, logical_date: str, conf: dict | None = None) -> dict:
        result = self.run("python", str(self.script), str(DAGS / "musicnn_beam_dag.py"), logical_date,
                          json.dumps(conf or {}))
        (line,) = [l for l in result.stdout.splitlines() if l.startswith("DAG_TEST ")]
        states = json.loads(line.removeprefix("DAG_TEST "))
        states["log"] = result.stdout + result.stderr
        return states


def runs(output: Path) -> list[dict]:
    return sorted(read_table(str(output), "runs").to_pylist(), key=lambda r: r["started"])


def test_two_nights_tag_only_what_is_new(tmp_path):
    venv = airflow_venv()
    music, output, home = tmp_path / "music", tmp_path / "store", tmp_path / "airflow-home"
    music.mkdir()
    home.mkdir()
    make_audio(music, "a.mp3", 31, 4.0, 44100, 2, "mp3")
    make_audio(music, "b.wav", 32, 3.0, 16000, 1, "wav16")
    airflow = Airflow(venv, home, {"musicnn_beam_input": str(music), "musicnn_beam_output": str(output),
                                   "musicnn_beam_python": sys.executable})
    airflow.run("airflow", "db", "migrate")

    # The first night: the variables alone, and the local profile as a param (a run's conf).
    first = airflow.dag_test("2026-11-28", {"config": str(ROOT / "configs" / "local.yaml")})
    assert first["run"] == "success" and first["tasks"] == {TASK_ID: "success"}, first["log"][-6000:]
    assert "--config=" in first["log"] and "--runner=FnApiRunner" in first["log"]

    make_audio(music, "c.flac", 33, 3.0, 22050, 1, "flac")  # the catalogue grows during the day
    (music / "sub").mkdir()
    make_audio(music / "sub", "d.wav", 34, 2.5, 16000, 1, "wav16")
    second = airflow.dag_test("2026-11-29")
    assert second["run"] == "success" and second["tasks"] == {TASK_ID: "success"}, second["log"][-6000:]

    rows = runs(output)
    for date, row in zip(("2026-11-28", "2026-11-29"), rows):
        print(f"{date}: tagged {row['tagged']}, skipped {row['skipped']}, listed {row['listed']} ({row['status']})")
    assert len(rows) == 2
    assert [(r["listed"], r["skipped"], r["tagged"], r["failed"], r["removed"]) for r in rows] == \
        [(2, 0, 2, 0, 0), (4, 2, 2, 0, 0)]
    tracks = read_table(str(output), "tracks").to_pylist()
    by_run = {r["run_id"]: sorted(Path(t["uri"]).name for t in tracks if t["run_id"] == r["run_id"]) for r in rows}
    assert list(by_run.values()) == [["a.mp3", "b.wav"], ["c.flac", "d.wav"]]

    # A run whose CLI fails (here exit 2: no such input) fails its task, and commits nothing.
    failed = airflow.dag_test("2026-11-30", {"input": str(tmp_path / "missing")})
    assert failed["run"] == "failed" and failed["tasks"] == {TASK_ID: "failed"}, failed["log"][-6000:]
    assert "return code 2" in failed["log"]
    assert len(runs(output)) == 2
