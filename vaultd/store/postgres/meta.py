"""What the PostgreSQL index knows about itself — schema version, server and extension
versions, the embedding model — and the searches' recalls."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import psycopg

from vaultd.errors import IndexUnavailableError
from vaultd.store.postgres.pool import PgConnection
from vaultd.store.postgres.schema import MIGRATIONS, schema_version
from vaultd.store.rows import RecallKey


class PgMeta(PgConnection):
    @property
    def schema_version(self) -> int:
        with self._conn() as conn:
            return schema_version(conn)

    @property
    def latest_schema_version(self) -> int:
        return len(MIGRATIONS)

    def versions(self) -> dict[str, str]:
        row = self._one("SELECT current_setting('server_version'), "
                        "(SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        server, vector = row if row else ("?", "?")
        return {"postgres": str(server), "pgvector": str(vector),
                "psycopg": psycopg.__version__}

    def model_identity(self) -> dict[str, Any] | None:
        raw = self.get_meta("model")
        return json.loads(raw) if raw else None

    def ensure_model(self, identity: dict[str, Any]) -> bool:
        current = self.model_identity()
        if current == identity and self.has_vector_table():
            return False
        dims = int(identity["dims"])
        with self.transaction():
            for table in ("files", "entries", "chunks", "chunk_tags", "embeddings", "skipped",
                          "chunk_terms"):
                self._run(f"DELETE FROM {table}")
            self._run("DROP TABLE IF EXISTS chunk_vectors")
            self._run(f"CREATE TABLE chunk_vectors (rowid bigint PRIMARY KEY, "
                      f"archived smallint NOT NULL, embedding vector({dims}) NOT NULL)")
            self.set_meta("model", json.dumps(identity, sort_keys=True))
            self._bump_vectors_generation()
        self._has_vectors = True
        return current is not None

    def recall_counts(self) -> dict[RecallKey, int]:
        return {RecallKey(p, k): int(n) for p, k, n in self._rows(
            "SELECT path, entry_key, count(*) FROM recalls GROUP BY path, entry_key")}

    def add_recalls(self, keys: Iterable[tuple[str, str]], query: str, now: float) -> bool:
        """False, recording nothing, when the write lock stayed taken past WAIT_SECONDS."""
        try:
            with self.transaction():
                self._many("INSERT INTO recalls(path, entry_key, query, at) "
                           "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                           [(p, k, query, now) for p, k in keys])
        except (psycopg.OperationalError, IndexUnavailableError):  # (the server down or full)
            return False
        return True
