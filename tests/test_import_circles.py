"""No import circle inside minibert: a module never needs, through the modules it imports, a module that needs it
back. Imports inside functions count too (a circle hidden in a function still ties the two modules together; the
first version's config -> model -> checkpoint -> config was one). Read with `ast`, so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import minibert

ROOT = Path(minibert.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The minibert modules a module's code imports: `from P import x` needs the module P.x when x is one, else
    P itself (its __init__); `import P.Q` needs P.Q."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return (found & modules) - {name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py",
                           set(paths))
            for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]], "a -> b -> c -> a is a circle; d only leads into it"
    assert circles({"a": {"b"}, "b": set()}) == [], "a straight line is no circle"


def test_function_level_and_relative_imports_are_read():
    source = "def f():\n    from minibert.config import BertConfig\nfrom . import activations\n"
    modules = {"minibert.config", "minibert.activations", "minibert.model"}
    assert imported(ast.parse(source), "minibert.model", False, modules) == {"minibert.config",
                                                                             "minibert.activations"}


def test_the_whole_package_is_read():
    graph = import_graph()
    for expected in ("minibert.model", "minibert.training.loop", "minibert.speed.unpadding",
                     "minibert.plumbing.atomic_files"):
        assert expected in graph, f"{expected} was not read: is the package layout what this test expects?"
    assert "minibert.config" in graph["minibert.checkpoint"], "checkpoint.py's import of config was not seen"


def test_no_import_circle_inside_minibert():
    found = circles(import_graph())
    assert not found, "import circles (each line: modules that import each other, directly or not):\n" + "\n".join(
        " <-> ".join(component) for component in found)
