"""The primitives every vaultd write is made of: fsynced temp files, atomic renames, the mode
a new file gets, and the checks before a file is replaced.

A temp file is written and fsynced beside its target before anything is renamed, so readers see
the old or the new file, never half; on a full disk (or quota) the temp file is removed and
`DiskFullError` names the file. A file vaultd cannot rewrite faithfully is refused per file
with a `ConflictError` naming it: read-only (mode without write bits: as root a rename ignores
modes, so they are checked), in a read-only folder, or anything the write gate refuses. New
files get the user's umask-derived mode, like any editor's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from pathlib import Path

from vaultd import gate
from vaultd.errors import ConflictError, DiskFullError, RefusedError

TEMP_SUFFIX = ".vaultd-tmp"  # atomic_write's temporary files: `.NAME.PID.RANDOM.vaultd-tmp`
TEMP_NAME_BYTES = 80  # of the note's name kept in a temp file's name (names may be 255 bytes)


def inside(root: Path, path: Path) -> Path:
    """`path` if it lies inside the vault `root` (judged lexically) and no component of it
    below the root is a symbolic link; OutsideError otherwise (a symlinked folder or file must
    not carry a vaultd write out of the vault, nor a link inside it decide where one lands)."""
    gate.contained(root, path)
    return path


_umask_lock = threading.Lock()


def new_file_mode() -> int:
    """0666 & ~umask: the mode an editor would give a new note (mkstemp's 0600 would hide it
    from a backup or sync agent running as another user)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    with _umask_lock:  # no /proc: read the umask by setting it (and back) under a lock
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def check_writable(path: Path, *, root: Path) -> os.stat_result | None:
    """ConflictError naming `path` when vaultd must not replace or remove it: anything the
    write gate refuses in the vault `root` (`gate.check`: outside, a link, a protected folder,
    not a regular file, hard-linked, …), or a file or folder without write permission (checked
    by mode: root's writes ignore it). The file's stat, or None when it does not exist."""
    gate.check(root, path)
    folder = path.parent
    with contextlib.suppress(FileNotFoundError):
        if not os.stat(folder).st_mode & 0o222:
            raise RefusedError(f"{path}: its folder is read-only; not written")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):  # made a link since the gate looked
        raise RefusedError(f"{path}: is a symbolic link; vaultd does not replace links")
    if not st.st_mode & 0o222:
        raise RefusedError(f"{path}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); "
                            "vaultd does not rewrite read-only notes")
    return st


# ---------------------------------------------------------------------------- temp files


def temp_path(path: Path) -> Path:
    """`.NAME.PID.RANDOM.vaultd-tmp` beside `path`; NAME cut so a long note name still gives a
    valid file name (the pid tells doctor a write in progress from one a crash interrupted)."""
    name = path.name.encode()[:TEMP_NAME_BYTES].decode("utf-8", "ignore")
    return path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


# No space left, or the user's quota spent: either way nothing more fits, and both are told
# as "disk full" (a person frees space; a retry with the same text will not help before that).
FULL = (errno.ENOSPC, errno.EDQUOT)


def failed(path: Path, exc: OSError, what: str = "not written") -> ConflictError:
    """An OSError met while writing `path`, as one line naming it: DiskFullError for a full
    disk or quota (the caller has made sure nothing of the write is left), else ConflictError
    with the system's reason."""
    if exc.errno in FULL:
        return DiskFullError(f"{path}: disk full; nothing written")
    return ConflictError(f"{path}: {exc.strerror or exc}; {what}")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`. `os.write` may write only a prefix (a disk or quota
    filling up part way): the rest is written by the next call, and a call that can write
    nothing more raises OSError(ENOSPC) instead of returning a short count nobody checks."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        if done <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[done:]


def write_temp(path: Path, data: bytes, mode: int) -> Path:
    """A new fsynced temp file beside `path` holding `data` with permission `mode`. All or
    nothing: when any step fails (a full disk part way through the data, or at the fsync that
    allocates its blocks) the temp file is removed, so no torn copy can be swapped in or left
    behind; a full disk is DiskFullError naming `path`."""
    try:
        for _ in range(10):
            tmp = temp_path(path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - ten random collisions
            raise ConflictError(f"{path}: could not create a temporary file")
    except OSError as exc:
        if exc.errno in FULL:  # no room even for the new name in its folder
            raise failed(path, exc) from exc
        raise
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        unlink_quietly(tmp)
        if isinstance(exc, OSError) and exc.errno in FULL:
            raise failed(path, exc) from exc
        raise
    return tmp


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def atomic_write(path: Path, text: str | bytes, *, root: Path) -> None:
    """Write `text` (str: UTF-8) to `path` in the vault `root` atomically (readers see the old
    or the new file, never half), if the gate allows it. Not checked against a save in
    between: for files vaultd has locked and checked itself."""
    gate.check(root, path)
    replace_with(path, text)


def replace_with(path: Path, text: str | bytes, mode: int | None = None) -> None:
    """Put a fsynced temp file holding `text` at `path` with one rename; the file keeps its
    mode unless `mode` is given (a new file: the umask's)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = new_file_mode()
    tmp = write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


# a file system without hard links answers link() with one of these
NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)
