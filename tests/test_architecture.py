"""The shape of the package, checked: no import cycles anywhere, no import hidden in a function,
modules that stay small (or say why not), and the layer contracts of pyproject.toml kept."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "close_emulator")
MAX_LINES = 400
LONG_REASON = "Longer than 400 lines because"


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_import_cycles_between_any_modules() -> None:
    graph = grimp.build_graph(*PACKAGES)
    names = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in names}
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for child in edges.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            # A package's __init__ importing its own modules is not a cycle through them.
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in names:
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_no_import_of_our_own_code_hidden_in_a_function() -> None:
    hidden = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                names: list[str] = []
                if isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    names = [inner.module]
                if any(n.split(".")[0] in PACKAGES for n in names):
                    hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not hidden, f"imports inside functions: {hidden}"


def test_modules_stay_small_or_say_why_not() -> None:
    unexplained = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if LONG_REASON not in docstring:
            unexplained.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not unexplained, (
        f"modules over {MAX_LINES} lines whose docstring does not say "
        f"'{LONG_REASON} ...': {unexplained}"
    )


def test_the_layer_and_independence_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports (import-linter, a dev extra) is not installed")
    result = subprocess.run(  # noqa: PLW1510 - the return code is checked below
        [lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
