"""`Store`: the SQLite backend of the store contract (`vaultd.store.contract.IndexStore`),
one object on one connection, made of a part per aggregate (see `vaultd.store.connection`).

`VAULT/.vaultd/index.db` is a disposable cache of the vault: files, entries, chunks, an
embedding cache keyed by content hash, a sqlite-vec `vec0` table for KNN and an FTS5 table for
BM25, the link graph and search recalls."""

from __future__ import annotations

import os
from pathlib import Path

from vaultd.store.chunks import Chunks
from vaultd.store.contract import IndexStore
from vaultd.store.entries import Entries
from vaultd.store.files import Files
from vaultd.store.integrity import Integrity
from vaultd.store.links import Links
from vaultd.store.meta import Meta
from vaultd.store.opening import connect, sqlite_module, unusable
from vaultd.store.schema import migrate


class Store(Files, Chunks, Entries, Links, Meta, Integrity):
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """Open (creating it if need be) and migrate the index at `path`. Any reason it
        cannot be opened is one `VaultdError` naming the file and the fix (`unusable`)."""
        path = Path(path)
        module = sqlite_module()
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_file() and not os.access(path, os.W_OK):
                    # SQLite would quietly open it read-only and fail at the first write
                    raise PermissionError(13, "not writable by this user", str(path))
            conn = connect(module, path)
        except (OSError, module.DatabaseError) as exc:
            raise unusable(path, exc) from exc
        super().__init__(path, module, conn)
        try:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            migrate(self.conn, module, path)
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, (OSError, module.DatabaseError)):
                raise unusable(path, exc) from exc
            raise  # a newer schema: migrate's own error says what to do

    @classmethod
    def open_as_is(cls, path: Path | str) -> Store:
        """Open an existing index read-only, without migrating it: what doctor inspects must
        not change by being looked at. Raises the sqlite module's DatabaseError on garbage."""
        self = cls.__new__(cls)
        module = sqlite_module()
        path = Path(path)
        super(Store, self).__init__(path, module, connect(module, path, read_only=True))
        return self


def _conforms(store: Store) -> IndexStore:
    """Never called: mypy checks here that a `Store` is an `IndexStore`."""
    return store
