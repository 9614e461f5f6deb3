"""Reading a vault file the way vaultd will write it back: its bytes, its text, its form.

A `Snapshot` is what every checked write is checked against (`checked.replace_checked` writes
only over a file that still holds the snapshot's bytes). Text keeps its encoding (UTF-8 with or
without BOM, BOM-marked UTF-16/32 — what `notes.decode` reads) and its line endings (a CRLF
file stays CRLF). `read` never waits: a FIFO or device named like a note is refused, not opened
for a blocking read.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from vaultd import gate
from vaultd.errors import RefusedError, UnreadableError
from vaultd.notes import BOMS

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
