"""The store contract: every method the rest of vaultd calls on its index, with the named
rows each returns. `Store` (SQLite, `vaultd.store.sqlite`) is the one backend today and fits
it structurally; a second backend (PostgreSQL, issue 27) implements these methods and its
callers need no change. `tests/test_store_contract.py` holds both sides to it: `Store` has
every method with the same signature, and no module outside `vaultd/store/` calls a store
method this contract does not list.

The contract is split by aggregate, as the SQLite store is; `IndexStore` is all of them.
What every backend keeps true:

- The vault's files are the truth and the index a disposable cache: every method may assume
  it can be rebuilt (`ensure_model` empties it), never that it holds the only copy.
- Writes happen inside `transaction()` unless a method says it opens its own; a reader inside
  `read_snapshot()` sees one committed state while another process writes.
- Ties rank by (path, start line), never by row order, which a rebuild changes.
- A chunk is *pending* while its content hash has no cached vector: it is in the full text
  at once and in KNN once `add_vectors` brings its vector.
- `vectors_generation()` changes whenever the set of chunks or vectors does: the in-memory
  copies (vaultd.vectors, vaultd.bm25) reload when it moves.

Not in the contract: opening. `Store(path)` opens and migrates; `Store.open_as_is(path)`
opens read-only without migrating (doctor, and the BM25 copy's background load). A backend
brings its own such factories, and the composition roots (vault, daemon, doctor) choose one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from vaultd.store.rows import (
    ChunkKeys,
    ChunkPlace,
    ChunkRecord,
    ChunkRow,
    ChunkText,
    EntryChunk,
    EntryKey,
    EntryRecord,
    EntryRow,
    FileRecord,
    FileState,
    Filters,
    FtsTotals,
    Hit,
    IndexCounts,
    Link,
    NoteFrontmatter,
    Occurrence,
    PendingChunk,
    RecallKey,
    SkippedFile,
    SkippedState,
    TermCount,
)


class Lifetime(Protocol):
    """The open index: where it is, its transactions and its small facts by key."""

    path: Path  # where the index lives: doctor names it, the BM25 copy reopens it
    module: ModuleType  # the backend's DB-API module: callers catch its `DatabaseError`

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction: all of it or none; it waits its turn behind other writers."""

    def read_snapshot(self) -> AbstractContextManager[None]:
        """Every read inside sees one committed state."""

    def checkpoint(self) -> None:
        """Make what was written durable in the index's main storage (after a repair)."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def vectors_generation(self) -> str:
        """A token that changes whenever the set of chunks or vectors changes."""


class FileIndex(Protocol):
    """Files and their chunks as the indexer writes them, and the embedding cache."""

    def file_states(self) -> dict[str, FileState]:
        """Every indexed or skipped file (a skipped one with hash "")."""

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        """A file whose content did not change: only its size and mtime are new."""

    def skip_file(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        """Forget what was indexed for `path` and remember it as skipped, with why."""

    def skipped(self) -> list[SkippedFile]:
        """Skipped files, by path."""

    def delete_file(self, path: str) -> None:
        """Forget everything indexed or skipped for `path`."""

    def write_file(self, record: FileRecord, entries: Iterable[EntryRecord],
                   chunks: Iterable[ChunkRecord], vectors: dict[str, bytes]) -> None:
        """Replace everything indexed for `record.path`; `vectors` maps chunk hash → float32
        blob, and a chunk whose hash is not in it is written pending (inside `transaction()`)."""

    def cached_vectors(self, hashes: Iterable[str]) -> dict[str, bytes]:
        """hash → cached vector, for those of `hashes` that have one."""

    def prune_embeddings(self, keep_orphans: int) -> int:
        """Drop cached vectors no chunk uses beyond the newest `keep_orphans`; how many went."""

    def pending_vectors(self) -> int:
        """How many chunks wait for a vector, exactly; cheap enough to ask on every search."""

    def pending_chunks(self, limit: int) -> list[PendingChunk]:
        """Up to `limit` distinct pending contents, in the order their files were indexed."""

    def add_vectors(self, vectors: dict[str, bytes]) -> int:
        """Cache these vectors and give every chunk with one of their hashes its vector; how
        many chunks got one (inside `transaction()`; idempotent)."""


class ChunkIndex(Protocol):
    """Chunks read back: search, the rows it shows, and the in-memory copies' feeds."""

    def knn(self, vector: bytes, k: int, filters: Filters) -> list[Hit]:
        """The `k` chunks nearest `vector` (cosine similarity, best first) among those
        `filters` allow: filtering never starves the list (an exact scan when it must)."""

    def fts(self, match: str, k: int, filters: Filters,
            weights: tuple[float, float] = (1.0, 1.0)) -> list[Hit]:
        """The `k` best full-text matches of an FTS5 `match` expression (BM25 ≥ 0, higher is
        better; `weights` for heading and text) among those `filters` allow. Tokenized as
        FTS5's porter unicode61 with diacritics removed: the in-memory BM25 copy must agree."""

    def chunk_positions(self, rowids: list[int]) -> dict[int, ChunkPlace]: ...

    def merged_facts(self, rowids: list[int]) -> dict[int, int | None]:
        """Each of `rowids` that is a fact of a note vaultd writes as a list of facts (a live
        chunk of a note other than an episode, under an ISO date as its heading:
        `chunking._as_fact`) → the live episodic chunk with the same content hash (the first by
        path and line: the entry it was merged from, still in its log), or None."""

    def chunks_by_rowid(self, rowids: Iterable[int]) -> dict[int, ChunkRow]: ...

    def vectors_for(self, rowids: Iterable[int]) -> dict[int, bytes]:
        """rowid → vector of those chunks that have one."""

    def chunk_keys(self, embedded_only: bool = True) -> ChunkKeys:
        """Every chunk with a vector (or every chunk), in rowid order, as columns."""

    def fts_occurrences(self) -> Iterator[Occurrence]:
        """Every occurrence of every full-text term, by term then rowid, streamed."""

    def fts_tokens(self, rows: Sequence[tuple[int, str, str]]) -> list[TermCount]:
        """Texts given as (key, heading, text) tokenized as the full-text index does it."""

    def fts_totals(self) -> FtsTotals: ...

    def chunk_texts(self, rowids: list[int]) -> list[ChunkText]: ...


class EntryIndex(Protocol):
    """Entries as the files say, for the lifecycle."""

    def file_frontmatters(self) -> dict[str, NoteFrontmatter]: ...

    def entry_rows(self) -> list[EntryRow]:
        """Every entry in vault time: date (undated first), then path, then file order."""

    def entry_chunks(self) -> Iterator[EntryChunk]:
        """Every chunk that has a vector, with its entry, in file order."""

    def entry_keys(self, entry_ids: Iterable[str]) -> list[EntryKey]: ...


class LinkIndex(Protocol):
    """The derivable link graph between entries."""

    def connected(self) -> dict[str, str]:
        """entry id → the content hash it was last connected with."""

    def save_links(self, links: Iterable[tuple[str, Iterable[tuple[str, float]], str]],
                   now: float) -> None:
        """For each (entry, [(other, cosine)], entry hash): its links become exactly these,
        both ways, and it counts as connected at that hash; links and connections of entries
        gone from the index go too. Opens its own transaction."""

    def links(self) -> Iterator[Link]:
        """Every link, both directions, streamed (a dense vault has millions)."""

    def link_degrees(self) -> dict[str, int]:
        """entry id → how many entries it links to (only entries with a link)."""


class MetaIndex(Protocol):
    """What the index knows about itself, and the searches' recalls."""

    @property
    def schema_version(self) -> int: ...

    @property
    def latest_schema_version(self) -> int:
        """The schema this vaultd writes, for this backend (each numbers its migrations)."""

    def versions(self) -> dict[str, str]:
        """The backend's components and their versions (status shows them as they are)."""

    def model_identity(self) -> dict[str, Any] | None:
        """The embedder identity the vectors were made with, or None before the first index."""

    def ensure_model(self, identity: dict[str, Any]) -> bool:
        """Make the index match this embedder; True when it had to be emptied for a rebuild."""

    def recall_counts(self) -> dict[RecallKey, int]:
        """(path, entry key) → on how many different queries it was in a search's top."""

    def add_recalls(self, keys: Iterable[tuple[str, str]], query: str, now: float) -> bool:
        """Record these (path, entry key)s as recalled for `query` in its own transaction;
        False, recording nothing, when the index is too busy to take it now."""


class IndexChecks(Protocol):
    """Doctor's read-only checks, and the two repairs of derived tables."""

    def counts(self) -> IndexCounts: ...

    def integrity_problems(self) -> list[str]:
        """The backend's own consistency check; empty when it passes."""

    def has_vector_table(self) -> bool:
        """Whether the index has a place for vectors (it is made by `ensure_model`)."""

    def files_only(self) -> dict[str, FileState]:
        """Indexed files only (not skipped ones)."""

    def skipped_states(self) -> dict[str, SkippedState]: ...

    def orphan_paths(self) -> list[str]:
        """Paths with entries or chunks but no file record."""

    def paths_without_vectors(self) -> list[str]:
        """Paths with a chunk whose vector is cached but missing from the KNN index."""

    def vectors_without_chunks(self) -> int: ...

    def paths_without_embeddings(self) -> list[str]:
        """Paths with a chunk in the KNN index whose vector is not cached."""

    def chunks_without_embeddings(self) -> int: ...

    def paths_out_of_fts(self) -> list[str]:
        """Paths with a chunk missing from the full text, or differing there."""

    def fts_without_chunks(self) -> int: ...

    def rebuild_fts(self) -> None:
        """Refill the full text from the chunks (inside `transaction()`)."""

    def rebuild_vectors(self) -> None:
        """Refill the KNN index from the chunks and the cache (inside `transaction()`)."""


class IndexStore(Lifetime, FileIndex, ChunkIndex, EntryIndex, LinkIndex, MetaIndex,
                 IndexChecks, Protocol):
    """The whole contract: what vaultd's indexer, search, lifecycle, doctor and daemon may
    call on a store."""
