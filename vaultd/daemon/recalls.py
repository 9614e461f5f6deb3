"""Which hits searches recalled (for recall promotion), written aside on a thread of its own.

Why aside: a search answered while the main thread holds the index's write lock (a long batch)
would otherwise wait for it before answering. Why batched: written right after each search, a
search's recalls took the GIL and a core while its response was being sent and the next query
embedded; so they wait until searches pause for RECALL_QUIET seconds (or RECALL_WAIT seconds
of steady searching pass), and none is lost, closing included.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from vaultd import layout
from vaultd.daemon.discovery import file_identity
from vaultd.errors import IndexUnavailableError
from vaultd.store import Store, open_index

log = logging.getLogger("vaultd.daemon")

RECALL_QUIET = 0.05  # seconds without a search before recalls are written
RECALL_WAIT = 2.0  # seconds a recall waits at most while searches go on

Recall = tuple[list[Any], str, float]  # (the top hits, the query, when: wall clock)


class RecallWriter:
    """Records recalls on its own thread, with its own connection to the index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._queue: queue.SimpleQueue[Recall | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, item: Recall) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vaultd-recalls",
                                            daemon=True)
            self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        sink = _Sink(layout.index_path(self.root))
        try:
            closing = False
            while not closing and (item := self._queue.get()) is not None:
                batch, closing = self._gather(item)
                for recall in batch:
                    sink.write(recall)
        finally:
            sink.close()

    def _gather(self, first: Recall) -> tuple[list[Recall], bool]:
        """The recalls of one pause: (batch, whether `close` was called meanwhile)."""
        batch, started = [first], time.monotonic()
        while time.monotonic() - started < RECALL_WAIT:
            try:
                item = self._queue.get(timeout=RECALL_QUIET)
            except queue.Empty:
                break  # searches paused: write now
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False


class _Sink:
    """The writer thread's connection to the index, opened anew when the file was replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Store | None = None
        self.opened: tuple[int, int] | None = None

    def write(self, recall: Recall) -> None:
        from vaultd.lifecycle.promote import record_recalls

        try:
            record_recalls(self._open(), *recall)
        except IndexUnavailableError:  # the database down: the daemon says so once, elsewhere
            log.debug("a search's recalls were not recorded: the index's database is down")
        except Exception:  # a lost recall must never take the daemon down
            log.exception("recording a search's recalls failed")

    def _open(self) -> Store:
        """Opened here, inside `write`'s guard: an index deleted or replaced just now (a disk
        I/O error) loses this recall, not every later one."""
        if self.store is None or file_identity(self.path) != self.opened:  # new, or replaced
            self.close()
            self.store, self.opened = open_index(self.path), file_identity(self.path)
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
