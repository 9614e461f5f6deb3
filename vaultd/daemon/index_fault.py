"""Why the daemon cannot use its index now, as one line for `vaultd status` and the log, and
when it tries again.

Two kinds. A database that cannot be used for now (`IndexUnavailableError`: the server down
or restarting, or refusing writes) is retried with backoff, RETRY_FIRST seconds doubling up to
RETRY_MAX: a short restart is seen back within seconds, a long outage costs one connection
attempt every RETRY_MAX. A database that holds another vault (`VaultMismatchError`) is not
retried: waiting does not change what the database holds. Only the SQLite default never meets
either (its errors are told as they always were)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vaultd.errors import IndexUnavailableError

RETRY_FIRST = 1.0  # seconds before the first retry
RETRY_MAX = 30.0  # the backoff's cap


class IndexFault:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # the work loop writes; HTTP threads read
        self._error: IndexUnavailableError | None = None
        self._refused = ""  # another vault's database: the line, for good
        self._since = 0.0
        self._next_at = 0.0
        self._delay = RETRY_FIRST
        self._where = ""

    @property
    def unavailable(self) -> bool:
        return self._error is not None

    @property
    def problem(self) -> str:
        """"unreachable" or "refuses writes" while the database cannot be used, else ""."""
        error = self._error
        return error.problem if error is not None else ""

    @property
    def refused(self) -> str:
        """The line of another vault's database, else ""."""
        return self._refused

    @property
    def where(self) -> str:
        """The database of the last outage (the URL without its password)."""
        return self._where

    def down(self, exc: IndexUnavailableError) -> bool:
        """Record an outage (or that it goes on). True when it is news: the log says it."""
        with self._lock:
            news = self._error is None or (self._error.problem, self._error.detail) != (
                exc.problem, exc.detail)
            if self._error is None:
                self._since = self._clock()
                self._delay = RETRY_FIRST
                self._next_at = self._since + self._delay
            self._error, self._where = exc, exc.where
            return news

    def due(self) -> bool:
        """Whether to try again now; a yes schedules the next try after a doubled wait."""
        with self._lock:
            now = self._clock()
            if self._error is None or now < self._next_at:
                return False
            self._delay = min(self._delay * 2, RETRY_MAX)
            self._next_at = now + self._delay
            return True

    def wait_seconds(self) -> float:
        """Until the next try (0 when none is scheduled)."""
        return max(0.0, self._next_at - self._clock()) if self._error is not None else 0.0

    def clear(self) -> float | None:
        """The index works again: how long it did not (None when it had not stopped)."""
        with self._lock:
            if self._error is None:
                return None
            self._error = None
            return self._clock() - self._since

    def refuse(self, line: str) -> bool:
        """The index holds another vault: True when it is news."""
        news, self._refused = line != self._refused, line
        return news

    def line(self) -> str | None:
        """`postgresql://… unreachable since 14:02:11, retrying (next in 4s): <why>`."""
        with self._lock:
            error = self._error
            if error is None:
                return self._refused or None
            since = time.strftime("%H:%M:%S", time.localtime(self._since))
            wait = max(0.0, self._next_at - self._clock())
            return (f"{error.where} {error.problem} since {since}, retrying (next in "
                    f"{wait:.0f}s): {error.detail}")

    def unavailable_error(self) -> IndexUnavailableError:
        """What a request met meanwhile is answered with (a 503): the line."""
        error = self._error
        return IndexUnavailableError(
            f"index: {self.line()}", where=error.where if error else "",
            problem=error.problem if error else "unreachable",
            detail=error.detail if error else "")
