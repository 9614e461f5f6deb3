"""What the daemon's main thread is asked to do: one frozen dataclass per kind of work.

The main thread is the index's only writer, so every write reaches it as a command on its
queue: the scheduler's jobs, the reconcile at start, a debounced batch of file events, and the
POST /flush and /lifecycle requests of HTTP threads. A value, not a string with a prefix, so a
command carries its payload with a type, and `WorkLoop` dispatches on the class (a table keyed
by type, in `work_loop`). Equal commands are equal values: the queue keeps one of each waiting,
so a job that fires while its previous run still waits is not queued twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaultd.daemon.watcher import Changes
from vaultd.errors import VaultdError

Answer = dict[str, Any]  # the JSON an HTTP thread sends back: `vaultd … --json`'s own


@dataclass(frozen=True)
class Reconcile:
    """Compare the vault with the index (at start, periodically, after the index was replaced):
    catches what no file event announced."""


@dataclass(frozen=True, eq=False)
class IndexBatch:
    """The net changes of a debounced batch of file events (`watcher.coalesce`). Made by the
    work loop itself, never queued; compared by identity (`Changes` is a mutable value)."""

    changes: Changes


@dataclass(frozen=True)
class RunPhase:
    """One scheduled lifecycle phase (a name of `lifecycle.PHASE_NAMES`)."""

    name: str


@dataclass(frozen=True)
class Flush:
    """The scheduled flush: index what changed, connect, route, write MEMORY.md."""


class Reply:
    """Where the main thread puts a request's answer, and the HTTP thread waits for it. A
    caller that gave up waiting abandons it: the work then never starts, if it has not yet."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._answer: Answer = {}
        self._error = ""
        self.abandoned = False

    def give(self, answer: Answer) -> None:
        self._answer = answer
        self._done.set()

    def refuse(self, error: str) -> None:
        self._error = error
        self._done.set()

    def wait(self, what: str, timeout: float) -> Answer:
        """The answer; VaultdError with the reason when the work failed or took too long."""
        if not self._done.wait(timeout):
            self.abandoned = True
            raise VaultdError(f"{what} did not finish within {timeout:.0f}s")
        if self._error:
            raise VaultdError(self._error)
        return self._answer


@dataclass(frozen=True, eq=False)
class Request:
    """Work an HTTP thread hands to the main thread (POST /flush, /lifecycle). Compared by
    identity: two requests are two callers, each waiting for its own answer."""

    work: Callable[[], Answer]
    reply: Reply = field(default_factory=Reply)


Command = Reconcile | IndexBatch | RunPhase | Flush | Request
