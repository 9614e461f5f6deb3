"""The vectors phase of the daemon's indexing, as one object that owns its state.

Indexing has two phases (`vaultd.indexer`): a batch or reconcile writes files, chunks and
full-text rows at once (keyword search finds them), and the chunks then wait for a vector.
The work loop embeds them VECTOR_STEP contents at a time whenever no event waits, so a first
index of a large vault delays neither search nor the next edit, and an event or a stop waits
at most one step. Lifecycle phases wait until every chunk has its vector (an entry's vector is
the mean of its chunks'): `hold` keeps them, and they are queued again once the fill is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from vaultd.daemon.commands import Command
from vaultd.indexer import RateMeter
from vaultd.progress import IndexProgress

log = logging.getLogger("vaultd.daemon")

VECTOR_STEP = 64  # chunk contents embedded per step: small enough that an event waits little
VECTOR_RETRY = 30.0  # seconds before the vectors phase tries again after a failure
WARM_EVERY = 5.0  # seconds between reloads of the in-memory vectors while they fill in


class Pending(Protocol):
    """What the fill needs of the vault: the count of chunks waiting, and a way to embed some."""

    def pending_vectors(self) -> int: ...
    def embed_pending(self, *, limit: int | None = None) -> int: ...


class VectorFill:
    """Chunks waiting for a vector, and how their filling goes. Runs on the main thread; HTTP
    threads read `progress`, `pending` and `first_index_done` (each one value, set whole)."""

    def __init__(self, vault: Pending, *, warm: Callable[[], None],
                 release: Callable[[Command], None], on_error: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._vault = vault
        self._warm = warm  # reload the in-memory copies of the vectors (and BM25's postings)
        self._release = release  # queue a held command again
        self._on_error = on_error
        self._clock = clock
        self.pending = 0
        self.progress: IndexProgress | None = None  # of the index work running now, if any
        self.first_index_done = False  # the start's reconcile and all its vectors
        self.held: list[Command] = []  # lifecycle commands waiting for the vectors
        self._reconciled = False
        self._filled = 0  # chunks given a vector since the phase began
        self._meter: RateMeter | None = None
        self._retry_at = 0.0
        self._warmed_at = 0.0

    def ready(self) -> bool:
        """Whether a step should run now: chunks wait and no failure asks to wait first."""
        return self.pending > 0 and self._clock() >= self._retry_at

    def files_progress(self, progress: IndexProgress) -> None:
        """The files phase's progress (the indexer's callback), until vectors take over."""
        self.progress = progress

    def reconciled(self) -> None:
        """The start's reconcile wrote its files: the first index is done once vectors are."""
        self._reconciled = True

    def index_failed(self) -> None:
        """Index work failed: its progress means nothing now, unless a fill goes on."""
        if not self.pending:
            self.progress = None

    def hold(self, command: Command) -> bool:
        """Keep a lifecycle command until every chunk has its vector; False: none wait."""
        if not self.pending:
            return False
        if command not in self.held:
            self.held.append(command)
        return True

    def after_index(self, *, step: bool = False) -> None:
        """After index work: count the chunks waiting and, with `step`, embed a first step at
        once (a small batch is then complete when the loop's `indexing` clears); then warm."""
        self.pending = self._vault.pending_vectors()
        if self.pending and self._meter is None:
            self._meter, self._filled = RateMeter(), 0
        if self.pending:
            self.progress = IndexProgress("vectors", self._filled, self._filled + self.pending)
        if step and self.pending:
            self.step()
            return
        self.warm()
        if not self.pending:
            self._done()

    def step(self) -> None:
        """One step of the phase. A failure is logged, and the phase tries again after
        VECTOR_RETRY seconds; lifecycle phases wait meanwhile. (Not a file change in flight:
        `indexing` in /status counts pending vectors, `stale_files` does not.)"""
        try:
            self._filled += self._vault.embed_pending(limit=VECTOR_STEP)
            self.pending = self._vault.pending_vectors()
            rate = self._meter.update(self._filled) if self._meter is not None else None
            self.progress = IndexProgress("vectors", self._filled,
                                          self._filled + self.pending, rate)
            if not self.pending or self._clock() - self._warmed_at >= WARM_EVERY:
                self.warm()  # (a search in between brings its copy up to date)
        except Exception:
            self._on_error()
            self._retry_at = self._clock() + VECTOR_RETRY
            log.exception("embedding chunks that wait for a vector failed; trying again in "
                          "%.0fs", VECTOR_RETRY)
        if not self.pending:
            self._done()

    def warm(self) -> None:
        """Reload the in-memory vectors now, on the writer's thread, rather than in the first
        search after a change."""
        self._warmed_at = self._clock()
        self._warm()

    def _done(self) -> None:
        """Every chunk has its vector: say so once, and let held lifecycle phases run."""
        if self._meter is not None:
            log.info("every chunk has its vector (%d embedded in this phase)", self._filled)
        self._meter, self.progress = None, None
        if self._reconciled:
            self.first_index_done = True
        for command in self.held:
            self._release(command)
        self.held.clear()
