"""Packaging: the wheel workers install holds every package and the model metadata under the one name
musicnn_beam, with the console script, and works installed beside other packages called `models` and
`pipeline`; the Dataflow worker image (Dockerfile) uses the Beam version pinned in pyproject.toml."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.models.registry import MODELS_ENV, models_dir
from musicnn_beam.store.read import read_table

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ["pipeline", "transforms", "store", "reports", "models", "demo"]


def pinned(name: str) -> str:
    """The exact version pyproject.toml pins NAME to."""
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            assert len(pins) == 1, f"{line!r} is not an exact pin"
            return pins[0]
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def build_backend_satisfied() -> bool:
    """Whether this environment already holds the build requirements (then no isolated build env is needed)."""
    for line in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(line)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            return False
        if not SpecifierSet(str(requirement.specifier)).contains(installed, prereleases=True):
            return False
    return True


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Without network: with the build requirements installed here, build in this environment; otherwise
    # pip makes an isolated build environment from its configured index (a local mirror works offline).
    isolation = ["--no-build-isolation"] if build_backend_satisfied() else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-w", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    wheels = list(out.glob("musicnn_beam-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(wheel_path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel_path) as archive:
        yield archive


@pytest.mark.e2e
def test_wheel_holds_every_package_and_the_model_metadata(wheel):
    names = set(wheel.namelist())
    assert "musicnn_beam/__init__.py" in names
    for package in PACKAGES:  # the repo's folder pipeline/ is the package musicnn_beam.pipeline, and so on
        assert f"musicnn_beam/{package}/__init__.py" in names, package
        sources = {f"musicnn_beam/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / package).glob("*.py")}
        assert sources <= names, f"{package}: missing {sorted(sources - names)}"
    metadata = {f"musicnn_beam/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "models" / "metadata").glob("*.json")}
    assert metadata and metadata <= names, sorted(metadata - names)
    assert not [n for n in names if not n.startswith(("musicnn_beam/", "musicnn_beam-"))], "one top-level name only"


@pytest.mark.e2e
def test_wheel_declares_the_console_script_and_the_pins(wheel):
    dist_info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert re.search(r"^\[console_scripts\]\s*$", entry_points, re.M)
    assert re.search(r"^musicnn-beam\s*=\s*musicnn_beam\.pipeline\.cli:console_main\s*$", entry_points, re.M), \
        entry_points
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(f"{dist_info}/METADATA").decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(Requirement(r).name for r in requires) == \
           sorted(Requirement(r).name for r in PYPROJECT["project"]["dependencies"])


DUMMY = "somebody else's {name}"
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import musicnn_beam
for module in pkgutil.walk_packages(musicnn_beam.__path__, "musicnn_beam."):
    if not module.name.endswith("__main__"):  # those run the command
        importlib.import_module(module.name)
import models, pipeline
print(models.WHO, pipeline.WHO, musicnn_beam.__file__, sep="\\n")
print(*sys.path, *(getattr(finder, "__name__", type(finder).__name__) for finder in sys.meta_path), sep="\\n")
"""


@pytest.fixture(scope="module")
def installed(wheel_path, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel (no dependencies) and top-level packages `models` and `pipeline`
    of somebody else's; it sees the project's dependencies (a .pth naming this venv's site-packages),
    not the checkout: the editable install's finder is started by a .pth there, which is not read."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                           "--no-index", str(wheel_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True, timeout=60).strip())
    (site / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    for name in ("models", "pipeline"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"WHO = {DUMMY.format(name=name)!r}\n")
    return venv


def run_installed(venv: Path, *argv: str, cwd: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """ARGV with the venv's bin/ first, in CWD (not the checkout), the converted models named by the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env[MODELS_ENV] = str(models_dir())
    done = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.mark.e2e
@pytest.mark.usefixtures("converted_models")
def test_the_installed_wheel_lives_beside_packages_called_models_and_pipeline(installed, tmp_path):
    site = Path(sysconfig.get_path("purelib"))
    loaded = run_installed(installed, "python", "-c", IMPORT_EVERYTHING, cwd=tmp_path).stdout.splitlines()
    assert loaded[:2] == [DUMMY.format(name="models"), DUMMY.format(name="pipeline")]
    assert Path(loaded[2]).is_relative_to(installed), f"musicnn_beam comes from {loaded[2]}"
    assert not [line for line in loaded[3:] if line == str(ROOT) or "editable" in line.lower()], loaded
    assert str(site) in loaded[3:], "the project's dependencies are seen"

    usage = run_installed(installed, "python", "-m", "musicnn_beam.pipeline", "--help", cwd=tmp_path)
    assert usage.stdout.startswith("usage: musicnn-beam") and "--output" in usage.stdout

    write_audio(tmp_path / "song.wav", synth_music(3, 4.0, 16000, 1), 16000, "wav16")
    tagged = run_installed(installed, "musicnn-beam", "--input", str(tmp_path / "song.wav"), "--output",
                           str(tmp_path / "store"), cwd=tmp_path)
    assert "1 listed, 0 skipped, 1 tagged" in tagged.stdout, tagged.stdout
    (track,) = read_table(str(tmp_path / "store"), "tracks").to_pylist()
    assert track["model"] == "msd-musicnn" and len(track["top_tags"]) == 5


@pytest.mark.unit
def test_dockerfile_uses_the_pinned_beam_and_tensorflow():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    base = [line.split()[1] for line in instructions if line.split()[0].upper() == "FROM"]
    assert base and all(b.startswith("apache/beam_python") for b in base), base
    for image in base:
        assert image.split(":", 1)[1] == pinned("apache-beam"), f"{image} != apache-beam=={pinned('apache-beam')}"
        python = re.fullmatch(r"apache/beam_python(\d)\.(\d+)_sdk", image.split(":", 1)[0])
        assert python, image
        assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(f"{python[1]}.{python[2]}"), image
    body = "\n".join(instructions)
    assert re.search(rf"tensorflow\[and-cuda\]=={re.escape(pinned('tensorflow'))}\b", body)
    assert re.search(r"pip install [^\n]*\S", body) and "musicnn_beam.models.convert" in body
    assert re.search(r"^ENV\s+MUSICNN_BEAM_MODELS[= ]/opt/musicnn-beam/models\s*$", body, re.M)
    assert not re.search(r"^(ENTRYPOINT|CMD)\b", body, re.M | re.I), "keep Beam's boot entrypoint"


@pytest.mark.unit
def test_dockerignore_keeps_the_build_context_to_the_sources():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "build", ".git"} <= ignored
