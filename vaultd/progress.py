"""How far an index run is, as a value: the indexer makes it, the daemon's /status carries it,
the CLI shows it. Stdlib only, so the CLI can read the daemon's progress without loading the
indexer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class IndexProgress:
    """Where a run is. `files`: read, parse, chunk, full-text (keyword search finds a file as
    soon as its group is written); `vectors`: embedding chunks. `rate` (chunks per second) is
    measured from the end of the first batch, so it leaves out the model's load."""
    phase: Literal["files", "vectors"]
    done: int
    total: int
    rate: float | None = None

    @property
    def eta(self) -> float | None:
        """Seconds left at the measured rate, or None before there is one."""
        if self.phase != "vectors" or not self.rate:
            return None
        return max(self.total - self.done, 0) / self.rate

    def line(self) -> str:
        unit = "files" if self.phase == "files" else "chunks"
        what = "reading" if self.phase == "files" else "embedding"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        out = f"{what} {self.done:,}/{self.total:,} {unit}{share}"
        if self.rate:
            out += f", {self.rate:.1f} chunks/s"
        if self.eta is not None:
            out += f", about {duration(self.eta)} left"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "done": self.done, "total": self.total,
                "rate": None if self.rate is None else round(self.rate, 2),
                "eta_seconds": None if self.eta is None else round(self.eta, 1)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexProgress:
        return cls(data["phase"], data["done"], data["total"], data.get("rate"))


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
