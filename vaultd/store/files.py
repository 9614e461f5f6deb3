"""Files and their chunks, as the indexer writes them: a file's record, entries, chunks,
full-text rows and vectors replaced together; the embedding cache keyed by content hash; and
the chunks still waiting for a vector (the index's second phase)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from vaultd.layout import is_archived
from vaultd.store.connection import Connection
from vaultd.store.rows import (
    ChunkRecord,
    EntryRecord,
    FileRecord,
    FileState,
    PendingChunk,
    SkippedFile,
)

# rows named in one `IN (...)` list: well under SQLite's limit on bound parameters
BATCH = 500


class Files(Connection):
    def file_states(self) -> dict[str, FileState]:
        """path → (size, mtime_ns, content hash) for every indexed or skipped file."""
        rows = self.conn.execute("SELECT path, size, mtime_ns, hash FROM files").fetchall()
        states = {p: FileState(s, m, h) for p, s, m, h in rows}
        for p, s, m in self.conn.execute("SELECT path, size, mtime_ns FROM skipped"):
            states[p] = FileState(s, m, "")
        return states

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                          (size, mtime_ns, path))

    def skip_file(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        self.delete_file(path)
        self.conn.execute("INSERT OR REPLACE INTO skipped(path, size, mtime_ns, reason) "
                          "VALUES (?, ?, ?, ?)", (path, size, mtime_ns, reason))

    def skipped(self) -> list[SkippedFile]:
        return [SkippedFile(*row) for row in self.conn.execute(
            "SELECT path, reason FROM skipped ORDER BY path")]

    def delete_file(self, path: str) -> None:
        self._bump_vectors_generation()
        rowids = [r[0] for r in self.conn.execute("SELECT rowid FROM chunks WHERE path = ?",
                                                  (path,))]
        for start in range(0, len(rowids), BATCH):
            part = rowids[start:start + BATCH]
            marks = ",".join("?" * len(part))
            self.conn.execute(f"DELETE FROM chunk_vectors WHERE rowid IN ({marks})", part)
            self.conn.execute(f"DELETE FROM chunk_fts WHERE rowid IN ({marks})", part)
            self.conn.execute(f"DELETE FROM chunk_tags WHERE chunk IN ({marks})", part)
        self.conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM entries WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM files WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM skipped WHERE path = ?", (path,))

    def write_file(self, record: FileRecord, entries: Iterable[EntryRecord],
                   chunks: Iterable[ChunkRecord], vectors: dict[str, bytes]) -> None:
        """Replace everything indexed for `record.path`. `vectors` maps chunk hash → float32 blob.

        A chunk whose hash is not in `vectors` is written without one: it is in the full-text
        index at once and *pending* (`pending_vectors`) until `add_vectors` brings its vector.
        A chunk has a `chunk_vectors` row exactly when its hash has a cached vector.

        Call inside `transaction()`.
        """
        self.delete_file(record.path)
        c = self.conn
        c.execute(
            "INSERT INTO files(path, size, mtime_ns, hash, type, title, tags, created, "
            "frontmatter, is_daily, warnings, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.path, record.size, record.mtime_ns, record.hash, record.type, record.title,
             json.dumps(list(record.tags)), record.created,
             json.dumps(record.frontmatter, sort_keys=True), int(record.is_daily),
             json.dumps(list(record.warnings)), time.time()))
        c.executemany(
            "INSERT OR REPLACE INTO entries(id, path, ordinal, heading, start_line, end_line, "
            "date, tags, key, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(e.id, record.path, e.ordinal, e.heading, e.start_line, e.end_line, e.date,
              json.dumps(list(e.tags)), e.key, e.hash) for e in entries])
        archived = int(is_archived(record.path))
        for ch in chunks:
            cur = c.execute(
                "INSERT INTO chunks(id, path, entry_id, type, heading, start_line, end_line, "
                "text, hash, date, archived, context) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (ch.id, record.path, ch.entry_id, record.type, ch.heading, ch.start_line,
                 ch.end_line, ch.text, ch.hash, ch.date, archived, ch.context))
            rowid = cur.lastrowid
            blob = vectors.get(ch.hash)
            if blob is not None:
                c.execute("INSERT OR IGNORE INTO embeddings(hash, vector) VALUES (?, ?)",
                          (ch.hash, blob))
                c.execute("INSERT INTO chunk_vectors(rowid, archived, embedding) "
                          "VALUES (?, ?, ?)", (rowid, archived, blob))
            c.execute("INSERT INTO chunk_fts(rowid, heading, text) VALUES (?, ?, ?)",
                      (rowid, ch.heading, ch.text))
            c.executemany("INSERT INTO chunk_tags(chunk, tag) VALUES (?, ?)",
                          [(rowid, t.lower()) for t in ch.tags])

    # -- the embedding cache
    def cached_vectors(self, hashes: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), BATCH):
            part = wanted[start:start + BATCH]
            marks = ",".join("?" * len(part))
            found.update(self.conn.execute(
                f"SELECT hash, vector FROM embeddings WHERE hash IN ({marks})", part).fetchall())
        return found

    def prune_embeddings(self, keep_orphans: int) -> int:
        """Drop cached vectors no chunk uses, beyond the newest `keep_orphans` of them."""
        cur = self.conn.execute(
            "DELETE FROM embeddings WHERE rowid IN (SELECT e.rowid FROM embeddings e "
            "WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = e.hash) "
            "ORDER BY e.rowid DESC LIMIT -1 OFFSET ?)", (keep_orphans,))
        return cur.rowcount

    # -- chunks waiting for their vector (the index's second phase)
    def pending_vectors(self) -> int:
        """How many chunks wait for a vector (their hash has none cached), exactly.

        Counted again only when the vectors generation moved (every write of chunks or vectors
        bumps it), so asking on every search costs one meta read. The generation is read before
        the count: a write landing between the two makes the next call count again."""
        generation = self.vectors_generation()
        cached = self._pending
        if cached is not None and cached[0] == generation:
            return int(cached[1])
        count = int(self.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash)").fetchone()[0])
        self._pending = (generation, count)
        return count

    def pending_chunks(self, limit: int) -> list[PendingChunk]:
        """Up to `limit` distinct chunk contents waiting for a vector, oldest chunk rows first
        (the order files were indexed in)."""
        return [PendingChunk(*row) for row in self.conn.execute(
            "SELECT c.hash, c.heading, c.text, c.context FROM chunks c WHERE c.rowid IN ("
            "SELECT min(rowid) FROM chunks c2 WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c2.hash) GROUP BY c2.hash) "
            "ORDER BY c.rowid LIMIT ?", (limit,))]

    def add_vectors(self, vectors: dict[str, bytes]) -> int:
        """Cache these vectors (chunk hash → float32 blob) and give every chunk with one of
        these hashes its `chunk_vectors` row. Returns how many chunk rows got a vector. Call
        inside `transaction()`; writing the same vectors twice changes nothing."""
        if not vectors:
            return 0
        self._bump_vectors_generation()
        self.conn.executemany("INSERT OR IGNORE INTO embeddings(hash, vector) VALUES (?, ?)",
                              list(vectors.items()))
        hashes = list(vectors)
        filled = 0
        for start in range(0, len(hashes), BATCH):
            part = hashes[start:start + BATCH]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT rowid, archived, hash FROM chunks WHERE hash IN ({marks})",
                part).fetchall()
            rowids = [r for r, _, _ in rows]
            for at in range(0, len(rowids), BATCH):
                some = rowids[at:at + BATCH]
                self.conn.execute(f"DELETE FROM chunk_vectors WHERE rowid IN "
                                  f"({','.join('?' * len(some))})", some)
            self.conn.executemany(
                "INSERT INTO chunk_vectors(rowid, archived, embedding) VALUES (?, ?, ?)",
                [(r, a, vectors[h]) for r, a, h in rows])
            filled += len(rows)
        return filled
