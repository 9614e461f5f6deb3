"""Writing to vault files without ever losing a user's words.

Every rewrite is atomic and checked (`replace_checked`): the new bytes go to a temp file in the
same folder and are fsynced first; then, under vaultd's lock, the file must still hold exactly
the bytes the new text was computed from, and the temp file is swapped in with one atomic
exchange (Linux `renameat2(RENAME_EXCHANGE)`, macOS `renamex_np(RENAME_SWAP)`). An editor's
rename-save after the check is caught just before the exchange (the file's inode changed). The
exchange hands back the very file it displaced, so a save that lands in the instant between
is seen too (inode or bytes differ) and swapped straight back: the person's version wins and
vaultd reports a conflict. Where no exchange exists, the file is hard-linked aside and
checked (inode and bytes) just before a plain `os.replace`: a save can still land in the
window of those few system calls.

An editor that saves in place (open with O_TRUNC, write, close: node's `fs.writeFile`,
Obsidian, VS Code) keeps the inode, so neither check sees it while it is under way: vaultd can
read its empty or half-written file, and bytes it writes after the exchange go to the
displaced file. So the last check and the exchange run under a Linux read lease on the file
(`_Held`): the kernel grants it only while no program has the file open for writing (a save
in progress: vaultd waits a moment, then gives way), and a program that opens the file to
write meanwhile waits in `open` until the lease goes, which vaultd sees (`F_GETLEASE`). If
one arrives during the exchange or a short grace period after it, the exchange is undone
before the lease is released: their file has its name back when their write lands. A read
lease rather than a write lease, because readers (the indexer, a sync client, `tail -f`)
must neither stop vaultd nor wait for it. What remains: an open that looked the name up
before the exchange but whose process stalls past the grace period before reaching the file.
Where leases do not exist (another OS, a network or FUSE file system, a file another user
owns), a file modified a moment ago is left to rest and checked again (an empty one longer),
and the displaced file is watched for a while after the exchange; a writer pausing longer
than that mid-save still loses. vaultd re-applies its change at the next flush.

Appends to a daily log (`append_entry`) are written in place with `O_APPEND` under the same
lock, so they never race vaultd's own rewrites and never lose a line a shell `>>` appended.
On a full disk (or quota) every write is all or nothing: a temp file is removed, an append cut
back to the size before, and `DiskFullError` names the file.
Every write entry point asks `vaultd.gate` first — which paths vaultd may write at all (inside
the vault, through no link, not in `.git/` or another tool's folder, not a nested vault's, a
regular file with one link) — and takes the vault `root` for it; vaultd's own files in
`.vaultd/` are written through `write_own`/`open_own`/`remove_own`. A file vaultd cannot
rewrite faithfully is refused per file with a `ConflictError` naming it: read-only (mode
without write bits: as root a rename ignores modes, so they are checked), in a read-only
folder, or not decodable. `read` never waits: a FIFO or device named like a note is refused,
not opened for a blocking read. Text keeps its encoding (UTF-8 with or without BOM,
BOM-marked UTF-16/32 — what `notes.decode` reads) and its line endings (a CRLF file stays
CRLF). New files get the user's umask-derived mode, like any editor's.

Lock files live under `.vaultd/locks/`, named by a hash of the path: none beside the notes,
and no name length limit from long note names. Frontmatter keys are changed line by line: the
user's other keys, comments and formatting stay as they were.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import yaml

from vaultd import gate
from vaultd.errors import (
    ConflictError,
    DiskFullError,
    RefusedError,
    UnreadableError,
    VaultdError,
)
from vaultd.errors import OutsideError as OutsideError  # re-exported, like the two above
from vaultd.notes import BOMS

TEMP_SUFFIX = ".vaultd-tmp"  # atomic_write's temporary files: `.NAME.PID.RANDOM.vaultd-tmp`
# lock files of older versions sat beside notes as `.NAME.vaultd-lock` (doctor lists them)
LOCK_SUFFIX = ".vaultd-lock"
LOCKS_DIR = "locks"  # under `.vaultd/`: one lock file per path written, named by its hash
# What one `remember` / `memory_write` entry may hold, and how large a daily log may grow by
# appends: the indexer skips files over `[index] max_file_bytes` (5 MB by default) as too large,
# so one oversized entry would hide the whole day from search.
MAX_ENTRY_BYTES = 64_000
MAX_DAILY_LOG_BYTES = 2_000_000
_TEMP_NAME_BYTES = 80  # of the note's name kept in a temp file's name (names may be 255 bytes)


def inside(root: Path, path: Path) -> Path:
    """`path` if it lies inside the vault `root` (judged lexically) and no component of it
    below the root is a symbolic link; OutsideError otherwise (a symlinked folder or file must
    not carry a vaultd write out of the vault, nor a link inside it decide where one lands)."""
    gate.contained(root, path)
    return path


# ---------------------------------------------------------------------------- encodings

# UTF-32 first: its little-endian BOM starts with UTF-16's (the order notes.decode uses).

@dataclass(frozen=True)
class Form:
    """How a file's text is stored: codec, byte-order mark, line ending. Text inside vaultd
    always uses "\\n"; a file whose every line ends in CRLF is written back with CRLF (a file
    with mixed endings is kept exactly as it is: its text carries the "\\r")."""

    codec: str = "utf-8"
    bom: bytes = b""
    newline: str = "\n"

    def encode(self, text: str, *, bom: bool = True) -> bytes:
        if self.newline != "\n":
            text = text.replace("\n", self.newline)
        return (self.bom if bom else b"") + text.encode(self.codec)


UTF8 = Form()


def decode(path: Path, data: bytes) -> tuple[str, Form]:
    """(text with "\\n" line ends, its Form). ConflictError naming the file when the bytes are
    not text vaultd can write back faithfully (not UTF-8 and no BOM; NUL characters)."""
    bom, codec = next(((m, c) for m, c in BOMS if data.startswith(m)), (b"", "utf-8"))
    try:
        text = data[len(bom):].decode(codec)
    except UnicodeDecodeError as exc:
        raise RefusedError(f"{path}: not valid {codec.upper()} (byte {exc.start + len(bom)}); "
                            "vaultd does not rewrite it (re-save it as UTF-8)") from exc
    newline = "\n"
    if "\r\n" in text and text.count("\n") == text.count("\r\n"):
        newline, text = "\r\n", text.replace("\r\n", "\n")
    return text, Form(codec, bom, newline)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    data: bytes

    @cached_property
    def _decoded(self) -> tuple[str, Form]:
        return decode(self.path, self.data)

    @property
    def text(self) -> str:
        """The text, decoded as the indexer decodes it, with "\\n" line ends."""
        return self._decoded[0]

    @property
    def form(self) -> Form:
        return self._decoded[1]

    def encode(self, text: str) -> bytes:
        """`text` in this file's encoding, BOM and line endings."""
        return self.form.encode(text)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read(path: Path) -> Snapshot:
    """The file's bytes, read without ever waiting and without following a link: a FIFO,
    socket or device named like a note (or MEMORY.md, or a route target), or a symbolic link,
    is refused with an UnreadableError (a RefusedError and an OSError) naming it — opened for a
    plain read, a FIFO would block until some writer came, and the daemon's main thread with
    it. OSError as `open` gives it otherwise."""
    gate.regular(path, os.lstat(path), UnreadableError)  # opening a device can act on it
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # made a link since the lstat
            raise UnreadableError(f"{path}: is a symbolic link; vaultd follows no link") \
                from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        # what was opened, should the name have been swapped since the lstat
        gate.regular(path, os.fstat(fh.fileno()), UnreadableError)
        return Snapshot(path, fh.read())


# ---------------------------------------------------------------------------- modes and checks

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


def _temp_path(path: Path) -> Path:
    """`.NAME.PID.RANDOM.vaultd-tmp` beside `path`; NAME cut so a long note name still gives a
    valid file name (the pid tells doctor a write in progress from one a crash interrupted)."""
    name = path.name.encode()[:_TEMP_NAME_BYTES].decode("utf-8", "ignore")
    return path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


# No space left, or the user's quota spent: either way nothing more fits, and both are told
# as "disk full" (a person frees space; a retry with the same text will not help before that).
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _failed(path: Path, exc: OSError, what: str = "not written") -> ConflictError:
    """An OSError met while writing `path`, as one line naming it: DiskFullError for a full
    disk or quota (the caller has made sure nothing of the write is left), else ConflictError
    with the system's reason."""
    if exc.errno in _FULL:
        return DiskFullError(f"{path}: disk full; nothing written")
    return ConflictError(f"{path}: {exc.strerror or exc}; {what}")


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`. `os.write` may write only a prefix (a disk or quota
    filling up part way): the rest is written by the next call, and a call that can write
    nothing more raises OSError(ENOSPC) instead of returning a short count nobody checks."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        if done <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[done:]


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """A new fsynced temp file beside `path` holding `data` with permission `mode`. All or
    nothing: when any step fails (a full disk part way through the data, or at the fsync that
    allocates its blocks) the temp file is removed, so no torn copy can be swapped in or left
    behind; a full disk is DiskFullError naming `path`."""
    try:
        for _ in range(10):
            tmp = _temp_path(path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - ten random collisions
            raise ConflictError(f"{path}: could not create a temporary file")
    except OSError as exc:
        if exc.errno in _FULL:  # no room even for the new name in its folder
            raise _failed(path, exc) from exc
        raise
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        _unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise _failed(path, exc) from exc
        raise
    return tmp


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def atomic_write(path: Path, text: str | bytes, *, root: Path) -> None:
    """Write `text` (str: UTF-8) to `path` in the vault `root` atomically (readers see the old
    or the new file, never half), if the gate allows it. Not checked against a save in
    between: for files vaultd has locked and checked itself."""
    gate.check(root, path)
    _replace_with(path, text)


def _replace_with(path: Path, text: str | bytes, mode: int | None = None) -> None:
    """Put a fsynced temp file holding `text` at `path` with one rename; the file keeps its
    mode unless `mode` is given (a new file: the umask's)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = new_file_mode()
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


# ---------------------------------------------------------------------------- vaultd's own files
# `.vaultd/NAME`, NAME from vaultd's code: each path is checked by `gate.own` (no link on the
# way, a regular file with one link), never by the vault-path rules that refuse `.vaultd/`.

_OPEN_FLAGS = {"a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
               "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}


def write_own(root: Path, name: str, text: str | bytes, *, mode: int | None = None) -> Path:
    """Write vaultd's own file `.vaultd/NAME` atomically (`mode`: its permission, e.g. 0600
    for the token; default: the file's own, or the umask's). Returns its path."""
    path = gate.own(root, name)
    _replace_with(path, text, mode)
    return path


def create_own(root: Path, name: str, text: str, *, mode: int = 0o666) -> Path:
    """Create vaultd's own file `.vaultd/NAME` holding `text` (UTF-8), with permission `mode`
    from its first byte (0600 for a secret; the umask applies); ConflictError when it exists
    already (never clobbers, not even a file made in the same instant)."""
    path = gate.own(root, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except FileExistsError as exc:
        raise ConflictError(f"{path}: already exists; not overwritten") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def open_own(root: Path, name: str, mode: str) -> IO[Any]:
    """Open vaultd's own file `.vaultd/NAME` for writing (`mode` "a+": kept and appended to,
    text; "wb": emptied, binary), never through a link."""
    path = gate.own(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _OPEN_FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8")


def remove_own(root: Path, name: str) -> bool:
    """Delete vaultd's own file `.vaultd/NAME`; False when it was not there."""
    try:
        os.unlink(gate.own(root, name))
    except FileNotFoundError:
        return False
    return True


def replace_own(root: Path, name: str, new_name: str) -> bool:
    """Rename vaultd's own file `.vaultd/NAME` to `.vaultd/NEW_NAME` (replacing it); False
    when NAME was not there. NAME may be anything but a link: a broken index that is a folder
    is moved aside too."""
    try:
        os.replace(gate.own(root, name, any_kind=True), gate.own(root, new_name))
    except FileNotFoundError:
        return False
    return True


def remove_leftover(root: Path, rel: str) -> bool:
    """Delete a temp file of an interrupted write (`*.vaultd-tmp`) or an old lock file beside
    a note (`*.vaultd-lock`) at the vault path `rel`: only such a name, inside the vault,
    reached through no link, a regular file. False when it was gone."""
    if not rel.endswith((TEMP_SUFFIX, LOCK_SUFFIX)):
        raise RefusedError(f"{rel}: not a temporary or lock file of vaultd's; not removed")
    path = root / rel
    st = gate.contained(root, path)
    if st is None:
        return False
    gate.regular(path, st)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------- exchange

_RENAME_EXCHANGE = 2  # linux/fs.h
# a file system without hard links answers link() with one of these
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)
_RENAME_SWAP = 2  # macOS stdio.h


def _load_exchange() -> Any:
    """A function exchange(a, b) -> bool that atomically swaps two names, or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        fn, flag = libc.renameat2, _RENAME_EXCHANGE

        def call(a: bytes, b: bytes) -> int:
            return int(fn(-100, a, -100, b, flag))  # AT_FDCWD
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        fn, flag = libc.renamex_np, _RENAME_SWAP

        def call(a: bytes, b: bytes) -> int:
            return int(fn(a, b, flag))
    else:  # pragma: no cover
        return None

    def exchange(a: Path, b: Path) -> bool:
        """Swap `a` and `b`; False when the file system cannot (the caller falls back)."""
        if call(os.fsencode(a), os.fsencode(b)) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise OSError(err, os.strerror(err), str(b))

    return exchange


_exchange = _load_exchange()


def _lost_save(path: Path) -> ConflictError:
    return ConflictError(f"{path}: saved by someone else while vaultd wrote it; their version "
                         "is kept (vaultd will try again with the new text)")


def _in_use(path: Path) -> ConflictError:
    return ConflictError(f"{path}: being written by another program; not written (vaultd will "
                         "try again with the new text)")


def _conflict_copy(path: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = path.stem.encode()[:_TEMP_NAME_BYTES].decode("utf-8", "ignore")  # names ≤ 255 bytes
    return path.with_name(f"{stem}.conflict-{stamp}-{secrets.token_hex(2)}{path.suffix}")


# How long vaultd waits for another program to close a file it writes in place before giving
# way (a conflict; the caller retries later), and how long the file an exchange displaced is
# watched afterwards: an open that looked the name up just before the exchange reaches the
# file within this time unless its process is stalled in that very instant.
_WAIT_FOR_WRITER = 0.2
_GRACE = 0.002
# Without a lease: a file changed this recently may be half written and is waited on first (an
# empty one, the instant after an O_TRUNC, longer), and the displaced file is watched longer.
_SETTLE = 0.05
_SETTLE_EMPTY = 1.0
_GRACE_UNLEASED = 0.05
_POLL = 0.0005
_F_SETLEASE, _F_GETLEASE, _F_SETSIG = 1024, 1025, 10  # linux/fcntl.h
_F_RDLCK, _F_UNLCK = 0, 2


def _take_lease(path: Path, fd: int) -> bool:
    """A read lease on the file open read-only as `fd`: True once held, False where leases do
    not exist (not Linux, a file system without them, a file this user does not own and no
    CAP_LEASE). While any program has the file open for writing the kernel refuses the lease:
    vaultd waits briefly for it to close the file, then gives way (ConflictError)."""
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        # the break of a lease is signalled; SIGIO, the default, would end the process and
        # SIGURG is ignored unless someone handles it
        fcntl.fcntl(fd, _F_SETSIG, signal.SIGURG)
    except OSError:
        return False
    deadline = time.monotonic() + _WAIT_FOR_WRITER
    while True:
        try:
            fcntl.fcntl(fd, _F_SETLEASE, _F_RDLCK)
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return False
        if time.monotonic() >= deadline:
            raise _in_use(path)
        time.sleep(_POLL)


def _pread_all(fd: int) -> bytes:
    """The whole file behind `fd`, read in buffers sized by the file (pread allocates the size
    asked for, however little it reads)."""
    parts, at, size = [], 0, os.fstat(fd).st_size
    while chunk := os.pread(fd, max(size - at, 0) + 4096, at):
        parts.append(chunk)
        at += len(chunk)
    return b"".join(parts)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    """What a write changes (an exchange changes the ctime, so that is left out)."""
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class _Held:
    """The file about to be replaced, open read-only through `fd` (an inode, not a name: it
    stays reachable after the exchange moves it), and whether vaultd holds a lease on it.

    With the lease no program has the file open for writing, and one that opens it to write
    waits in `open` until the lease goes: its save can only land in the file after vaultd has
    decided, and `writer_waiting` tells vaultd it is there. A read lease, not a write lease:
    readers (the indexer, a sync client, `tail -f`) neither stop vaultd nor wait for it."""

    path: Path
    fd: int
    leased: bool
    ino: int
    stamp: tuple[int, int, int]

    def data(self) -> bytes:
        return _pread_all(self.fd)

    def writer_waiting(self) -> bool:
        """A program has asked to open the file for writing (or a lease break forced it)."""
        import fcntl

        return self.leased and fcntl.fcntl(self.fd, _F_GETLEASE) != _F_RDLCK

    def changed(self) -> bool:
        return _stamp(os.fstat(self.fd)) != self.stamp

    def settle(self) -> None:
        """Without a lease nothing shows whether a program has the file open: wait until it
        has rested a moment (an in-place save writes and closes in one go; a pause longer
        than this goes unseen) and give way if it changes meanwhile."""
        rest = _SETTLE_EMPTY if self.stamp[1] == 0 else _SETTLE
        age = time.time() - os.fstat(self.fd).st_mtime
        time.sleep(min(rest, max(0.0, rest - age)))
        if self.changed():
            raise _in_use(self.path)

    def watch(self) -> bool:
        """True when a writer reached the file during the grace period after the exchange."""
        deadline = time.monotonic() + (_GRACE if self.leased else _GRACE_UNLEASED)
        while not (self.writer_waiting() or self.changed()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True


@contextlib.contextmanager
def _holding(path: Path) -> Iterator[_Held]:
    """The file at `path` held (see `_Held`) for the duration; the lease is given up before
    the descriptor is closed (a process forked meanwhile shares the descriptor, and its copy
    would keep the lease, and a writer waiting, alive)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except BlockingIOError as exc:  # another program's lease on it (a file server's)
        raise _in_use(path) from exc
    leased = False
    try:
        leased = _take_lease(path, fd)
        st = os.fstat(fd)  # after the lease: no write in progress can change it now
        yield _Held(path, fd, leased, st.st_ino, _stamp(st))
    finally:
        if leased:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETLEASE, _F_UNLCK)
        os.close(fd)


def _give_back(path: Path, tmp: Path, new: bytes, new_ino: int, keep: bool) -> None:
    """Undo an exchange that displaced someone's file (now named `tmp`): it gets its name back
    unless they already saved over vaultd's version, in which case it stays beside as a
    conflict copy when `keep` (it holds or is about to receive a save). A change that reached
    vaultd's file in the instant it was in place is theirs too, and is kept beside."""
    if os.lstat(path).st_ino == new_ino:
        _exchange(tmp, path)
        # `tmp` names vaultd's file again, unless a save landed in that instant too
        if os.lstat(tmp).st_ino != new_ino or tmp.read_bytes() != new:
            os.rename(tmp, _conflict_copy(path))
    elif keep:
        os.rename(tmp, _conflict_copy(path))
    _unlink(tmp)


def _swap_in(path: Path, tmp: Path, new: bytes, expected: bytes, ino: int) -> None:
    """Put the temp file `tmp` (holding `new`) at `path` if the file there is still the one
    checked (inode `ino`, holding `expected`) and no program is writing it; otherwise the
    person's file keeps (or gets back) its name and ConflictError.

    An in-place save (open with O_TRUNC, write, close) keeps the inode, so the checks hold the
    file under a lease (`_Held`): a save in progress stops vaultd before the exchange, and a
    save that starts while vaultd exchanges waits in `open` until vaultd has swapped the file
    back. Without a lease, a file still changing is waited on and the displaced file watched."""
    with _holding(path) as held:
        if held.ino != ino:  # renamed over since the check: an editor's save
            raise _lost_save(path)
        if held.data() != expected:  # written in place since the check
            raise _lost_save(path)
        if not held.leased:
            held.settle()
        if held.writer_waiting():
            raise _in_use(path)
        if os.lstat(path).st_ino != ino:
            raise _lost_save(path)
        new_ino = os.lstat(tmp).st_ino
        if _exchange is not None and _exchange(tmp, path):
            # `tmp` now names the file that was at `path` at the instant of the swap
            if os.lstat(tmp).st_ino == ino and held.data() == expected and not held.watch():
                _unlink(tmp)  # under the lease still: a writer that comes now opens ours
                return
            _give_back(path, tmp, new, new_ino, keep=os.lstat(tmp).st_ino != ino
                       or held.writer_waiting() or held.data() != expected)
            raise _lost_save(path)
        _replace_aside(path, tmp, expected, held)


def _replace_aside(path: Path, tmp: Path, expected: bytes, held: _Held) -> None:
    """No atomic exchange on this file system: link the current file aside and check that it
    is the file we compared, then replace. A save can still land between the last check and
    the replace; this narrows the window to two system calls, and a writer that reaches the
    file aside during the grace period gets it back at `path`."""
    aside = _temp_path(path)
    try:
        os.link(path, aside)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.replace(tmp, path)  # no hard links either (FAT, some shares): checked by inode only
        return
    try:
        if os.stat(aside).st_ino != held.ino or held.data() != expected:
            raise _lost_save(path)
        if os.stat(path).st_ino != held.ino:
            raise _lost_save(path)
        os.replace(tmp, path)
        if held.watch():
            os.replace(aside, path)
            raise _lost_save(path)
    finally:
        _unlink(aside)


_held = threading.local()  # the lock keys this thread holds: `locked` is re-entrant


@contextlib.contextmanager
def locked(path: Path, root: Path) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of `path` among vaultd writers (every
    process and thread; re-entrant within a thread). The lock file is
    `.vaultd/locks/HASH.lock` of the vault `root`, HASH of the path relative to the vault
    (absolute when outside it, e.g. a declared route target): nothing beside the notes, and no
    file name length limit. The lock file is one of vaultd's own (`gate.own`): never opened
    through a link."""
    import fcntl

    real = os.path.realpath(path)  # one file, one lock, however it is named
    rel = os.path.relpath(real, os.path.realpath(root))
    key = real if rel.startswith("..") else Path(rel).as_posix()
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    lock = gate.own(root, f"{LOCKS_DIR}/{digest}.lock")
    held: set[str] = getattr(_held, "keys", None) or set()
    _held.keys = held
    if str(lock) in held:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(str(lock))
        try:
            yield
        finally:
            held.discard(str(lock))
    finally:
        os.close(fd)  # releases the lock


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
            tmp = _write_temp(path, new, stat.S_IMODE(st.st_mode))
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc
        try:
            current, ino = _read_with_inode(path)
            if current != snapshot.data:
                raise ConflictError(f"{path}: changed since it was read; not overwritten "
                                    "(vaultd will try again with the new text)")
            _swap_in(path, tmp, new, snapshot.data, ino)
        except FileNotFoundError as exc:
            raise ConflictError(f"{path}: deleted since it was read; not written") from exc
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc
        finally:
            _unlink(tmp)
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
            tmp = _write_temp(path, form.encode(text), new_file_mode())
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ConflictError(f"{path}: already exists; not overwritten") from exc
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if os.path.lexists(path):  # no hard links here (FAT, some shares): re-check
                    raise ConflictError(f"{path}: already exists; not overwritten") from exc
                os.replace(tmp, path)
            finally:
                _unlink(tmp)
        except ConflictError:
            raise
        except OSError as exc:  # a full disk here (the folder, the new name): nothing is left
            raise _failed(path, exc) from exc


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


def append_text(path: Path, text: str, *, root: Path,
                header: str = "") -> tuple[int, bytes]:
    """Append `text` to `path` in place (`O_APPEND`; whole or not at all, `_append_whole`) in
    the file's own encoding and line endings, after a newline if the file lacks a final one; a
    missing file is created holding `header + text`. In place, because a replace would drop a
    line that a shell `>>` appended after our read; under vaultd's lock, so no vaultd rewrite
    of the file runs at the same time. Returns (the file's size before, the bytes written) for
    `take_back`."""
    with locked(path, root):
        try:
            if not os.path.lexists(path):
                try:
                    create_new(path, header + text, root=root)
                    return 0, UTF8.encode(header + text)
                except ConflictError:
                    if not os.path.lexists(path):
                        raise
            st = check_writable(path, root=root)
            data = path.read_bytes()
            form = decode(path, data)[1]
            prefix = "" if not data or data.endswith(form.encode("\n", bom=False)) else "\n"
            out = form.encode(prefix + text, bom=False)
            _append_whole(path, out)
            del st
            return len(data), out
        except ConflictError:
            raise
        except OSError as exc:
            raise _failed(path, exc) from exc


def _append_whole(path: Path, data: bytes) -> None:
    """Append `data` to `path` in place, whole or not at all: when a write or the fsync fails
    (a full disk after a prefix, or a quota), the file is cut back to its size before and
    fsynced, so no torn entry stays in the log (and none reaches the index), and the error is
    raised. A line another program appended meanwhile is never cut: then ConflictError says
    where our partial bytes are."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            _cut_back(path, fd, size, data, exc)
            raise _failed(path, exc) from exc
    finally:
        os.close(fd)


def _cut_back(path: Path, fd: int, size: int, data: bytes, exc: OSError) -> None:
    """Truncate the file open at `fd` back to `size` if everything past it is a prefix of our
    `data` (ours alone); else ConflictError naming the offset, which a person must look at."""
    now = os.fstat(fd).st_size
    tail = os.pread(fd, now - size, size) if now > size else b""
    if not data.startswith(tail):  # someone else's bytes follow ours: theirs are not cut
        why = "disk full" if exc.errno in _FULL else exc.strerror or str(exc)
        raise ConflictError(f"{path}: {why} part way through vaultd's entry, and another "
                            f"program appended after it: the partial entry at byte {size} is "
                            "left for you to remove") from exc
    if tail:
        os.ftruncate(fd, size)
        os.fsync(fd)


def take_back(path: Path, size: int, written: bytes, *, root: Path) -> None:
    """Undo our own `append_text` if nothing was appended after it (else it stays: a later
    line must not be cut); a file we created holding only our text is removed."""
    gate.check(root, path)
    with locked(path, root), contextlib.suppress(FileNotFoundError):
        data = path.read_bytes()
        if len(data) != size + len(written) or not data.endswith(written):
            return
        if size == 0:
            os.unlink(path)
        else:
            with open(path, "r+b") as fh:
                fh.truncate(size)
                os.fsync(fh.fileno())


def per_file(path: str | Path, exc: BaseException) -> str:
    """A per-file failure as one conflict line naming the file (a phase records it and goes
    on with the rest of the vault)."""
    if isinstance(exc, ConflictError):
        return str(exc)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{path}: {detail}; left alone"


# ---------------------------------------------------------------------------- frontmatter

_KEY_RE = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def _dump_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=True,
                          width=10**9).strip().removesuffix("...").strip()


def split_frontmatter(text: str) -> tuple[list[str] | None, list[str]]:
    """(frontmatter lines without fences or None, body lines)."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return lines[1:i], lines[i + 1:]
    return None, lines


def set_frontmatter(text: str, updates: dict[str, Any]) -> str:
    """Set (value) or remove (None) top-level frontmatter keys, touching no other line."""
    fm, body = split_frontmatter(text)
    fm = list(fm) if fm is not None else []
    for key, value in updates.items():
        start = next((i for i, line in enumerate(fm)
                      if (m := _KEY_RE.match(line)) and m.group(1) == key), None)
        new = [] if value is None else [f"{key}: {_dump_value(value)}"]
        if start is None:
            fm.extend(new)
            continue
        end = start + 1
        while end < len(fm) and (fm[end].startswith((" ", "\t", "- ")) or not fm[end].strip()):
            end += 1
        fm[start:end] = new
    if not fm and split_frontmatter(text)[0] is None:
        return text
    return "\n".join(["---", *fm, "---", *body])


def get_frontmatter(path: str, text: str) -> dict[str, Any]:
    """The frontmatter as vaultd reads it everywhere (tolerant, JSON-safe)."""
    from vaultd.notes import parse

    return parse(path, text).frontmatter


# ---------------------------------------------------------------------------- daily log

def daily_header(day: str) -> str:
    return f"---\ntype: episodic\ncreated: {day}\ntags: [daily]\n---\n# {day}\n"


def entry_text(text: str, when: dt.datetime, tags: list[str]) -> tuple[str, str]:
    """(heading, markdown) of a new daily-log entry."""
    words = " ".join(text.split()).split(" ")
    title = " ".join(words[:8]) + ("…" if len(words) > 8 else "")
    heading = f"{when:%H:%M} — {title}"
    body = text.strip()
    tag_line = " ".join("#" + t.lstrip("#") for t in tags if t.strip("# "))
    return heading, f"\n## {heading}\n{body}\n" + (f"{tag_line}\n" if tag_line else "")


def check_entry(text: str) -> None:
    """VaultdError, before anything is written, for text that must not reach a daily log: a
    NUL character makes the indexer skip the whole file as binary, and an oversized entry
    would push it past `[index] max_file_bytes` — either hides the day's other entries."""
    if not text.strip():
        raise VaultdError("nothing to remember: the text is empty")
    if "\x00" in text:
        raise VaultdError("refused: the text holds a NUL character (the daily log would be "
                          "skipped as binary and the whole day hidden from search)")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ENTRY_BYTES:
        raise VaultdError(f"refused: the text is {size:,} bytes; an entry holds at most "
                          f"{MAX_ENTRY_BYTES:,} (write long material to a note of its own)")


def append_entry(root: Path, text: str, *, when: dt.datetime | None = None,
                 tags: list[str] | None = None) -> tuple[str, str]:
    """Append a timestamped entry to today's `episodic/YYYY-MM-DD.md`, creating it if needed.
    Refuses (VaultdError) text `check_entry` refuses and an append that would grow the log past
    MAX_DAILY_LOG_BYTES. Safe against concurrent writers, vaultd's or a shell's `>>`
    (`append_text`): no entry is lost. Keeps the log's encoding and line endings. Returns
    (vault path, heading)."""
    check_entry(text)
    when = when or dt.datetime.now()
    rel = f"episodic/{when:%Y-%m-%d}.md"
    path = inside(root, root / rel)
    heading, markdown = entry_text(text, when, tags or [])
    try:
        with locked(path, root):
            with contextlib.suppress(FileNotFoundError):
                size = os.stat(path).st_size
                if size + len(markdown.encode("utf-8")) > MAX_DAILY_LOG_BYTES:
                    raise VaultdError(f"refused: {rel} would grow past "
                                      f"{MAX_DAILY_LOG_BYTES:,} bytes (the indexer would skip "
                                      "it as too large); nothing written")
            append_text(path, markdown, root=root, header=daily_header(f"{when:%Y-%m-%d}"))
    except OSError as exc:  # the lock file itself found no room (append_text maps its own)
        if exc.errno in _FULL:
            raise _failed(Path(exc.filename) if exc.filename else path, exc) from exc
        raise
    return rel, heading


# ---------------------------------------------------------------------------- outside any vault


def _config_stat(path: Path, shown: Path) -> os.stat_result | None:
    """The stat of `path` (links already resolved), None when missing; RefusedError naming
    `shown` for what vaultd must not write: not a regular file, or read-only (by mode)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"{shown}: not a regular file (a FIFO, device, folder or link "
                           "loop); vaultd reads and writes only plain files there")
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
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"{path}: not a regular file (a FIFO, device, folder or link "
                           "loop); vaultd reads and writes only plain files there")
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
        tmp = _write_temp(target, data, new_file_mode())
    except OSError as exc:
        raise _failed(shown, exc) from exc
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise ConflictError(f"{shown}: created by someone else while vaultd wrote it; not "
                            "changed (run the command again)") from exc
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise _failed(shown, exc) from exc
        os.rename(tmp, target)  # no hard links here: a rename, after the check above
    finally:
        _unlink(tmp)


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
        tmp = _write_temp(target, data, stat.S_IMODE(st.st_mode))
    except OSError as exc:
        raise _failed(path, exc, "not changed") from exc
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
        _unlink(tmp)


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
        raise _failed(shown, exc, "left as it was") from exc


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
