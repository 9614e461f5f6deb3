"""What a search asks: one `SearchRequest` for the CLI, the library (`Vault.search`), the
daemon's `POST /search` and MCP, with its JSON form (the body `/search` takes) and the JSON it
is answered with (`vaultd search --json`).

Stdlib only: the CLI builds a request before it knows whether the daemon will answer it, and
with the daemon up it must not import the index or the search engine.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

Mode = Literal["hybrid", "vector", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "vector", "bm25")
# A note's type: its frontmatter `type:`, else its top folder, else "note" (vaultd.notes).
TYPES: tuple[str, ...] = ("episodic", "semantic", "procedural", "note")
MAX_K = 1000  # what a JSON request may ask for
# Where archived notes (faded or merged entries, under archive/) stand in a search:
# "lower" (the default) — found, ranked as a lower tier: their score is discounted, so a live
# hit of similar relevance comes first; "equal" — ranked like live notes (`vaultd search
# --archive`); "none" — left out (`--no-archive`).
Archive = Literal["lower", "equal", "none"]
ARCHIVE_TIERS: tuple[str, ...] = ("lower", "equal", "none")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class JsonHit(Protocol):
    """What `response` needs of a hit (`search.Hit` is one). A protocol rather than the class:
    `search` imports this module, so naming `search.Hit` here would close an import cycle."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SearchRequest:
    """A search: the query, how many hits, filters, mode and ranking options.

    `types` and `tags` may be given as any iterable of strings (or None) and are kept as
    tuples. `half_life_days` and `mmr_lambda` left at None mean the vault's `[search]`
    settings. `record` counts the top 5 hits as recalled, for recall promotion.
    """

    query: str
    k: int = 10
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    path_glob: str | None = None
    since: str | None = None  # YYYY-MM-DD
    until: str | None = None
    mode: Mode = "hybrid"
    archive: Archive = "lower"
    half_life_days: float | None = None
    mmr_lambda: float | None = None
    record: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types or ()))
        object.__setattr__(self, "tags", tuple(self.tags or ()))

    def check(self) -> SearchRequest:
        """Itself, or ValueError naming the field that is wrong and the values it takes (for
        a person or a client): a mistake must never answer "no hits". The CLI, the library,
        `/search` (400) and MCP all check here, so they agree."""
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValueError("'query' must be a non-empty string")
        if self.mode not in MODES:
            raise ValueError(f"'mode' must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.archive not in ARCHIVE_TIERS:
            raise ValueError(f"'archive' must be one of {', '.join(ARCHIVE_TIERS)}, "
                             f"not {self.archive!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise ValueError(f"'k' must be an integer from 1 to {MAX_K}, not {self.k!r}")
        for name in self.types:
            if name not in TYPES:
                raise ValueError(f"'type' must be one of {', '.join(TYPES)}, not {name!r}")
        days = {field: _date(field, value) for field, value in
                (("since", self.since), ("until", self.until)) if value is not None}
        if len(days) == 2 and days["since"] > days["until"]:
            raise ValueError(f"'since' ({self.since}) is after 'until' ({self.until})")
        return self

    @property
    def daemon_can_answer(self) -> bool:
        """The daemon's `/search` takes no ranking options: with either set, search here."""
        return self.half_life_days is None and self.mmr_lambda is None

    # -- the JSON of `POST /search` (docs/api.md; clients depend on these field names)
    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SearchRequest:
        """The request a `/search` body asks for; ValueError when a field is wrong."""
        if not isinstance(body.get("query"), str):
            raise ValueError("'query' must be a string")
        return cls(
            query=body["query"], k=body.get("k", 10), mode=body.get("mode", "hybrid"),
            types=_strings(body.get("type", body.get("types")), "type"),
            tags=_strings(body.get("tags", body.get("tag")), "tags"),
            path_glob=body.get("path") or None, since=body.get("since") or None,
            until=body.get("until") or None, archive=_archive(body.get("archive")),
        ).check()

    def to_json(self) -> dict[str, Any]:
        """The `/search` body for this request (the daemon records recalls itself)."""
        return {"query": self.query, "k": self.k, "type": list(self.types),
                "tags": list(self.tags), "path": self.path_glob, "since": self.since,
                "until": self.until, "mode": self.mode, "archive": self.archive}

    def response(self, hits: Iterable[JsonHit], *, stale_files: int) -> dict[str, Any]:
        """The JSON of `vaultd search --json`, also what the daemon's `/search` answers.
        `pending_vectors`: chunks without a vector yet, ranked by BM25 alone (`search.Hits`)."""
        return {"query": self.query, "mode": self.mode, "stale_files": stale_files,
                "pending_vectors": getattr(hits, "pending_vectors", 0),
                "hits": [h.to_dict() for h in hits]}


def _archive(value: Any) -> Any:
    """`archive` as a tier name; the booleans of earlier clients: true → "equal" (they asked
    for the archive too), false → the default, "lower"."""
    if value is None or value is False:
        return "lower"
    return "equal" if value is True else value


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"'{name}' must be a string or a list of strings")


def _date(field: str, value: Any) -> dt.date:
    """A YYYY-MM-DD date that exists, or ValueError saying so."""
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"'{field}' must be a date YYYY-MM-DD (such as "
                     f"{dt.date.today().isoformat()}), not {value!r}")
