"""Files outside any vault that the user asked vaultd to change: Claude Code's settings.json, a
systemd unit, vaultd's note of what it created.

Such a file is the user's, so it stays theirs: written through a symbolic link to its target,
in place for a hard-linked file (keeping its inode, mode and owner), never over a read-only one,
and only while it still holds what vaultd read (`read_config` → `write_config(expected=…)`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from vaultd.edits.atomic import NO_LINKS, failed, new_file_mode, unlink_quietly, write_temp
from vaultd.errors import ConflictError, RefusedError


def _regular_stat(path: Path, shown: Path) -> os.stat_result | None:
    """The stat of `path` (links already resolved), None when missing; RefusedError naming
    `shown` for anything but a regular file (a FIFO would make a read wait for ever)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"{shown}: not a regular file (a FIFO, device, folder or link "
                           "loop); vaultd reads and writes only plain files there")
    return st


def _config_stat(path: Path, shown: Path) -> os.stat_result | None:
    """`_regular_stat`, and RefusedError for a file made read-only (by mode): vaultd must not
    write it."""
    st = _regular_stat(path, shown)
    if st is None:
        return None
    if not st.st_mode & 0o222:
        raise RefusedError(f"{shown}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); "
                           "vaultd does not change a file made read-only (make it writable "
                           "to allow it)")
    return st


def _open_config(path: Path, flags: int, shown: Path) -> int:
    """`path` opened non-blocking without following a link (a FIFO never makes us wait)."""
    try:
        return os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConflictError(f"{shown}: cannot open: {exc.strerror or exc}; not changed") \
            from exc


def _read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def read_config(path: Path) -> bytes | None:
    """The bytes of `path`, a file outside any vault that vaultd may change (`write_config`),
    read through a symbolic link as it is written; None when it does not exist. RefusedError
    naming the path for anything but a regular file: a FIFO is never opened for reading (it
    would wait for a writer for ever), a device never touched."""
    target = Path(os.path.realpath(path))
    st = _regular_stat(target, path)
    if st is None:
        return None
    fd = _open_config(target, os.O_RDONLY, path)
    try:
        now = os.fstat(fd)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            raise ConflictError(f"{path}: replaced while vaultd read it; try again")
        return _read_fd(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def _create_config(target: Path, data: bytes, shown: Path) -> None:
    """A new file at `target` holding `data` whole, or nothing: the fsynced temp file is linked
    to its name (fails if something appeared there meanwhile, never replaces it)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = write_temp(target, data, new_file_mode())
    except OSError as exc:
        raise failed(shown, exc) from exc
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise ConflictError(f"{shown}: created by someone else while vaultd wrote it; not "
                            "changed (run the command again)") from exc
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise failed(shown, exc) from exc
        os.rename(tmp, target)  # no hard links here: a rename, after the check above
    finally:
        unlink_quietly(tmp)


def write_config(path: Path, text: str | bytes, *, expected: bytes | None) -> None:
    """Write `text` (str: UTF-8) to `path`, a file outside any vault that the user asked vaultd
    to change: Claude Code's settings.json, a systemd unit, vaultd's note of what it created.
    `expected` is what vaultd read from it (`read_config`; None: it did not exist); a file
    that no longer holds exactly that is left alone (ConflictError naming it).

    Such a file is the user's, so it stays theirs: a symbolic link is written through to its
    target (the link is how they keep it, e.g. in a dotfiles repository, and a copy in its
    place would silently stop following it); a hard link keeps its links (every name shows the
    new text) and the file keeps its inode, mode and owner. A read-only file (by mode: root
    ignores it) and anything but a regular file (a FIFO, a device: opened non-blocking, never
    waited on) are refused with the reason.

    Keeping the inode means writing in place, so the atomicity of a rename is given up: the
    new bytes go to a fsynced temp file beside the file first (a full disk fails there,
    before the file is touched), then, once the file is checked to still hold `expected`,
    into the file with one write, a truncate and an fsync. A crash in those few calls can
    leave it torn, with the complete new text still in the temp file beside it; a failed write
    puts `expected` back. A new file is created whole (temp file, then linked to its name)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    target = Path(os.path.realpath(path))
    st = _config_stat(target, path)
    if st is None:
        if expected is not None:
            raise ConflictError(f"{path}: removed since vaultd read it; not written")
        _create_config(target, data, path)
        return
    if expected is None:
        raise ConflictError(f"{path}: created by someone else since vaultd looked; not "
                            "changed (run the command again)")
    try:
        tmp = write_temp(target, data, stat.S_IMODE(st.st_mode))
    except OSError as exc:
        raise failed(path, exc, "not changed") from exc
    try:
        fd = _open_config(target, os.O_RDWR, path)
        try:
            now = os.fstat(fd)
            if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev) or _read_fd(fd) != expected:
                raise ConflictError(f"{path}: changed since vaultd read it; not changed "
                                    "(run the command again)")
            _overwrite(fd, data, expected, path)
        finally:
            os.close(fd)
    finally:
        unlink_quietly(tmp)


def _overwrite(fd: int, data: bytes, expected: bytes, shown: Path) -> None:
    """`data` into the open file in place; on failure its old bytes back, then the error."""
    try:
        _pwrite_all(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):  # its old bytes fit: they were there a moment ago
            _pwrite_all(fd, expected)
            os.ftruncate(fd, len(expected))
            os.fsync(fd)
        raise failed(shown, exc, "left as it was") from exc


def remove_config(path: Path, *, expected: bytes | None = None) -> bool:
    """Remove `path`, a file outside any vault that vaultd made (a settings.json it created, a
    service unit), or an empty folder it made; False when nothing is there or the folder is
    not empty. A symbolic link is refused (the user put it there), and so is a file that no
    longer holds `expected` (when given): vaultd removes only what is still its own."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise RefusedError(f"{path}: is a symbolic link; vaultd removes only the file it "
                           "wrote, never a link someone made")
    if stat.S_ISDIR(st.st_mode):
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise ConflictError(f"{path}: cannot remove: {exc.strerror or exc}") from exc
        return True
    if expected is not None and read_config(path) != expected:
        raise ConflictError(f"{path}: changed since vaultd read it; not removed")
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConflictError(f"{path}: cannot remove: {exc.strerror or exc}") from exc
    return True
