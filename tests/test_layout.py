"""The code's shape, held: no import cycle, no module over 300 lines, and the library never
depends on user content (search_spaces) except where the sweep's command line loads a space."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("marl", "analysis", "search_spaces")
MAX_LINES = 300


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle():
    edges = graph()
    assert "marl.data" in edges["marl.sources"] or "marl.features" in edges["marl.sources"]  # it sees imports
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_longer_than_300_lines(name):
    assert len(modules()[name].read_text().splitlines()) <= MAX_LINES


def test_only_the_sweeps_command_line_imports_search_spaces():
    users = {name for name, deps in graph().items()
             if name.startswith("marl") and any(d.split(".")[0] == "search_spaces" for d in deps)}
    assert users == {"marl.sweep"}


def test_a_sweeps_driver_does_not_import_sklearn():
    """The driver imports the trainable but never scores a model; importing sklearn cost each
    sweep ~1.5 s before it started. A fresh interpreter: this test process has sklearn already."""
    import subprocess
    import sys

    code = "import sys, marl.sweep, marl.trainable, marl.evaluate; print('sklearn' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]
