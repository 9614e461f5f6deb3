"""The HTTP threads' side of the index: searches and counts, each thread on a connection of
its own, so a read never waits for the main thread's writes. A search's recalls are written
aside (`recalls`), and the work loop gives back the heap a burst of searches freed once they
pause (`idle`)."""

from __future__ import annotations

import threading
import time

from vaultd import layout
from vaultd.daemon.recalls import RecallWriter
from vaultd.search_request import SearchAnswer, SearchRequest
from vaultd.store import Store, open_index
from vaultd.vault import Vault
from vaultd.vectors import trim_heap

TRIM_AFTER = 2.0  # seconds without a search before the heap the searches freed is trimmed
RECALLED = 5  # the top hits of a search that count as recalled for its query


class Reads:
    def __init__(self, vault: Vault, recalls: RecallWriter) -> None:
        self.vault = vault
        self.recalls = recalls
        self._local = threading.local()
        self._generation = 0  # counts reopenings of the index: threads reopen their readers
        self._searched_at = 0.0  # monotonic time of the last search, until the heap is trimmed

    def reader(self) -> Store:
        """This thread's connection to the index (opened anew after the index was replaced)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None or self._local.generation != self._generation:
            if store is not None:
                store.close()
            store = open_index(layout.index_path(self.vault.root), self.vault.settings.index.url)
            self._local.store, self._local.generation = store, self._generation
        return store

    def reopen(self) -> None:
        """The index file was replaced: every thread opens it anew at its next read."""
        self._generation += 1

    def search(self, request: SearchRequest, *, stale_files: int) -> SearchAnswer:
        """Exactly the answer of `vaultd search` (index lag is in /health and /status); its
        `pending_vectors` says how many chunks were ranked by BM25 alone."""
        hits = self.vault.search_with(self.reader(), request)
        self._searched_at = time.monotonic()
        if hits:  # recall promotion counts it; written aside, so no search waits on a writer
            self.recalls.put((hits[:RECALLED], request.query, time.time()))
        return request.answer(hits, stale_files=stale_files)

    def idle(self) -> None:
        """Called by the work loop when it has nothing to do: once searches have paused for
        TRIM_AFTER seconds, give back what they freed (glibc keeps it otherwise), once."""
        if self._searched_at and time.monotonic() - self._searched_at >= TRIM_AFTER:
            self._searched_at = 0.0
            trim_heap()
