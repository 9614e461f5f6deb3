"""Entries as the files say, read from PostgreSQL for the lifecycle."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from vaultd.store.postgres.pool import PgConnection
from vaultd.store.rows import EntryChunk, EntryKey, EntryRow, NoteFrontmatter


class PgEntries(PgConnection):
    def file_frontmatters(self) -> dict[str, NoteFrontmatter]:
        return {p: NoteFrontmatter(json.loads(fm), bool(daily)) for p, fm, daily in
                self._rows("SELECT path, frontmatter, is_daily FROM files")}

    def entry_rows(self) -> list[EntryRow]:
        return [EntryRow(eid, path, key, heading, ntype, date, tuple(json.loads(tags)), start,
                         end, digest)
                for eid, path, key, heading, ntype, date, tags, start, end, digest in
                self._rows(
                    "SELECT e.id, e.path, e.key, e.heading, f.type, e.date, e.tags, "
                    "e.start_line, e.end_line, e.hash FROM entries e "
                    "JOIN files f ON f.path = e.path "
                    "ORDER BY coalesce(e.date, ''), e.path, e.ordinal")]

    def entry_chunks(self) -> Iterator[EntryChunk]:
        for entry_id, text, vector in self._stream(
                "SELECT c.entry_id, c.text, v.vector FROM chunks c JOIN embeddings v "
                "ON v.hash = c.hash ORDER BY c.path, c.start_line"):
            yield EntryChunk(entry_id, text, bytes(vector))

    def entry_keys(self, entry_ids: Iterable[str]) -> list[EntryKey]:
        ids = list(dict.fromkeys(entry_ids))
        if not ids:
            return []
        return [EntryKey(*row) for row in self._rows(
            "SELECT path, key FROM entries WHERE id = ANY(%s)", (ids,))]
