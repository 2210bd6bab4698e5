"""The layout's contract, read from the sources: imports go one way (pipeline > reports > store >
transforms > models; demo stands alone), no import cycles, only the entry points import the CLI module,
tests never import bench code, and every import names the installed package (musicnn_beam.*), never a
bare `pipeline` or `models` that only resolves inside this checkout. Imports inside functions count."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = "musicnn_beam"
# Lowest first: a package may import its own modules and those of the packages below it.
LAYERS = ("models", "transforms", "store", "reports", "pipeline")
STANDALONE = ("demo",)  # imports nothing of ours, and nothing shipped imports it
SHIPPED = LAYERS + STANDALONE
CLI = f"{PRODUCT}.pipeline.cli"
ENTRY_POINTS = {f"{PRODUCT}.pipeline.__main__"}  # besides deploy/ and the tests, which run the CLI
CHECKOUT_ONLY = ("bench", "tests", "deploy")  # code of this repo that is not installed


def module_name(path: Path) -> str:
    """pipeline/cli.py -> musicnn_beam.pipeline.cli (shipped), tests/servers.py -> tests.servers."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PRODUCT, *parts] if parts[0] in SHIPPED else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules PATH imports, anywhere in it; `from package import module` names the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found


def import_graph(folders: tuple[str, ...] = SHIPPED + CHECKOUT_ONLY) -> dict[str, set[str]]:
    paths = [p for folder in folders for p in (ROOT / folder).rglob("*.py") if "fuzz_findings" not in p.parts]
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) for p in paths}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == PRODUCT and len(parts) > 1 and parts[1] in SHIPPED else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Shipped imports that break the layers: `importer -> imported`."""
    broken = []
    for importer, imported in graph.items():
        own = layer_of(importer)
        if own is None:
            continue
        for target in sorted(imported):
            layer = layer_of(target)
            if layer is None or layer == own:
                continue
            if own in STANDALONE or layer in STANDALONE or LAYERS.index(layer) > LAYERS.index(own):
                broken.append(f"{importer} -> {target}")
    return broken


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles among the graph's own modules (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1 or module in graph[module]:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def bare_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of our packages by their folder's name, which work only with the checkout on sys.path."""
    return [f"{importer} -> {target}" for importer, imported in graph.items() for target in sorted(imported)
            if target.split(".")[0] in SHIPPED]


def test_the_checker_finds_a_planted_cycle_and_an_upward_import():
    planted = {
        f"{PRODUCT}.transforms.a": {f"{PRODUCT}.transforms.b"},
        f"{PRODUCT}.transforms.b": {f"{PRODUCT}.transforms.a", f"{PRODUCT}.store.plan"},
        f"{PRODUCT}.store.plan": {f"{PRODUCT}.transforms.a"},
        f"{PRODUCT}.demo.synth": {f"{PRODUCT}.models.recipe"},
        "tests.x": {"pipeline.cli"},
    }
    assert cycles(planted) == [[f"{PRODUCT}.store.plan", f"{PRODUCT}.transforms.a", f"{PRODUCT}.transforms.b"]]
    assert upward_imports(planted) == [f"{PRODUCT}.transforms.b -> {PRODUCT}.store.plan",
                                       f"{PRODUCT}.demo.synth -> {PRODUCT}.models.recipe"]
    assert bare_imports(planted) == ["tests.x -> pipeline.cli"]


def test_imports_go_one_way():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_import_names_the_installed_package():
    assert bare_imports(import_graph()) == []


def test_only_the_entry_points_import_the_cli_module():
    importers = sorted(m for m, imported in import_graph(SHIPPED).items() if CLI in imported)
    assert set(importers) <= ENTRY_POINTS, importers


def test_tests_never_import_bench_code():
    graph = import_graph(("tests",))
    assert [f"{m} -> {t}" for m, imported in graph.items() for t in sorted(imported) if t.split(".")[0] == "bench"] == []
