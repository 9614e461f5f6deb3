"""What a search asks and what it answers: one `SearchRequest` for the CLI, the library
(`Vault.search`), the daemon's `POST /search` and MCP, with its JSON form (the body `/search`
takes); its answer a `SearchAnswer` of `Hit`s, serialised once (`to_dict`: `vaultd search
--json` and `/search`) and read back once (`from_dict`: the CLI and the library from the
daemon).

Stdlib only: the CLI builds a request before it knows whether the daemon will answer it, and
with the daemon up it must not import the index or the search engine.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Sequence

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


@dataclass(frozen=True)
class Hit:
    """One hit: where it is (path, line range of its chunk), how it ranked, and its text — the
    passage of the chunk that best matches the query, or the whole chunk (`full`)."""

    path: str
    score: float
    text: str
    type: str
    heading: str
    lines: tuple[int, int]
    chunk_id: str
    entry_id: str
    date: str | None
    archived: bool = False  # under archive/: a faded or merged entry (a lower tier)

    def to_dict(self) -> dict[str, Any]:
        # field by field: dataclasses.asdict deep-copies every value, a visible share of a
        # fast search's time (bench/RESULTS.md)
        return {"path": self.path, "score": round(self.score, 6), "text": self.text,
                "type": self.type, "heading": self.heading, "lines": list(self.lines),
                "chunk_id": self.chunk_id, "entry_id": self.entry_id, "date": self.date,
                "archived": self.archived}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        start, end = data["lines"]
        return cls(path=data["path"], score=float(data["score"]), text=data["text"],
                   type=data["type"], heading=data["heading"], lines=(start, end),
                   chunk_id=data["chunk_id"], entry_id=data["entry_id"],
                   date=data.get("date"), archived=bool(data.get("archived", False)))


@dataclass(frozen=True)
class SearchAnswer:
    """A search's answer. `stale_files`: file changes not indexed yet; `pending_vectors`:
    chunks without a vector yet, ranked by BM25 alone (`search.Hits`)."""

    query: str
    mode: Mode
    stale_files: int
    pending_vectors: int
    hits: Sequence[Hit]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "mode": self.mode, "stale_files": self.stale_files,
                "pending_vectors": self.pending_vectors,
                "hits": [h.to_dict() for h in self.hits]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchAnswer:
        return cls(data["query"], data["mode"], data["stale_files"],
                   int(data.get("pending_vectors", 0)), [Hit.from_dict(h) for h in data["hits"]])


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
    # The day the query is asked (YYYY-MM-DD): what "yesterday", "last week" or "in May" in the
    # query mean, and what recency decay counts from. None: today. An agent replaying an old
    # conversation passes the conversation's day.
    today: str | None = None
    # A hit's text: False (default) — the lines of its chunk that best match the query, within
    # `[search] passage_chars` (vaultd.passages); True — the chunk's whole text.
    full: bool = False

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
                (("since", self.since), ("until", self.until), ("today", self.today))
                if value is not None}
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
            today=body.get("today") or None, full=_flag(body.get("full"), "full"),
        ).check()

    def to_json(self) -> dict[str, Any]:
        """The `/search` body for this request (the daemon records recalls itself)."""
        return {"query": self.query, "k": self.k, "type": list(self.types),
                "tags": list(self.tags), "path": self.path_glob, "since": self.since,
                "until": self.until, "mode": self.mode, "archive": self.archive,
                "today": self.today, "full": self.full}

    def answer(self, hits: Sequence[Hit], *, stale_files: int) -> SearchAnswer:
        """This request's answer: `hits` (a `search.Hits` says how many chunks wait for
        their vector)."""
        return SearchAnswer(self.query, self.mode, stale_files,
                            getattr(hits, "pending_vectors", 0), hits)


def _archive(value: Any) -> Any:
    """`archive` as a tier name; the booleans of earlier clients: true → "equal" (they asked
    for the archive too), false → the default, "lower"."""
    if value is None or value is False:
        return "lower"
    return "equal" if value is True else value


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise ValueError(f"'{name}' must be true or false, not {value!r}")


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
