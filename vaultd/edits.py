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

Appends to a daily log (`append_entry`) are written in place with `O_APPEND` under the same
lock, so they never race vaultd's own rewrites and never lose a line a shell `>>` appended.
A file vaultd cannot rewrite faithfully is refused per file with a `ConflictError` naming it:
read-only (mode without write bits: as root a rename ignores modes, so they are checked), in a
read-only folder, hard-linked (replacing it would split the links into diverging copies),
a symbolic link, or not decodable. Text keeps its encoding (UTF-8 with or without BOM,
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
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from vaultd.errors import VaultdError
from vaultd.layout import state_dir
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


class ConflictError(VaultdError):
    """The file changed since it was read, or cannot be rewritten safely; nothing was written."""


class RefusedError(ConflictError):
    """vaultd must not rewrite this file at all (read-only, hard-linked, a link, not decodable):
    trying again with new text will not help."""


class OutsideError(ConflictError):
    """A path leads outside the vault (`..`, an absolute path, a symlink); nothing written."""


def inside(root: Path, path: Path) -> Path:
    """`path` if, with every symlink resolved, it stays inside the vault `root`; OutsideError
    otherwise (a symlinked folder or file must not carry a vaultd write out of the vault)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise OutsideError(f"{path}: leads outside the vault (through '..', an absolute path "
                           "or a symlink); not written")
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
    return Snapshot(path, path.read_bytes())


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


def check_writable(path: Path) -> os.stat_result | None:
    """ConflictError naming `path` when vaultd must not replace or remove it: a symbolic link,
    a file or folder without write permission (checked by mode: root's writes ignore it), or a
    hard-linked file. The file's stat, or None when it does not exist."""
    folder = path.parent
    with contextlib.suppress(FileNotFoundError):
        if not os.stat(folder).st_mode & 0o222:
            raise RefusedError(f"{path}: its folder is read-only; not written")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):  # replacing it would turn the user's link into a copy
        raise RefusedError(f"{path}: is a symbolic link; vaultd does not replace links")
    if not st.st_mode & 0o222:
        raise RefusedError(f"{path}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); "
                            "vaultd does not rewrite read-only notes")
    if st.st_nlink > 1:
        # Replacing swaps in a new inode at this name only: the other links would keep the old
        # text and the copies would diverge. Writing in place would keep the links but give up
        # atomicity (a crash could leave a torn note), so vaultd refuses instead.
        raise RefusedError(f"{path}: is hard-linked ({st.st_nlink} links); vaultd does not "
                            "rewrite it (a replace would split the links into diverging copies)")
    return st


# ---------------------------------------------------------------------------- temp files


def _temp_path(path: Path) -> Path:
    """`.NAME.PID.RANDOM.vaultd-tmp` beside `path`; NAME cut so a long note name still gives a
    valid file name (the pid tells doctor a write in progress from one a crash interrupted)."""
    name = path.name.encode()[:_TEMP_NAME_BYTES].decode("utf-8", "ignore")
    return path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """A new fsynced temp file beside `path` holding `data` with permission `mode`."""
    for _ in range(10):
        tmp = _temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - ten random collisions
        raise ConflictError(f"{path}: could not create a temporary file")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write `text` (str: UTF-8) to `path` atomically (readers see the old or the new file,
    never half). Unchecked: for files vaultd owns or has locked and checked itself."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _conflict_copy(path: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = path.stem.encode()[:_TEMP_NAME_BYTES].decode("utf-8", "ignore")  # names ≤ 255 bytes
    return path.with_name(f"{stem}.conflict-{stamp}-{secrets.token_hex(2)}{path.suffix}")


def _swap_in(path: Path, tmp: Path, new: bytes, expected: bytes, ino: int) -> None:
    """Put the temp file `tmp` (holding `new`) at `path` if the file there is still the one
    checked (inode `ino`, holding `expected`); otherwise the person's file keeps (or gets back)
    its name and ConflictError."""
    if os.lstat(path).st_ino != ino:  # renamed over since the check: an editor's save
        raise _lost_save(path)
    if _exchange is not None and _exchange(tmp, path):
        # `tmp` now names the file that was at `path` at the instant of the swap
        if os.lstat(tmp).st_ino == ino and tmp.read_bytes() == expected:
            _unlink(tmp)
            return
        # a save landed between the check and the swap: the person's file gets its name back
        _exchange(tmp, path)
        if tmp.read_bytes() != new:
            # and yet another change reached our file in the microseconds it was in place (a
            # `>>` into it): both are the person's, so neither is dropped — keep this one beside
            os.rename(tmp, _conflict_copy(path))
        _unlink(tmp)
        raise _lost_save(path)
    # No atomic exchange on this file system: link the current file aside and check that it
    # is the file we compared, then replace. A save can still land between the last check
    # and the replace; this narrows the window to two system calls.
    aside = _temp_path(path)
    try:
        os.link(path, aside)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.replace(tmp, path)  # no hard links either (FAT, some shares): checked by inode only
        return
    try:
        if os.stat(aside).st_ino != ino or aside.read_bytes() != expected:
            raise _lost_save(path)
        if os.stat(path).st_ino != ino:
            raise _lost_save(path)
        os.replace(tmp, path)
    finally:
        _unlink(aside)


def _vault_of(path: Path) -> Path | None:
    """The nearest folder above `path` holding vaultd's state folder, or None."""
    return next((d for d in path.parents if state_dir(d).is_dir()), None)


_held = threading.local()  # the lock keys this thread holds: `locked` is re-entrant


@contextlib.contextmanager
def locked(path: Path, root: Path | None = None) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of `path` among vaultd writers (every
    process and thread; re-entrant within a thread). The lock file is
    `.vaultd/locks/HASH.lock` of the vault `root`, HASH of the path relative to the vault
    (absolute when outside it, e.g. a declared route target): nothing beside the notes, and no
    file name length limit. Without `root`, the vault is the nearest folder above `path` that
    holds `.vaultd/` (outside any vault: a `vaultd-locks` folder in the temp directory)."""
    import fcntl

    real = os.path.realpath(path)  # one file, one lock, however it is named
    root = root if root is not None else _vault_of(Path(real))
    if root is None:
        key, lock_dir = real, Path(tempfile.gettempdir()) / "vaultd-locks"
    else:
        rel = os.path.relpath(real, os.path.realpath(root))
        key = real if rel.startswith("..") else Path(rel).as_posix()
        lock_dir = state_dir(root) / LOCKS_DIR
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    held: set[str] = getattr(_held, "keys", None) or set()
    _held.keys = held
    if f"{lock_dir}/{digest}" in held:
        yield
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(f"{lock_dir}/{digest}")
        try:
            yield
        finally:
            held.discard(f"{lock_dir}/{digest}")
    finally:
        os.close(fd)  # releases the lock


def _read_with_inode(path: Path) -> tuple[bytes, int]:
    """The file's bytes and its inode, the inode taken first: a rename between the two gives
    bytes of the newer file, which then fail the byte check (or, being equal, lose nothing)."""
    ino = os.lstat(path).st_ino
    return path.read_bytes(), ino


def replace_checked(snapshot: Snapshot, text: str, *, root: Path | None = None) -> bool:
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
            st = check_writable(path)
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


def create_new(path: Path, text: str, *, root: Path | None = None, form: Form = UTF8) -> None:
    """Create a file that must not exist yet (never clobbers, not even a file someone creates
    in the same instant: the temp file is hard-linked into place, which fails if the name is
    taken)."""
    with locked(path, root):
        try:
            check_writable(path)
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
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc


def remove_checked(snapshot: Snapshot, *, root: Path | None = None) -> None:
    """Delete the file if it still holds the snapshot's bytes (a move's last step, once its
    copy is in place); ConflictError otherwise."""
    path = snapshot.path
    with locked(path, root):
        try:
            check_writable(path)
            if path.read_bytes() != snapshot.data:
                raise ConflictError(f"{path}: changed since it was read; left in place")
            os.unlink(path)
        except FileNotFoundError:
            return
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not removed") from exc


def append_text(path: Path, text: str, *, root: Path | None = None,
                header: str = "") -> tuple[int, bytes]:
    """Append `text` to `path` in place (`O_APPEND`, one write) in the file's own encoding and
    line endings, after a newline if the file lacks a final one; a missing file is created
    holding `header + text`. In place, because a replace would drop a line that a shell `>>`
    appended after our read; under vaultd's lock, so no vaultd rewrite of the file runs at the
    same time. Returns (the file's size before, the bytes written) for `take_back`."""
    with locked(path, root):
        try:
            if not os.path.lexists(path):
                try:
                    create_new(path, header + text, root=root)
                    return 0, UTF8.encode(header + text)
                except ConflictError:
                    if not os.path.lexists(path):
                        raise
            st = check_writable(path)
            data = path.read_bytes()
            form = decode(path, data)[1]
            prefix = "" if not data or data.endswith(form.encode("\n", bom=False)) else "\n"
            out = form.encode(prefix + text, bom=False)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, out)
                os.fsync(fd)
            finally:
                os.close(fd)
            del st
            return len(data), out
        except ConflictError:
            raise
        except OSError as exc:
            raise ConflictError(f"{path}: {exc.strerror or exc}; not written") from exc


def take_back(path: Path, size: int, written: bytes, *, root: Path | None = None) -> None:
    """Undo our own `append_text` if nothing was appended after it (else it stays: a later
    line must not be cut); a file we created holding only our text is removed."""
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
    with locked(path, root):
        with contextlib.suppress(FileNotFoundError):
            size = os.stat(path).st_size
            if size + len(markdown.encode("utf-8")) > MAX_DAILY_LOG_BYTES:
                raise VaultdError(f"refused: {rel} would grow past {MAX_DAILY_LOG_BYTES:,} "
                                  "bytes (the indexer would skip it as too large); nothing "
                                  "written")
        append_text(path, markdown, root=root, header=daily_header(f"{when:%Y-%m-%d}"))
    return rel, heading
