"""Opening an index: the sqlite module that can load sqlite-vec, the connection's settings,
and why a file cannot be opened, told as one error that names the file and the fix."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import cast
from urllib.parse import quote

from vaultd.errors import (
    DiskFullError,
    ExtensionError,
    IndexAccessError,
    IndexCorruptError,
    VaultdError,
)

SQLITE_FIX = (
    "vaultd needs a SQLite that can load extensions. Fix: `pip install sqlean-py sqlite-vec` "
    "(sqlean-py is a drop-in sqlite3 with extension loading), or use a Python built with "
    "--enable-loadable-sqlite-extensions."
)


def _try_module(module: ModuleType) -> str | None:
    """None if `module` can open a database and load sqlite-vec with FTS5, else why not."""
    try:
        import sqlite_vec  # type: ignore[import-untyped, unused-ignore]
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
    reasons = []
    why = _try_module(sqlite3)
    if why is None:
        _MODULE = sqlite3
        return sqlite3
    reasons.append(why)
    try:
        import sqlean  # type: ignore[import-untyped, unused-ignore]

        why = _try_module(sqlean)
        if why is None:
            _MODULE = sqlean
            return _MODULE
        reasons.append(why)
    except ImportError:
        reasons.append("sqlean-py is not installed")
    raise ExtensionError(f"cannot load sqlite-vec ({'; '.join(reasons)}). {SQLITE_FIX}")


def connect(module: ModuleType, path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with sqlite-vec loaded, in autocommit mode (transactions are explicit),
    shared across threads (the daemon's reader and writer take turns, never at once).
    `read_only` opens the file as it is, never creating or changing it."""
    if read_only:
        conn = module.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                              timeout=30, isolation_level=None, check_same_thread=False)
    else:
        conn = module.connect(str(path), timeout=30, isolation_level=None,
                              check_same_thread=False)
    try:
        conn.enable_load_extension(True)
        import sqlite_vec  # type: ignore[import-untyped, unused-ignore]

        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute("PRAGMA busy_timeout = 30000")
    except BaseException:
        conn.close()
        raise
    return cast(sqlite3.Connection, conn)  # sqlean's connection has sqlite3's API


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
