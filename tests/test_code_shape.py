"""The training code stays in functions a reader can hold in mind: none in minibert/training, minibert/pretraining,
minibert/finetuning or minibert/comparison over MAX_LINES lines or over MAX_COMPLEXITY in cyclomatic complexity
(McCabe: 1 + one per branch point: if, loop, except, conditional expression, assert, comprehension and its filters,
each extra operand of and/or). Measured with `ast`, so no linter is needed; the exceptions are listed, each with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import minibert

MAX_LINES = 60
MAX_COMPLEXITY = 15
PACKAGES = ("training", "pretraining", "finetuning", "comparison")
# "file:function" -> why it stays as it is. Keep this short; a new entry needs a reason a reviewer accepts.
EXCEPTIONS: dict[str, str] = {}

BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.IfExp, ast.Assert, ast.match_case)


def complexity(function: ast.AST) -> int:
    """McCabe's number of a function, its nested functions included (they are read as part of it)."""
    count = 1
    for node in ast.walk(function):
        if isinstance(node, BRANCHES):
            count += 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
    return count


def functions() -> list[tuple[str, int, int]]:
    """(file:function, lines, complexity) of every function and method in the packages."""
    root = Path(minibert.__file__).parent
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{path.relative_to(root).as_posix()}:{node.name}"
                    found.append((name, node.end_lineno - node.lineno + 1, complexity(node)))
    return found


def test_complexity_counts_branches():
    source = ("def f(x):\n    if x and x > 1:\n        return [y for y in x if y]\n    for _ in x:\n        pass\n"
              "    return 1 if x else 2\n")
    # 1 + if + `and` + comprehension (1 + its filter) + for + conditional expression
    assert complexity(ast.parse(source).body[0]) == 7, "the McCabe count of a known function is off"


def test_the_packages_are_measured():
    names = {name.split(":")[0] for name, _, _ in functions()}
    for expected in ("training/loop.py", "pretraining/run.py", "finetuning/run.py"):
        assert expected in names, f"{expected} was not measured: is the package layout what this test expects?"


def test_no_long_or_branchy_functions():
    offenders = [f"{name}: {lines} lines, complexity {score}" for name, lines, score in functions()
                 if (lines > MAX_LINES or score > MAX_COMPLEXITY) and name not in EXCEPTIONS]
    assert not offenders, (f"functions over {MAX_LINES} lines or complexity {MAX_COMPLEXITY} (split them into "
                           f"named steps, or list them in EXCEPTIONS with the reason):\n" + "\n".join(offenders))


def test_every_exception_is_still_needed():
    measured = {name: (lines, score) for name, lines, score in functions()}
    stale = [name for name in EXCEPTIONS
             if name not in measured or (measured[name][0] <= MAX_LINES and measured[name][1] <= MAX_COMPLEXITY)]
    assert not stale, f"EXCEPTIONS entries no longer over the limits (or gone); remove them: {stale}"
