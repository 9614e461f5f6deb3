"""Chunks read back from PostgreSQL: KNN over pgvector, BM25 over vaultd's own terms
(`vaultd.store.postgres.terms`), the rows a search shows, and the in-memory copies' feeds."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from vaultd.store.postgres.files import HNSW_ROWS, PgFiles, as_vector
from vaultd.store.postgres.terms import Totals, bm25, match_phrases, phrase_counts
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
from vaultd.store.where import Dialect, filter_sql

_ = HNSW_ROWS  # (the threshold lives with the writes that cross it)


def glob_regex(glob: str) -> str:
    """SQLite's GLOB (case-sensitive; `*` any run, `?` one character, `[...]` a class, `[^...]`
    its complement) as an anchored POSIX regular expression."""
    out, i = ["^"], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and (end := glob.find("]", i + 2)) != -1:
            out.append("[" + glob[i + 1:end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


# the filters as on SQLite, a path glob matched as the regular expression it stands for
DIALECT = Dialect("%s", "~", glob_regex)


class PgChunks(PgFiles):
    _pgvector: tuple[int, ...] | None = None  # the extension's (major, minor), once read
    # -- search
    def knn(self, vector: bytes, k: int, filters: Filters) -> list[Hit]:
        """(chunk rowid, cosine similarity), best first; equal scores by path and line.

        Without filters other than the archive rule, pgvector orders by cosine distance (the
        HNSW index once the table has one, with an iterative scan so the archive rule never
        starves it; an exact scan before); with filters, an exact scan over the filtered
        chunks. Ties reaching past the rows fetched fall to the exact scan, as on SQLite."""
        if k <= 0 or not self.has_vector_table():
            return []
        query = as_vector(vector)
        with self.read_snapshot(), self._conn() as conn:
            if filters.only_archive_rule:
                conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * k))}")
                if self._iterative_scan():
                    conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
                rows = conn.execute(
                    "SELECT rowid, embedding <=> %s AS d FROM chunk_vectors "
                    f"{'' if filters.include_archive else 'WHERE archived = 0'} "
                    "ORDER BY d LIMIT %s", (query, 2 * k)).fetchall()
                place = self.chunk_positions([r for r, _ in rows])
                rows = sorted(rows, key=lambda h: (h[1], *place.get(h[0], ("", 0))))
                tie = len(rows) == 2 * k and rows[k - 1][1] == rows[-1][1]
                # fewer than asked: all there is, unless an HNSW scan without iterative scans
                # (pgvector < 0.8) ran dry on archived rows
                starved = len(rows) < 2 * k and not self._iterative_scan() and conn.execute(
                    "SELECT to_regclass('chunk_vectors_hnsw')").fetchone() != (None,)
                if not (tie or starved):
                    return [Hit(int(r), 1.0 - float(d)) for r, d in rows[:k]]
            where, args = filter_sql(filters, DIALECT)
            # `+ 0` keeps the planner off the HNSW index: this scan must be exact
            rows = conn.execute(
                "SELECT c.rowid, (v.embedding <=> %s) + 0 AS d FROM chunks c "
                f"JOIN chunk_vectors v ON v.rowid = c.rowid WHERE {where} "
                "ORDER BY d, c.path, c.start_line LIMIT %s", [query, *args, k]).fetchall()
        return [Hit(int(r), 1.0 - float(d)) for r, d in rows]

    def _iterative_scan(self) -> bool:
        """Whether pgvector can continue an HNSW scan that filtering left short (0.8+)."""
        if self._pgvector is None:
            row = self._one("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            self._pgvector = tuple(int(p) for p in str(row[0]).split(".")[:2]) if row else (0,)
        return self._pgvector >= (0, 8)

    def chunk_positions(self, rowids: list[int]) -> dict[int, ChunkPlace]:
        if not rowids:
            return {}
        return {int(r): ChunkPlace(p, line) for r, p, line in self._rows(
            "SELECT rowid, path, start_line FROM chunks WHERE rowid = ANY(%s)", (rowids,))}

    def merged_facts(self, rowids: list[int]) -> dict[int, int | None]:
        if not rowids:
            return {}
        return first_twins(self._rows(
            "SELECT c.rowid, e.rowid, e.path, e.start_line FROM chunks c "
            "LEFT JOIN chunks e ON e.hash = c.hash AND e.rowid <> c.rowid "
            "AND e.type = 'episodic' AND e.archived = 0 "
            "WHERE c.rowid = ANY(%s) AND c.type <> 'episodic' AND c.archived = 0 "
            "AND c.heading ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'", (rowids,)))

    def fts(self, match: str, k: int, filters: Filters,
            weights: tuple[float, float] = (1.0, 1.0)) -> list[Hit]:
        """(chunk rowid, BM25 score ≥ 0, higher is better), best first, equal scores by path
        and line: FTS5's ranking of the OR of `match`'s phrases, over the stored terms."""
        phrases = [self.tokenizer.phrase(p) for p in match_phrases(match)]
        if k <= 0:
            return []
        with self.read_snapshot():
            rows, tokens = self._one("SELECT count(*), coalesce(sum(tokens), 0) FROM chunks"
                                     ) or (0, 0)
            if not rows:
                return []
            postings = [self._postings(p) for p in phrases]
            matched = sorted({r for hits in postings for r in hits})
            if not matched:
                return []
            where, args = filter_sql(filters, DIALECT)
            kept = {int(r): (int(n), p, line) for r, n, p, line in self._rows(
                "SELECT c.rowid, c.tokens, c.path, c.start_line FROM chunks c "
                f"WHERE c.rowid = ANY(%s) AND {where}", [matched, *args])}
        scores = bm25(Totals(int(rows), int(tokens)), postings,
                      {r: n for r, (n, _, _) in kept.items()}, weights)
        best = sorted(kept, key=lambda r: (-scores[r], kept[r][1], kept[r][2]))[:k]
        return [Hit(r, scores[r]) for r in best]

    def _postings(self, phrase: list[str]) -> dict[int, tuple[int, int]]:
        """rowid → (occurrences in heading, in text) of a phrase of the index's tokens."""
        if not phrase:
            return {}
        if len(phrase) == 1:
            return {int(r): (int(h), int(x)) for r, h, x in self._rows(
                "SELECT chunk, heading_n, text_n FROM chunk_terms WHERE term = %s", (phrase[0],))}
        texts = [(int(r), h, t) for r, h, t in self._rows(
            "SELECT rowid, heading, text FROM chunks WHERE rowid IN (SELECT chunk FROM "
            "chunk_terms WHERE term = ANY(%s) GROUP BY chunk HAVING count(*) = %s)",
            (list(set(phrase)), len(set(phrase))))]
        return phrase_counts(self.tokenizer, phrase, texts)

    def chunks_by_rowid(self, rowids: Iterable[int]) -> dict[int, ChunkRow]:
        ids = list(rowids)
        if not ids:
            return {}
        return {int(row[0]): ChunkRow(int(row[0]), *row[1:]) for row in self._rows(
            "SELECT rowid, id, path, entry_id, type, heading, start_line, end_line, text, "
            "hash, date FROM chunks WHERE rowid = ANY(%s)", (ids,))}

    def vectors_for(self, rowids: Iterable[int]) -> dict[int, bytes]:
        ids = list(rowids)
        if not ids:
            return {}
        return {int(r): bytes(v) for r, v in self._rows(
            "SELECT c.rowid, e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash "
            "WHERE c.rowid = ANY(%s)", (ids,))}

    # -- the in-memory vector and BM25 copies
    def chunk_keys(self, embedded_only: bool = True) -> ChunkKeys:
        rows = self._rows(
            "SELECT c.rowid, c.archived, c.hash FROM chunks c WHERE EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY c.rowid" if embedded_only
            else "SELECT rowid, archived, hash FROM chunks ORDER BY rowid")
        return ChunkKeys([int(r[0]) for r in rows], [int(r[1]) for r in rows],
                         [r[2] for r in rows])

    def fts_occurrences(self) -> Iterator[Occurrence]:
        """(term, chunk rowid) for every occurrence of every term, by term (bytes, as FTS5)
        then rowid, streamed."""
        for term, chunk, n in self._stream(
                "SELECT term, chunk, heading_n + text_n FROM chunk_terms ORDER BY term, chunk"):
            pair = (term, int(chunk))
            for _ in range(n):
                yield pair

    def fts_tokens(self, rows: Sequence[tuple[int, str, str]]) -> list[TermCount]:
        return self.tokenizer.term_counts(rows)

    def fts_totals(self) -> FtsTotals:
        row = self._one("SELECT count(*), coalesce(sum(tokens), 0) FROM chunks") or (0, 0)
        return FtsTotals(int(row[0]), int(row[1]))

    def chunk_texts(self, rowids: list[int]) -> list[ChunkText]:
        if not rowids:
            return []
        return [ChunkText(int(r), h, t) for r, h, t in self._rows(
            "SELECT rowid, heading, text FROM chunks WHERE rowid = ANY(%s)", (rowids,))]
