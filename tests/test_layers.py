"""The package's layering, checked from the source with ``ast`` (nothing is imported).

Layers, lowest first; a module may import only from its own layer or lower ones::

    core < geometry < shapes < render < losses, metrics < data < viz < engine < methods
         < testing < web < cli < top (poseshape/__init__.py, api.py, __main__.py)

A module's layer is the first part of its name after ``poseshape``. Also checked: the graph of
module-level imports between poseshape modules has no cycle, and poseshape modules are not
imported inside functions (a local import hides a dependency and usually a cycle), except in
the modules of :data:`LOCAL_IMPORT_ALLOWLIST`, which are still being refactored.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "poseshape"

#: Layer rank of each first name component after ``poseshape``; ``None`` is the top
#: (``poseshape/__init__.py``, ``poseshape/api.py``, ``poseshape/__main__.py``).
LAYERS: dict[str | None, int] = {
    "core": 0,
    "geometry": 1,
    "shapes": 2,
    "render": 3,
    "losses": 4,
    "metrics": 4,
    "data": 5,
    "viz": 6,
    "engine": 7,
    "methods": 8,
    "testing": 9,
    "web": 10,
    "cli": 11,
    None: 12,
}
TOP_MODULES = {"api", "__main__"}

#: Modules allowed to import poseshape modules inside functions, with the reason (empty: none
#: is; third-party optional dependencies may still be imported lazily). An entry whose module
#: no longer has a local import fails :func:`test_allowlists_are_current`.
LOCAL_IMPORT_ALLOWLIST: dict[str, str] = {}

#: Known imports into a higher layer, ``{importer: {target, ...}}``; same rules (empty: none).
UPWARD_IMPORT_ALLOWLIST: dict[str, set[str]] = {}


# =============================================================================== checker
@dataclass(frozen=True)
class Import:
    """One import of a poseshape module: ``importer -> target`` at ``line``.

    ``local``: inside a function (runs when called); ``type_only``: under ``if TYPE_CHECKING:``.
    """

    importer: str
    target: str
    line: int
    local: bool
    type_only: bool


def module_names(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file under ``package_dir``."""
    package_dir = Path(package_dir)
    root = package_dir.name
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        parts = list(f.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([root, *parts])] = f
    return out


def layer_of(module: str) -> int:
    """Layer rank of a dotted name (``poseshape.x.y`` -> rank of ``x``).

    Raises:
        KeyError: the first component is not a known layer (a new sub-package must be placed).
    """
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else None
    if first in TOP_MODULES:
        first = None
    if first not in LAYERS:
        raise KeyError(f"{module}: {first!r} is not in LAYERS; give the new sub-package a layer")
    return LAYERS[first]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_imports(node: ast.AST, local: bool = False, type_only: bool = False):
    """Yield ``(import node, local, type_only)`` for every import below ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, local, type_only
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk_imports(child, True, type_only)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    yield stmt, local, True
                else:
                    yield from _walk_imports(stmt, local, True)
            for stmt in child.orelse:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    yield stmt, local, type_only
                else:
                    yield from _walk_imports(stmt, local, type_only)
        else:
            yield from _walk_imports(child, local, type_only)


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def collect_imports(module: str, path: Path, known: Iterable[str], root: str = "poseshape") -> list[Import]:
    """Every import of a ``root`` module in the file ``path`` of ``module``.

    ``from a.b import c`` targets ``a.b.c`` when that is a module in ``known``, else ``a.b``;
    ``import a.b.c`` targets ``a.b.c`` (the parent packages it also runs are not counted).
    """
    known = set(known)
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    is_package = Path(path).name == "__init__.py"
    out = []
    for node, local, type_only in _walk_imports(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = _resolve_base(module, is_package, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in dict.fromkeys(targets):
            if t == root or t.startswith(root + "."):
                out.append(Import(module, t, node.lineno, local, type_only))
    return out


def package_imports(package_dir: Path) -> list[Import]:
    """:func:`collect_imports` of every module of the package at ``package_dir``."""
    mods = module_names(package_dir)
    root = Path(package_dir).name
    return [imp for m, f in mods.items() for imp in collect_imports(m, f, mods, root)]


def upward_imports(imports: Iterable[Import], allow: Mapping[str, set[str]] | None = None) -> list[str]:
    """``"importer -> target (line n)"`` for each import into a higher layer (type-only and
    local ones too) that is not in ``allow`` (``{importer: {target, ...}}``)."""
    allow = allow or {}
    return [
        f"{i.importer} -> {i.target} (line {i.line})"
        for i in imports
        if layer_of(i.target) > layer_of(i.importer) and i.target not in allow.get(i.importer, ())
    ]


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    nodes = set(graph) | {w for vs in graph.values() for w in vs}
    succ = {v: sorted(set(graph.get(v, ()))) for v in nodes}
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return comps


def import_cycles(imports: Iterable[Import]) -> list[str]:
    """Each cycle of the module-level (run at import time) import graph, as ``a -> b -> a``."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if not i.local and not i.type_only and i.target != i.importer:
            graph.setdefault(i.importer, set()).add(i.target)
    out = []
    for comp in strongly_connected(graph):
        if len(comp) < 2 and comp[0] not in graph.get(comp[0], ()):
            continue
        members = set(comp)
        # one concrete cycle through the component's first module, by breadth-first search
        start = comp[0]
        prev: dict[str, str] = {}
        queue, seen, end = [start], {start}, None
        while queue and end is None:
            v = queue.pop(0)
            for w in sorted(graph.get(v, ())):
                if w == start:
                    end = v
                    break
                if w in members and w not in seen:
                    seen.add(w)
                    prev[w] = v
                    queue.append(w)
        path = [start]
        v = end
        while v is not None and v != start:
            path.insert(1, v)
            v = prev.get(v)
        out.append(" -> ".join(path + [start]) + f"  (component: {', '.join(comp)})")
    return out


def local_imports(imports: Iterable[Import], allow: Iterable[str] = ()) -> list[str]:
    """``"importer -> target (line n)"`` for each function-local import (outside
    ``if TYPE_CHECKING:``) of a poseshape module, except in the modules ``allow``."""
    allow = set(allow)
    return [
        f"{i.importer} -> {i.target} (line {i.line})"
        for i in imports
        if i.local and not i.type_only and i.importer not in allow
    ]


# =============================================================================== the package
@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return package_imports(PACKAGE_DIR)


def test_every_module_has_a_layer():
    bad = []
    for m in module_names(PACKAGE_DIR):
        try:
            layer_of(m)
        except KeyError as e:
            bad.append(str(e))
    assert not bad, "\n".join(bad)


def test_no_import_goes_up_a_layer(imports):
    bad = upward_imports(imports, UPWARD_IMPORT_ALLOWLIST)
    assert not bad, "imports into a higher layer:\n" + "\n".join(bad)


def test_no_import_cycles(imports):
    cycles = import_cycles(imports)
    assert not cycles, "module-level import cycles:\n" + "\n".join(cycles)


def test_no_function_local_imports(imports):
    bad = local_imports(imports, LOCAL_IMPORT_ALLOWLIST)
    assert not bad, (
        "poseshape modules imported inside functions (import them at module level, breaking any "
        "cycle by moving code down a layer):\n" + "\n".join(bad)
    )


def test_allowlists_are_current(imports):
    local = {i.importer for i in imports if i.local and not i.type_only}
    up = {(i.importer, i.target) for i in imports if layer_of(i.target) > layer_of(i.importer)}
    stale = [f"LOCAL_IMPORT_ALLOWLIST[{m!r}]" for m in LOCAL_IMPORT_ALLOWLIST if m not in local]
    stale += [
        f"UPWARD_IMPORT_ALLOWLIST[{m!r}]: {t!r}"
        for m, ts in UPWARD_IMPORT_ALLOWLIST.items()
        for t in sorted(ts)
        if (m, t) not in up
    ]
    assert not stale, "allowlist entries no longer needed (remove them):\n" + "\n".join(stale)


# =============================================================================== the checker
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root / "poseshape"


def test_checker_reports_upward_imports_cycles_and_local_imports(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "poseshape/__init__.py": "from poseshape.core import errors\n",
            "poseshape/core/__init__.py": "",
            # core (lowest) reaching up into data: an upward import
            "poseshape/core/errors.py": "from poseshape.data.synth import render\n",
            "poseshape/data/__init__.py": "",
            # a cycle synth -> real -> synth, and a local import in real
            "poseshape/data/synth.py": "import poseshape.data.real\n",
            "poseshape/data/real.py": (
                "from poseshape.data import synth\n"
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from poseshape.viz import x\n"
                "def f():\n"
                "    from poseshape.core.errors import E\n"
                "    return E\n"
            ),
            # a relative import resolves too; an import of a lower layer is fine
            "poseshape/viz.py": "from .core import errors\nfrom . import data\n",
        },
    )
    imps = package_imports(pkg)
    up = upward_imports(imps)
    assert up == [
        "poseshape.core.errors -> poseshape.data.synth (line 1)",
        "poseshape.data.real -> poseshape.viz (line 4)",
    ]  # type-only: still a dependency
    assert upward_imports(imps, {"poseshape.data.real": {"poseshape.viz"}}) == up[:1]
    cycles = import_cycles(imps)
    assert len(cycles) == 1
    assert cycles[0].startswith("poseshape.data.real -> poseshape.data.synth -> poseshape.data.real")
    assert local_imports(imps) == ["poseshape.data.real -> poseshape.core.errors (line 6)"]
    assert local_imports(imps, {"poseshape.data.real"}) == []
    # the TYPE_CHECKING import is flagged type-only: not a local import, not in the cycle graph
    (tc,) = [i for i in imps if i.target == "poseshape.viz"]
    assert tc.type_only and not tc.local
    assert {i.target for i in imps if i.importer == "poseshape.viz"} == {"poseshape.core.errors", "poseshape.data"}


def test_checker_finds_a_longer_cycle_and_self_free_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    comps = strongly_connected(graph)
    assert ["a", "b", "c"] in comps and ["d"] in comps
    imps = [Import(s, t, 1, False, False) for s, ts in graph.items() for t in ts]
    (cyc,) = import_cycles(imps)
    assert cyc.startswith("a -> b -> c -> a")
    # local and type-only imports do not make cycles
    imps = [Import("a", "b", 1, False, False), Import("b", "a", 1, True, False), Import("b", "a", 2, False, True)]
    assert import_cycles(imps) == []


def test_layer_of():
    assert layer_of("poseshape") == layer_of("poseshape.api") == layer_of("poseshape.__main__")
    assert layer_of("poseshape.core.io") < layer_of("poseshape.geometry.camera")
    assert layer_of("poseshape.losses") == layer_of("poseshape.metrics")
    assert layer_of("poseshape.viz") < layer_of("poseshape.engine.predict")
    with pytest.raises(KeyError, match="new sub-package"):
        layer_of("poseshape.misc.thing")
