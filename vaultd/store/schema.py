"""The index's schema as numbered migrations: each an ordered function, `PRAGMA user_version`
holding the number applied, so an index built by any earlier vaultd is brought up to date in
place and one built by a newer vaultd is refused rather than misread."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from vaultd.errors import VaultdError
from vaultd.store.connection import transaction

# a migration that frees more than this (and a quarter of the file) is followed by VACUUM
COMPACT_BYTES = 64 << 20
# chunk_fts's columns and tokenizer (migration 1); vaultd.bm25 tokenizes with the same
FTS_COLUMNS = "heading, text, tokenize = 'porter unicode61 remove_diacritics 2'"

Migration = Callable[[sqlite3.Connection], None]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, which would break the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m1_initial(conn: sqlite3.Connection) -> None:
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


def _m2_lifecycle(conn: sqlite3.Connection) -> None:
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


def _m3_a_row_a_link(conn: sqlite3.Connection) -> None:
    """The link graph as one row per linked pair (a < b), stored in its primary key's B-tree
    (WITHOUT ROWID), instead of a row per direction in a rowid table plus its key's index,
    which made a dense vault's link graph most of its index (bench/RESULTS.md). Links read
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


def _m4_chunk_context(conn: sqlite3.Connection) -> None:
    """A chunk's embedded text when it holds more than its heading and text (a short chunk's
    neighbours, vaultd.chunking.Context), so that the vectors phase can embed a pending chunk
    exactly as its content hash says. Which context the chunks were made with is the meta key
    `chunk_context`: the indexer re-reads every file when it differs."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
    if "context" not in columns:  # (a test's index marked older than its tables are)
        conn.execute("ALTER TABLE chunks ADD COLUMN context TEXT NOT NULL DEFAULT ''")


MIGRATIONS: list[Migration] = [_m1_initial, _m2_lifecycle, _m3_a_row_a_link, _m4_chunk_context]


def newer_schema(where: str, version: int, known: int) -> VaultdError:
    """An index a newer vaultd wrote, refused in the same words by every backend."""
    return VaultdError(
        f"{where} has schema version {version}, newer than this vaultd's {known}: a newer "
        "vaultd wrote it. Upgrade vaultd, or delete the index (the vault's files are the "
        "truth) and run `vaultd index` to rebuild it")


def migrate(conn: sqlite3.Connection, module: ModuleType, path: Path) -> None:
    """Apply every migration the index at `path` lacks, each in its own transaction, then
    give back the space they freed."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise newer_schema(str(path), version, len(MIGRATIONS))
    for number, migration in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        with transaction(conn):
            migration(conn)
            conn.execute(f"PRAGMA user_version = {number}")
    if 0 < version < len(MIGRATIONS):
        _compact(conn, module)


def _compact(conn: sqlite3.Connection, module: ModuleType) -> None:
    """Give back the space a migration freed, when it is much (migration 3 on a dense graph
    frees about half the file: bench/RESULTS.md; most indexes free little and are left as
    they are). Skipped when the index is busy: the pages are then reused as the index grows."""
    free, pages = (conn.execute(f"PRAGMA {what}").fetchone()[0]
                   for what in ("freelist_count", "page_count"))
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    if free * page_size < COMPACT_BYTES or free < pages // 4:
        return
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except module.OperationalError:  # busy: another connection is writing
        pass
