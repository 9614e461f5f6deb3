"""The contract every lifecycle phase shares: a `Phase` plans from a `Context` (what the index
and the files say now) and applies that `Plan` with checked writes, returning an `Outcome`; the
run reports each phase as a `PhaseReport`.

Planning writes nothing, so `--dry-run` shows what a real run would do: every action (a typed
value, `actions`) carries its reason.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd.lifecycle.actions import Action
from vaultd.provenance import Seals

if TYPE_CHECKING:
    import numpy as np

    from vaultd.config import LifecycleSettings
    from vaultd.lifecycle.entries import EntryView, Thresholds
    from vaultd.store import Store


# What a plan does to a file; a real run touches exactly the files its plan lists.
CREATE, CHANGE, REMOVE = "create", "change", "remove"
# Entry-by-entry similarities are computed a block of rows at a time, at most this many floats
# (16 MB) at once: all pairs at once is a matrix quadratic in the vault
SIMILARITY_FLOATS = 4_000_000


def similarity_blocks(vectors: np.ndarray, against: np.ndarray,
                      rows: list[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, cosines of rows offset, offset+1, … with every row of `against`), a block of
    rows at a time, at most SIMILARITY_FLOATS floats each. `rows`: indices into `vectors`
    (default: all of them, in order)."""
    n = len(vectors) if rows is None else len(rows)
    block = max(1, SIMILARITY_FLOATS // max(len(against), 1))
    for start in range(0, n, block):
        part = vectors[start:start + block] if rows is None else vectors[rows[start:start + block]]
        yield start, part @ against.T


@dataclass
class Plan:
    phase: str
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # vault path → create | change | remove
    diffs: dict[str, str] = field(default_factory=dict)  # vault path → unified diff

    def touch(self, path: str, change: str, before: str | None = None,
              after: str | None = None) -> None:
        """Record that applying the plan creates, changes or removes `path` (with the diff,
        when the texts are known). A file created then changed is still created."""
        if self.files.get(path) != CREATE or change == REMOVE:
            self.files[path] = change
        if before is not None and after is not None and before != after:
            import difflib

            self.diffs[path] = "".join(difflib.unified_diff(
                before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


@dataclass
class Drafts:
    """Files as a plan's actions will leave them, in memory: what a plan diffs, so that several
    actions on one file (entries leaving one daily log) show as one change."""

    root: Path
    original: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)

    def text(self, path: str) -> str:
        """The file's text as the actions planned so far leave it (OSError if unreadable)."""
        if path not in self.current:
            from vaultd import edits

            self.original[path] = self.current[path] = edits.read(self.root / path).text
        return self.current[path]

    def change(self, plan: Plan, path: str, text: str) -> None:
        self.text(path)
        self.current[path] = text
        plan.touch(path, CHANGE, self.original[path], text)


@dataclass
class Outcome:
    """What applying a plan wrote (vault-relative paths) and what it left alone, and why."""

    written: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.written += other.written
        self.conflicts += other.conflicts
        self.created += other.created


@dataclass
class Context:
    """Everything a phase may read, passed in: the index, the entries with their vectors, the
    settings, and the ways to embed and to ask an optional LLM."""

    root: Path
    store: Store
    views: list[EntryView]
    matrix: np.ndarray  # one unit vector per view, same order
    thresholds: Thresholds
    settings: LifecycleSettings
    embed: Callable[[list[str]], Any]
    templates: Path  # the shipped templates (heartbeat's prototypes), passed in by the caller
    llm: Any = None  # a `vaultd.llm.ChatConfig`, or None: offline
    today: dt.date = field(default_factory=dt.date.today)
    now: float = field(default_factory=time.time)
    dry_run: bool = False
    mirror: bool = True  # connect: write links into frontmatter too
    quiet_seconds: float = 0.0  # connect's mirror: leave files changed this recently alone
    # the vault's MACs: what vaultd writes as its claims is sealed with them (`provenance`)
    seals: Seals = field(default_factory=Seals.none)
    redact: bool = True  # `[privacy] redact`: credentials never reach a routed file

    @cached_property
    def by_id(self) -> dict[str, EntryView]:
        return {v.id: v for v in self.views}

    def in_scope(self, view: EntryView) -> bool:
        """Whether the entry is the agent's memory, which the lifecycle may change."""
        return view.owned(self.settings.scope)


@dataclass
class Phase:
    name: str
    plan: Callable[[Context], Plan]
    apply: Callable[[Context, Plan], Outcome]
    moves_entries: bool = False  # may archive entries: finish an interrupted move first
    ends_with_flush: bool = False  # MEMORY.md is brought up to date after it

    @property
    def summary(self) -> str:
        """The first line of the plan's docstring: what the phase does, for help and docs."""
        return (self.plan.__doc__ or "").strip().split("\n")[0]


@dataclass(frozen=True)
class FileChange:
    """A file a plan (or a flush) creates, changes or removes, and the diff of a change: what a
    dry run lists, so it names every file a real run would touch."""

    path: str
    change: str  # "create", "change" or "remove"
    diff: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "change": self.change,
                **({"diff": self.diff} if self.diff is not None else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileChange:
        return cls(data["path"], data["change"], data.get("diff"))


@dataclass
class PhaseReport:
    """One phase's plan (with reasons) and what applying it wrote: typed here, serialised once
    by `to_dict` (the JSON of `vaultd lifecycle --json` and `POST /lifecycle`) and read back
    by `from_dict`. Its actions show entries as labels and hold nothing for applying."""

    phase: str
    dry_run: bool
    notes: list[str]
    actions: list[Action]
    written: list[str]
    created: list[str]
    conflicts: list[str]
    files: list[FileChange] = field(default_factory=list)  # every file the plan touches

    @classmethod
    def of(cls, plan: Plan, outcome: Outcome, views: dict[str, EntryView],
           dry_run: bool) -> PhaseReport:
        actions = [action.reported(tuple(views[e].label() if e in views else e
                                         for e in action.entries))
                   for action in plan.actions]
        files = [FileChange(p, c, plan.diffs.get(p)) for p, c in sorted(plan.files.items())]
        return cls(plan.phase, dry_run, plan.notes, actions, outcome.written, outcome.created,
                   outcome.conflicts, files)

    @property
    def acted(self) -> list[Action]:
        """The actions that do something (a link action that found nothing is only news)."""
        return [a for a in self.actions if a.acts]

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "dry_run": self.dry_run, "notes": list(self.notes),
                "actions": [a.to_dict() for a in self.actions], "written": list(self.written),
                "created": list(self.created), "conflicts": list(self.conflicts),
                "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseReport:
        return cls(data["phase"], data["dry_run"], data["notes"],
                   [Action.from_dict(a) for a in data["actions"]], data["written"],
                   data["created"], data["conflicts"],
                   files=[FileChange.from_dict(f) for f in data.get("files", [])])


@dataclass
class LifecycleRun:
    """What `vaultd lifecycle` and `POST /lifecycle` answer: each phase's report and the
    entries' states after them; serialised once (`to_dict`), read back by `from_dict`."""

    phases: list[PhaseReport]
    states: dict[str, Any]  # the entries' states, as `Vault.states` gives them (plain JSON)

    def to_dict(self) -> dict[str, Any]:
        return {"phases": [r.to_dict() for r in self.phases], "states": self.states}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LifecycleRun:
        return cls([PhaseReport.from_dict(r) for r in data["phases"]], data["states"])
