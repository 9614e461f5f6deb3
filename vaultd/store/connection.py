"""The one connection every part of the SQLite store runs its SQL on, and what the parts
share: transactions, read snapshots, and the vectors generation that tells an in-memory copy
of the vectors or the full text that it is stale.

`Store` (vaultd.store.sqlite) is built from one part per aggregate — files, chunks, entries,
links, meta, integrity — each a subclass of `Connection`, so each reads as its own module
while the store stays one object on one connection."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at its start (IMMEDIATE), where waiting
    for it is covered by the busy timeout (a deferred one that reads, then writes, can fail
    at once instead); undone on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Connection:
    """An open index: its file, its sqlite module and connection, and the parts' caches."""

    path: Path
    module: ModuleType  # the DB-API module: callers catch its DatabaseError
    conn: sqlite3.Connection  # or sqlean's, which has sqlite3's API

    def __init__(self, path: Path, module: ModuleType, conn: sqlite3.Connection) -> None:
        self.path, self.module, self.conn = path, module, conn
        self._pending: tuple[str, int] | None = None  # (vectors generation, pending count)
        self._scratch: sqlite3.Connection | None = None  # an in-memory FTS5 for fts_tokens
        self._scratch_lock = threading.Lock()

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with transaction(self.conn):
            yield

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state, even while the daemon writes."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:  # a read transaction: nothing to commit but its end
                self.conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (after a repair)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def has_vector_table(self) -> bool:
        """Whether the vec0 table exists: it is made when the index learns its model's
        dimensions (`ensure_model`), so an index never built has none."""
        return self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'chunk_vectors'").fetchone() is not None

    # -- the in-memory vector and BM25 copies of long-lived processes (vaultd.vectors, bm25)
    def _bump_vectors_generation(self) -> None:
        """Count every change to the set of vectors, so an in-memory copy knows it is stale."""
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('vectors_generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")

    def vectors_generation(self) -> str:
        return self.get_meta("vectors_generation") or "0"

    # -- meta: small facts about the index, by key
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
