"""A real PostgreSQL with pgvector for the tests: one server a session (pgserver, a
pip-installed PostgreSQL 16 that bundles pgvector 0.6, started under a tmp dir) and a
fresh database a test. Tests that use it are marked `postgres`; they skip, with one line
saying why, only when no server can be started (pgserver not installed)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_numbers = itertools.count(1)


def _database_url(server_url: str, name: str) -> str:
    """The server's URL (`postgresql://postgres:@/postgres?host=…`) for database `name`."""
    head, _, query = server_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


@contextmanager
def started_server(prefix: str) -> Iterator[Any]:
    """A pgserver of its own (skipped, with the reason, where pgserver is not installed), its
    data in a tmp dir of its own, not under pytest's basetemp: another pytest session on the
    machine prunes old basetemps, and (run as root) pgserver runs the server as its own user,
    who cannot enter pytest's private folders. Stopped and removed after."""
    try:
        import pgserver
    except ImportError:
        pytest.skip("postgres: pgserver is not installed (pip install -e '.[test]')")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server
    finally:
        from vaultd.store.postgres.pool import drop_pools

        drop_pools()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The session's server URL."""
    with started_server("vaultd-pg-") as server:
        yield str(server.get_uri())


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"vaultd_test_{next(_numbers)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield _database_url(pg_server, name)
    from vaultd.store.postgres.pool import drop_pools

    drop_pools()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """An empty, migrated index of each backend (a test that takes it runs on both): the
    SQLite file under tmp_path, or a fresh database on the session's PostgreSQL."""
    from vaultd.store import open_index

    path = tmp_path / "vault" / ".vaultd" / "index.db"
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    store = open_index(path, url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def index_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment a vault is opened with, for each backend: none (the SQLite file), or
    `VAULTD_INDEX_URL` naming a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"VAULTD_INDEX_URL": request.getfixturevalue("pg_url")}
