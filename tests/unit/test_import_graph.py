"""No import cycle in apex_stream/ or bench/: neither between modules nor between apex_stream's
subpackages (a stage imports only the stages it consumes, so the tree reads as the data flow);
a benchmark shares code only through bench.harness."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``package``."""
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less the bodies of ``if TYPE_CHECKING:`` (imports for annotations only)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the module ``name`` imports at run time, anywhere in its
    body."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + [base] * bool(base))
            targets.update(f"{base}.{alias.name}" for alias in node.names)
            targets.add(base)
    edges = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def graph(package: str) -> dict[str, set[str]]:
    known = modules(package) | (modules("apex_stream") if package != "apex_stream" else {})
    return {m: imported(m, p, known) for m, p in known.items() if m.startswith(package)}


def acyclic(edges: dict[str, set[str]]) -> None:
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as error:
        pytest.fail("import cycle: " + " -> ".join(error.args[1]))


@pytest.mark.parametrize("package", ["apex_stream", "bench"])
def test_no_module_imports_itself_back(package: str) -> None:
    acyclic(graph(package))


def test_no_cycle_between_subpackages() -> None:
    def stage(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for module, targets in graph("apex_stream").items():
        edges.setdefault(stage(module), set()).update(
            stage(t) for t in targets if stage(t) != stage(module)
        )
    acyclic(edges)


def test_benchmarks_share_code_only_through_the_harness() -> None:
    """No benchmark imports another benchmark or anything of tests/ (nor does the harness)."""
    known = modules("bench") | modules("tests")
    for name, path in modules("bench").items():
        others = {
            target
            for target in imported(name, path, known)
            if target != "bench" and not target.startswith("bench.harness")
        }
        assert not others, f"{name} imports {sorted(others)}"
