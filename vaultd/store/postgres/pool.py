"""The PostgreSQL backend's connections: a pool shared by every `PgStore` of one URL in the
process (the daemon opens one store per thread; they share the pool), a connection pinned to
a thread for the length of a transaction or a read snapshot, and what the parts share: meta,
the vectors generation, and why a server cannot be used, told in one line."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from vaultd.errors import IndexUnavailableError
from vaultd.store.shown import shown

# Connections per URL per process: the daemon's HTTP threads, its writer, the recalls thread
# and the BM25 copy's loader each hold one at most while they run a statement or a
# transaction; more would only cost the server memory (docs/architecture.md).
POOL_SIZE = 8
# How long a caller waits for a free connection, and a writer for the write lock: what
# SQLite's busy timeout is for the SQLite store.
WAIT_SECONDS = 30
CONNECT_SECONDS = 10  # a server that does not answer in this long is reported unreachable
# How long a caller waits for a pooled connection before asking whether the server answers at
# all: a server that is down is told within about this long, not after WAIT_SECONDS.
ASK_AFTER_SECONDS = 1.0
# The advisory lock every write transaction takes first, so that writers take turns as they
# do on SQLite (a transaction there takes the write lock at its start). "vaul" in ASCII.
WRITE_LOCK = 0x7661756C


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def unreachable(url: str, exc: BaseException) -> IndexUnavailableError:
    """Why the server at `url` cannot be used, as one line naming it and the fix."""
    first = _first_line(exc)
    return IndexUnavailableError(
        f"cannot use the PostgreSQL index at {shown(url)} ({first}): check that the server "
        "runs and the URL ([index] url or VAULTD_INDEX_URL) names it",
        where=shown(url), problem="unreachable", detail=first)


def refuses_writes(url: str, exc: BaseException) -> IndexUnavailableError:
    """The server at `url` answers but will not store a write (read-only, disk or memory
    full), as one line naming it."""
    first = _first_line(exc)
    return IndexUnavailableError(
        f"the PostgreSQL index at {shown(url)} refuses writes ({first}): free space on the "
        "server or make the database writable again; vaultd retries, and indexes what "
        "changed meanwhile once it can write", where=shown(url), problem="refuses writes",
        detail=first)


def fault(url: str, exc: psycopg.Error) -> IndexUnavailableError | None:
    """The outage `exc` is, if it is one: the connection lost or refused, the server shutting
    down or starting (SQLSTATE classes 08 and 57P), no connection free in time, or a write
    refused (read-only transaction 25006, insufficient resources class 53: disk full). Any
    other error (a lock timeout, a bad statement) is left as it is: waiting would not help,
    or its caller handles it."""
    state = exc.sqlstate or ""
    if state == "25006" or state.startswith("53"):
        return refuses_writes(url, exc)
    if isinstance(exc, PoolTimeout) or (isinstance(exc, psycopg.OperationalError) and (
            not state or state.startswith(("08", "57P")))):
        return unreachable(url, exc)
    return None


@contextmanager
def outages(url: str) -> Iterator[None]:
    """Raise an outage met in the block as `IndexUnavailableError` (the daemon retries and
    answers 503 meanwhile); every other error as it was."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = fault(url, exc)
        if mapped is None:
            raise
        raise mapped from exc


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
            # `check`: a connection a restarted server cut is found dead when taken, and
            # replaced, instead of failing the request that took it
            pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False,
                                  kwargs={"autocommit": True}, configure=_configure,
                                  check=ConnectionPool.check_connection,
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
    def _checkout(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool, waited for up to WAIT_SECONDS while the server answers;
        when none comes within ASK_AFTER_SECONDS, one connection attempt of its own asks the
        server, and one that does not answer is an outage now (`unreachable`)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                conn = self._pool.getconn(
                    timeout=max(0.01, min(ASK_AFTER_SECONDS, deadline - time.monotonic())))
                break
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
                connect(self.url).close()  # the pool is busy, or the server is gone: which?
        try:
            with conn:  # as the pool's own `connection()`: commit or roll back what is left
                yield conn
        finally:
            self._pool.putconn(conn)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's pinned connection inside a transaction or snapshot, else one from
        the pool for as long as the block runs."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with outages(self.url), self._checkout() as conn:
            yield conn

    @contextmanager
    def _pinned(self) -> Iterator[psycopg.Connection[Any]]:
        """One connection for the whole block, which every statement in it runs on (the
        transaction's, or one from the pool pinned for the block)."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with outages(self.url), self._checkout() as conn:
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
        with (outages(self.url), self._conn() as conn, conn.transaction(),
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
        with outages(self.url), self._checkout() as conn:
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
        with outages(self.url), self._checkout() as conn:
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
