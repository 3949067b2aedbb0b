"""Arrows point one way: core and standardisation at the bottom, then the stages (ingest, resolve, rules,
townships), then the pass that runs them, then the CLI and Airflow on top; and no import cycle anywhere,
counting the imports made inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Packages (and top-level modules) of ``pipelines`` from the bottom up; ``dags`` is the Airflow side.
LAYERS: list[set[str]] = [
    {"resources"},  # where the package's data files are (contracts, suites, rules, model, template)
    {"contracts", "store", "standardise"},  # core: contracts, where output lives, standardisation
    {
        "pii",
        "config",
        "verdicts",
        "staging",
        "mappings",
    },  # values read from the core: tokens, settings, verdicts, records, what each feed's fields mean
    {"kafka", "quality", "contacts"},  # infrastructure over the core; the contact vault and its reveal
    {"marts"},  # BI marts, tiers and the pages people read, built from a register run's tables
    {"ingest", "resolve", "rules", "townships", "generate"},  # the stages
    {"malformed"},  # bad input for the demo and tests, built from ingest's reason codes
    {"landing"},  # the pass that runs the stages
    {"ops"},  # operating it: work queues, report, alerts, the tasks Airflow runs
    {"cli", "dags"},  # entry points: the command line and the DAG files
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    paths = [*(ROOT / "pipelines").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    return {_module_name(path): path for path in paths}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Project modules a file imports, wherever in the file (``from pkg import submodule`` is the
    submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return {name for name in found if name in known}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "dags" else parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules()} - {"pipelines"}
    assert packages - set(LAYER_OF) == set()


def test_imports_point_down_the_layers():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        source = _package(module)
        for imported in _imports(path, set(modules)):
            target = _package(imported)
            if target in (source, "pipelines"):
                continue
            if LAYER_OF[target] >= LAYER_OF[source]:
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_no_import_cycles():
    modules = _modules()
    graph = {module: _imports(path, set(modules)) - {module} for module, path in modules.items()}
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" → ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
