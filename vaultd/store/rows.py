"""What goes into the index and what comes back out, named: the records a caller writes and
the rows a store returns. Backend-neutral: the store contract (`vaultd.store.contract`) is
written in these types, so a second backend returns the same rows as the SQLite one.

Rows are NamedTuples: each field has a name, and a caller that still unpacks one keeps
working."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

# ---------------------------------------------------------------------------- records (in)


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    mtime_ns: int
    hash: str
    type: str = "note"
    title: str = ""
    tags: tuple[str, ...] = ()
    created: str | None = None
    frontmatter: dict[str, Any] = field(default_factory=dict)
    is_daily: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntryRecord:
    id: str
    ordinal: int
    heading: str
    start_line: int
    end_line: int
    date: str | None
    tags: tuple[str, ...]
    key: str = ""
    hash: str = ""


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    entry_id: str
    heading: str
    start_line: int
    end_line: int
    text: str
    hash: str
    date: str | None
    tags: tuple[str, ...]
    context: str = ""  # the whole embedded text when it holds neighbours (chunking.Context)


@dataclass(frozen=True)
class Filters:
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    path_glob: str | None = None
    since: str | None = None  # ISO date, inclusive
    until: str | None = None
    include_archive: bool = False

    @property
    def only_archive_rule(self) -> bool:
        return not (self.types or self.tags or self.path_glob or self.since or self.until)


# ---------------------------------------------------------------------------- rows (out)


@dataclass(frozen=True)
class ChunkRow:
    rowid: int
    id: str
    path: str
    entry_id: str
    type: str
    heading: str
    start_line: int
    end_line: int
    text: str
    hash: str
    date: str | None


class FileState(NamedTuple):
    """What the indexer compares a file on disk with; `hash` is "" for a skipped file."""
    size: int
    mtime_ns: int
    hash: str


class SkippedState(NamedTuple):
    size: int
    mtime_ns: int


class SkippedFile(NamedTuple):
    path: str
    reason: str


class PendingChunk(NamedTuple):
    """A chunk content waiting for its vector: what the embedder is given."""
    hash: str
    heading: str
    text: str
    context: str = ""  # when set, the whole text to embed (heading and text with neighbours)


class ChunkKeys(NamedTuple):
    """Columns, not rows: the in-memory copies turn each straight into an array."""
    rowids: list[int]
    archived: list[int]
    hashes: list[str]


class Hit(NamedTuple):
    """A chunk found by KNN (cosine similarity) or full text (BM25 score, higher is better)."""
    rowid: int
    score: float


class ChunkPlace(NamedTuple):
    """Where a chunk is: what equal scores are ranked by."""
    path: str
    start_line: int


def first_twins(rows: Iterable[tuple[int, int | None, str | None, int | None]]
                ) -> dict[int, int | None]:
    """(fact, twin, twin's path, twin's line) rows, the twin's fields None when it has none →
    each fact's twin first by path and line: the one answer of `merged_facts` whichever
    backend read the rows."""
    best: dict[int, tuple[str, int, int] | None] = {}
    for rowid, twin, path, line in rows:
        here = None if twin is None else (str(path), int(line or 0), int(twin))
        known = best.get(int(rowid))
        if int(rowid) not in best or (here is not None and (known is None or here < known)):
            best[int(rowid)] = here
    return {r: None if b is None else b[2] for r, b in best.items()}


class ChunkText(NamedTuple):
    rowid: int
    heading: str
    text: str


class TermCount(NamedTuple):
    """A term of a text as the full-text index tokenizes it, and how often it occurs."""
    term: str
    key: int
    occurrences: int


class FtsTotals(NamedTuple):
    """The totals the full-text index's BM25 uses (for the in-memory copy's self-check)."""
    rows: int
    tokens: int


class NoteFrontmatter(NamedTuple):
    frontmatter: dict[str, Any]
    is_daily: bool


class EntryRow(NamedTuple):
    """An indexed entry with its note's type."""
    id: str
    path: str
    key: str
    heading: str
    type: str
    date: str | None
    tags: tuple[str, ...]
    start_line: int
    end_line: int
    hash: str


class EntryChunk(NamedTuple):
    entry_id: str
    text: str
    vector: bytes


class EntryKey(NamedTuple):
    path: str
    key: str


class RecallKey(NamedTuple):
    path: str
    entry_key: str


class IndexCounts(TypedDict):
    """A dict, typed: status splices it into its JSON as it is."""
    notes: int
    entries: int
    chunks: int
    vectors: int
    skipped: int
    archived_notes: int


# The two streams of millions of rows stay plain tuples: a named tuple built for each row
# would slow the link graph's and the BM25 copy's full reads for no gain to their one reader.
Link = tuple[str, str, float]  # (entry a, entry b, cosine): one direction of a link
Occurrence = tuple[str, int]  # (term, chunk rowid): a term's occurrence in the full text
