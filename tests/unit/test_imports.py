"""No import cycles in hsd/ and jobs/, and no module importing another module's private name.

Every ``import`` counts, also the ones inside functions: a lazy import still ties the two
modules together (``hsd.recipes.collate`` and ``hsd.recipes.compare`` each needing the other is a design knot
even when Python can load them). Packages count too: ``hsd.models`` importing from
``hsd.inference`` while ``hsd.inference`` imports from ``hsd.models`` is a cycle of packages.
A registry of lazy ``"module:function"`` names (``hsd.inference.BACKENDS``, ``jobs.pipeline.PLANS``,
``hsd.models.loader.KERNEL_RESOLVERS``) is the way to name a plug-in without importing it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hsd", "jobs")


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) of every import statement, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                module = ".".join(base + ([node.module] if node.module else []))
            out += [(module, a.name, node.lineno) for a in node.names]
    return out


def graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> first-party modules it imports; and every private-name import, as text."""
    mods = modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, path in mods.items():
        for module, imported, line in imports(name, path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in mods else module
            if target not in mods or target == name:
                continue
            edges[name].add(target)
            if imported and imported.startswith("_") and target == module and module != name:
                private.append(f"{path.relative_to(root)}:{line} imports {module}.{imported}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
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

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """``hsd.models.loader -> hsd.inference.fastgen`` becomes ``hsd.models -> hsd.inference``."""
    top = {m: ".".join(m.split(".")[:2]) for m in edges}
    out: dict[str, set[str]] = {}
    for v, ws in edges.items():
        out.setdefault(top[v], set()).update(top[w] for w in ws if top[w] != top[v])
    return out


project_graph = functools.cache(lambda: graph(ROOT))  # parsed once for the three checks below (read-only)


def test_no_module_imports_another_in_a_cycle() -> None:
    assert cycles(project_graph()[0]) == []


def test_no_two_packages_import_each_other() -> None:
    assert cycles(package_edges(project_graph()[0])) == []


def test_no_module_imports_another_modules_private_name() -> None:
    assert project_graph()[1] == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checks themselves can fail: a lazy cycle of modules, one of packages, a private import."""
    for rel, text in {"hsd/__init__.py": "", "hsd/a.py": "def f():\n    from hsd import b\n",
                      "hsd/b.py": "from hsd.a import f\n", "hsd/p/__init__.py": "", "hsd/q/__init__.py": "",
                      "hsd/p/x.py": "from hsd.q.y import _hidden\n", "hsd/q/y.py": "import hsd.p.z\n_hidden = 1\n",
                      "hsd/p/z.py": "", "jobs/__init__.py": ""}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges, private = graph(tmp_path)
    assert cycles(edges) == [["hsd.a", "hsd.b"]]
    assert sorted(cycles(package_edges(edges))) == [["hsd.a", "hsd.b"], ["hsd.p", "hsd.q"]]
    assert private == ["hsd/p/x.py:1 imports hsd.q.y._hidden"]
