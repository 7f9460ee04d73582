"""No import cycle between weakseg's packages.

Every ``import`` / ``from ... import`` of every module is read with ``ast``: module-level ones
and those inside functions alike (a function-local import hides a cycle from Python, not from
the design). Modules map to their package (``weakseg.engine.trainer`` → ``weakseg.engine``;
top-level modules such as ``weakseg.bags`` are their own node) and the package graph must be
acyclic. Imports under ``if TYPE_CHECKING:`` are skipped (annotations only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import weakseg

ROOT = Path(weakseg.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _node(module: str) -> str | None:
    """The graph node of a weakseg module: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    if parts[0] != "weakseg" or len(parts) == 1:
        return None  # outside weakseg, or the package root (a lazy facade over everything)
    candidate = ROOT / parts[1]
    return "weakseg." + parts[1] if candidate.is_dir() or (ROOT / f"{parts[1]}.py").is_file() else None


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[str, int]]:
    """``(imported weakseg module, line)`` for every import statement in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
            # ``from . import x`` / ``from weakseg import x``: x may itself be a module
            out += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return out


def package_graph() -> dict[str, dict[str, list[str]]]:
    """``{source node: {target node: ["weakseg/x.py:12", ...]}}`` between distinct nodes."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _node(_module_name(path))
        if source is None:
            continue
        for target, line in imports_of(path):
            node = _node(target)
            if node is not None and node != source:
                where = f"{path.relative_to(ROOT.parent).as_posix()}:{line}"
                sites = graph.setdefault(source, {}).setdefault(node, [])
                if where not in sites:
                    sites.append(where)
    return graph


def find_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(component: list[str], graph: dict[str, dict[str, list[str]]]) -> str:
    lines = [" <-> ".join(component)]
    for a in component:
        for b in component:
            if b in graph.get(a, {}):
                sites = graph[a][b]
                lines.append(f"  {a} -> {b}: {', '.join(sites[:4])}{' ...' if len(sites) > 4 else ''}")
    return "\n".join(lines)


def test_the_walker_sees_function_local_and_relative_imports(tmp_path):
    src = ROOT / "api.py"
    targets = {t for t, _ in imports_of(src)}
    assert "weakseg.splits" in targets  # imported inside split_bags
    assert _node("weakseg.engine.trainer") == "weakseg.engine" and _node("weakseg.bags") == "weakseg.bags"
    assert find_cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_packages():
    graph = package_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between weakseg packages:\n" + "\n\n".join(_describe(c, graph) for c in cycles)
