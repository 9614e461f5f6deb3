"""Files and their chunks as the indexer writes them, on PostgreSQL: a file's record,
entries, chunks, terms and vectors replaced together; the embedding cache keyed by content
hash (float32 blobs, as on SQLite); and the chunks still waiting for a vector."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import numpy as np

from vaultd.layout import is_archived
from vaultd.store.postgres.pool import PgConnection
from vaultd.store.postgres.terms import Tokenizer
from vaultd.store.rows import (
    ChunkRecord,
    EntryRecord,
    FileRecord,
    FileState,
    PendingChunk,
    SkippedFile,
)

# Chunks at which `chunk_vectors` gets its HNSW index; below it KNN is an exact scan
# (docs/architecture.md: the reason, and the index's parameters).
HNSW_ROWS = 20_000
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64


def as_vector(blob: bytes) -> np.ndarray:
    """A float32 blob (the cache's form) as what pgvector's adapter sends."""
    return np.frombuffer(blob, dtype=np.float32)


class PgFiles(PgConnection):
    tokenizer: Tokenizer
    _wrote_vectors: bool

    def file_states(self) -> dict[str, FileState]:
        states = {p: FileState(int(s), int(m), h) for p, s, m, h in
                  self._rows("SELECT path, size, mtime_ns, hash FROM files")}
        for p, s, m in self._rows("SELECT path, size, mtime_ns FROM skipped"):
            states[p] = FileState(int(s), int(m), "")
        return states

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        self._run("UPDATE files SET size = %s, mtime_ns = %s WHERE path = %s",
                  (size, mtime_ns, path))

    def skip_file(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        self.delete_file(path)
        self._run("INSERT INTO skipped(path, size, mtime_ns, reason) VALUES (%s, %s, %s, %s) "
                  "ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
                  "mtime_ns = excluded.mtime_ns, reason = excluded.reason",
                  (path, size, mtime_ns, reason))

    def skipped(self) -> list[SkippedFile]:
        return [SkippedFile(*row) for row in self._rows(
            "SELECT path, reason FROM skipped ORDER BY path")]

    def delete_file(self, path: str) -> None:
        self._bump_vectors_generation()
        gone = "(SELECT rowid FROM chunks WHERE path = %s)"
        if self.has_vector_table():
            self._run(f"DELETE FROM chunk_vectors WHERE rowid IN {gone}", (path,))
        self._run(f"DELETE FROM chunk_terms WHERE chunk IN {gone}", (path,))
        self._run(f"DELETE FROM chunk_tags WHERE chunk IN {gone}", (path,))
        for table in ("chunks", "entries", "files", "skipped"):
            self._run(f"DELETE FROM {table} WHERE path = %s", (path,))

    def write_file(self, record: FileRecord, entries: Iterable[EntryRecord],
                   chunks: Iterable[ChunkRecord], vectors: dict[str, bytes]) -> None:
        """Replace everything indexed for `record.path` (inside `transaction()`); a chunk whose
        hash is not in `vectors` is written pending, as on SQLite.

        The chunks' rowids are drawn first, so that every statement after is sent in one
        pipeline: a file costs two round trips to the server, not one a statement."""
        chunks = list(chunks)
        archived = int(is_archived(record.path))
        counts = self.tokenizer.column_counts(
            [(i, ch.heading, ch.text) for i, ch in enumerate(chunks)])
        lengths = [0] * len(chunks)
        for _, i, h, x in counts:
            lengths[i] += h + x
        self.has_vector_table()  # learnt now: not a query in the middle of the pipeline
        with self._pinned() as conn:
            rowids = [int(r) for r, in conn.execute(
                "SELECT nextval(pg_get_serial_sequence('chunks', 'rowid')) "
                "FROM generate_series(1, %s)", (len(chunks),)).fetchall()] if chunks else []
            with conn.pipeline(), conn.cursor() as cur:
                self.delete_file(record.path)
                cur.execute(
                    "INSERT INTO files(path, size, mtime_ns, hash, type, title, tags, created, "
                    "frontmatter, is_daily, warnings, indexed_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (record.path, record.size, record.mtime_ns, record.hash, record.type,
                     record.title, json.dumps(list(record.tags)), record.created,
                     json.dumps(record.frontmatter, sort_keys=True), int(record.is_daily),
                     json.dumps(list(record.warnings)), time.time()))
                cur.executemany(
                    "INSERT INTO entries(id, path, ordinal, heading, start_line, end_line, "
                    "date, tags, key, hash) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (id) DO UPDATE SET path = excluded.path, "
                    "ordinal = excluded.ordinal, heading = excluded.heading, "
                    "start_line = excluded.start_line, end_line = excluded.end_line, "
                    "date = excluded.date, tags = excluded.tags, key = excluded.key, "
                    "hash = excluded.hash",
                    [(e.id, record.path, e.ordinal, e.heading, e.start_line, e.end_line,
                      e.date, json.dumps(list(e.tags)), e.key, e.hash) for e in entries])
                if not chunks:
                    return
                cur.executemany(
                    "INSERT INTO chunks(rowid, id, path, entry_id, type, heading, start_line, "
                    "end_line, text, hash, date, archived, context, tokens) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(rowids[i], ch.id, record.path, ch.entry_id, record.type, ch.heading,
                      ch.start_line, ch.end_line, ch.text, ch.hash, ch.date, archived,
                      ch.context, lengths[i]) for i, ch in enumerate(chunks)])
                if counts:
                    cur.execute(
                        "INSERT INTO chunk_terms(term, chunk, heading_n, text_n) SELECT * FROM "
                        "unnest(%s::text[], %s::bigint[], %s::integer[], %s::integer[])",
                        ([t for t, _, _, _ in counts], [rowids[i] for _, i, _, _ in counts],
                         [h for _, _, h, _ in counts], [x for _, _, _, x in counts]))
                cur.executemany("INSERT INTO chunk_tags(chunk, tag) VALUES (%s, %s)",
                                [(rowids[i], t.lower()) for i, ch in enumerate(chunks)
                                 for t in ch.tags])
                blobs = [(ch.hash, vectors[ch.hash]) for ch in chunks if ch.hash in vectors]
                if blobs:
                    cur.executemany("INSERT INTO embeddings(hash, vector) VALUES (%s, %s) "
                                    "ON CONFLICT (hash) DO NOTHING", blobs)
                    cur.executemany(
                        "INSERT INTO chunk_vectors(rowid, archived, embedding) "
                        "VALUES (%s, %s, %s)",
                        [(rowids[i], archived, as_vector(vectors[ch.hash]))
                         for i, ch in enumerate(chunks) if ch.hash in vectors])
                    self._wrote_vectors = True

    # -- the embedding cache
    def cached_vectors(self, hashes: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return {}
        return {h: bytes(v) for h, v in self._rows(
            "SELECT hash, vector FROM embeddings WHERE hash = ANY(%s)", (wanted,))}

    def prune_embeddings(self, keep_orphans: int) -> int:
        return self._run(
            "DELETE FROM embeddings WHERE seq IN (SELECT e.seq FROM embeddings e "
            "WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = e.hash) "
            "ORDER BY e.seq DESC OFFSET %s)", (keep_orphans,))

    # -- chunks waiting for their vector
    def pending_vectors(self) -> int:
        """Counted again only when the vectors generation moved (as on SQLite)."""
        generation = self.vectors_generation()
        cached = self._pending
        if cached is not None and cached[0] == generation:
            return int(cached[1])
        row = self._one("SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                        "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash)")
        count = int(row[0]) if row else 0
        self._pending = (generation, count)
        return count

    def pending_chunks(self, limit: int) -> list[PendingChunk]:
        return [PendingChunk(*row) for row in self._rows(
            "SELECT c.hash, c.heading, c.text, c.context FROM chunks c WHERE c.rowid IN ("
            "SELECT min(rowid) FROM chunks c2 WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c2.hash) GROUP BY c2.hash) "
            "ORDER BY c.rowid LIMIT %s", (limit,))]

    def add_vectors(self, vectors: dict[str, bytes]) -> int:
        """Cache these vectors and give every chunk with one of these hashes its vector row
        (inside `transaction()`; idempotent); how many chunks got one."""
        if not vectors:
            return 0
        self._bump_vectors_generation()
        self._many("INSERT INTO embeddings(hash, vector) VALUES (%s, %s) "
                   "ON CONFLICT (hash) DO NOTHING", list(vectors.items()))
        rows = self._rows("SELECT rowid, archived, hash FROM chunks WHERE hash = ANY(%s)",
                          (list(vectors),))
        self._run("DELETE FROM chunk_vectors WHERE rowid = ANY(%s)", ([r for r, _, _ in rows],))
        self._many("INSERT INTO chunk_vectors(rowid, archived, embedding) VALUES (%s, %s, %s)",
                   [(r, a, as_vector(vectors[h])) for r, a, h in rows])
        self._wrote_vectors = self._wrote_vectors or bool(rows)
        return len(rows)

    def _before_commit(self) -> None:
        """Past HNSW_ROWS vectors, `chunk_vectors` gets its HNSW index (once)."""
        if not getattr(self, "_wrote_vectors", False):
            return
        self._wrote_vectors = False
        if self._one("SELECT to_regclass('chunk_vectors_hnsw')") != (None,):
            return
        row = self._one("SELECT count(*) FROM chunk_vectors")
        if row and int(row[0]) >= HNSW_ROWS:
            self._run(f"CREATE INDEX chunk_vectors_hnsw ON chunk_vectors USING hnsw "
                      f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
                      f"ef_construction = {HNSW_EF_CONSTRUCTION})")

