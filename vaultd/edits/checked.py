"""The checked writes: replace, create or remove a vault file only if it is still what vaultd
read, under vaultd's lock, refused per file with a `ConflictError` naming it otherwise.

Every write asks `vaultd.gate` first (through `atomic.check_writable`) and takes the vault `root`
for it. The slow part of a replace (write and fsync the new bytes) happens before the last
check, so the window between that check and the swap (`exchange.swap_in`) is a read and one
system call.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vaultd.edits.atomic import (
    NO_LINKS,
    check_writable,
    failed,
    new_file_mode,
    unlink_quietly,
    write_temp,
)
from vaultd.edits.exchange import swap_in
from vaultd.edits.lock import locked
from vaultd.edits.snapshot import UTF8, Form, Snapshot
from vaultd.errors import ConflictError


def _read_with_inode(path: Path) -> tuple[bytes, int]:
    """The file's bytes and its inode, the inode taken first: a rename between the two gives
    bytes of the newer file, which then fail the byte check (or, being equal, lose nothing)."""
    ino = os.lstat(path).st_ino
    return path.read_bytes(), ino


def replace_checked(snapshot: Snapshot, text: str, *, root: Path) -> bool:
    """Write `text` over the file (in its encoding and line endings) if it still holds the
    snapshot's bytes. False when the new text equals the old (nothing written, mtime kept);
    ConflictError when it changed — also when it changed in the instant of the write itself —
    or when it must not be rewritten (see `check_writable`)."""
    if text == snapshot.text:
        return False
    path = snapshot.path
    new = snapshot.encode(text)
    with locked(path, root):
        try:
            st = check_writable(path, root=root)
            if st is None:
                raise ConflictError(f"{path}: deleted since it was read; not written")
            # the slow part (write + fsync) happens before the check, keeping the window
            # between the check and the swap to a read and one system call
            tmp = write_temp(path, new, stat.S_IMODE(st.st_mode))
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc
        try:
            current, ino = _read_with_inode(path)
            if current != snapshot.data:
                raise ConflictError(f"{path}: changed since it was read; not overwritten "
                                    "(vaultd will try again with the new text)")
            swap_in(path, tmp, new, snapshot.data, ino)
        except FileNotFoundError as exc:
            raise ConflictError(f"{path}: deleted since it was read; not written") from exc
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc
        finally:
            unlink_quietly(tmp)
    return True


def create_new(path: Path, text: str, *, root: Path, form: Form = UTF8) -> None:
    """Create a file that must not exist yet (never clobbers, not even a file someone creates
    in the same instant: the temp file is hard-linked into place, which fails if the name is
    taken)."""
    with locked(path, root):
        try:
            check_writable(path, root=root)
            if os.path.lexists(path):
                raise ConflictError(f"{path}: already exists; not overwritten")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = write_temp(path, form.encode(text), new_file_mode())
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ConflictError(f"{path}: already exists; not overwritten") from exc
            except OSError as exc:
                if exc.errno not in NO_LINKS:
                    raise
                if os.path.lexists(path):  # no hard links here (FAT, some shares): re-check
                    raise ConflictError(f"{path}: already exists; not overwritten") from exc
                os.replace(tmp, path)
            finally:
                unlink_quietly(tmp)
        except ConflictError:
            raise
        except OSError as exc:  # a full disk here (the folder, the new name): nothing is left
            raise failed(path, exc) from exc


def remove_checked(snapshot: Snapshot, *, root: Path) -> None:
    """Delete the file if it still holds the snapshot's bytes (a move's last step, once its
    copy is in place); ConflictError otherwise."""
    path = snapshot.path
    with locked(path, root):
        try:
            check_writable(path, root=root)
            if path.read_bytes() != snapshot.data:
                raise ConflictError(f"{path}: changed since it was read; left in place")
            os.unlink(path)
        except FileNotFoundError:
            return
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not removed") from exc

def per_file(path: str | Path, exc: BaseException) -> str:
    """A per-file failure as one conflict line naming the file (a phase records it and goes
    on with the rest of the vault)."""
    if isinstance(exc, ConflictError):
        return str(exc)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{path}: {detail}; left alone"
