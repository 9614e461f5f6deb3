"""`PgStore`: the PostgreSQL + pgvector backend of the store contract
(`vaultd.store.contract.IndexStore`), chosen by `[index] url = "postgresql://…"` or
`VAULTD_INDEX_URL` (vaultd.store.backend). Imported only then: psycopg stays out of every
process that uses the SQLite default.

Split by aggregate like the SQLite store:

- `pool`: the connection pool shared per URL, transactions, snapshots, meta;
- `schema`: numbered migrations (`vaultd_schema` holds the number applied);
- `terms`: the full text as vaultd's own tokens, and FTS5's BM25 over them;
- `files`, `chunks`, `entries`, `links`, `meta`, `integrity`: the aggregates.

What is stored where, the full-text choice, the HNSW threshold and the pool:
docs/architecture.md, "The PostgreSQL backend"."""

from __future__ import annotations

from pathlib import Path

import psycopg

from vaultd.store.contract import IndexStore
from vaultd.store.postgres.entries import PgEntries
from vaultd.store.postgres.integrity import PgIntegrity
from vaultd.store.postgres.links import PgLinks
from vaultd.store.postgres.meta import PgMeta
from vaultd.store.postgres.pool import (
    acquire_pool,
    connect,
    fault,
    release_pool,
    unreachable,
)
from vaultd.store.postgres.schema import migrate
from vaultd.store.postgres.terms import Tokenizer
from vaultd.store.shown import shown


class PgStore(PgIntegrity, PgEntries, PgLinks, PgMeta):
    def __init__(self, url: str, path: Path | str, *, migrating: bool = True) -> None:
        """Open the index at `url` and migrate it (unless `migrating` is off: doctor and the
        BM25 copy's loader look without changing). `path` is the vault's local index path,
        which names this index in the process (vaultd.store.backend). Any reason it cannot be
        used is one `VaultdError` naming the server (the password left out)."""
        with connect(url) as conn:
            if migrating:
                try:
                    migrate(conn, shown(url))
                except psycopg.Error as exc:  # (a read-only database refuses the migration)
                    raise (fault(url, exc) or unreachable(url, exc)) from exc
        super().__init__(url, Path(path), acquire_pool(url))
        self.tokenizer = Tokenizer()
        self._wrote_vectors = False

    @classmethod
    def open_as_is(cls, url: str, path: Path | str) -> PgStore:
        return cls(url, path, migrating=False)

    def close(self) -> None:
        self.tokenizer.close()
        super().close()


__all__ = ["PgStore", "release_pool"]


def _conforms(store: PgStore) -> IndexStore:
    """Never called: mypy checks here that a `PgStore` is an `IndexStore`."""
    return store
