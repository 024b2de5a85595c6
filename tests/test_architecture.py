"""The package's shape: no import cycle between twinseek's modules, and searching never loads training code."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import twinseek

PACKAGE = Path(twinseek.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """twinseek module -> the twinseek modules it imports anywhere (top level, in functions, TYPE_CHECKING)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                # a package's own __init__ is no dependency of its modules (Python loads it first anyway)
                if name and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert "twinseek.evals.schemas" in graph["twinseek.evals.report"]  # the graph sees the imports
    assert cycles(graph) == []


def test_eval_schemas_stand_alone() -> None:
    graph = import_graph()
    assert graph["twinseek.evals.schemas"] == set()
    assert "twinseek.evals.runner" not in graph["twinseek.evals.report"]


# What each package may import (besides itself): the floors of the house, from the ground up. The foundation is
# every top-level module (config, errors, media, weights, timing, ...) and the prompts.
FOUNDATION = {"config", "errors", "media", "weights", "timing", "quiet", "prompts", "data", "parts", "files"}
MAY_IMPORT: dict[str, set[str]] = {
    "twins": set(),
    "llm": set(),
    "retrieval": {"twins", "llm"},
    "agent": {"twins", "llm", "retrieval"},
    "embedders": {"twins", "llm", "retrieval"},
    "evals": {"twins", "llm", "retrieval", "agent"},
    "web": {"twins", "llm", "retrieval", "agent", "evals"},
}
# retrieval reaches an LLM only through these modules, and only through the ChatModel interface and its errors
LLM_IN_RETRIEVAL = {"twinseek.retrieval.decompose", "twinseek.retrieval.rerank"}


def _top(module: str) -> str:
    """The package or top-level module under twinseek (``twinseek`` for the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "twinseek"


def test_packages_import_only_the_floors_below() -> None:
    graph = import_graph()
    wrong = []
    for module, imported in graph.items():
        package = _top(module)
        if package not in MAY_IMPORT:
            continue
        allowed = MAY_IMPORT[package] | FOUNDATION | {package}
        wrong += [f"{module} -> {dep}" for dep in imported if _top(dep) not in allowed]
    assert wrong == []


def test_foundation_modules_import_no_package_above_them() -> None:
    graph = import_graph()
    above = set(MAY_IMPORT)
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if _top(m) in FOUNDATION for d in deps if _top(d) in above]
    assert wrong == []


def test_retrieval_reaches_the_llm_through_the_decomposer_and_reranker_only() -> None:
    graph = import_graph()
    users = {m: {d for d in deps if d.startswith("twinseek.llm")} for m, deps in graph.items()
             if m.startswith("twinseek.retrieval")}
    users = {m: deps for m, deps in users.items() if deps}
    assert set(users) <= LLM_IN_RETRIEVAL
    assert all(deps <= {"twinseek.llm.base"} for deps in users.values())  # the interface, never the runtime
