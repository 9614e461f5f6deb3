"""Doctor's read-only checks of the PostgreSQL index — counts, and every way its tables can
disagree — and the two repairs that rebuild a derived table from `chunks`."""

from __future__ import annotations

from vaultd.layout import ARCHIVE_ROOTS
from vaultd.store.postgres.chunks import PgChunks
from vaultd.store.postgres.files import as_vector
from vaultd.store.rows import FileState, IndexCounts, SkippedState

# chunks tokenized at a time by rebuild_fts
_REBUILD_ROWS = 500


class PgIntegrity(PgChunks):
    def _count(self, sql: str, args: tuple[object, ...] = ()) -> int:
        row = self._one(sql, args)
        return int(row[0]) if row else 0

    def counts(self) -> IndexCounts:
        return {
            "notes": self._count("SELECT count(*) FROM files"),
            "entries": self._count("SELECT count(*) FROM entries"),
            "chunks": self._count("SELECT count(*) FROM chunks"),
            "vectors": (self._count("SELECT count(*) FROM chunk_vectors")
                        if self.has_vector_table() else 0),
            "skipped": self._count("SELECT count(*) FROM skipped"),
            "archived_notes": sum(self._count(
                "SELECT count(*) FROM files WHERE starts_with(path, %s)", (folder + "/",))
                for folder in ARCHIVE_ROOTS),
        }

    def integrity_problems(self) -> list[str]:
        """PostgreSQL checks its own pages; what can go wrong here is the derived tables
        disagreeing with `chunks`, which doctor's other checks name path by path."""
        problems = []
        if (n := self.fts_without_chunks()):
            problems.append(f"chunk_terms: {n} chunks' terms without their chunk")
        if (n := len(self.paths_out_of_fts())):
            problems.append(f"chunk_terms: {n} files' terms differ from their chunks")
        return problems

    def files_only(self) -> dict[str, FileState]:
        return {p: FileState(int(s), int(m), h) for p, s, m, h in
                self._rows("SELECT path, size, mtime_ns, hash FROM files")}

    def skipped_states(self) -> dict[str, SkippedState]:
        return {p: SkippedState(int(s), int(m)) for p, s, m in
                self._rows("SELECT path, size, mtime_ns FROM skipped")}

    def orphan_paths(self) -> list[str]:
        return [r[0] for r in self._rows(
            "SELECT path FROM chunks UNION SELECT path FROM entries "
            "EXCEPT SELECT path FROM files ORDER BY 1")]

    def paths_without_vectors(self) -> list[str]:
        if not self.has_vector_table():
            return []
        return [r[0] for r in self._rows(
            "SELECT DISTINCT path FROM chunks c WHERE rowid NOT IN "
            "(SELECT rowid FROM chunk_vectors) AND EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY 1")]

    def vectors_without_chunks(self) -> int:
        if not self.has_vector_table():
            return 0
        return self._count("SELECT count(*) FROM chunk_vectors "
                           "WHERE rowid NOT IN (SELECT rowid FROM chunks)")

    def paths_without_embeddings(self) -> list[str]:
        if not self.has_vector_table():
            return []
        return [r[0] for r in self._rows(
            "SELECT DISTINCT path FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors) ORDER BY 1")]

    def chunks_without_embeddings(self) -> int:
        if not self.has_vector_table():
            return 0
        return self._count(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors)")

    def paths_out_of_fts(self) -> list[str]:
        """Chunks whose stored terms do not add up to their length (a chunk with tokens and
        no terms, or terms of another text)."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT c.path FROM chunks c LEFT JOIN (SELECT chunk, "
            "sum(heading_n + text_n) AS n FROM chunk_terms GROUP BY chunk) t "
            "ON t.chunk = c.rowid WHERE coalesce(t.n, 0) != c.tokens ORDER BY 1")]

    def fts_without_chunks(self) -> int:
        return self._count("SELECT count(DISTINCT chunk) FROM chunk_terms "
                           "WHERE chunk NOT IN (SELECT rowid FROM chunks)")

    # -- repairs
    def rebuild_fts(self) -> None:
        """Tokenize every chunk again into `chunk_terms` (inside `transaction()`)."""
        self._run("DELETE FROM chunk_terms")
        rows = self._rows("SELECT rowid, heading, text FROM chunks ORDER BY rowid")
        for start in range(0, len(rows), _REBUILD_ROWS):
            part = [(int(r), h, t) for r, h, t in rows[start:start + _REBUILD_ROWS]]
            counts = self.tokenizer.column_counts(part)
            lengths: dict[int, int] = {r: 0 for r, _, _ in part}
            for _, r, h, x in counts:
                lengths[r] += h + x
            with self._conn() as conn, conn.cursor() as cur:
                with cur.copy("COPY chunk_terms(term, chunk, heading_n, text_n) FROM STDIN") as cp:
                    for row in counts:
                        cp.write_row(row)
                cur.executemany("UPDATE chunks SET tokens = %s WHERE rowid = %s",
                                [(n, r) for r, n in lengths.items()])

    def rebuild_vectors(self) -> None:
        """Refill `chunk_vectors` from `chunks` and the cache (inside `transaction()`)."""
        self._bump_vectors_generation()
        self._run("DELETE FROM chunk_vectors")
        rows = self._rows("SELECT c.rowid, c.archived, e.vector FROM chunks c "
                          "JOIN embeddings e ON e.hash = c.hash")
        self._many("INSERT INTO chunk_vectors(rowid, archived, embedding) VALUES (%s, %s, %s)",
                   [(r, a, as_vector(bytes(v))) for r, a, v in rows])
        self._wrote_vectors = True
