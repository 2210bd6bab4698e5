"""The README keeps up with the code: each folder's block of its Layout section names every file of
that folder, and names no module that is not there."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["pipeline", "transforms", "store", "reports", "models", "bench", "demo", "tests", "deploy", "configs"]
LISTED_BY_SUBFOLDER = {"deploy"}  # holds only folders (dataflow/, airflow/); their files are named in its block
BLOCK_HEAD = re.compile(r"^ {4}([\w.-]+/)(?: {2,}|$)")  # "    pipeline/     wires: ..."


def layout_blocks() -> dict[str, str]:
    """The Layout section's blocks by folder ("pipeline/" -> its text): a line indented four spaces that
    starts with the folder's name, and the lines after it indented deeper."""
    section = (ROOT / "README.md").read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        head = BLOCK_HEAD.match(line)
        if head:
            assert head[1] not in blocks, f"two blocks for {head[1]}"
            current = blocks.setdefault(head[1], [])
            current.append(line[head.end():])
        elif current is not None and line.startswith(" " * 5) and line.strip():
            current.append(line)
        else:
            current = None
    return {folder: "\n".join(lines) for folder, lines in blocks.items()}


def files_to_name(folder: Path) -> list[Path]:
    """What the folder's block must name: its files and sub-folders, not __init__.py, caches or (in
    tests/) the test files, which mirror the modules they test."""
    entries = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "__pycache__")) or path.name == "__init__.py":
            continue
        if folder.name == "tests" and path.name.startswith("test_"):
            continue
        entries.append(path)
        if path.is_dir() and folder.name in LISTED_BY_SUBFOLDER:
            entries += files_to_name(path)
    return entries


def names(block: str, path: Path) -> bool:
    """Whether the block names the file (a config by its stem: "local" for local.yaml) or the folder
    ("metadata/"); a name that is part of a path ("pipeline/similar.py") names another folder's file."""
    if path.is_dir():
        wanted = [f"{path.name}/"]
    elif path.suffix == ".yaml":
        wanted = [path.name, path.stem]
    else:
        wanted = [path.name]
    return any(re.search(rf"(?<![\w/.-]){re.escape(w)}(?![\w-])", block) for w in wanted)


def block_of(folder: str) -> str:
    blocks = layout_blocks()
    assert f"{folder}/" in blocks, f"README layout has no block for {folder}/"
    return blocks[f"{folder}/"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folders_block_names_its_files(folder):
    block = block_of(folder)
    missing = [p.relative_to(ROOT).as_posix() for p in files_to_name(ROOT / folder) if not names(block, p)]
    assert not missing, f"README layout's {folder}/ block does not name {missing}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_module_a_block_names_exists_there(folder):
    block = block_of(folder)
    where = [ROOT / folder, *(p for p in (ROOT / folder).iterdir() if p.is_dir() and folder in LISTED_BY_SUBFOLDER)]
    named = set(re.findall(r"(?<![\w/.-])([\w-]+\.(?:py|sh))\b", block))
    assert named or folder == "configs", f"README layout's {folder}/ block names no module"
    missing = sorted(n for n in named if not any((w / n).is_file() for w in where))
    assert not missing, f"README layout's {folder}/ block names {missing}, which {folder}/ does not hold"
    paths = re.findall(r"(?<![\w/.-])((?:[\w-]+/)+[\w-]+\.(?:py|sh))\b", block)  # "pipeline/similar.py"
    assert not [p for p in paths if not (ROOT / p).is_file()], paths
