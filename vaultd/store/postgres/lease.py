"""The leader's lease on a shared PostgreSQL index: which one of the daemons sharing a database
runs the writing jobs (docs/architecture.md, "One leader, many readers"). The SQL only; when
to renew, take over or step down is `vaultd.daemon.leadership`'s.

Two records say who leads, and the leader always holds both:

- a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its own. It frees
  the moment the holder's session ends: a leader killed with -9 closes its socket, and the
  next contender takes over at once. Its key is derived from a constant and the database and
  schema, so daemons sharing an index contend and daemons of other indexes do not;
- a lease row (`vaultd_leader`: the holder's id, host and pid, `renewed_at`, `expires_at`,
  all on the server's clock). A leader paused longer than its lease (SIGSTOP, a laptop's lid)
  keeps its socket, so its lock stays held; once its row has expired a contender ends that
  session (`pg_terminate_backend`), which frees the lock, and takes both. The paused leader,
  waking, finds its row gone (`holds` is the fencing check its writing jobs ask first).

So holding the lock means no other session holds it, and therefore that every earlier leader
is gone or has been ended: the row can then be taken whatever it says."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from vaultd.store.postgres.pool import CONNECT_SECONDS, fault, unreachable

# The advisory lock's first key ("lead" in ASCII); the second is the database's and schema's
# hash. Two-key locks live apart from the one-key locks the store's writers and migrations take.
LEASE_LOCK = 0x6C656164
# How long a contender waits for the lock of a paused leader whose session it ended.
TERMINATED_WAIT = 3.0

T = TypeVar("T")

_TABLE = """
CREATE TABLE IF NOT EXISTS vaultd_leader (
    id integer PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    renewed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
)"""

_ROW = ("SELECT holder, host, pid, renewed_at, expires_at, clock_timestamp() "
        "FROM vaultd_leader WHERE id = 1")


@dataclass(frozen=True)
class LeaseState:
    """The lease row as read, with the server's clock at the reading."""

    holder: str
    host: str
    pid: int
    renewed_at: datetime
    expires_at: datetime
    now: datetime

    @property
    def live(self) -> bool:
        return self.expires_at > self.now


class PgLease:
    """The lease of the index at `url` as one contender sees it: `holder` is its unique id
    (host, pid and a random part: unique across restarts and containers that reuse pids), and
    `host` and `pid` what readers show of it. On a connection of its own (the advisory lock is
    held by a session, so never by a pooled connection); safe to call from several threads. A
    server that cannot be reached is an `IndexAccessError`; the connection is opened again at
    the next call, without the lock (which its lost session released)."""

    def __init__(self, url: str, holder: str, host: str, pid: int) -> None:
        self.url, self.holder, self.host, self.pid = url, holder, host, pid
        self._conn: psycopg.Connection[Any] | None = None
        self._keys = (LEASE_LOCK, 0)
        self._locked = False  # this session holds the advisory lock
        self._lock = threading.Lock()

    # -- the connection
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_SECONDS,
                                   application_name="vaultd-lease")
            try:
                with conn.transaction():
                    # the database's own lock while creating: two daemons starting at once
                    conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LEASE_LOCK,))
                    conn.execute(_TABLE)
                row = conn.execute("SELECT hashtext(current_database() || '.' || "
                                   "current_schema())").fetchone()
            except BaseException:
                conn.close()
                raise
            self._keys = (LEASE_LOCK, int(row[0]) if row else 0)
            self._conn, self._locked = conn, False
        return self._conn

    def _call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run `work(conn)` under the thread lock. A failed connection is dropped, and with
        it the advisory lock; one that had been open is tried once more on a new connection
        (a paused leader's session ended by its successor is expected, not a fault). Any
        other failure is one line naming the server."""
        with self._lock:
            retry = self._conn is not None and not self._conn.closed
            while True:
                try:
                    return work(self._connection())
                except psycopg.OperationalError as exc:
                    self._drop()
                    if not retry:
                        raise (fault(self.url, exc) or unreachable(self.url, exc)) from exc
                    retry = False
                except psycopg.Error as exc:  # (a full or read-only database: "refuses writes")
                    self._drop()
                    raise (fault(self.url, exc) or unreachable(self.url, exc)) from exc

    def _drop(self) -> None:
        conn, self._conn, self._locked = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- the lease
    def acquire(self, seconds: float) -> LeaseState | None:
        """Become the leader for `seconds` if no one else is: the lock is free (or its holder
        is this session), or the row has expired and the session holding the lock could be
        ended. The new row, or None when another leader holds the lease."""
        return self._call(lambda conn: self._acquire(conn, seconds))

    def _acquire(self, conn: psycopg.Connection[Any], seconds: float) -> LeaseState | None:
        if not self._locked:
            self._locked = self._try_lock(conn)
        if not self._locked:
            row = _state(conn.execute(_ROW).fetchone())
            if row is not None and row.live:
                return None
            # expired: the lock's holder is a leader paused past its lease; end its session
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2 "
                "AND granted AND pid <> pg_backend_pid()",
                (self._keys[0], self._keys[1] & 0xFFFFFFFF))
            deadline = time.monotonic() + TERMINATED_WAIT
            while not self._locked and time.monotonic() < deadline:
                time.sleep(0.05)
                self._locked = self._try_lock(conn)
            if not self._locked:
                return None
        with conn.transaction():
            return _state(conn.execute(
                "INSERT INTO vaultd_leader (id, holder, host, pid, renewed_at, expires_at) "
                "VALUES (1, %s, %s, %s, clock_timestamp(), "
                "clock_timestamp() + make_interval(secs => %s)) "
                "ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, "
                "host = excluded.host, pid = excluded.pid, renewed_at = excluded.renewed_at, "
                "expires_at = excluded.expires_at "
                "RETURNING holder, host, pid, renewed_at, expires_at, clock_timestamp()",
                (self.holder, self.host, self.pid, seconds)).fetchone())

    def _try_lock(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self._keys).fetchone()
        return bool(row and row[0])

    def renew(self, seconds: float) -> LeaseState | None:
        """Extend this contender's lease by `seconds` from now, if it still holds it (its row,
        not expired, and its session's lock); None when it does not: it lost the lease."""
        def work(conn: psycopg.Connection[Any]) -> LeaseState | None:
            if not self._locked:
                return None
            return _state(conn.execute(
                "UPDATE vaultd_leader SET renewed_at = clock_timestamp(), "
                "expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE id = 1 AND holder = %s AND expires_at > clock_timestamp() "
                "RETURNING holder, host, pid, renewed_at, expires_at, clock_timestamp()",
                (seconds, self.holder)).fetchone())

        return self._call(work)

    def holds(self) -> bool:
        """The fencing check a writing job asks first: this holder's row, not expired on the
        server's clock, and its session still holding the lock."""
        def work(conn: psycopg.Connection[Any]) -> bool:
            if not self._locked:
                return False
            row = conn.execute("SELECT holder = %s AND expires_at > clock_timestamp() "
                               "FROM vaultd_leader WHERE id = 1", (self.holder,)).fetchone()
            return bool(row and row[0])

        return self._call(work)

    def current(self) -> LeaseState | None:
        """The lease row, live or expired; None before any daemon led."""
        return self._call(lambda conn: _state(conn.execute(_ROW).fetchone()))

    def release(self) -> None:
        """Give the lease up (a clean stop): a contender takes over at its next try."""
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute("DELETE FROM vaultd_leader WHERE id = 1 AND holder = %s",
                         (self.holder,))
            if self._locked:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", self._keys)
                self._locked = False

        self._call(work)


def _state(row: tuple[Any, ...] | None) -> LeaseState | None:
    if row is None:
        return None
    return LeaseState(holder=str(row[0]), host=str(row[1]), pid=int(row[2]),
                      renewed_at=row[3], expires_at=row[4], now=row[5])
