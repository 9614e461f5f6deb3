"""The daemon's watch over its own files in `.vaultd/`, which someone may delete or replace
under it while it runs:

- the index (`rm .vaultd/index.db && vaultd index`): opened anew and reconciled, instead of
  written on into a deleted file;
- the token: put back, or clients could not reach the daemon and would work beside it, a
  second writer;
- the lock: put back, or a second daemon could start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from vaultd import layout
from vaultd.daemon.discovery import Lock, file_identity, read_token, write_token

log = logging.getLogger("vaultd.daemon")

OWN_FILES_EVERY = 2.0  # seconds between checks
LOCK_STRIKES = 3  # checks in a row that find the lock held by another before the daemon stops


class OwnFiles:
    def __init__(self, root: Path, lock: Lock, *, index_replaced: Callable[[], None],
                 stop: Callable[[], None]) -> None:
        self.root = root
        self.lock = lock
        self._index_replaced = index_replaced  # reopen the index and reconcile
        self._stop = stop
        self.token = ""  # set once the daemon has its token
        self._index_id: tuple[int, int] | None = None  # the index file's (device, inode)
        self._checked_at = 0.0
        self._lock_lost = 0

    def index_opened(self) -> None:
        """Remember which file the index is now, to tell when it was replaced."""
        self._index_id = file_identity(layout.index_path(self.root))

    def check_if_due(self) -> None:
        if time.monotonic() - self._checked_at >= OWN_FILES_EVERY:
            self.check()

    def check(self) -> None:
        self._checked_at = time.monotonic()
        path = layout.index_path(self.root)
        if file_identity(path) != self._index_id:
            log.warning("%s was deleted or replaced: opening it anew and indexing the vault",
                        path)
            self._index_replaced()
        if self.token and read_token(self.root) != self.token:
            log.warning(".vaultd/token was removed or changed: restoring it")
            write_token(self.root, self.token)
        self._check_lock()

    def _check_lock(self) -> None:
        """A second daemon may hold the lock file for the moment it takes to see us and give
        up: only LOCK_STRIKES checks in a row stop this one."""
        if self.lock.check():
            self._lock_lost = 0
            return
        self._lock_lost += 1
        log.warning("this vault's lock file is held by another process")
        if self._lock_lost >= LOCK_STRIKES:
            log.error("another daemon holds this vault's lock file; stopping")
            self._stop()
