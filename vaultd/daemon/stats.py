"""What the daemon tells about itself: the work loop's counters, and /health and /status as
typed values serialised once (`to_dict`) and read back once (`from_dict`, the CLI's side), so
the JSON's keys have one home. Light: the CLI imports it without the indexer or the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vaultd.progress import IndexProgress
from vaultd.writer_role import WriterRole


@dataclass(frozen=True)
class PhaseRun:
    """The last run of a lifecycle phase (or the flush): when, and one line of what it did."""

    at: float
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "summary": self.summary}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseRun:
        return cls(data["at"], data["summary"])


@dataclass
class Stats:
    """The work loop's counters (main thread writes; HTTP threads read)."""

    started_at: float = 0.0
    last_batch_at: float | None = None
    last_batch: str = ""
    pending_since: float | None = None  # monotonic time of the oldest unindexed event
    drift: int = 0  # changes the periodic reconcile found that no event announced
    batches: int = 0
    errors: int = 0
    lifecycle: dict[str, PhaseRun] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    """GET /health: cheap, and open without a token."""

    model: str
    dims: int
    pooling: str
    uptime: float
    queue: int
    index_lag: float
    connect_pending: bool

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model, "dims": self.dims, "pooling": self.pooling,
                "uptime": self.uptime, "queue": self.queue, "index_lag": self.index_lag,
                "connect_pending": self.connect_pending}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Health:
        return cls(data["model"], data["dims"], data["pooling"], data["uptime"], data["queue"],
                   data["index_lag"], data["connect_pending"])


@dataclass(frozen=True)
class Status:
    """GET /status (and `vaultd status`): the health, and what the daemon is doing."""

    health: Health
    pending_vectors: int
    progress: IndexProgress | None
    first_index_done: bool
    pid: int
    port: int | None
    last_event_at: float | None
    indexing: bool
    watcher_mode: str | None
    watcher_reason: str
    stats: Stats
    writer: WriterRole
    skipped_jobs: list[str]
    index_fault: str | None = None  # why the index cannot be used now (`index_fault`)

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            **self.health.to_dict(),
            "pending_vectors": self.pending_vectors,
            "progress": self.progress.to_dict() if self.progress is not None else None,
            "first_index_done": self.first_index_done,
            "pid": self.pid,
            "port": self.port,
            "started_at": s.started_at,
            "last_event_at": self.last_event_at,
            "last_batch_at": s.last_batch_at,
            "last_batch": s.last_batch,
            "indexing": self.indexing,
            "watcher": {"mode": self.watcher_mode, "reason": self.watcher_reason},
            "drift": s.drift,
            "batches": s.batches,
            "errors": s.errors,
            "lifecycle": {name: run.to_dict() for name, run in s.lifecycle.items()},
            "writer": {**self.writer.to_dict(), "skipped_jobs": self.skipped_jobs},
            "index_fault": self.index_fault,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Status:
        """The daemon's /status answer, as the CLI reads it."""
        stats = Stats(started_at=data["started_at"], last_batch_at=data["last_batch_at"],
                      last_batch=data["last_batch"], drift=data["drift"],
                      batches=data["batches"], errors=data["errors"],
                      lifecycle={name: PhaseRun.from_dict(run)
                                 for name, run in data["lifecycle"].items()})
        progress = data["progress"]
        return cls(health=Health.from_dict(data), pending_vectors=data["pending_vectors"],
                   progress=IndexProgress.from_dict(progress) if progress else None,
                   first_index_done=data["first_index_done"], pid=data["pid"],
                   port=data["port"], last_event_at=data["last_event_at"],
                   indexing=data["indexing"], watcher_mode=data["watcher"]["mode"],
                   watcher_reason=data["watcher"]["reason"], stats=stats,
                   writer=WriterRole.from_dict(data["writer"]),
                   skipped_jobs=list(data["writer"]["skipped_jobs"]),
                   index_fault=data.get("index_fault"))
