"""vaultd: local memory for AI agents.

The library API: `open_vault(path) -> Vault`, then `Vault.index()`, `Vault.search(...)`,
`Vault.embed(...)`, `Vault.status()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# The name on the package index (pyproject's `[project] name`): `vaultd` there is an
# unrelated project, so every install hint names this one.
DISTRIBUTION = "vaultd-memory"
__all__ = ["open_vault", "init_vault", "Vault", "Hit", "IndexReport", "SearchRequest",
           "__version__"]

if TYPE_CHECKING:
    from vaultd.indexer import IndexReport
    from vaultd.search import Hit
    from vaultd.search_request import SearchRequest
    from vaultd.vault import Vault, init_vault, open_vault


def __getattr__(name: str) -> Any:
    # Lazy, so `import vaultd` (and the CLI) stays light.
    if name in ("open_vault", "init_vault", "Vault"):
        from vaultd import vault

        return getattr(vault, name)
    if name == "Hit":
        from vaultd.search import Hit

        return Hit
    if name == "SearchRequest":
        from vaultd.search_request import SearchRequest

        return SearchRequest
    if name == "IndexReport":
        from vaultd.indexer import IndexReport

        return IndexReport
    raise AttributeError(f"module 'vaultd' has no attribute {name!r}")
