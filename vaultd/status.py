"""What `vaultd status` says of a vault's index, as a value: typed here, serialised once
(`to_dict`, the JSON of `vaultd status --json`). The daemon's own state beside it is
`vaultd.daemon.stats.Status`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaultd.writer_role import WriterRole

if TYPE_CHECKING:
    from vaultd.store import IndexCounts


@dataclass(frozen=True)
class SkippedFile:
    """A file the scan or the index left out, and why (a link, bad UTF-8, a nested vault …)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class ModelInfo:
    """The vault's embedding model, and the identity the index's vectors were made with."""

    id: str
    dims: int
    indexed_with: dict[str, Any] | None  # the store's record of it (plain JSON); None: never

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dims": self.dims, "indexed_with": self.indexed_with}


@dataclass(frozen=True)
class VaultStatus:
    """What is indexed, with which model and backend, and what changed since."""

    vault: str
    index: str | None  # the index file; None before the first index
    counts: IndexCounts
    pending_vectors: int
    model: ModelInfo
    versions: dict[str, str]  # the backend's components and their versions, as it names them
    schema_version: int
    last_index_at: str | None  # local time, ISO 8601
    changed_since_index: int
    changed_paths: list[str]  # the first 20
    skipped_files: list[SkippedFile]
    writer: WriterRole

    def to_dict(self) -> dict[str, Any]:
        return {"vault": self.vault, "index": self.index, **self.counts,
                "pending_vectors": self.pending_vectors, "model": self.model.to_dict(),
                **self.versions, "schema_version": self.schema_version,
                "last_index_at": self.last_index_at,
                "changed_since_index": self.changed_since_index,
                "changed_paths": list(self.changed_paths),
                "skipped_files": [s.to_dict() for s in self.skipped_files],
                "writer": self.writer.to_dict()}

    def backend_line(self) -> str:
        """`sqlean 3.45.1, sqlite-vec v0.1.6, schema v3` — the components as the backend names
        them (SQLite's three keys are shown as they always were)."""
        v = dict(self.versions)
        parts = []
        if "sqlite" in v:
            parts.append(f"{v.pop('sqlite_module', 'sqlite3')} {v.pop('sqlite')}")
        if "sqlite_vec" in v:
            parts.append(f"sqlite-vec {v.pop('sqlite_vec')}")
        parts += [f"{name} {version}" for name, version in sorted(v.items())]
        return ", ".join(parts + [f"schema v{self.schema_version}"])
