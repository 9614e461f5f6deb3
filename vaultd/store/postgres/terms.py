"""The full text of the PostgreSQL index: vaultd's own tokens, and FTS5's BM25 over them.

Why not PostgreSQL's `tsvector`: vaultd ranks keyword search with FTS5's BM25 over FTS5's
porter/unicode61 tokens — in SQL on SQLite and in the daemon's in-memory copy
(`vaultd.bm25`), which is fed from the store's occurrences and must tokenize queries as the
index did. `ts_rank` has no IDF and no length normalisation like BM25's, and the `english`
configuration stems and drops stopwords differently, so a `tsvector` index would rank
otherwise and could not feed that copy. So each chunk is tokenized here exactly as FTS5 does
(by an in-memory FTS5 table with the SQLite index's tokenizer) and its terms are stored
(`chunk_terms`: term, chunk, occurrences in heading and in text; `chunks.tokens` its length);
`bm25` scores them with FTS5's formula (docs/architecture.md)."""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from vaultd.errors import VaultdError
from vaultd.store.opening import sqlite_module
from vaultd.store.rows import TermCount
from vaultd.store.schema import FTS_COLUMNS

K1, B = 1.2, 0.75  # FTS5's bm25() constants
_ITEM = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^\s"()]+))\s*')


def match_phrases(match: str) -> list[str]:
    """The phrases of an FTS5 match expression that is an OR of phrases (`"a" OR "b"`, what
    vaultd.search builds), unquoted; anything else of FTS5's syntax is refused by name."""
    phrases: list[str] = []
    at, expect_item = 0, True
    while at < len(match):
        found = _ITEM.match(match, at)
        if found is None or found.end() == at:
            break
        quoted, bare = found.groups()
        if not expect_item and bare == "OR":
            expect_item = True
        elif expect_item and (quoted is not None or bare not in ("AND", "NOT", "NEAR", "OR")):
            if bare is not None and re.search(r"[*^:+]", bare):
                break
            phrases.append(quoted.replace('""', '"') if quoted is not None else bare)
            expect_item = False
        else:
            break
        at = found.end()
    if at < len(match) or expect_item:
        raise VaultdError(f"the PostgreSQL index takes a full-text query that is an OR of "
                          f"quoted terms (as vaultd's search makes), not {match!r}")
    return phrases


class Tokenizer:
    """FTS5's tokenizer (FTS_COLUMNS: porter unicode61, diacritics removed) in an in-memory
    SQLite table: the exact tokens the SQLite index and the BM25 copy use."""

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn: sqlite3.Connection = sqlite_module().connect(
                ":memory:", isolation_level=None, check_same_thread=False)
            conn.execute(f"CREATE VIRTUAL TABLE scratch USING fts5({FTS_COLUMNS})")
            conn.execute("CREATE VIRTUAL TABLE scratch_instance "
                         "USING fts5vocab(scratch, instance)")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _query(self, rows: Sequence[tuple[int, str, str]], sql: str) -> list[tuple[int, ...]]:
        if not rows:
            return []
        with self._lock:
            conn = self._open()
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT INTO scratch(rowid, heading, text) VALUES (?, ?, ?)",
                                 rows)
                return conn.execute(sql).fetchall()
            finally:
                conn.execute("ROLLBACK")

    def term_counts(self, rows: Sequence[tuple[int, str, str]]) -> list[TermCount]:
        """(term, key, occurrences) of texts given as (key, heading, text), by term then key."""
        return [TermCount(str(t), int(d), int(n)) for t, d, n in self._query(
            rows, "SELECT term, doc, count(*) FROM scratch_instance "
                  "GROUP BY term, doc ORDER BY term, doc")]

    def column_counts(self, rows: Sequence[tuple[int, str, str]]
                      ) -> list[tuple[str, int, int, int]]:
        """(term, key, in heading, in text) of texts given as (key, heading, text)."""
        return [(str(t), int(d), int(h), int(x)) for t, d, h, x in self._query(
            rows, "SELECT term, doc, sum(col = 'heading'), sum(col = 'text') "
                  "FROM scratch_instance GROUP BY term, doc")]

    def instances(self, rows: Sequence[tuple[int, str, str]]
                  ) -> list[tuple[str, int, str, int]]:
        """(term, key, column, offset) of every token of texts given as (key, heading, text)."""
        return [(str(t), int(d), str(c), int(o)) for t, d, c, o in self._query(
            rows, "SELECT term, doc, col, offset FROM scratch_instance")]

    def phrase(self, text: str) -> list[str]:
        """A query phrase as the index's tokens, in order."""
        found = self.instances([(1, "", text)])
        return [term for term, _, _, _ in sorted(found, key=lambda i: i[3])]


def phrase_counts(tokenizer: Tokenizer, phrase: list[str],
                  texts: Sequence[tuple[int, str, str]]) -> dict[int, tuple[int, int]]:
    """key → (occurrences of the phrase in heading, in text), for texts given as (key,
    heading, text): where its tokens stand one after another, as FTS5 matches a phrase."""
    where: dict[tuple[int, str], dict[int, str]] = {}
    for term, key, column, offset in tokenizer.instances(texts):
        where.setdefault((key, column), {})[offset] = term
    counts: dict[int, list[int]] = {}
    for (key, column), terms in where.items():
        n = sum(1 for start in terms
                if all(terms.get(start + i) == t for i, t in enumerate(phrase)))
        if n:
            counts.setdefault(key, [0, 0])[0 if column == "heading" else 1] += n
    return {key: (h, x) for key, (h, x) in counts.items()}


@dataclass(frozen=True)
class Totals:
    rows: int
    tokens: int


def bm25(totals: Totals, postings: list[dict[int, tuple[int, int]]], lengths: dict[int, int],
         weights: tuple[float, float]) -> dict[int, float]:
    """rowid → FTS5's bm25() (negated: higher is better) for an OR of phrases, each given as
    rowid → (occurrences in heading, in text), over the rows in `lengths` (their tokens).
    FTS5's formula and order of operations: IDF log((N − n + 0.5)/(n + 0.5)) floored at 1e-6,
    n counted over the whole table; document length over both columns; phrases summed in
    query order in double precision."""
    avgdl = totals.tokens / totals.rows if totals.rows else 1.0
    idfs = []
    for hits in postings:
        idf = math.log((totals.rows - len(hits) + 0.5) / (len(hits) + 0.5))
        idfs.append(idf if idf > 0.0 else 1e-6)
    scores: dict[int, float] = {}
    for rowid, length in lengths.items():
        score = 0.0
        for idf, hits in zip(idfs, postings):
            h, x = hits.get(rowid, (0, 0))
            freq = weights[0] * h + weights[1] * x
            score += idf * (freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * length / avgdl))
        scores[rowid] = score
    return scores
