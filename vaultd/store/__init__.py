"""The index: the only code that runs SQL.

`VAULT/.vaultd/index.db` is a disposable cache of the vault. The package is split by
aggregate, each part a module:

- `contract`: `IndexStore`, the Protocol the rest of vaultd calls, written in named rows;
- `rows`: the records written and the rows read back;
- `sqlite`: `Store`, the SQLite backend, one object built from the parts below;
- `backend`: which backend an index is (`open_index`): SQLite, or PostgreSQL (`postgres`,
  imported only when a URL is configured);
- `opening`: the sqlite module that can load sqlite-vec, and why an index cannot be opened;
- `schema`: numbered migrations (`PRAGMA user_version` holds the number applied);
- `connection`: the connection the parts share, its transactions and the vectors generation;
- `files`, `chunks`, `entries`, `links`, `meta`, `integrity`: the aggregates.
- `where`: a search's filters as SQL, one reading for both backends.

Callers import from here.
"""

from vaultd.store.backend import open_index, open_index_as_is
from vaultd.store.contract import IndexStore
from vaultd.store.links import LINK_ROWS
from vaultd.store.opening import SQLITE_FIX, sqlite_module, unusable
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
from vaultd.store.schema import COMPACT_BYTES, FTS_COLUMNS, MIGRATIONS
from vaultd.store.sqlite import Store

__all__ = [
    "COMPACT_BYTES", "FTS_COLUMNS", "LINK_ROWS", "MIGRATIONS", "SQLITE_FIX", "ChunkKeys",
    "ChunkPlace", "ChunkRecord", "ChunkRow", "ChunkText", "EntryChunk", "EntryKey",
    "EntryRecord", "EntryRow", "FileRecord", "FileState", "Filters", "FtsTotals", "Hit",
    "IndexCounts", "IndexStore", "Link", "NoteFrontmatter", "Occurrence", "PendingChunk",
    "RecallKey", "SkippedFile", "SkippedState", "Store", "TermCount", "open_index",
    "open_index_as_is", "sqlite_module", "unusable",
]
