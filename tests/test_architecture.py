"""The package's layout rules, checked from the code's own imports.

docs/architecture.md's table says, per unit of the package (a subpackage or a top-level module),
what it may import from the package and whether it may import Ray or MLflow. Every import counts
(the lazy ones inside functions too), except those made for annotations only (`if TYPE_CHECKING:`).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xlt_search"
TABLE_HEADING = "## Packages and what they may import"
MAX_MODULE_LINES = 400


def _units_table() -> dict[str, dict[str, object]]:
    """docs/architecture.md's table: unit -> {"may": set of units, "ray": bool, "mlflow": bool}."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        unit, _concept, may, ray, mlflow = (cell.strip() for cell in row.strip("|").split("|"))
        table[_unit_name(unit)] = {
            "may": {_unit_name(name) for name in re.findall(r"`([^`]+)`", may)},
            "ray": ray.startswith("yes"),
            "mlflow": mlflow.startswith("yes"),
        }
    return table


def _unit_name(cell: str) -> str:
    return cell.strip("`").removesuffix("/").removesuffix(".py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit_of(module: str) -> str:
    """xlt_search.data.load -> data; xlt_search.cli -> cli."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names), at the top or inside functions."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _imports_of(path.read_text(), package)


def _imports_of(source: str, package: str) -> set[str]:
    """Every module `source` imports at run time, relative imports read from within `package`."""
    found = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from xlt_search import data` imports the submodule `data`
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for branch in node.orelse for n in _runtime_nodes_of(branch))
            continue
        yield node
        yield from _runtime_nodes(node)


def _runtime_nodes_of(node: ast.AST):
    yield node
    yield from _runtime_nodes(node)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _internal(name: str) -> bool:
    return name.startswith("xlt_search.") and (
        (PACKAGE / Path(*name.split(".")[1:])).with_suffix(".py").exists()
        or (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists()
    )


def test_the_reader_finds_lazy_and_relative_imports_and_skips_annotation_only_ones() -> None:
    source = """
from typing import TYPE_CHECKING
from . import plan
if TYPE_CHECKING:
    from xlt_search.tracking import SearchLogger
def fit():
    import ray
    from xlt_search.trial import run_trial
"""
    found = _imports_of(source, "xlt_search.search")
    assert {"ray", "xlt_search.search.plan", "xlt_search.trial"} <= found
    assert not any(name.startswith("xlt_search.tracking") for name in found)


def test_the_table_names_every_unit_of_the_package() -> None:
    table = _units_table()
    units = {_unit_of(_module_name(path)) for path in _sources()} - {"", "__main__"}
    assert units == set(table), "docs/architecture.md's table and the package's units differ"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_table(path: Path) -> None:
    table = _units_table()
    unit = _unit_of(_module_name(path))
    if unit in ("", "__main__"):
        return
    rules = table[unit]
    imported = _imports(path)
    for name in sorted(imported):
        if _internal(name) and _unit_of(name) not in (unit, ""):
            assert _unit_of(name) in rules["may"], f"{unit} may not import {name}"
    if not rules["ray"]:
        assert not any(n == "ray" or n.startswith("ray.") for n in imported), f"{unit} imports Ray"
    if not rules["mlflow"]:
        assert not any(n == "mlflow" or n.startswith("mlflow.") for n in imported), (
            f"{unit} imports MLflow"
        )


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _sources():
        module = _module_name(path)
        graph[module] = {name for name in _imports(path) if _internal(name) and name != module}
    # a package's __init__ re-exports its modules; an edge into a package is an edge into its face
    state: dict[str, int] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph.get(module, ())):
            if nxt.startswith(module + "."):  # a package's face importing its own modules
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt] if nxt in stack else [module, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_a_package_face_only_re_exports() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        for node in body:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            allowed = (ast.Import, ast.ImportFrom)
            dunder = isinstance(node, ast.Assign) and all(  # __all__, __version__
                isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets
            )
            assert docstring or isinstance(node, allowed) or dunder, (
                f"{init.relative_to(ROOT)} holds code (line {node.lineno}); a package's "
                "__init__ re-exports only"
            )
