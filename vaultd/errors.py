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
