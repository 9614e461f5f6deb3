"""Entries as the files say, read for the lifecycle: each entry with its note's type and
frontmatter, the chunks that make up its text, and the keys durable state is filed under."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from vaultd.store.connection import Connection
from vaultd.store.rows import EntryChunk, EntryKey, EntryRow, NoteFrontmatter


class Entries(Connection):
    def file_frontmatters(self) -> dict[str, NoteFrontmatter]:
        """path → (frontmatter, is a daily log) for every indexed note."""
        return {p: NoteFrontmatter(json.loads(fm), bool(daily)) for p, fm, daily in
                self.conn.execute("SELECT path, frontmatter, is_daily FROM files")}

    def entry_rows(self) -> list[EntryRow]:
        """Every entry, in vault time: date, then path, then position in the file."""
        return [EntryRow(eid, path, key, heading, ntype, date, tuple(json.loads(tags)), start,
                         end, digest)
                for eid, path, key, heading, ntype, date, tags, start, end, digest in
                self.conn.execute(
                    "SELECT e.id, e.path, e.key, e.heading, f.type, e.date, e.tags, "
                    "e.start_line, e.end_line, e.hash FROM entries e "
                    "JOIN files f ON f.path = e.path "
                    "ORDER BY coalesce(e.date, ''), e.path, e.ordinal")]

    def entry_chunks(self) -> Iterator[EntryChunk]:
        """Every chunk's entry, text and vector, in file order."""
        for row in self.conn.execute(
                "SELECT c.entry_id, c.text, v.vector FROM chunks c JOIN embeddings v "
                "ON v.hash = c.hash ORDER BY c.path, c.start_line"):
            yield EntryChunk(*row)

    def entry_keys(self, entry_ids: Iterable[str]) -> list[EntryKey]:
        """(path, key) of the named entries."""
        ids = list(dict.fromkeys(entry_ids))
        if not ids:
            return []
        return [EntryKey(*row) for row in self.conn.execute(
            f"SELECT path, key FROM entries WHERE id IN ({','.join('?' * len(ids))})", ids)]
