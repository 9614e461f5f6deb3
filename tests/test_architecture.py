"""Which way vaultd's imports point, held by a test (as basic-memory's
tests/test_architecture_boundaries.py holds its own).

The graph is read from the syntax tree, not from `sys.modules`, and every import counts: at
module level, inside a function and under `if TYPE_CHECKING:`. An import moved into a function
still makes its module depend on the other one, only later; a cycle hidden that way is still a
cycle for the reader and for whoever splits the module next.

The rules:
- **No cycles.**
- **The lifecycle is below the library API and the edges**: `vaultd.lifecycle.*` never imports
  `vaultd.vault`, `vaultd.cli` or `vaultd.daemon` (phases get what they need passed in).
- **The store imports nothing above it**: of vaultd only `errors` and `layout` (vault-relative
  paths and the archive folder, which rows are filtered by) and its own modules; outside
  vaultd only the standard library, the SQLite modules (`sqlean`, `sqlite_vec`), numpy and
  the PostgreSQL clients (`psycopg`, `psycopg_pool`, `pgvector`: the postgres backend).
  So a second backend can be written against it without pulling in the rest of vaultd.
- **Parsing is pure**: `notes`, `chunking` and `blocks` import only each other and `errors`
  (outside vaultd: the standard library and PyYAML) — no store, embedder or daemon, nor
  anything that reaches one.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vaultd"

ABOVE_THE_LIFECYCLE = ("vaultd.vault", "vaultd.cli", "vaultd.daemon")
STORE_MAY_IMPORT = {"vaultd.errors", "vaultd.layout"}
STORE_OUTSIDE = {"sqlean", "sqlite_vec", "numpy", "psycopg", "psycopg_pool", "pgvector"}
PURE = {"vaultd.notes", "vaultd.chunking", "vaultd.blocks"}
PURE_MAY_IMPORT = PURE | {"vaultd.errors"}
PURE_OUTSIDE = {"yaml"}


# ---------------------------------------------------------------------------- the graph


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name → file, for every module of the package (a package is its __init__)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def statements(node: ast.AST) -> Iterator[ast.AST]:
    """Every statement, in functions, classes and `if` blocks too; expressions (which hold no
    import statement) are not walked, which keeps the scan of all of vaultd quick."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
            yield child
            yield from statements(child)


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name the module imports, wherever the statement stands. `from a import b`
    yields `a.b`, which is module `a` when b is a name in it; relative imports are made
    absolute. The parent packages Python runs on the way are not counted (as `import a.b`
    is an edge to `a.b` alone)."""
    here = module if is_package else module.rpartition(".")[0]
    for node in statements(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph(package: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module → vaultd modules it imports, module → top-level names it imports from outside).
    An imported name is its deepest module: `vaultd.store.ChunkRow` is `vaultd.store`."""
    names = module_names(package)
    root = package.name
    inside: dict[str, set[str]] = {}
    outside: dict[str, set[str]] = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside[module], outside[module] = set(), set()
        for name in imported(tree, module, path.name == "__init__.py"):
            top = name.partition(".")[0]
            if top != root:
                if top:
                    outside[module].add(top)
                continue
            while name not in names:
                name = name.rpartition(".")[0]
            if name != module and name != root:
                inside[module].add(name)
    return inside, outside


@functools.cache
def vaultd_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    return graph(PACKAGE)


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, rest = work[-1]
            step = next(rest, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(edges.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def a_cycle(edges: dict[str, set[str]], component: frozenset[str]) -> str:
    """One closed path through the component, for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        step = min(n for n in edges[path[-1]] if n in component)
        if step in seen:
            return " → ".join(path[path.index(step):] + [step])
        path.append(step)
        seen.add(step)


# ------------------------------------------------------------------ the graph is read right


def test_imports_in_functions_and_under_type_checking_are_edges(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("import json\n\ndef later():\n    from pkg.b import thing\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg.sub import c\n")
    (package / "sub" / "c.py").write_text("from .. import a\nimport numpy.linalg\n")
    (package / "d.py").write_text("import pkg.a\n")
    inside, outside = graph(package)
    assert inside == {"pkg": set(), "pkg.sub": set(), "pkg.a": {"pkg.b"},
                      "pkg.b": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}, "pkg.d": {"pkg.a"}}
    assert outside["pkg.a"] == {"json"} and outside["pkg.sub.c"] == {"numpy"}
    assert cycles(inside) == [frozenset({"pkg.a", "pkg.b", "pkg.sub.c"})]
    assert a_cycle(inside, cycles(inside)[0]) == "pkg.a → pkg.b → pkg.sub.c → pkg.a"


# ---------------------------------------------------------------------------- the rules


def test_no_import_cycles() -> None:
    inside, _ = vaultd_graph()
    assert [a_cycle(inside, component) for component in cycles(inside)] == []


def test_the_lifecycle_never_imports_the_api_the_cli_or_the_daemon() -> None:
    inside, _ = vaultd_graph()
    assert any(within(module, "vaultd.lifecycle") for module in inside)
    wrong = sorted((module, target) for module, targets in inside.items()
                   if within(module, "vaultd.lifecycle") for target in targets
                   if within(target, *ABOVE_THE_LIFECYCLE))
    assert wrong == []


def within(module: str, *packages: str) -> bool:
    """Whether `module` is one of `packages` or a module inside one."""
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def test_the_store_imports_nothing_above_it() -> None:
    inside, outside = vaultd_graph()
    store = [module for module in inside if within(module, "vaultd.store")]
    assert store  # the rule must be about something
    above = {module: sorted(t for t in inside[module]
                            if not within(t, "vaultd.store", *STORE_MAY_IMPORT))
             for module in store}
    foreign = {module: sorted(outside[module] - STORE_OUTSIDE - sys.stdlib_module_names)
               for module in store}
    assert {m: ts for m, ts in above.items() if ts} == {}
    assert {m: ts for m, ts in foreign.items() if ts} == {}


def test_the_layer_below_the_store_stays_below_it() -> None:
    inside, _ = vaultd_graph()
    assert {module: inside[module] - STORE_MAY_IMPORT for module in STORE_MAY_IMPORT} == {
        module: set() for module in STORE_MAY_IMPORT}


@pytest.mark.parametrize("module", sorted(PURE))
def test_parsing_is_pure(module: str) -> None:
    inside, outside = vaultd_graph()
    assert inside[module] - PURE_MAY_IMPORT == set()
    assert outside[module] - PURE_OUTSIDE - sys.stdlib_module_names == set()
