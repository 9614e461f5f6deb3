"""What a lifecycle plan does, one typed value per action: a `Link`, a `Fade`, a `Merge`…
each a frozen dataclass with the fields its phase's apply reads, so no phase reads a payload
by string key.

An action is serialised in one place (`Action.to_dict`) for `vaultd lifecycle --json`,
`POST /lifecycle`, `vaultd flush --json` and MCP, and read back in one place
(`Action.from_dict`): `{"kind", "reason", "entries", <the kind's own fields, in the order
declared>}`. What applying needs but a report does not show (a link action's every link, a
rewrite's whole file texts) is `held`, never serialised: a report's copy has none.

`entries` are the entries' ids in a plan and their labels (`path#key`) in a report, which
is what a reader of the report recognises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")

# the fields every kind shares, serialised first and by name
_COMMON = ("entries", "reason")


@dataclass(frozen=True, kw_only=True)
class Action:
    """One thing a phase plans to do, with its reason (shown by `--dry-run`)."""

    kind: ClassVar[str]
    entries: tuple[str, ...]
    reason: str

    @property
    def acts(self) -> bool:
        """Whether applying it does something (a link action that found nothing is news)."""
        return True

    def reported(self, labels: tuple[str, ...]) -> Action:
        """The report's copy: entries as labels, nothing held for applying."""
        if any(f.name == "held" for f in fields(self)):
            return replace(self, entries=labels, held=None)  # type: ignore[call-arg]
        return replace(self, entries=labels)

    def to_dict(self) -> dict[str, Any]:
        """The one serialised form (JSON): kind, reason, entries, then the kind's fields."""
        own = {f.name: _json(getattr(self, f.name)) for f in fields(self)
               if f.name not in (*_COMMON, "held")}
        return {"kind": self.kind, "reason": self.reason, "entries": list(self.entries), **own}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Action:
        """The typed action a serialised one stands for (nothing held: it was not
        serialised). KeyError for an unknown kind or a missing field."""
        cls = KINDS[data["kind"]]
        return cls(**{f.name: _typed(data[f.name]) for f in fields(cls) if f.name != "held"})



def _json(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _typed(value: Any) -> Any:  # a JSON value
    return tuple(value) if isinstance(value, list) else value


@dataclass
class Links:
    """One entry's links, strongest first: the other entries' ids and the cosines (rounded to
    3 places), in an array: a Python float each would triple the size."""

    ids: list[str]
    scores: np.ndarray

    def pairs(self) -> Iterator[tuple[str, float]]:
        yield from zip(self.ids, self.scores.tolist())  # (a generator: floats made when read)


@dataclass(frozen=True)
class Rewrite:
    """A file's text as the plan read it and as applying leaves it: applying refuses the
    write if the file no longer holds `before`."""

    before: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Link(Action):
    """connect: the first entry linked to the others (the strongest shown)."""

    kind: ClassVar[str] = "link"
    scores: tuple[float, ...]  # of the links shown, strongest first
    links: int  # how many links in all
    hash: str  # the entry's content hash when linked (what `connected` remembers)
    held: Links | None = field(default=None, repr=False, compare=False)  # every link

    @property
    def acts(self) -> bool:
        return bool(self.scores)

    @property
    def every_link(self) -> Links:
        return _held(self, self.held)


@dataclass(frozen=True, kw_only=True)
class Mirror(Action):
    """connect: a note's links written into its `vaultd_related:` frontmatter."""

    kind: ClassVar[str] = "mirror"
    path: str
    held: Rewrite | None = field(default=None, repr=False, compare=False)

    @property
    def rewrite(self) -> Rewrite:
        return _held(self, self.held)


@dataclass(frozen=True, kw_only=True)
class Merge(Action):
    """consolidate: the entries merged into one new semantic note."""

    kind: ClassVar[str] = "merge"
    title: str
    path: str  # the merged note's vault path
    created: str  # ISO date
    facts: tuple[str, ...]  # one bullet each, oldest first, with provenance (said_once)
    tags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Route(Action):
    """route: a proven entry sent to a target's managed block."""

    kind: ClassVar[str] = "route"
    target: str


@dataclass(frozen=True, kw_only=True)
class Write(Action):
    """route: a target's managed block rewritten."""

    kind: ClassVar[str] = "write"
    target: str  # as declared in `[lifecycle] route_targets`
    path: str  # where it resolved to
    diff: str
    held: Rewrite | None = field(default=None, repr=False, compare=False)

    @property
    def rewrite(self) -> Rewrite:
        return _held(self, self.held)


@dataclass(frozen=True, kw_only=True)
class Reprieve(Action):
    """age: an isolated entry's reprieve counted."""

    kind: ClassVar[str] = "reprieve"
    reprieves: int  # the count after this one


@dataclass(frozen=True, kw_only=True)
class Fade(Action):
    """age, prune, recovery: the entry moves to archive/."""

    kind: ClassVar[str] = "fade"


@dataclass(frozen=True, kw_only=True)
class Promote(Action):
    """promote: the entry becomes proven."""

    kind: ClassVar[str] = "promote"


@dataclass(frozen=True, kw_only=True)
class Extract(Action):
    """heartbeat: the entry copied, word for word, into its kind's note."""

    kind: ClassVar[str] = "extract"
    type: str  # semantic | procedural
    path: str  # the kind's note
    title: str  # its title, when it is created
    bullet: str  # the line added


KINDS: dict[str, type[Action]] = {cls.kind: cls for cls in (
    Link, Mirror, Merge, Route, Write, Reprieve, Fade, Promote, Extract)}


def _held(action: Action, held: T | None) -> T:
    """What applying needs; a report's copy has none, and cannot be applied."""
    if held is None:
        raise ValueError(f"a reported {action.kind} action holds nothing to apply")
    return held
