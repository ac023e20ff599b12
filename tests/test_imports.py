"""The package's import graph: no cycles (module-level or in-function imports) and no private names imported
across packages. Lower floors (data, models, decode, runs) must not import the floors above them."""

from __future__ import annotations

import ast
from pathlib import Path

import reasonlens

ROOT = Path(reasonlens.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import statement of `module`, wherever it stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            found.append((target, names))
            found += [(f"{target}.{name}", []) for name in names if f"{target}.{name}" in MODULES]
    return [(t, n) for t, n in found if t == "reasonlens" or t.startswith("reasonlens.")]


def _owner(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        targets = {_owner(target) for target, _ in _imports(module)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_walker_sees_a_known_edge_and_finds_a_planted_cycle():
    graph = _graph()
    assert "reasonlens.runs.rundir" in graph["reasonlens.runs.runner"]
    assert "reasonlens.runs.io" in graph["reasonlens.runs.rundir"]
    planted = {k: set(v) for k, v in graph.items()}
    planted["reasonlens.runs.io"].add("reasonlens.runs.runner")
    assert any("reasonlens.runs.io" in c and "reasonlens.runs.runner" in c for c in _cycles(planted))


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_no_private_name_imported_across_packages():
    crossings = []
    for module in MODULES:
        for target, names in _imports(module):
            owner = _owner(target)
            if owner and _package(owner) != _package(module):
                crossings += [f"{module} imports {owner}.{n}" for n in names if n.startswith("_")]
    assert crossings == []


def _run_layer_crossings(graph: dict[str, set[str]]) -> list[str]:
    above = ("analysis", "interventions", "report", "organisms", "recurrent", "demo", "cli")
    return [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module.startswith("reasonlens.runs")
        for target in sorted(targets)
        if target.split(".")[1:2] and target.split(".")[1] in above
    ]


def test_the_run_layer_does_not_import_the_floors_above_it():
    """runs/ (RunDir, the runner, executors) sits below the analyses that read runs (issue 17 point 3)."""
    graph = _graph()
    assert _run_layer_crossings(graph) == []
    planted = {**graph, "reasonlens.runs.rundir": graph["reasonlens.runs.rundir"] | {"reasonlens.analysis.pipeline"}}
    assert _run_layer_crossings(planted) == ["reasonlens.runs.rundir imports reasonlens.analysis.pipeline"]
