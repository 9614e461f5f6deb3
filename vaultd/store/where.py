"""A search's filters as the WHERE clause over `chunks c` that both backends run: one reading of
what the archive tier, `types`, `tags`, `path_glob`, `since` and `until` mean, written in each
backend's placeholder and way of matching a glob."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaultd.store.rows import Filters


def _as_is(glob: str) -> str:
    return glob


@dataclass(frozen=True)
class Dialect:
    mark: str  # the placeholder: "?" (sqlite3) or "%s" (psycopg)
    matches: str  # the operator a path matches a glob with: "GLOB", or "~" for a regex
    pattern: Callable[[str], str] = _as_is  # the glob as that operator takes it


SQLITE = Dialect("?", "GLOB")


def filter_sql(filters: Filters, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
    """`filters` as a WHERE clause over `chunks c`, with its arguments."""
    mark = dialect.mark
    where: list[str] = []
    args: list[Any] = []
    if not filters.include_archive:
        where.append("c.archived = 0")
    if filters.types:
        where.append(f"c.type IN ({', '.join([mark] * len(filters.types))})")
        args.extend(filters.types)
    for tag in filters.tags:
        where.append("EXISTS (SELECT 1 FROM chunk_tags t WHERE t.chunk = c.rowid "
                     f"AND t.tag = {mark})")
        args.append(tag.lower().lstrip("#"))
    if filters.path_glob:
        where.append(f"c.path {dialect.matches} {mark}")
        args.append(dialect.pattern(filters.path_glob))
    if filters.since:
        where.append(f"c.date >= {mark}")
        args.append(filters.since)
    if filters.until:
        where.append(f"c.date <= {mark}")
        args.append(filters.until)
    return (" AND ".join(where) or "1 = 1"), args
