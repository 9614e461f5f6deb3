"""Which backend an index is: the embedded SQLite file (the default), or PostgreSQL when a
URL is configured (`[index] url`, or `VAULTD_INDEX_URL`; vaultd.config reads both).

The composition roots open the index here, passing the configured URL. A store opened on a
URL is remembered by its vault's local index path for the rest of the process, so what
reopens an index by its path alone (the BM25 copy's loader, the daemon's recall writer)
opens the same database. The PostgreSQL backend and psycopg are imported only when a URL is
given: the CLI and the SQLite default stay light."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from vaultd.errors import ConfigError
from vaultd.store.shown import shown
from vaultd.store.sqlite import Store

if TYPE_CHECKING:
    from vaultd.store.postgres import PgStore

URL_ENV = "VAULTD_INDEX_URL"
POSTGRES_FIX = "pip install 'vaultd-memory[postgres]'"

_URLS: dict[Path, str] = {}


def index_url(path: Path, url: str | None) -> str:
    """The URL the index at `path` is on: `url` when given ("" is the SQLite file), else the
    one it was opened on before in this process, else the environment's."""
    key = Path(path).absolute()
    if url is None:
        url = _URLS[key] if key in _URLS else os.environ.get(URL_ENV, "")
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"[index] url must be a postgresql:// URL, not {url!r}")
    _URLS[key] = url  # ("" too: a vault opened on its SQLite file stays on it)
    return url


def index_location(path: Path, url: str | None = None) -> str:
    """Where the index at `path` is, as status and doctor name it: the SQLite file, or the
    PostgreSQL URL without its password."""
    url = index_url(path, url)
    return shown(url) if url else str(path)


def _postgres() -> type[PgStore]:
    try:
        from vaultd.store.postgres import PgStore
    except ImportError as exc:
        raise ConfigError(f"[index] url names a PostgreSQL server, but its client is not "
                          f"installed ({exc.name}): {POSTGRES_FIX}") from exc
    return PgStore


def open_index(path: Path, url: str | None = None) -> Store:
    """The index of the vault whose local index path is `path`, opened and migrated.

    Typed as `Store`: callers are written against the SQLite class's name, and a `PgStore`
    implements the same contract (`IndexStore`; tests/test_store_contract.py holds both)."""
    url = index_url(path, url)
    if not url:
        return Store(path)
    return cast(Store, _postgres()(url, path))


def open_index_as_is(path: Path, url: str | None = None) -> Store:
    """The index opened without migrating it (doctor, the BM25 copy's background load)."""
    url = index_url(path, url)
    if not url:
        return Store.open_as_is(path)
    return cast(Store, _postgres().open_as_is(url, path))
