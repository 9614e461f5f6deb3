"""The store contract (`vaultd.store.contract.IndexStore`) is the whole of what vaultd calls
on its index: each backend (`Store`, and `PgStore` when psycopg is installed) implements every
method of it with the same signature and offers nothing public beyond it but its factories,
and no module outside `vaultd/store/` calls a store method the contract does not list. A
backend written against the contract then needs no caller changed."""

from __future__ import annotations

import ast
import inspect
import typing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from vaultd.store import IndexStore, Store
from vaultd.store import contract as contract_module

PACKAGE = Path(__file__).resolve().parent.parent / "vaultd"
FACTORIES = {"open_as_is"}  # how a backend is opened is its own (see the contract's docstring)


def _backends() -> list[Any]:
    try:
        from vaultd.store.postgres import PgStore
    except ImportError:  # the postgres extra not installed: its class cannot be looked at
        return [Store, pytest.param(None, marks=pytest.mark.skip(
            reason="postgres: psycopg is not installed (pip install -e '.[test]')"))]
    return [Store, pytest.param(PgStore, marks=pytest.mark.postgres)]


BACKENDS = _backends()


def protocol_parts() -> list[type]:
    return [c for c in IndexStore.__mro__ if c.__module__ == contract_module.__name__]


def contract_members() -> dict[str, str]:
    """name → "method", "property" or "attribute", for every member of the contract."""
    members: dict[str, str] = {}
    for part in protocol_parts():
        for name in part.__dict__.get("__annotations__", {}):
            members[name] = "attribute"
        for name, value in vars(part).items():
            if name.startswith("_"):
                continue
            members[name] = "property" if isinstance(value, property) else "method"
    return members


def test_the_contract_is_split_by_aggregate_and_lists_every_part() -> None:
    assert [p.__name__ for p in protocol_parts()] == [
        "IndexStore", "Lifetime", "FileIndex", "ChunkIndex", "EntryIndex", "LinkIndex",
        "MetaIndex", "IndexChecks"]
    assert len(contract_members()) > 50


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(func)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(n for n, kind in contract_members().items()
                                        if kind == "method"))
def test_store_implements_each_method_with_the_contracts_signature(name: str,
                                                                   backend: type) -> None:
    promised, offered = getattr(IndexStore, name), getattr(backend, name)
    want, have = inspect.signature(promised), inspect.signature(offered)
    assert [(p.name, p.kind, p.default) for p in have.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in want.parameters.values()]
    want_hints, have_hints = _hints(promised), _hints(offered)
    want_return, have_return = want_hints.pop("return"), have_hints.pop("return")
    assert have_hints == want_hints
    if typing.get_origin(want_return) is AbstractContextManager:
        # a @contextmanager generator: Iterator[X] in, a context manager of X out
        assert hasattr(offered, "__wrapped__") and inspect.isgeneratorfunction(
            offered.__wrapped__)
        assert have_return == Iterator[typing.get_args(want_return)]  # type: ignore[misc]
    else:
        assert have_return == want_return


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_has_the_contracts_properties_and_attributes(backend: type) -> None:
    members = contract_members()
    promised, offered = typing.get_type_hints(IndexStore), typing.get_type_hints(backend)
    for name, kind in members.items():
        if kind == "property":
            assert isinstance(getattr(backend, name), property), name
            assert (_hints(getattr(backend, name).fget)
                    == _hints(getattr(IndexStore, name).fget)), name
        elif kind == "attribute":
            assert offered[name] == promised[name], name


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_offers_nothing_public_beyond_the_contract_but_its_factories(
        backend: type) -> None:
    public = {n for n in dir(backend) if not n.startswith("_")}
    assert public - set(contract_members()) == FACTORIES


# ---------------------------------------------------------------------------- the callers

def _is_store(node: ast.expr) -> bool:
    """`store`, `x.store` or `x._store`: the names vaultd gives its store."""
    return ((isinstance(node, ast.Name) and node.id == "store")
            or (isinstance(node, ast.Attribute) and node.attr in ("store", "_store")))


def store_uses(text: str) -> set[str]:
    """Every attribute read on a store in a module's syntax tree, and every `Store.<name>`."""
    uses = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and _is_store(node.value):
            uses.add(node.attr)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "Store"):
            uses.add(f"Store.{node.attr}")
    return uses


def test_store_uses_are_found_in_the_syntax_tree() -> None:
    module = ("store.knn(v, 3, f); self.store.fts(m); ctx.store.links()\n"
              "vault.store.schema_version; self._store.close(); Store.open_as_is(p)\n"
              "'store.nothing()'  # store.comment()\n")
    assert store_uses(module) == {"knn", "fts", "links", "schema_version", "close",
                                  "Store.open_as_is"}


def test_no_module_outside_the_store_calls_what_the_contract_lacks() -> None:
    allowed = set(contract_members()) | {f"Store.{n}" for n in FACTORIES}
    used: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith("store/"):
            for name in store_uses(path.read_text(encoding="utf-8")):
                used.setdefault(name, set()).add(rel)
    outside = {name: sorted(where) for name, where in used.items() if name not in allowed}
    assert outside == {}
    assert len(used) > 40  # the scan sees vaultd's store calls (not an empty pass)
