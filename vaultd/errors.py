"""Typed errors. Library code raises these; the CLI (and later the server) translate them."""

from __future__ import annotations


class VaultdError(Exception):
    """Base class: the message is meant for a person and says how to fix the problem."""


class ConfigError(VaultdError):
    """The configuration file or environment holds a value vaultd cannot use."""


class VaultNotFoundError(VaultdError):
    """No vault was named and none was found above the working directory."""


class ExtensionError(VaultdError):
    """No SQLite module on this Python can load the sqlite-vec extension."""


class ModelError(VaultdError):
    """The embedding model cannot be loaded or does not behave as its profile says."""


class IndexAccessError(VaultdError):
    """The index (or `.vaultd/`) exists but this user may not read or write it."""


class IndexCorruptError(VaultdError):
    """The index file is not a usable SQLite database (garbage, a folder, a broken file)."""


class ConflictError(VaultdError):
    """The file changed since it was read, or cannot be rewritten safely; nothing was written."""


class RefusedError(ConflictError):
    """vaultd must not write this path at all (outside the vault, in a protected folder,
    through a link, not a regular file, hard-linked, read-only, not decodable): trying again
    with new text will not help."""


class OutsideError(RefusedError):
    """A path leads outside the vault (`..`, an absolute path, a symlink); nothing written."""


class UnreadableError(RefusedError, OSError):
    """A file vaultd will not even read: a symbolic link (never followed) or not a regular
    file (a FIFO would block the reader). An OSError too, so every reader that skips an
    unreadable file and goes on skips this one; a RefusedError, so no writer acts on it."""


class DiskFullError(ConflictError):
    """No space left on the disk (or in the user's quota) for a write; the message names the
    file and says what was kept: a note write left nothing of itself behind, an index write
    was undone by SQLite. Not a broken file: freeing space and trying again is the fix."""


class IndexUnavailableError(IndexAccessError):
    """The index's database cannot be used for now: its server is down or restarting, or it
    refuses writes (read-only, disk full). Waiting helps: the daemon retries with backoff and
    answers a request meanwhile with 503. `where` is the server (no password), `problem` what
    is wrong in a few words ("unreachable", "refuses writes"), `detail` the server's words."""

    def __init__(self, message: str, *, where: str = "", problem: str = "unreachable",
                 detail: str = "") -> None:
        super().__init__(message)
        self.where, self.problem, self.detail = where, problem, detail


class VaultMismatchError(VaultdError):
    """The shared index holds another vault's notes: indexing this vault there would delete
    that vault's rows, so nothing is written."""
