"""No import cycles in hsd/ and jobs/, and no module importing another module's private name.

Every ``import`` counts, also the ones inside functions: a lazy import still ties the two
modules together (``hsd.recipes.collate`` and ``hsd.recipes.compare`` each needing the other is a design knot
even when Python can load them). Packages count too: ``hsd.models`` importing from
``hsd.inference`` while ``hsd.inference`` imports from ``hsd.models`` is a cycle of packages.
A registry of lazy ``"module:name"`` names (``hsd.cli.COMMANDS``, ``hsd.inference.BACKENDS``,
``jobs.pipeline.PLANS``) is the way to name a plug-in without importing it. It defers the import,
not the dependency: a registry string naming a first-party module is an edge here too, and it must
name a module that exists (a renamed module would otherwise drop its edge without a word).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hsd", "jobs")
REGISTRY_NAME = re.compile(r"^[a-z_][a-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")  # "hsd.inference.hf:HFBackend"

Edges = dict[str, dict[str, list[str]]]  # module -> module it depends on -> where (file:line and how)


class Ref(NamedTuple):
    module: str
    name: str | None  # the imported or registered name; None for ``import module``
    line: int
    registry: bool  # a "module:name" string, not an import statement


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def references(name: str, path: Path) -> list[Ref]:
    """Every import statement and every registry string naming a first-party module, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Ref(a.name, None, node.lineno, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                module = ".".join(base + ([node.module] if node.module else []))
            out += [Ref(module, a.name, node.lineno, False) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and REGISTRY_NAME.match(node.value):
            module, registered = node.value.split(":")
            if module.split(".")[0] in PACKAGES:
                out.append(Ref(module, registered, node.lineno, True))
    return out


def graph(root: Path, registry: bool = True) -> tuple[Edges, list[str], list[str]]:
    """Module -> first-party modules it imports (and, with ``registry``, names in a registry
    string), each with where; every private-name import; every registry string naming no module."""
    mods = modules(root)
    edges: Edges = {m: {} for m in mods}
    private, dangling = [], []
    for name, path in mods.items():
        for ref in references(name, path):
            if ref.registry and not registry:
                continue
            where = f"{path.relative_to(root)}:{ref.line} " + (
                f"names '{ref.module}:{ref.name}'" if ref.registry else f"imports {ref.module}")
            target = f"{ref.module}.{ref.name}" if f"{ref.module}.{ref.name}" in mods else ref.module
            if target not in mods:
                dangling += [where] if ref.registry else []
                continue
            if target == name:
                continue
            edges[name].setdefault(target, []).append(where)
            if ref.name and ref.name.startswith("_") and target == ref.module:
                private.append(f"{where}.{ref.name}" if not ref.registry else where)
    return edges, private, dangling


def cycles(edges: Edges) -> list[list[str]]:
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
    return sorted(found)


def package_edges(edges: Edges) -> Edges:
    """``hsd.models.loader -> hsd.gptoss.kernels`` becomes ``hsd.models -> hsd.gptoss``."""
    top = {m: ".".join(m.split(".")[:2]) for m in edges}
    out: Edges = {}
    for v, ws in edges.items():
        into = out.setdefault(top[v], {})
        for w, where in ws.items():
            if top[w] != top[v]:
                into.setdefault(top[w], []).extend(where)
    return out


def explain(found: list[list[str]], edges: Edges) -> str:
    """Each edge inside each cycle, with the first import or registry string that makes it."""
    return "\n".join(f"{v} -> {w}: {where[0]}" + (f" (and {len(where) - 1} more)" if len(where) > 1 else "")
                     for cycle in found for v in cycle for w, where in sorted(edges[v].items()) if w in cycle)


project_graph = functools.cache(graph)  # parsed once per mode for the checks below (read-only)

EDGES = [pytest.param(False, id="imports"), pytest.param(True, id="imports+registry")]


@pytest.mark.parametrize("registry", EDGES)
def test_no_module_imports_another_in_a_cycle(registry: bool) -> None:
    edges = project_graph(ROOT, registry)[0]
    found = cycles(edges)
    assert found == [], explain(found, edges)


@pytest.mark.parametrize("registry", EDGES)
def test_no_two_packages_import_each_other(registry: bool) -> None:
    edges = package_edges(project_graph(ROOT, registry)[0])
    found = cycles(edges)
    assert found == [], explain(found, edges)


def test_no_module_imports_another_modules_private_name() -> None:
    assert project_graph(ROOT)[1] == []


def test_every_registry_string_names_a_module_that_exists() -> None:
    assert project_graph(ROOT)[2] == []


def defined_names(path: Path) -> set[str]:
    """Names a module defines at its top level (also inside top-level ``if``/``try``), as
    ``from module import name`` finds them."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(), str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", []) + \
                [n for h in getattr(node, "handlers", []) for n in h.body]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def unresolved(root: Path) -> list[str]:
    """``from first_party import name`` (at any depth, lazy ones too) and ``"module:name"`` strings
    whose module defines no such name: an ImportError that only the line's first run would show."""
    mods = modules(root)
    found = []
    for name, path in mods.items():
        for ref in references(name, path):
            if ref.name is None or ref.module not in mods or f"{ref.module}.{ref.name}" in mods:
                continue
            if ref.name != "*" and ref.name not in defined_names(mods[ref.module]):
                found.append(f"{path.relative_to(root)}:{ref.line} {ref.module} has no {ref.name}")
    return found


def test_every_imported_name_exists() -> None:
    assert unresolved(ROOT) == []


def test_the_name_check_sees_a_moved_function(tmp_path: Path) -> None:
    for rel, text in {"hsd/__init__.py": "", "hsd/a.py": "def run():\n    from hsd.b import main\n",
                      "hsd/b.py": "def other():\n    pass\n", "jobs/__init__.py": ""}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert unresolved(tmp_path) == ["hsd/a.py:2 hsd.b has no main"]


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checks themselves can fail: a lazy cycle of modules, one of packages, a private import,
    a cycle made by a registry string, a registry string naming no module."""
    for rel, text in {"hsd/__init__.py": "", "hsd/a.py": "def f():\n    from hsd import b\n",
                      "hsd/b.py": "from hsd.a import f\n", "hsd/p/__init__.py": "", "hsd/q/__init__.py": "",
                      "hsd/p/x.py": "from hsd.q.y import _hidden\n", "hsd/q/y.py": "import hsd.p.z\n_hidden = 1\n",
                      "hsd/p/z.py": "", "jobs/__init__.py": "",
                      "hsd/r/__init__.py": "", "hsd/s/__init__.py": "",
                      "hsd/r/reg.py": 'PLUGINS = {"s": "hsd.s.impl:Plugin", "t": "numpy:array", "u": "hsd.gone:f"}\n',
                      "hsd/s/impl.py": "from hsd.r.reg import PLUGINS\n\n\nclass Plugin:\n    pass\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges, private, dangling = graph(tmp_path, registry=False)
    assert cycles(edges) == [["hsd.a", "hsd.b"]]
    assert cycles(package_edges(edges)) == [["hsd.a", "hsd.b"], ["hsd.p", "hsd.q"]]
    assert private == ["hsd/p/x.py:1 imports hsd.q.y._hidden"]
    edges, private, dangling = graph(tmp_path)
    assert cycles(edges) == [["hsd.a", "hsd.b"], ["hsd.r.reg", "hsd.s.impl"]]
    assert cycles(package_edges(edges)) == [["hsd.a", "hsd.b"], ["hsd.p", "hsd.q"], ["hsd.r", "hsd.s"]]
    assert explain([["hsd.r.reg", "hsd.s.impl"]], edges).splitlines() == [
        "hsd.r.reg -> hsd.s.impl: hsd/r/reg.py:1 names 'hsd.s.impl:Plugin'",
        "hsd.s.impl -> hsd.r.reg: hsd/s/impl.py:1 imports hsd.r.reg"]
    assert dangling == ["hsd/r/reg.py:1 names 'hsd.gone:f'"]  # numpy is not first-party: no edge, no error
