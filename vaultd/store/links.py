"""The link graph, derivable from the entries' vectors and kept in the index: one row a
linked pair (`a < b`), read both ways, and which entry was last connected at which hash."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vaultd.store.connection import Connection
from vaultd.store.rows import Link

# links inserted at a time by save_links (sorted: link_pairs' B-tree fills in order)
LINK_ROWS = 100_000

# what save_links is given for each entry: (entry id, [(other id, cosine)], entry hash)
EntryLinks = tuple[str, Iterable[tuple[str, float]], str]


class Links(Connection):
    def connected(self) -> dict[str, str]:
        """entry id → the content hash it was last connected with."""
        return dict(self.conn.execute("SELECT entry_id, hash FROM connected").fetchall())

    def save_links(self, links: Iterable[EntryLinks], now: float) -> None:
        """For each (entry, [(other, score)], entry hash): the entry's links become exactly
        these (both directions) and it counts as connected at that hash. Links and
        connections of entries that no longer exist go too. One transaction.

        A pair both of whose entries are saved here is linked if either lists the other (one
        row a pair, `a < b`). The links go in sorted, LINK_ROWS at a time: a dense vault has
        millions, and inserted one entry after another (each entry's old links deleted first)
        they went in several times slower (bench/speed/save_links.py, bench/RESULTS.md)."""
        links = list(links)  # (the lists of others are read once, in the loop below)
        with self.transaction():
            for column in ("a", "b"):
                self.conn.executemany(f"DELETE FROM link_pairs WHERE {column} = ?",
                                      ((e,) for e, _, _ in links))
            rows: list[tuple[str, str, float]] = []
            for entry, others, digest in links:
                rows += ((entry, other, score) if entry < other else (other, entry, score)
                         for other, score in others)
                if len(rows) >= LINK_ROWS:
                    self._insert_links(rows)
                self.conn.execute("INSERT OR REPLACE INTO connected(entry_id, hash, at) "
                                  "VALUES (?, ?, ?)", (entry, digest, now))
            self._insert_links(rows)
            self.conn.execute("DELETE FROM link_pairs WHERE a NOT IN (SELECT id FROM entries) "
                              "OR b NOT IN (SELECT id FROM entries)")
            self.conn.execute(
                "DELETE FROM connected WHERE entry_id NOT IN (SELECT id FROM entries)")

    def _insert_links(self, rows: list[tuple[str, str, float]]) -> None:
        rows.sort()
        self.conn.executemany("INSERT OR IGNORE INTO link_pairs(a, b, score) VALUES (?,?,?)",
                              rows)
        rows.clear()

    def links(self) -> Iterator[Link]:
        """Every link (a, b, cosine), both directions, one at a time (a dense vault's graph
        has millions)."""
        yield from self.conn.execute("SELECT a, b, score FROM link_pairs UNION ALL "
                                     "SELECT b, a, score FROM link_pairs WHERE b != a")

    def link_degrees(self) -> dict[str, int]:
        """entry id → how many entries it links to (only entries with a link)."""
        return dict(self.conn.execute(
            "SELECT id, count(*) FROM (SELECT a AS id FROM link_pairs UNION ALL "
            "SELECT b FROM link_pairs WHERE b != a) GROUP BY id").fetchall())
