"""The README keeps up with the code: its layout names every module."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["pipeline", "transforms", "models", "bench", "demo", "tests"]


def layout_section() -> str:
    return (ROOT / "README.md").read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]


def test_the_layout_names_every_module():
    layout = layout_section()
    for package in PACKAGES:
        modules = {p.name for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}
        if package == "tests":
            modules = {m for m in modules if not m.startswith("test_")}  # test files mirror the modules
        assert f"{package}/" in layout, package
        missing = sorted(m for m in modules if m not in layout)
        assert not missing, f"README layout does not name {package}/{missing}"
