"""What the index knows about itself — its schema version, the components it runs on, the
embedding model its vectors come from — and the searches' recalls, which feed promotion."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vaultd.store.connection import Connection
from vaultd.store.rows import RecallKey
from vaultd.store.schema import MIGRATIONS


class Meta(Connection):
    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def latest_schema_version(self) -> int:
        return len(MIGRATIONS)

    def versions(self) -> dict[str, str]:
        """The components this backend runs on and their versions, for status."""
        sqlite_version, vec_version = self.conn.execute(
            "SELECT sqlite_version(), vec_version()").fetchone()
        return {"sqlite_module": self.module.__name__, "sqlite": sqlite_version,
                "sqlite_vec": vec_version}

    # -- the embedding model the vectors come from
    def model_identity(self) -> dict[str, Any] | None:
        raw = self.get_meta("model")
        return json.loads(raw) if raw else None

    def ensure_model(self, identity: dict[str, Any]) -> bool:
        """Make the index match this model. True when it had to be emptied for a rebuild."""
        current = self.model_identity()
        if current == identity and self.has_vector_table():
            return False
        dims = int(identity["dims"])
        with self.transaction():
            for table in ("files", "entries", "chunks", "chunk_tags", "embeddings", "skipped",
                          "chunk_fts"):
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("DROP TABLE IF EXISTS chunk_vectors")
            self.conn.execute(
                "CREATE VIRTUAL TABLE chunk_vectors USING vec0("
                f"archived integer partition key, embedding float[{dims}] distance_metric=cosine)")
            self.set_meta("model", json.dumps(identity, sort_keys=True))
            self._bump_vectors_generation()
        return current is not None

    # -- recalls: which entries searches brought back, and for how many queries
    def recall_counts(self) -> dict[RecallKey, int]:
        """(path, entry key) → on how many different queries it was in a search's top 5."""
        return {RecallKey(p, k): n for p, k, n in self.conn.execute(
            "SELECT path, entry_key, count(*) FROM recalls GROUP BY path, entry_key")}

    def add_recalls(self, keys: Iterable[tuple[str, str]], query: str, now: float) -> bool:
        """Record that these (path, entry key)s were recalled for `query`. False when the
        index was too busy to take it (a long batch holds the write lock)."""
        try:
            with self.transaction():
                self.conn.executemany(
                    "INSERT OR IGNORE INTO recalls(path, entry_key, query, at) "
                    "VALUES (?, ?, ?, ?)", [(p, k, query, now) for p, k in keys])
        except self.module.OperationalError:
            return False
        return True
