"""Appending to a file in place: a line to any note, and a timestamped entry to a daily log.

Appends are written in place with `O_APPEND` under vaultd's lock, so they never race vaultd's own
rewrites and never lose a line a shell `>>` appended after vaultd read the file (a replace
would). Whole or not at all: on a full disk (or quota) the file is cut back to its size before
and `DiskFullError` names it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path

from vaultd import gate
from vaultd.edits.atomic import FULL, check_writable, failed, inside, write_all
from vaultd.edits.checked import create_new
from vaultd.edits.lock import locked
from vaultd.edits.snapshot import UTF8, decode
from vaultd.errors import ConflictError, VaultdError

# What one `remember` / `memory_write` entry may hold, and how large a daily log may grow by
# appends: the indexer skips files over `[index] max_file_bytes` (5 MB by default) as too large,
# so one oversized entry would hide the whole day from search.
MAX_ENTRY_BYTES = 64_000
MAX_DAILY_LOG_BYTES = 2_000_000


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
            raise failed(path, exc) from exc


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
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            _cut_back(path, fd, size, data, exc)
            raise failed(path, exc) from exc
    finally:
        os.close(fd)


def _cut_back(path: Path, fd: int, size: int, data: bytes, exc: OSError) -> None:
    """Truncate the file open at `fd` back to `size` if everything past it is a prefix of our
    `data` (ours alone); else ConflictError naming the offset, which a person must look at."""
    now = os.fstat(fd).st_size
    tail = os.pread(fd, now - size, size) if now > size else b""
    if not data.startswith(tail):  # someone else's bytes follow ours: theirs are not cut
        why = "disk full" if exc.errno in FULL else exc.strerror or str(exc)
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
                 tags: list[str] | None = None, folder: str = "episodic") -> tuple[str, str]:
    """Append a timestamped entry to today's `FOLDER/YYYY-MM-DD.md` (the daily logs' folder,
    `layout.daily_folder`), creating it if needed.
    Refuses (VaultdError) text `check_entry` refuses and an append that would grow the log past
    MAX_DAILY_LOG_BYTES. Safe against concurrent writers, vaultd's or a shell's `>>`
    (`append_text`): no entry is lost. Keeps the log's encoding and line endings. Returns
    (vault path, heading)."""
    check_entry(text)
    when = when or dt.datetime.now()
    rel = f"{folder}/{when:%Y-%m-%d}.md"
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
        if exc.errno in FULL:
            raise failed(Path(exc.filename) if exc.filename else path, exc) from exc
        raise
    return rel, heading
