"""Doctor's queries: read-only checks of the index as it is (`vaultd doctor`) — SQLite's own
integrity check, counts, and every way the tables can disagree with each other — and the two
repairs that rebuild a derived table from `chunks`."""

from __future__ import annotations

from vaultd.layout import ARCHIVE_ROOTS
from vaultd.store.connection import Connection
from vaultd.store.rows import FileState, IndexCounts, SkippedState


class Integrity(Connection):
    def counts(self) -> IndexCounts:
        one = self.conn.execute
        return {
            "notes": one("SELECT count(*) FROM files").fetchone()[0],
            "entries": one("SELECT count(*) FROM entries").fetchone()[0],
            "chunks": one("SELECT count(*) FROM chunks").fetchone()[0],
            "vectors": (one("SELECT count(*) FROM chunk_vectors").fetchone()[0]
                        if self.has_vector_table() else 0),
            "skipped": one("SELECT count(*) FROM skipped").fetchone()[0],
            "archived_notes": sum(one("SELECT count(*) FROM files WHERE path GLOB ?",
                                      (folder + "/*",)).fetchone()[0]
                                  for folder in ARCHIVE_ROOTS),
        }

    def integrity_problems(self) -> list[str]:
        """SQLite's own check of every table and index, FTS5's inverted index included."""
        rows = [str(r[0]) for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def files_only(self) -> dict[str, FileState]:
        """path → (size, mtime_ns, hash) of indexed files (not skipped ones)."""
        return {p: FileState(s, m, h) for p, s, m, h in
                self.conn.execute("SELECT path, size, mtime_ns, hash FROM files")}

    def skipped_states(self) -> dict[str, SkippedState]:
        return {p: SkippedState(s, m) for p, s, m in
                self.conn.execute("SELECT path, size, mtime_ns FROM skipped")}

    def orphan_paths(self) -> list[str]:
        """Paths with entries or chunks but no `files` row (a half-removed file)."""
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM chunks UNION SELECT path FROM entries "
            "EXCEPT SELECT path FROM files ORDER BY 1")]

    def paths_without_vectors(self) -> list[str]:
        """Chunks whose vector is cached but missing from the vec0 table (a pending chunk,
        whose hash has no cached vector yet, is not missing anything)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT path FROM chunks c WHERE rowid NOT IN "
            "(SELECT rowid FROM chunk_vectors) AND EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY 1")]

    def vectors_without_chunks(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM chunk_vectors WHERE rowid NOT IN (SELECT rowid FROM chunks)"
        ).fetchone()[0])

    def paths_without_embeddings(self) -> list[str]:
        """Chunks with a vec0 vector whose content hash has no cached vector (filtered searches
        would drop them). A chunk with neither is pending, not broken (`pending_vectors`)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT path FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors) ORDER BY 1")]

    def chunks_without_embeddings(self) -> int:
        """How many chunks have a vec0 vector but no cached one (damage, not pending work)."""
        return int(self.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors)").fetchone()[0])

    def paths_out_of_fts(self) -> list[str]:
        """Chunks with no full-text row, or one whose heading or text differs."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT c.path FROM chunks c LEFT JOIN chunk_fts f ON f.rowid = c.rowid "
            "WHERE f.rowid IS NULL OR f.text IS NOT c.text OR f.heading IS NOT c.heading "
            "ORDER BY 1")]

    def fts_without_chunks(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM chunk_fts WHERE rowid NOT IN (SELECT rowid FROM chunks)"
        ).fetchone()[0])

    # -- repairs
    def rebuild_fts(self) -> None:
        """Refill the full-text table from `chunks` (call inside `transaction()`)."""
        self.conn.execute("DELETE FROM chunk_fts")
        self.conn.execute("INSERT INTO chunk_fts(rowid, heading, text) "
                          "SELECT rowid, heading, text FROM chunks")

    def rebuild_vectors(self) -> None:
        """Refill the vec0 table from `chunks` and the embedding cache (inside `transaction()`);
        a chunk whose vector is not cached is left out: its file must be indexed again."""
        self._bump_vectors_generation()  # in-memory copies of the vectors must reload
        self.conn.execute("DELETE FROM chunk_vectors")
        self.conn.execute("INSERT INTO chunk_vectors(rowid, archived, embedding) "
                          "SELECT c.rowid, c.archived, e.vector FROM chunks c "
                          "JOIN embeddings e ON e.hash = c.hash")
