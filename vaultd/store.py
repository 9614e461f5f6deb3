"""The index: the only module that runs SQL.

`VAULT/.vaultd/index.db` is a disposable cache of the vault: files, entries, chunks, an
embedding cache keyed by content hash, a sqlite-vec `vec0` table for KNN and an FTS5 table for
BM25. Schema changes are numbered migrations; `PRAGMA user_version` holds the number applied.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from vaultd.errors import (
    DiskFullError,
    ExtensionError,
    IndexAccessError,
    IndexCorruptError,
    VaultdError,
)
from vaultd.layout import ARCHIVE_DIR, is_archived

# links inserted at a time by save_links (sorted: link_pairs' B-tree fills in order)
LINK_ROWS = 100_000
# a migration that frees more than this (and a quarter of the file) is followed by VACUUM
COMPACT_BYTES = 64 << 20
# chunk_fts's columns and tokenizer (migration 1); vaultd.bm25 tokenizes with the same
FTS_COLUMNS = "heading, text, tokenize = 'porter unicode61 remove_diacritics 2'"

SQLITE_FIX = (
    "vaultd needs a SQLite that can load extensions. Fix: `pip install sqlean-py sqlite-vec` "
    "(sqlean-py is a drop-in sqlite3 with extension loading), or use a Python built with "
    "--enable-loadable-sqlite-extensions."
)


def _try_module(module: ModuleType) -> str | None:
    """None if `module` can open a database and load sqlite-vec with FTS5, else why not."""
    try:
        import sqlite_vec
    except ImportError:
        return "the sqlite-vec package is not installed"
    try:
        conn = module.connect(":memory:")
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
        finally:
            conn.close()
    except AttributeError:
        return f"{module.__name__} was built without extension loading"
    except Exception as exc:  # sqlite modules raise their own error types
        return f"{module.__name__}: {exc}"
    return None


_MODULE: ModuleType | None = None


def sqlite_module() -> ModuleType:
    """The stdlib `sqlite3` when it can load sqlite-vec, else `sqlean`; else a clear error."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    import sqlite3

    reasons = []
    why = _try_module(sqlite3)
    if why is None:
        _MODULE = sqlite3
        return sqlite3
    reasons.append(why)
    try:
        import sqlean

        why = _try_module(sqlean)
        if why is None:
            _MODULE = sqlean
            return sqlean
        reasons.append(why)
    except ImportError:
        reasons.append("sqlean-py is not installed")
    raise ExtensionError(f"cannot load sqlite-vec ({'; '.join(reasons)}). {SQLITE_FIX}")


def unusable(path: Path, exc: BaseException) -> VaultdError:
    """Why the index at `path` cannot be opened, as a one-line error naming the file and the
    fix: a permission problem (`IndexAccessError`: another user owns it, `.vaultd/` is
    read-only) is told apart from a broken file (`IndexCorruptError`), which a rebuild fixes
    and a permission problem does not, and from a full disk (`DiskFullError`), which neither
    breaks the index nor is fixed by a rebuild."""
    folder = path.parent
    if _disk_full(folder, exc):
        return DiskFullError(f"{path}: disk full; the index is intact (SQLite undid the "
                             "unfinished change): free some space and try again")
    if path.is_dir():
        return IndexCorruptError(f"{path} is a folder, not vaultd's index file: move it away, "
                                 "then `vaultd index` builds a new index")
    denied = [p for p, mode in ((folder, os.W_OK | os.X_OK), (path, os.R_OK | os.W_OK))
              if p.exists() and not os.access(p, mode)]
    if denied or isinstance(exc, PermissionError) or "readonly" in str(exc):
        where = denied[0] if denied else path
        return IndexAccessError(
            f"{where}: permission denied ({exc}): vaultd must read and write {folder.name}/ "
            f"and {path.name}; give them back to this user (e.g. `chown -R $(id -un) "
            f"{folder}` and `chmod -R u+rwX {folder}`)")
    return IndexCorruptError(f"{path} is not a usable SQLite index ({exc}): "
                             "`vaultd doctor --fix` builds a fresh one and keeps this one aside")


_SQLITE_FULL, _SQLITE_IOERR = 13, 10  # sqlite3.h primary result codes


def _disk_full(folder: Path, exc: BaseException) -> bool:
    """Whether `exc` is a write that found no room: ENOSPC/EDQUOT, SQLITE_FULL, or an I/O
    error while the index's file system has no free block left (SQLite reports a shared-memory
    or WAL file that cannot grow as an I/O error)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # an older sqlite3 module: only the message tells
        return "database or disk is full" in str(exc)
    if code & 0xFF == _SQLITE_FULL:
        return True
    if code & 0xFF != _SQLITE_IOERR:
        return False
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder is gone
        return False


# ---------------------------------------------------------------------------- migrations


def _run_script(conn: Any, script: str) -> None:
    # Not executescript(): it commits first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m1_initial(conn: Any) -> None:
    _run_script(conn, """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            hash TEXT NOT NULL,
            type TEXT NOT NULL,
            title TEXT NOT NULL,
            tags TEXT NOT NULL,
            created TEXT,
            frontmatter TEXT NOT NULL,
            is_daily INTEGER NOT NULL,
            warnings TEXT NOT NULL,
            indexed_at REAL NOT NULL
        );
        CREATE INDEX files_hash ON files(hash);
        CREATE TABLE entries (
            id TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            heading TEXT NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            date TEXT,
            tags TEXT NOT NULL
        );
        CREATE INDEX entries_path ON entries(path);
        CREATE TABLE chunks (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            type TEXT NOT NULL,
            heading TEXT NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            text TEXT NOT NULL,
            hash TEXT NOT NULL,
            date TEXT,
            archived INTEGER NOT NULL
        );
        CREATE INDEX chunks_path ON chunks(path);
        CREATE INDEX chunks_hash ON chunks(hash);
        CREATE TABLE chunk_tags (chunk INTEGER NOT NULL, tag TEXT NOT NULL);
        CREATE INDEX chunk_tags_tag ON chunk_tags(tag, chunk);
        CREATE INDEX chunk_tags_chunk ON chunk_tags(chunk);
        CREATE TABLE embeddings (hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
        CREATE TABLE skipped (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE VIRTUAL TABLE chunk_fts USING fts5(
            heading, text, tokenize = 'porter unicode61 remove_diacritics 2'
        );
    """)


def _m2_lifecycle(conn: Any) -> None:
    """Entry keys and hashes (durable state in files is keyed by entry key), the derivable
    link graph, and search recalls."""
    _run_script(conn, """
        ALTER TABLE entries ADD COLUMN key TEXT NOT NULL DEFAULT '';
        ALTER TABLE entries ADD COLUMN hash TEXT NOT NULL DEFAULT '';
        CREATE TABLE edges (
            a TEXT NOT NULL, b TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (a, b)
        );
        CREATE INDEX edges_b ON edges(b);
        CREATE TABLE connected (entry_id TEXT PRIMARY KEY, hash TEXT NOT NULL, at REAL NOT NULL);
        CREATE TABLE recalls (
            path TEXT NOT NULL, entry_key TEXT NOT NULL, query TEXT NOT NULL, at REAL NOT NULL,
            PRIMARY KEY (path, entry_key, query)
        );
        DELETE FROM files
    """)  # emptying `files` makes the next index re-read every note (vectors are reused)


def _m3_a_row_a_link(conn: Any) -> None:
    """The link graph as one row per linked pair (a < b), stored in its primary key's B-tree
    (WITHOUT ROWID), instead of a row per direction in a rowid table plus its key's index: a
    dense vault's 14M directed links took 1.45 GB of the index in three B-trees. Links read
    both ways as before (`Store.links`). A new name, so that an older vaultd fails loudly on
    it ("no such table: edges") rather than read each link one way only."""
    _run_script(conn, """
        CREATE TABLE link_pairs (
            a TEXT NOT NULL, b TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (a, b)
        ) WITHOUT ROWID;
        INSERT OR IGNORE INTO link_pairs(a, b, score)
            SELECT min(a, b), max(a, b), score FROM edges ORDER BY 1, 2, 3;
        DROP TABLE edges;
        CREATE INDEX link_pairs_b ON link_pairs(b)
    """)


MIGRATIONS = [_m1_initial, _m2_lifecycle, _m3_a_row_a_link]


# ---------------------------------------------------------------------------- records


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


# ---------------------------------------------------------------------------- store


class Store:
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.module = sqlite_module()
        self._pending: tuple[str, int] | None = None  # (vectors generation, pending count)
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.is_file() and not os.access(self.path, os.W_OK):
                    # SQLite would quietly open it read-only and fail at the first write
                    raise PermissionError(13, "not writable by this user", str(self.path))
            self._scratch: Any = None  # an in-memory FTS5 table for fts_tokens
            self._scratch_lock = threading.Lock()
            self.conn = self.module.connect(str(self.path), timeout=30, isolation_level=None,
                                            check_same_thread=False)
            self.conn.enable_load_extension(True)
            import sqlite_vec

            sqlite_vec.load(self.conn)
            self.conn.enable_load_extension(False)
            self.conn.execute("PRAGMA busy_timeout = 30000")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (OSError, self.module.DatabaseError) as exc:
            if hasattr(self, "conn"):
                self.conn.close()
            raise unusable(self.path, exc) from exc

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise VaultdError(
                f"{self.path} has schema version {version}, newer than this vaultd's "
                f"{len(MIGRATIONS)}: a newer vaultd wrote it. Upgrade vaultd, or delete the "
                "index (the vault's files are the truth) and run `vaultd index` to rebuild it")
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            with self.transaction():
                migration(self.conn)
                self.conn.execute(f"PRAGMA user_version = {number}")
        if 0 < version < len(MIGRATIONS):
            self._compact()

    def _compact(self) -> None:
        """Give back the space a migration freed, when it is much (migration 3 on a dense
        graph: 2.22 -> 1.19 GB in 24 s; most indexes free little and are left as they are).
        Skipped when the index is busy: the pages are then reused as the index grows."""
        free, pages = (self.conn.execute(f"PRAGMA {what}").fetchone()[0]
                       for what in ("freelist_count", "page_count"))
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        if free * page_size < COMPACT_BYTES or free < pages // 4:
            return
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except self.module.OperationalError:  # busy: another connection is writing
            pass

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def versions(self) -> dict[str, str]:
        sqlite_version, vec_version = self.conn.execute(
            "SELECT sqlite_version(), vec_version()").fetchone()
        return {"sqlite_module": self.module.__name__, "sqlite": sqlite_version,
                "sqlite_vec": vec_version}

    # -- meta
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- model identity
    def model_identity(self) -> dict[str, Any] | None:
        raw = self.get_meta("model")
        return json.loads(raw) if raw else None

    def ensure_model(self, identity: dict[str, Any]) -> bool:
        """Make the index match this model. True when it had to be emptied for a rebuild."""
        current = self.model_identity()
        if current == identity and self._has_vector_table():
            return False
        dims = int(identity["dims"])
        with self.transaction():
            for table in ("files", "entries", "chunks", "chunk_tags", "embeddings", "skipped",
                          "chunk_fts"):
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("DROP TABLE IF EXISTS chunk_vectors")
            self.conn.execute(
                "CREATE VIRTUAL TABLE chunk_vectors USING vec0("
                f"archived integer partition key, embedding float[{dims}] distance_metric=cosine)")
            self.set_meta("model", json.dumps(identity, sort_keys=True))
            self._bump_vectors_generation()
        return current is not None

    def _has_vector_table(self) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'chunk_vectors'").fetchone() is not None

    # -- files
    def file_states(self) -> dict[str, tuple[int, int, str]]:
        """path → (size, mtime_ns, content hash) for every indexed or skipped file."""
        rows = self.conn.execute("SELECT path, size, mtime_ns, hash FROM files").fetchall()
        states = {p: (s, m, h) for p, s, m, h in rows}
        for p, s, m in self.conn.execute("SELECT path, size, mtime_ns FROM skipped"):
            states[p] = (s, m, "")
        return states

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                          (size, mtime_ns, path))

    def skip_file(self, path: str, size: int, mtime_ns: int, reason: str) -> None:
        self._delete_file(path)
        self.conn.execute("INSERT OR REPLACE INTO skipped(path, size, mtime_ns, reason) "
                          "VALUES (?, ?, ?, ?)", (path, size, mtime_ns, reason))

    def skipped(self) -> list[tuple[str, str]]:
        return self.conn.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()

    def delete_file(self, path: str) -> None:
        self._delete_file(path)

    def _delete_file(self, path: str) -> None:
        self._bump_vectors_generation()
        rowids = [r[0] for r in self.conn.execute("SELECT rowid FROM chunks WHERE path = ?",
                                                  (path,))]
        for start in range(0, len(rowids), 500):
            part = rowids[start:start + 500]
            marks = ",".join("?" * len(part))
            self.conn.execute(f"DELETE FROM chunk_vectors WHERE rowid IN ({marks})", part)
            self.conn.execute(f"DELETE FROM chunk_fts WHERE rowid IN ({marks})", part)
            self.conn.execute(f"DELETE FROM chunk_tags WHERE chunk IN ({marks})", part)
        self.conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM entries WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM files WHERE path = ?", (path,))
        self.conn.execute("DELETE FROM skipped WHERE path = ?", (path,))

    def write_file(self, record: FileRecord, entries: Iterable[EntryRecord],
                   chunks: Iterable[ChunkRecord], vectors: dict[str, bytes]) -> None:
        """Replace everything indexed for `record.path`. `vectors` maps chunk hash → float32 blob.

        A chunk whose hash is not in `vectors` is written without one: it is in the full-text
        index at once and *pending* (`pending_vectors`) until `add_vectors` brings its vector.
        A chunk has a `chunk_vectors` row exactly when its hash has a cached vector.

        Call inside `transaction()`.
        """
        self._delete_file(record.path)
        c = self.conn
        c.execute(
            "INSERT INTO files(path, size, mtime_ns, hash, type, title, tags, created, "
            "frontmatter, is_daily, warnings, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.path, record.size, record.mtime_ns, record.hash, record.type, record.title,
             json.dumps(list(record.tags)), record.created,
             json.dumps(record.frontmatter, sort_keys=True), int(record.is_daily),
             json.dumps(list(record.warnings)), time.time()))
        c.executemany(
            "INSERT OR REPLACE INTO entries(id, path, ordinal, heading, start_line, end_line, "
            "date, tags, key, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(e.id, record.path, e.ordinal, e.heading, e.start_line, e.end_line, e.date,
              json.dumps(list(e.tags)), e.key, e.hash) for e in entries])
        archived = int(is_archived(record.path))
        for ch in chunks:
            cur = c.execute(
                "INSERT INTO chunks(id, path, entry_id, type, heading, start_line, end_line, "
                "text, hash, date, archived) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (ch.id, record.path, ch.entry_id, record.type, ch.heading, ch.start_line,
                 ch.end_line, ch.text, ch.hash, ch.date, archived))
            rowid = cur.lastrowid
            blob = vectors.get(ch.hash)
            if blob is not None:
                c.execute("INSERT OR IGNORE INTO embeddings(hash, vector) VALUES (?, ?)",
                          (ch.hash, blob))
                c.execute("INSERT INTO chunk_vectors(rowid, archived, embedding) "
                          "VALUES (?, ?, ?)", (rowid, archived, blob))
            c.execute("INSERT INTO chunk_fts(rowid, heading, text) VALUES (?, ?, ?)",
                      (rowid, ch.heading, ch.text))
            c.executemany("INSERT INTO chunk_tags(chunk, tag) VALUES (?, ?)",
                          [(rowid, t.lower()) for t in ch.tags])

    # -- embedding cache
    def cached_vectors(self, hashes: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            marks = ",".join("?" * len(part))
            found.update(self.conn.execute(
                f"SELECT hash, vector FROM embeddings WHERE hash IN ({marks})", part).fetchall())
        return found

    # -- chunks waiting for their vector (the index's second phase)
    def pending_vectors(self) -> int:
        """How many chunks wait for a vector (their hash has none cached), exactly.

        Counted again only when the vectors generation moved (every write of chunks or vectors
        bumps it), so asking on every search costs one meta read. The generation is read before
        the count: a write landing between the two makes the next call count again."""
        generation = self.vectors_generation()
        cached = self._pending
        if cached is not None and cached[0] == generation:
            return int(cached[1])
        count = int(self.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash)").fetchone()[0])
        self._pending = (generation, count)
        return count

    def pending_chunks(self, limit: int) -> list[tuple[str, str, str]]:
        """(hash, heading, text) of up to `limit` distinct chunk contents waiting for a vector,
        oldest chunk rows first (the order files were indexed in)."""
        return self.conn.execute(
            "SELECT c.hash, c.heading, c.text FROM chunks c WHERE c.rowid IN ("
            "SELECT min(rowid) FROM chunks c2 WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c2.hash) GROUP BY c2.hash) "
            "ORDER BY c.rowid LIMIT ?", (limit,)).fetchall()

    def add_vectors(self, vectors: dict[str, bytes]) -> int:
        """Cache these vectors (chunk hash → float32 blob) and give every chunk with one of
        these hashes its `chunk_vectors` row. Returns how many chunk rows got a vector. Call
        inside `transaction()`; writing the same vectors twice changes nothing."""
        if not vectors:
            return 0
        self._bump_vectors_generation()
        self.conn.executemany("INSERT OR IGNORE INTO embeddings(hash, vector) VALUES (?, ?)",
                              list(vectors.items()))
        hashes = list(vectors)
        filled = 0
        for start in range(0, len(hashes), 500):
            part = hashes[start:start + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT rowid, archived, hash FROM chunks WHERE hash IN ({marks})",
                part).fetchall()
            rowids = [r for r, _, _ in rows]
            for at in range(0, len(rowids), 500):
                some = rowids[at:at + 500]
                self.conn.execute(f"DELETE FROM chunk_vectors WHERE rowid IN "
                                  f"({','.join('?' * len(some))})", some)
            self.conn.executemany(
                "INSERT INTO chunk_vectors(rowid, archived, embedding) VALUES (?, ?, ?)",
                [(r, a, vectors[h]) for r, a, h in rows])
            filled += len(rows)
        return filled

    def prune_embeddings(self, keep_orphans: int) -> int:
        """Drop cached vectors no chunk uses, beyond the newest `keep_orphans` of them."""
        cur = self.conn.execute(
            "DELETE FROM embeddings WHERE rowid IN (SELECT e.rowid FROM embeddings e "
            "WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = e.hash) "
            "ORDER BY e.rowid DESC LIMIT -1 OFFSET ?)", (keep_orphans,))
        return cur.rowcount

    # -- search
    def _filter_sql(self, filters: Filters) -> tuple[str, list[Any]]:
        where, args = [], []
        if not filters.include_archive:
            where.append("c.archived = 0")
        if filters.types:
            where.append(f"c.type IN ({','.join('?' * len(filters.types))})")
            args.extend(filters.types)
        for tag in filters.tags:
            where.append("EXISTS (SELECT 1 FROM chunk_tags t WHERE t.chunk = c.rowid "
                         "AND t.tag = ?)")
            args.append(tag.lower().lstrip("#"))
        if filters.path_glob:
            where.append("c.path GLOB ?")
            args.append(filters.path_glob)
        if filters.since:
            where.append("c.date >= ?")
            args.append(filters.since)
        if filters.until:
            where.append("c.date <= ?")
            args.append(filters.until)
        return (" AND ".join(where) or "1"), args

    # -- the in-memory vector copy of long-lived processes (vaultd.vectors)
    def _bump_vectors_generation(self) -> None:
        """Count every change to the set of vectors, so an in-memory copy knows it is stale."""
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('vectors_generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")

    def vectors_generation(self) -> str:
        return self.get_meta("vectors_generation") or "0"

    def chunk_keys(self, embedded_only: bool = True) -> tuple[list[int], list[int], list[str]]:
        """Rowid, archived flag and content hash of every chunk that has a vector (a pending
        one has none yet) — or of every chunk, with `embedded_only=False` (what keyword
        search covers: a chunk is in FTS5 before it has a vector) — in rowid order."""
        rows = self.conn.execute(
            "SELECT c.rowid, c.archived, c.hash FROM chunks c WHERE EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY c.rowid" if embedded_only
            else "SELECT rowid, archived, hash FROM chunks ORDER BY rowid").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def knn(self, vector: bytes, k: int, filters: Filters) -> list[tuple[int, float]]:
        """(chunk rowid, cosine similarity), best first.

        Without filters other than the archive rule, sqlite-vec's KNN over the `archived`
        partition; with filters, an exact scan over the filtered chunks, so filtering never
        starves the result list. Equal scores rank by path and line (not row order, which a
        rebuild changes).
        """
        if not self._has_vector_table():
            return []  # never indexed: nothing to find (status and search say so)
        if filters.only_archive_rule:
            if filters.include_archive:
                rows = self.conn.execute(
                    "SELECT rowid, distance FROM chunk_vectors WHERE embedding MATCH ? "
                    "AND k = ?", (vector, 2 * k)).fetchall()
            else:
                rows = self.conn.execute(
                    "SELECT rowid, distance FROM chunk_vectors WHERE embedding MATCH ? "
                    "AND k = ? AND archived = 0", (vector, 2 * k)).fetchall()
            # vec0 lists equal distances in row order, which a rebuild changes: rank them by
            # path and line, from twice the rows asked for; a tie reaching past those, by the
            # exact scan below
            place = self.chunk_positions([r for r, _ in rows])
            rows = sorted(rows, key=lambda h: (h[1], *place.get(h[0], ("", 0))))
            if not (len(rows) == 2 * k and rows[k - 1][1] == rows[-1][1]):
                return [(int(r), 1.0 - float(d)) for r, d in rows[:k]]
        where, args = self._filter_sql(filters)
        rows = self.conn.execute(
            "SELECT c.rowid, vec_distance_cosine(e.vector, ?) AS d FROM chunks c "
            f"JOIN embeddings e ON e.hash = c.hash WHERE {where} "
            "ORDER BY d, c.path, c.start_line LIMIT ?",
            [vector, *args, k]).fetchall()
        return [(int(r), 1.0 - float(d)) for r, d in rows]

    def chunk_positions(self, rowids: list[int]) -> dict[int, tuple[str, int]]:
        """rowid → (path, start line): what equal scores are ranked by."""
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        return {r: (p, line) for r, p, line in self.conn.execute(
            f"SELECT rowid, path, start_line FROM chunks WHERE rowid IN ({marks})", rowids)}

    def fts(self, match: str, k: int, filters: Filters,
            weights: tuple[float, float] = (1.0, 1.0)) -> list[tuple[int, float]]:
        """(chunk rowid, BM25 score ≥ 0, higher is better), best first; equal scores by path
        and line.

        Without filters other than the archive rule, FTS5 alone ranks (joining `chunks` for
        the archive flag doubles the cost: 6.8 → 3.0 ms p50 at 10k chunks); archived rows are
        dropped afterwards from twice the rows asked for, falling back to the join only when
        that leaves too few.
        """
        bm25 = f"bm25(chunk_fts, {float(weights[0])}, {float(weights[1])})"
        if filters.only_archive_rule:
            fetched = self.conn.execute(
                f"SELECT rowid, {bm25} AS s FROM chunk_fts WHERE chunk_fts MATCH ? "
                "ORDER BY s LIMIT ?", (match, 2 * k)).fetchall()
            marks = ",".join("?" * len(fetched))
            info = {r: (a, p, line) for r, a, p, line in self.conn.execute(
                f"SELECT rowid, archived, path, start_line FROM chunks WHERE rowid IN ({marks})",
                [r for r, _ in fetched])} if fetched else {}
            kept = [(r, s) for r, s in fetched
                    if r in info and (filters.include_archive or not info[r][0])]
            kept.sort(key=lambda h: (h[1], info[h[0]][1], info[h[0]][2]))
            complete = len(fetched) < 2 * k  # everything that matched is here
            if complete or (len(kept) >= k and kept[k - 1][1] != fetched[-1][1]):
                return [(int(r), -float(s)) for r, s in kept[:k]]
            # else: too many archived, or a tie reaching past the rows fetched
        where, args = self._filter_sql(filters)
        rows = self.conn.execute(
            f"SELECT f.rowid, {bm25} AS s FROM chunk_fts f JOIN chunks c ON c.rowid = f.rowid "
            f"WHERE chunk_fts MATCH ? AND {where} ORDER BY s, c.path, c.start_line LIMIT ?",
            [match, *args, k]).fetchall()
        return [(int(r), -float(s)) for r, s in rows]

    # -- the in-memory BM25 copy of long-lived processes (vaultd.bm25)
    def fts_occurrences(self) -> Iterator[tuple[str, int]]:
        """(term, chunk rowid) for every occurrence of every term of the FTS5 index, ordered
        by term then rowid (FTS5's own order: no sort, no GROUP BY, whose sorter would leave
        tens of MB resident): FTS5's own tokens (porter, unicode61), read from its `instance`
        vocabulary."""
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_fts_instance "
                          "USING fts5vocab(main, 'chunk_fts', 'instance')")
        yield from self.conn.execute("SELECT term, doc FROM temp.chunk_fts_instance")

    def fts_tokens(self, rows: list[tuple[int, str, str]]) -> list[tuple[str, int, int]]:
        """(term, key, occurrences) for texts given as (key, heading, text), tokenized as the
        index does it, in a scratch in-memory FTS5 table: a query's terms, or new chunks."""
        with self._scratch_lock:
            if self._scratch is None:
                self._scratch = self.module.connect(":memory:", isolation_level=None,
                                                    check_same_thread=False)
                self._scratch.execute(f"CREATE VIRTUAL TABLE scratch USING fts5({FTS_COLUMNS})")
                self._scratch.execute("CREATE VIRTUAL TABLE scratch_instance "
                                      "USING fts5vocab(scratch, instance)")
            c = self._scratch
            c.execute("BEGIN")
            try:
                c.executemany("INSERT INTO scratch(rowid, heading, text) VALUES (?, ?, ?)", rows)
                return c.execute("SELECT term, doc, count(*) FROM scratch_instance "
                                 "GROUP BY term, doc ORDER BY term, doc").fetchall()
            finally:
                c.execute("ROLLBACK")

    def fts_totals(self) -> tuple[int, int]:
        """(rows, tokens) of the FTS5 index, the totals its BM25 uses (for a self-check)."""
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunk_fts_row "
                          "USING fts5vocab(main, 'chunk_fts', 'row')")
        rows = self.conn.execute("SELECT count(*) FROM chunk_fts").fetchone()[0]
        tokens = self.conn.execute("SELECT coalesce(sum(cnt), 0) FROM temp.chunk_fts_row"
                                   ).fetchone()[0]
        return int(rows), int(tokens)

    def chunk_texts(self, rowids: list[int]) -> list[tuple[int, str, str]]:
        """(rowid, heading, text) of the given chunks, as the FTS5 table holds them."""
        out: list[tuple[int, str, str]] = []
        for start in range(0, len(rowids), 500):
            part = rowids[start:start + 500]
            marks = ",".join("?" * len(part))
            out.extend(self.conn.execute(
                f"SELECT rowid, heading, text FROM chunks WHERE rowid IN ({marks})", part))
        return out

    def chunks_by_rowid(self, rowids: Iterable[int]) -> dict[int, ChunkRow]:
        ids = list(rowids)
        out: dict[int, ChunkRow] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                    "SELECT rowid, id, path, entry_id, type, heading, start_line, end_line, text, "
                    f"hash, date FROM chunks WHERE rowid IN ({marks})", part):
                out[row[0]] = ChunkRow(*row)
        return out

    def vectors_for(self, rowids: Iterable[int]) -> dict[int, bytes]:
        ids = list(rowids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return dict(self.conn.execute(
            f"SELECT c.rowid, e.vector FROM chunks c JOIN embeddings e ON e.hash = c.hash "
            f"WHERE c.rowid IN ({marks})", ids).fetchall())

    # -- status
    def counts(self) -> dict[str, int]:
        one = self.conn.execute
        return {
            "notes": one("SELECT count(*) FROM files").fetchone()[0],
            "entries": one("SELECT count(*) FROM entries").fetchone()[0],
            "chunks": one("SELECT count(*) FROM chunks").fetchone()[0],
            "vectors": (one("SELECT count(*) FROM chunk_vectors").fetchone()[0]
                        if self._has_vector_table() else 0),
            "skipped": one("SELECT count(*) FROM skipped").fetchone()[0],
            "archived_notes": one("SELECT count(*) FROM files WHERE path GLOB ?",
                                  (ARCHIVE_DIR + "/*",)).fetchone()[0],
        }

    def file_warnings(self) -> list[str]:
        out: list[str] = []
        for (raw,) in self.conn.execute("SELECT warnings FROM files WHERE warnings != '[]' "
                                        "ORDER BY path"):
            out.extend(json.loads(raw))
        return out

    # -- the lifecycle: entries as the files say, the derivable link graph, search recalls
    def file_frontmatters(self) -> dict[str, tuple[dict[str, Any], bool]]:
        """path → (frontmatter, is a daily log) for every indexed note."""
        return {p: (json.loads(fm), bool(daily)) for p, fm, daily in self.conn.execute(
            "SELECT path, frontmatter, is_daily FROM files")}

    def entry_rows(self) -> list[tuple[Any, ...]]:
        """(id, path, key, heading, type, date, tags JSON, start, end, hash) of every entry, in
        vault time: date, then path, then position in the file."""
        return self.conn.execute(
            "SELECT e.id, e.path, e.key, e.heading, f.type, e.date, e.tags, e.start_line, "
            "e.end_line, e.hash FROM entries e JOIN files f ON f.path = e.path "
            "ORDER BY coalesce(e.date, ''), e.path, e.ordinal").fetchall()

    def entry_chunks(self) -> Iterator[tuple[str, str, bytes]]:
        """(entry id, chunk text, chunk vector) of every chunk, in file order."""
        yield from self.conn.execute(
            "SELECT c.entry_id, c.text, v.vector FROM chunks c JOIN embeddings v "
            "ON v.hash = c.hash ORDER BY c.path, c.start_line")

    def entry_keys(self, entry_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(path, key) of the named entries."""
        ids = list(dict.fromkeys(entry_ids))
        if not ids:
            return []
        return self.conn.execute(
            f"SELECT path, key FROM entries WHERE id IN ({','.join('?' * len(ids))})",
            ids).fetchall()

    def connected(self) -> dict[str, str]:
        """entry id → the content hash it was last connected with."""
        return dict(self.conn.execute("SELECT entry_id, hash FROM connected").fetchall())

    def save_links(self, links: Iterable[tuple[str, Iterable[tuple[str, float]], str]],
                   now: float) -> None:
        """For each (entry, [(other, score)], entry hash): the entry's links become exactly
        these (both directions) and it counts as connected at that hash. Links and
        connections of entries that no longer exist go too. One transaction.

        A pair both of whose entries are saved here is linked if either lists the other (one
        row a pair, `a < b`). The links go in sorted, LINK_ROWS at a time: a dense vault has
        millions, and inserted one entry after another (each entry's old links deleted first)
        they went in at 23k a second (bench/save_links.py)."""
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

    def links(self) -> Iterator[tuple[str, str, float]]:
        """Every link (a, b, cosine), both directions, one at a time (a dense vault's graph
        has millions)."""
        yield from self.conn.execute("SELECT a, b, score FROM link_pairs UNION ALL "
                                     "SELECT b, a, score FROM link_pairs WHERE b != a")

    def link_degrees(self) -> dict[str, int]:
        """entry id → how many entries it links to (only entries with a link)."""
        return dict(self.conn.execute(
            "SELECT id, count(*) FROM (SELECT a AS id FROM link_pairs UNION ALL "
            "SELECT b FROM link_pairs WHERE b != a) GROUP BY id").fetchall())

    def recall_counts(self) -> dict[tuple[str, str], int]:
        """(path, entry key) → on how many different queries it was in a search's top 5."""
        return {(p, k): n for p, k, n in self.conn.execute(
            "SELECT path, entry_key, count(*) FROM recalls GROUP BY path, entry_key")}

    def add_recalls(self, keys: Iterable[tuple[str, str]], query: str, now: float) -> bool:
        """Record that these (path, entry key)s were recalled for `query`. False when the
        index was too busy to take it (a long batch holds the write lock)."""
        try:
            with self.transaction():
                self.conn.executemany(
                    "INSERT OR IGNORE INTO recalls(path, entry_key, query, at) "
                    "VALUES (?, ?, ?, ?)", [(p, k, query, now) for p, k in keys])
        except self.module.OperationalError:
            return False
        return True

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (after a repair)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- doctor: read-only checks of the index as it is (`vaultd doctor`), and two repairs
    @classmethod
    def open_as_is(cls, path: Path | str) -> Store:
        """Open an existing index read-only, without migrating it: what doctor inspects must
        not change by being looked at. Raises the sqlite module's DatabaseError on garbage."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.module = sqlite_module()
        self._pending = None
        self._scratch, self._scratch_lock = None, threading.Lock()
        from urllib.parse import quote

        self.conn = self.module.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro",
                                        uri=True, timeout=30, isolation_level=None,
                                        check_same_thread=False)
        self.conn.enable_load_extension(True)
        import sqlite_vec

        sqlite_vec.load(self.conn)
        self.conn.enable_load_extension(False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        return self

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state, even while the daemon writes."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:  # a read transaction: nothing to commit but its end
                self.conn.execute("COMMIT")

    def integrity_problems(self) -> list[str]:
        """SQLite's own check of every table and index, FTS5's inverted index included."""
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def has_vector_table(self) -> bool:
        return self._has_vector_table()

    def files_only(self) -> dict[str, tuple[int, int, str]]:
        """path → (size, mtime_ns, hash) of indexed files (not skipped ones)."""
        return {p: (s, m, h) for p, s, m, h in
                self.conn.execute("SELECT path, size, mtime_ns, hash FROM files")}

    def skipped_states(self) -> dict[str, tuple[int, int]]:
        return {p: (s, m) for p, s, m in
                self.conn.execute("SELECT path, size, mtime_ns FROM skipped")}

    def orphan_paths(self) -> list[str]:
        """Paths with entries or chunks but no `files` row (a half-removed file)."""
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM chunks UNION SELECT path FROM entries "
            "EXCEPT SELECT path FROM files ORDER BY 1")]

    def paths_without_vectors(self) -> list[str]:
        """Chunks whose vector is cached but missing from the vec0 table (a pending chunk,
        whose hash has no cached vector yet, is not missing anything)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT path FROM chunks c WHERE rowid NOT IN "
            "(SELECT rowid FROM chunk_vectors) AND EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) ORDER BY 1")]

    def vectors_without_chunks(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM chunk_vectors WHERE rowid NOT IN (SELECT rowid FROM chunks)"
        ).fetchone()[0])

    def paths_without_embeddings(self) -> list[str]:
        """Chunks with a vec0 vector whose content hash has no cached vector (filtered searches
        would drop them). A chunk with neither is pending, not broken (`pending_vectors`)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT path FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors) ORDER BY 1")]

    def chunks_without_embeddings(self) -> int:
        """How many chunks have a vec0 vector but no cached one (damage, not pending work)."""
        return int(self.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.hash = c.hash) "
            "AND rowid IN (SELECT rowid FROM chunk_vectors)").fetchone()[0])

    def paths_out_of_fts(self) -> list[str]:
        """Chunks with no full-text row, or one whose heading or text differs."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT c.path FROM chunks c LEFT JOIN chunk_fts f ON f.rowid = c.rowid "
            "WHERE f.rowid IS NULL OR f.text IS NOT c.text OR f.heading IS NOT c.heading "
            "ORDER BY 1")]

    def fts_without_chunks(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM chunk_fts WHERE rowid NOT IN (SELECT rowid FROM chunks)"
        ).fetchone()[0])

    def rebuild_fts(self) -> None:
        """Refill the full-text table from `chunks` (call inside `transaction()`)."""
        self.conn.execute("DELETE FROM chunk_fts")
        self.conn.execute("INSERT INTO chunk_fts(rowid, heading, text) "
                          "SELECT rowid, heading, text FROM chunks")

    def rebuild_vectors(self) -> None:
        """Refill the vec0 table from `chunks` and the embedding cache (inside `transaction()`);
        a chunk whose vector is not cached is left out: its file must be indexed again."""
        self._bump_vectors_generation()  # in-memory copies of the vectors must reload
        self.conn.execute("DELETE FROM chunk_vectors")
        self.conn.execute("INSERT INTO chunk_vectors(rowid, archived, embedding) "
                          "SELECT c.rowid, c.archived, e.vector FROM chunks c "
                          "JOIN embeddings e ON e.hash = c.hash")
