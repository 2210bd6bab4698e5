"""Packaging: the wheel workers install holds every package and the model metadata, with the console
script; the Dataflow worker image (Dockerfile) uses the Beam version pinned in pyproject.toml."""
from __future__ import annotations

import re
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ["pipeline", "transforms", "models", "demo"]


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
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Without network: with the build requirements installed here, build in this environment; otherwise
    # pip makes an isolated build environment from its configured index (a local mirror works offline).
    isolation = ["--no-build-isolation"] if build_backend_satisfied() else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", *isolation, "-w", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    wheels = list(out.glob("musicnn_beam-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        yield archive


@pytest.mark.integration
def test_wheel_holds_every_package_and_the_model_metadata(wheel):
    names = set(wheel.namelist())
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).glob("*.py")}
        assert sources <= names, f"{package}: missing {sorted(sources - names)}"
    metadata = {p.relative_to(ROOT).as_posix() for p in (ROOT / "models" / "metadata").glob("*.json")}
    assert metadata and metadata <= names, sorted(metadata - names)
    assert not [n for n in names if n.startswith(("tests/", "build/", ".venv/", "bench/"))]


@pytest.mark.integration
def test_wheel_declares_the_console_script_and_the_pins(wheel):
    dist_info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert re.search(r"^\[console_scripts\]\s*$", entry_points, re.M)
    assert re.search(r"^musicnn-beam\s*=\s*pipeline\.cli:console_main\s*$", entry_points, re.M), entry_points
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(f"{dist_info}/METADATA").decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(Requirement(r).name for r in requires) == \
           sorted(Requirement(r).name for r in PYPROJECT["project"]["dependencies"])


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


def test_dockerignore_keeps_the_build_context_to_the_sources():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "build", ".git"} <= ignored
