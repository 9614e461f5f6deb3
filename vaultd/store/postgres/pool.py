"""The PostgreSQL backend's connections: a pool shared by every `PgStore` of one URL in the
process (the daemon opens one store per thread; they share the pool), a connection pinned to
a thread for the length of a transaction or a read snapshot, and what the parts share: meta,
the vectors generation, and why a server cannot be used, told in one line."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from vaultd.errors import IndexAccessError, VaultdError
from vaultd.store.shown import shown

# Connections per URL per process: the daemon's HTTP threads, its writer, the recalls thread
# and the BM25 copy's loader each hold one at most while they run a statement or a
# transaction; more would only cost the server memory (docs/architecture.md).
POOL_SIZE = 8
# How long a caller waits for a free connection, and a writer for the write lock: what
# SQLite's busy timeout is for the SQLite store.
WAIT_SECONDS = 30
CONNECT_SECONDS = 10  # a server that does not answer in this long is reported unreachable
# The advisory lock every write transaction takes first, so that writers take turns as they
# do on SQLite (a transaction there takes the write lock at its start). "vaul" in ASCII.
WRITE_LOCK = 0x7661756C


def unreachable(url: str, exc: BaseException) -> VaultdError:
    """Why the server at `url` cannot be used, as one line naming it and the fix."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return IndexAccessError(
        f"cannot use the PostgreSQL index at {shown(url)} ({first}): check that the server "
        "runs and the URL ([index] url or VAULTD_INDEX_URL) names it")


def _configure(conn: psycopg.Connection[Any]) -> None:
    # numpy arrays in and out for `vector` columns; an unmigrated database (looked at as is)
    # may have no pgvector yet
    with contextlib.suppress(psycopg.ProgrammingError):
        register_vector(conn)


class _Shared:
    """A pool and how many open stores use it."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool, self.users = pool, 0


_POOLS: dict[str, _Shared] = {}
_POOLS_LOCK = threading.Lock()


def connect(url: str) -> psycopg.Connection[Any]:
    """One connection, now or a clear error: what opening a store starts with (a pool would
    retry in the background and say nothing for its whole timeout)."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_SECONDS)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from exc


def acquire_pool(url: str) -> ConnectionPool:
    with _POOLS_LOCK:
        shared = _POOLS.get(url)
        if shared is None:
            pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False,
                                  kwargs={"autocommit": True}, configure=_configure,
                                  timeout=WAIT_SECONDS, name="vaultd")
            try:
                pool.open(wait=True, timeout=WAIT_SECONDS)
            except Exception as exc:
                pool.close()
                raise unreachable(url, exc) from exc
            shared = _POOLS[url] = _Shared(pool)
        shared.users += 1
        return shared.pool


def release_pool(url: str) -> None:
    with _POOLS_LOCK:
        shared = _POOLS.get(url)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del _POOLS[url]
            shared.pool.close()


class PgConnection:
    """An open PostgreSQL index: its URL, the pool, and the thread's pinned connection."""

    path: Path
    module: ModuleType  # psycopg: callers catch its DatabaseError

    def __init__(self, url: str, path: Path, pool: ConnectionPool) -> None:
        self.url, self.path, self.module, self._pool = url, path, psycopg, pool
        self._local = threading.local()
        self._pending: tuple[str, int] | None = None
        self._has_vectors = False  # the vector table exists (only ever learnt, never unlearnt)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_pool(self.url)

    # -- connections
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's pinned connection inside a transaction or snapshot, else one from
        the pool for as long as the block runs."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _pinned(self) -> Iterator[psycopg.Connection[Any]]:
        """One connection for the whole block, which every statement in it runs on (the
        transaction's, or one from the pool pinned for the block)."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._conn() as conn:
            return conn.execute(sql, args).fetchone()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        with self._conn() as conn:
            return conn.execute(sql, args).rowcount

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self._conn() as conn, conn.cursor() as cur:
                cur.executemany(sql, rows)

    def _stream(self, sql: str, args: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows from a server-side cursor, a block at a time (millions of links or
        occurrences are never all in memory)."""
        with (self._conn() as conn, conn.transaction(),
              conn.cursor(name="vaultd_stream") as cur):
            cur.itersize = 10_000
            cur.execute(sql, args)
            yield from cur

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taking the write lock first: writers take turns (as on
        SQLite), and a writer that waits longer than WAIT_SECONDS fails (OperationalError)."""
        if getattr(self._local, "conn", None) is not None:
            with self._local.conn.transaction():  # inside another: a savepoint of it
                yield
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = '{WAIT_SECONDS}s'")
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    yield
                    self._before_commit()
            finally:
                self._local.conn = None

    def _before_commit(self) -> None:
        """What a part does at the end of a write transaction (the vectors' index)."""

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state (REPEATABLE READ)."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                try:
                    yield
                finally:
                    conn.execute("COMMIT" if conn.info.transaction_status
                                 == psycopg.pq.TransactionStatus.INTRANS else "ROLLBACK")
            finally:
                self._local.conn = None

    def checkpoint(self) -> None:
        """Nothing to do: a committed PostgreSQL transaction is already durable."""

    def has_vector_table(self) -> bool:
        """Whether `chunk_vectors` exists: `ensure_model` makes it once it knows the dims."""
        if not self._has_vectors:
            row = self._one("SELECT to_regclass('chunk_vectors') IS NOT NULL")
            self._has_vectors = bool(row and row[0])
        return self._has_vectors

    # -- the in-memory copies' staleness token
    def _bump_vectors_generation(self) -> None:
        self._run("INSERT INTO meta(key, value) VALUES ('vectors_generation', '1') "
                  "ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text")

    def vectors_generation(self) -> str:
        return self.get_meta("vectors_generation") or "0"

    # -- meta
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = %s", (key,))
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._run("INSERT INTO meta(key, value) VALUES (%s, %s) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def drop_pools() -> None:
    """Close every pool of this process (a test's database is about to be dropped)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for shared in pools:
        shared.pool.close()
