"""The link graph on PostgreSQL: one row a linked pair (`a < b`), read both ways, and which
entry was last connected at which hash (as on SQLite, vaultd.store.links)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vaultd.store.links import LINK_ROWS, EntryLinks
from vaultd.store.postgres.pool import PgConnection
from vaultd.store.rows import Link


class PgLinks(PgConnection):
    def connected(self) -> dict[str, str]:
        return {str(e): str(h) for e, h in self._rows("SELECT entry_id, hash FROM connected")}

    def save_links(self, links: Iterable[EntryLinks], now: float) -> None:
        links = list(links)
        with self.transaction():
            ids = [e for e, _, _ in links]
            self._run("DELETE FROM link_pairs WHERE a = ANY(%s) OR b = ANY(%s)", (ids, ids))
            rows: list[tuple[str, str, float]] = []
            for entry, others, _ in links:
                rows += ((entry, other, score) if entry < other else (other, entry, score)
                         for other, score in others)
                if len(rows) >= LINK_ROWS:
                    self._insert_links(rows)
            self._insert_links(rows)
            self._many("INSERT INTO connected(entry_id, hash, at) VALUES (%s, %s, %s) "
                       "ON CONFLICT (entry_id) DO UPDATE SET hash = excluded.hash, "
                       "at = excluded.at", [(e, digest, now) for e, _, digest in links])
            self._run("DELETE FROM link_pairs WHERE a NOT IN (SELECT id FROM entries) "
                      "OR b NOT IN (SELECT id FROM entries)")
            self._run("DELETE FROM connected WHERE entry_id NOT IN (SELECT id FROM entries)")

    def _insert_links(self, rows: list[tuple[str, str, float]]) -> None:
        rows.sort()
        self._many("INSERT INTO link_pairs(a, b, score) VALUES (%s, %s, %s) "
                   "ON CONFLICT (a, b) DO NOTHING", rows)
        rows.clear()

    def links(self) -> Iterator[Link]:
        for a, b, score in self._stream("SELECT a, b, score FROM link_pairs UNION ALL "
                                        "SELECT b, a, score FROM link_pairs WHERE b != a"):
            yield (a, b, float(score))

    def link_degrees(self) -> dict[str, int]:
        return {i: int(n) for i, n in self._rows(
            "SELECT id, count(*) FROM (SELECT a AS id FROM link_pairs UNION ALL "
            "SELECT b FROM link_pairs WHERE b != a) AS ends GROUP BY id")}
