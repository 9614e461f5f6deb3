"""Swapping a checked file for its new version without losing a save that lands meanwhile.

Every rewrite is atomic and checked (`checked.replace_checked`): the new bytes go to a temp
file in the same folder and are fsynced first; then, under vaultd's lock, the file must still
hold exactly the bytes the new text was computed from, and the temp file is swapped in with one
atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`, macOS `renamex_np(RENAME_SWAP)`). An editor's
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
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vaultd.edits.atomic import NO_LINKS, TEMP_NAME_BYTES, temp_path, unlink_quietly
from vaultd.errors import ConflictError

_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS stdio.h


Exchange = Callable[[Path, Path], bool]


def _load_exchange() -> Exchange | None:
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
    stem = path.stem.encode()[:TEMP_NAME_BYTES].decode("utf-8", "ignore")  # names ≤ 255 bytes
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


def _give_back(exchange: Exchange, path: Path, tmp: Path, new: bytes, new_ino: int,
               keep: bool) -> None:
    """Undo an exchange that displaced someone's file (now named `tmp`): it gets its name back
    unless they already saved over vaultd's version, in which case it stays beside as a
    conflict copy when `keep` (it holds or is about to receive a save). A change that reached
    vaultd's file in the instant it was in place is theirs too, and is kept beside."""
    if os.lstat(path).st_ino == new_ino:
        exchange(tmp, path)
        # `tmp` names vaultd's file again, unless a save landed in that instant too
        if os.lstat(tmp).st_ino != new_ino or tmp.read_bytes() != new:
            os.rename(tmp, _conflict_copy(path))
    elif keep:
        os.rename(tmp, _conflict_copy(path))
    unlink_quietly(tmp)


def swap_in(path: Path, tmp: Path, new: bytes, expected: bytes, ino: int) -> None:
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
        exchange = _exchange
        if exchange is not None and exchange(tmp, path):
            # `tmp` now names the file that was at `path` at the instant of the swap
            if os.lstat(tmp).st_ino == ino and held.data() == expected and not held.watch():
                unlink_quietly(tmp)  # under the lease still: a writer that comes now opens ours
                return
            _give_back(exchange, path, tmp, new, new_ino, keep=os.lstat(tmp).st_ino != ino
                       or held.writer_waiting() or held.data() != expected)
            raise _lost_save(path)
        _replace_aside(path, tmp, expected, held)


def _replace_aside(path: Path, tmp: Path, expected: bytes, held: _Held) -> None:
    """No atomic exchange on this file system: link the current file aside and check that it
    is the file we compared, then replace. A save can still land between the last check and
    the replace; this narrows the window to two system calls, and a writer that reaches the
    file aside during the grace period gets it back at `path`."""
    aside = temp_path(path)
    try:
        os.link(path, aside)
    except OSError as exc:
        if exc.errno not in NO_LINKS:
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
        unlink_quietly(aside)
