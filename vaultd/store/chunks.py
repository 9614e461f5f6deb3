"""Chunks read back: KNN over the vectors, BM25 over the full text, the rows a search shows,
and the feeds of the in-memory vector and BM25 copies (vaultd.vectors, vaultd.bm25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from vaultd.store.connection import Connection
from vaultd.store.files import BATCH
from vaultd.store.rows import (
    ChunkKeys,
    ChunkPlace,
    ChunkRow,
    ChunkText,
    Filters,
    FtsTotals,
    Hit,
    Occurrence,
    TermCount,
    first_twins,
)
from vaultd.store.schema import FTS_COLUMNS
from vaultd.store.where import filter_sql


class Chunks(Connection):
    # -- search
    def knn(self, vector: bytes, k: int, filters: Filters) -> list[Hit]:
        """(chunk rowid, cosine similarity), best first.

        Without filters other than the archive rule, sqlite-vec's KNN over the `archived`
        partition; with filters, an exact scan over the filtered chunks, so filtering never
        starves the result list. Equal scores rank by path and line (not row order, which a
        rebuild changes).
        """
        if not self.has_vector_table():
            return []  # never indexed: nothing to find (status and search say so)
        if filters.only_archive_rule:
            if filters.include_archive:
                rows = self.conn.execute(
                    "SELECT rowid, distance FROM chunk_vectors WHERE embedding MATCH ? "
                    "AND k = ?", (vector, 2 * k)).fetchall()
            else:
                rows = self.conn.execute(
                    "SELECT rowid, distance FROM chunk_vectors WHERE embedding MATCH ? "
                    "AND k = ? AND archived = 0", (vector, 2 * k)).fetchall()
            # vec0 lists equal distances in row order, which a rebuild changes: rank them by
            # path and line, from twice the rows asked for; a tie reaching past those, by the
            # exact scan below
            place = self.chunk_positions([r for r, _ in rows])
            rows = sorted(rows, key=lambda h: (h[1], *place.get(h[0], ("", 0))))
            if not (len(rows) == 2 * k and rows[k - 1][1] == rows[-1][1]):
                return [Hit(int(r), 1.0 - float(d)) for r, d in rows[:k]]
        where, args = filter_sql(filters)
        rows = self.conn.execute(
            "SELECT c.rowid, vec_distance_cosine(e.vector, ?) AS d FROM chunks c "
            f"JOIN embeddings e ON e.hash = c.hash WHERE {where} "
            "ORDER BY d, c.path, c.start_line LIMIT ?",
            [vector, *args, k]).fetchall()
        return [Hit(int(r), 1.0 - float(d)) for r, d in rows]

    def chunk_positions(self, rowids: list[int]) -> dict[int, ChunkPlace]:
        """rowid → (path, start line): what equal scores are ranked by."""
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        return {r: ChunkPlace(p, line) for r, p, line in self.conn.execute(
            f"SELECT rowid, path, start_line FROM chunks WHERE rowid IN ({marks})", rowids)}

    def merged_facts(self, rowids: list[int]) -> dict[int, int | None]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        return first_twins(self.conn.execute(
            "SELECT c.rowid, e.rowid, e.path, e.start_line FROM chunks c "
            "LEFT JOIN chunks e ON e.hash = c.hash AND e.rowid <> c.rowid "
            "AND e.type = 'episodic' AND e.archived = 0 "
            f"WHERE c.rowid IN ({marks}) AND c.type <> 'episodic' AND c.archived = 0 "
            "AND c.heading GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'", rowids))

    def fts(self, match: str, k: int, filters: Filters,
            weights: tuple[float, float] = (1.0, 1.0)) -> list[Hit]:
        """(chunk rowid, BM25 score ≥ 0, higher is better), best first; equal scores by path
        and line.

        Without filters other than the archive rule, FTS5 alone ranks (joining `chunks` for
        the archive flag adds a row lookup for every row FTS5 matches); archived rows are
        dropped afterwards from twice the rows asked for, falling back to the join only when
        that leaves too few.
        """
        bm25 = f"bm25(chunk_fts, {float(weights[0])}, {float(weights[1])})"
        if filters.only_archive_rule:
            fetched = self.conn.execute(
                f"SELECT rowid, {bm25} AS s FROM chunk_fts WHERE chunk_fts MATCH ? "
                "ORDER BY s LIMIT ?", (match, 2 * k)).fetchall()
            marks = ",".join("?" * len(fetched))
            info = {r: (a, p, line) for r, a, p, line in self.conn.execute(
                f"SELECT rowid, archived, path, start_line FROM chunks WHERE rowid IN ({marks})",
                [r for r, _ in fetched])} if fetched else {}
            kept = [(r, s) for r, s in fetched
                    if r in info and (filters.include_archive or not info[r][0])]
            kept.sort(key=lambda h: (h[1], info[h[0]][1], info[h[0]][2]))
            complete = len(fetched) < 2 * k  # everything that matched is here
            if complete or (len(kept) >= k and kept[k - 1][1] != fetched[-1][1]):
                return [Hit(int(r), -float(s)) for r, s in kept[:k]]
            # else: too many archived, or a tie reaching past the rows fetched
        where, args = filter_sql(filters)
        rows = self.conn.execute(
            f"SELECT f.rowid, {bm25} AS s FROM chunk_fts f JOIN chunks c ON c.rowid = f.rowid "
            f"WHERE chunk_fts MATCH ? AND {where} ORDER BY s, c.path, c.start_line LIMIT ?",
            [match, *args, k]).fetchall()
        return [Hit(int(r), -float(s)) for r, s in rows]

    def chunks_by_rowid(self, rowids: Iterable[int]) -> dict[int, ChunkRow]:
        ids = list(rowids)
        out: dict[int, ChunkRow] = {}
        for start in range(0, len(ids), BATCH):
            part = ids[start:start + BATCH]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                    "SELECT rowid, id, path, entry_id, type, heading, start_line, end_line, text, "
                    f"hash, date FROM chunks WHERE rowid IN ({marks})", part):
                out[row[0]] = ChunkRow(*row)
        return out

    def vectors_for(self, rowids: Iterable[int]) -> dict[int, bytes]:
        ids = list(rowids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return dict(self.conn.execute(
            f"SELECT c.rowid, e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash "
            f"WHERE c.rowid IN ({marks})", ids).fetchall())

    # -- the in-memory vector and BM25 copies
    def chunk_keys(self, embedded_only: bool = True) -> ChunkKeys:
        """Rowid, archived flag and content hash of every chunk that has a vector (a pending
        one has none yet) — or of every chunk, with `embedded_only=False` (what keyword
        search covers: a chunk is in FTS5 before it has a vector) — in rowid order."""
        rows = self.conn.execute(
            "SELECT c.rowid, c.archived, c.hash FROM chunks c WHERE EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY c.rowid" if embedded_only
            else "SELECT rowid, archived, hash FROM chunks ORDER BY rowid").fetchall()
        return ChunkKeys([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    def fts_occurrences(self) -> Iterator[Occurrence]:
        """(term, chunk rowid) for every occurrence of every term of the FTS5 index, ordered
        by term then rowid (FTS5's own order: no sort, no GROUP BY, whose sorter would leave
        tens of MB resident): FTS5's own tokens (porter, unicode61), read from its `instance`
        vocabulary."""
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_fts_instance "
                          "USING fts5vocab(main, 'chunk_fts', 'instance')")
        yield from self.conn.execute("SELECT term, doc FROM temp.chunk_fts_instance")

    def fts_tokens(self, rows: Sequence[tuple[int, str, str]]) -> list[TermCount]:
        """(term, key, occurrences) for texts given as (key, heading, text), tokenized as the
        index does it, in a scratch in-memory FTS5 table: a query's terms, or new chunks."""
        with self._scratch_lock:
            c = self._scratch if self._scratch is not None else self._open_scratch()
            c.execute("BEGIN")
            try:
                c.executemany("INSERT INTO scratch(rowid, heading, text) VALUES (?, ?, ?)", rows)
                return [TermCount(*row) for row in c.execute(
                    "SELECT term, doc, count(*) FROM scratch_instance "
                    "GROUP BY term, doc ORDER BY term, doc")]
            finally:
                c.execute("ROLLBACK")

    def _open_scratch(self) -> sqlite3.Connection:
        c: sqlite3.Connection = self.module.connect(":memory:", isolation_level=None,
                                                    check_same_thread=False)
        c.execute(f"CREATE VIRTUAL TABLE scratch USING fts5({FTS_COLUMNS})")
        c.execute("CREATE VIRTUAL TABLE scratch_instance USING fts5vocab(scratch, instance)")
        self._scratch = c
        return c

    def fts_totals(self) -> FtsTotals:
        """(rows, tokens) of the FTS5 index, the totals its BM25 uses (for a self-check)."""
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_fts_row "
                          "USING fts5vocab(main, 'chunk_fts', 'row')")
        rows = self.conn.execute("SELECT count(*) FROM chunk_fts").fetchone()[0]
        tokens = self.conn.execute("SELECT coalesce(sum(cnt), 0) FROM temp.chunk_fts_row"
                                   ).fetchone()[0]
        return FtsTotals(int(rows), int(tokens))

    def chunk_texts(self, rowids: list[int]) -> list[ChunkText]:
        """(rowid, heading, text) of the given chunks, as the FTS5 table holds them."""
        out: list[ChunkText] = []
        for start in range(0, len(rowids), BATCH):
            part = rowids[start:start + BATCH]
            marks = ",".join("?" * len(part))
            out.extend(ChunkText(*row) for row in self.conn.execute(
                f"SELECT rowid, heading, text FROM chunks WHERE rowid IN ({marks})", part))
        return out
