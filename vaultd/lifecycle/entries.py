"""What the lifecycle works on: every indexed entry with its durable state as the files say
(`EntryView`), and one unit vector per entry (`snapshot`).

Durable state lives in the files, so it survives an index rebuild: `status: proven`,
`pinned: true`, `reprieves`, `consolidated_from`, and whatever sits under `archive/`. A daily
log's entries share one frontmatter, so its per-entry state lives under a `vaultd:` key, by
entry key (the entry's heading, else its first line):

    vaultd: {proven: ["09:14 — Flaky refund webhook test"], reprieves: {"14:02 lunch": 1}}

The claims that give an entry vaultd's authority (proven, consolidated, extracted) count only
when vaultd can verify it wrote them (`vaultd.provenance`): `EntryView.claims` holds the ones
that passed, and `snapshot` checks them with the vault's `Seals`.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaultd.layout import in_scope, is_archived
from vaultd.notes import BULLET_RE, HEADING_RE, PROVENANCE_RE, entry_title, fence_mask
from vaultd.provenance import Seals

if TYPE_CHECKING:
    import numpy as np

    from vaultd.store import IndexStore

PROTECTED_TYPES = ("procedural", "semantic")
ACTIVE_TYPES = ("episodic",)


@dataclass(frozen=True)
class Thresholds:
    link: float
    consolidate: float
    duplicate: float
    route: float


@dataclass
class EntryView:
    id: str
    path: str
    key: str
    heading: str
    type: str
    date: str | None
    tags: tuple[str, ...]
    start_line: int
    end_line: int
    text: str
    hash: str
    is_daily: bool
    frontmatter: dict[str, Any]
    order: int = 0  # position in vault time: date, then path, then position in the file
    # the claims vaultd verifiably wrote (`provenance`): a whole note's sealed frontmatter
    # keys; "status" for a daily-log entry whose `proven` is sealed
    claims: frozenset[str] = frozenset()
    # the merged note that keeps this entry's facts (a consolidation vaultd verifiably made
    # lists it with this very text), else None: it stays where it is, merged once
    merged_into: str | None = None

    @property
    def archived(self) -> bool:
        return is_archived(self.path)

    def state(self) -> dict[str, Any]:
        """A daily log's `vaultd:` bookkeeping (per entry key)."""
        state = self.frontmatter.get("vaultd")
        return state if isinstance(state, dict) else {}

    @property
    def proven(self) -> bool:
        """Proven knowledge, as vaultd verifiably recorded it (promoted or consolidated); a
        `status: proven` a note gives itself is the note's own words, not vaultd's claim."""
        if "status" not in self.claims:
            return False
        if self.is_daily:
            return True
        return str(self.frontmatter.get("status", "")).lower() == "proven"

    @property
    def reprieves(self) -> int:
        raw = (self.state().get("reprieves", {}).get(self.key, 0)
               if self.is_daily and isinstance(self.state().get("reprieves"), dict)
               else (0 if self.is_daily else self.frontmatter.get("reprieves", 0)))
        try:
            return int(raw)
        except (TypeError, ValueError):
            return 0

    @property
    def pinned(self) -> bool:
        return self.frontmatter.get("pinned") is True or "pinned" in self.tags

    @property
    def consolidated(self) -> bool:
        """A note consolidation made (it keeps the facts of the entries it merged)."""
        return "consolidation" in self.claims

    @property
    def made_by_vaultd(self) -> bool:
        """A note vaultd verifiably made: merged by consolidation or extracted by the
        heartbeat."""
        return self.consolidated or "extracted_from" in self.claims

    @property
    def chosen_summary(self) -> str | None:
        """The note's `summary:` (the line a user chose for it), if it sets one. Not on a note
        vaultd made: vaultd writes none there, and its seal does not cover one someone added,
        so it would be a stranger's words said with vaultd's authority."""
        chosen = self.frontmatter.get("summary")
        if self.is_daily or self.made_by_vaultd or not isinstance(chosen, str):
            return None
        return " ".join(chosen.split()) or None

    def owned(self, scope: Iterable[str]) -> bool:
        """Whether the entry is the agent's memory, which the lifecycle may change: in one
        of the `scope` folders, or a note vaultd made (merged or extracted)."""
        return in_scope(self.path, scope) or self.made_by_vaultd

    def protection(self, scope: Iterable[str] | None = None) -> str | None:
        """Why this entry never fades, or None. With `scope`, an entry outside it is the
        user's, not the agent's memory."""
        if scope is not None and not self.owned(scope):
            return "outside the lifecycle's scope ([lifecycle] scope): the user's, never changed"
        if self.type in PROTECTED_TYPES:
            return f"{self.type} notes are curated knowledge; only episodes fade"
        if self.type not in ACTIVE_TYPES:
            return f"type '{self.type}' is outside the lifecycle"
        if self.pinned:
            return "pinned"
        if "decision" in (t.lower() for t in self.tags):
            return "tagged #decision"
        if self.proven:
            return "proven"
        if self.merged_into:
            return f"merged into {self.merged_into}, which keeps it with its group"
        return None

    @property
    def settled(self) -> bool:
        """Archived, or merged into a note that keeps its facts: what the lifecycle no longer
        groups, extracts from or offers MEMORY.md (its words are said elsewhere)."""
        return self.archived or self.merged_into is not None

    @property
    def source(self) -> str:
        """How a merged note names this entry among its sources (`consolidated_from`)."""
        return f"{self.path}#{self.key}" if self.is_daily else self.path

    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}" + (
            f" ({self.key[:60]})" if self.is_daily else "")


def claims_of(seals: Seals, frontmatter: dict[str, Any], key: str, entry_hash: str,
              is_daily: bool) -> frozenset[str]:
    """The claims of one entry that vaultd verifiably wrote (see `EntryView.claims`)."""
    if is_daily:
        state = frontmatter.get("vaultd")
        ok = isinstance(state, dict) and seals.entry_proven(state, key, entry_hash)
        return frozenset({"status"}) if ok else frozenset()
    return seals.note_claims(frontmatter, entry_hash)


def snapshot(store: IndexStore, seals: Seals | None = None) -> tuple[list[EntryView], np.ndarray]:
    """Every indexed entry with its text and unit vector (the mean of its chunks' vectors),
    its claims checked with `seals` (none verified without them)."""
    import numpy as np

    seals = seals or Seals.none()

    files = store.file_frontmatters()
    texts: dict[str, list[str]] = {}
    sums: dict[str, np.ndarray] = {}
    for entry_id, text, blob in store.entry_chunks():
        texts.setdefault(entry_id, []).append(text)
        vec = np.frombuffer(blob, dtype=np.float32)
        sums[entry_id] = sums[entry_id] + vec if entry_id in sums else vec.copy()
    views: list[EntryView] = []
    vectors: list[np.ndarray] = []
    for order, row in enumerate(store.entry_rows()):
        if row.id not in sums:
            continue  # an entry with no text chunk (e.g. only a managed block)
        fm, daily = files.get(row.path, ({}, False))
        views.append(EntryView(row.id, row.path, row.key, row.heading, row.type, row.date,
                               row.tags, row.start_line, row.end_line,
                               "\n\n".join(texts[row.id]), row.hash, daily, fm, order,
                               claims_of(seals, fm, row.key, row.hash, daily)))
        vec = sums[row.id]
        vectors.append(vec / max(float(np.linalg.norm(vec)), 1e-12))
    merged = merged_sources(views)
    for view in views:
        if not view.archived:
            view.merged_into = merged.get((view.source, view.hash))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return views, matrix


MERGE_CLAIMS = frozenset({"consolidation", "consolidated_from", "consolidated_hashes"})


def merged_sources(views: Iterable[EntryView]) -> dict[tuple[str, str], str]:
    """(source, hash) → the merged note that lists it: every source of a consolidation vaultd
    verifiably made (its claims sealed), as `consolidated_from` names it (`path#key` for a
    daily-log entry, `path` for a note) with the text it was merged from."""
    out: dict[tuple[str, str], str] = {}
    for v in views:
        fm = v.frontmatter
        sources, hashes = fm.get("consolidated_from"), fm.get("consolidated_hashes")
        if v.archived or not v.claims >= MERGE_CLAIMS or not isinstance(sources, list) \
                or not isinstance(hashes, list) or len(sources) != len(hashes):
            continue
        for source, digest in zip(sources, hashes):
            out.setdefault((str(source), str(digest)), v.path)
    return out


# ---------------------------------------------------------------------------- sentences

# any list item's marker, nested or not, with a task box: what a statement does not repeat
LIST_MARKER_RE = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*_])")
TAGS_ONLY_RE = re.compile(r"(#[\w/-]+\s*)+")
TRAILING_TAGS_RE = re.compile(r"(\s+#[\w/-]+)+$")
LINK_FIRST_RE = re.compile(r"^(\[\[[^\]]*\]\]|\[[^\]]*\]\([^)]*\))\s*([—–:-]|$)")
LINK_RE = re.compile(r"\[\[[^\]]*\]\]|\[([^\]]*)\]\([^)]*\)")
FACT_MAX = 280  # a longer bullet or paragraph is offered sentence by sentence


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]{3,}", text.lower()))


def sentences(text: str) -> list[str]:
    parts = [p.strip(" -*\t") for p in re.split(r"(?<=[.!?])\s+|\n+", text)]
    return [p for p in parts if len(p) > 2 and not TAGS_ONLY_RE.fullmatch(p)]


def is_bullet(view: EntryView) -> bool:
    """A daily log's top-level bullet entry (OpenClaw style): the bullet is the fact itself."""
    return bool(BULLET_RE.match(view.key))


def statements(text: str) -> list[str]:
    """An entry's statements, in order, each one whole: every list item (with its continuation
    lines, its provenance suffix stripped) and every sentence of a paragraph. An item or a
    sentence longer than FACT_MAX is split into its sentences; code, tables, headings and
    tag-only lines are not statements."""
    blocks: list[tuple[bool, list[str]]] = []  # (is a list item, its lines)
    lines = text.split("\n")
    for line, fenced in zip(lines, fence_mask(lines)):
        stripped = line.strip()
        if (fenced or not stripped or stripped.startswith(("|", "<!--"))
                or HEADING_RE.match(stripped) or TAGS_ONLY_RE.fullmatch(stripped)):
            blocks.append((False, []))  # a block ends here
            continue
        item = LIST_MARKER_RE.match(line)
        if item:
            blocks.append((True, [line[item.end():].strip()]))
        elif blocks and blocks[-1][1]:
            blocks[-1][1].append(stripped.lstrip("> ").strip())
        else:
            blocks.append((False, [stripped.lstrip("> ").strip()]))
    out: list[str] = []
    for is_item, said in blocks:
        joined = PROVENANCE_RE.sub("", " ".join(t for t in said if t)).strip()
        if not joined:
            continue
        parts = [joined] if is_item and len(joined) <= FACT_MAX else SENTENCE_END_RE.split(joined)
        parts = [TRAILING_TAGS_RE.sub("", p.strip()) for p in parts]
        out.extend(p for p in parts if _is_statement(p))
    return out


def _is_statement(text: str) -> bool:
    """Whether a piece of text states something on its own: three words or more besides its
    links (not "See [[x]]."), not a reference (a line that starts with a link and a separator,
    as a list of sources does), not a lead-in (ending in ':') or a fragment (',', ';', 'or')."""
    return (len(text) >= 20 and not LINK_FIRST_RE.match(text)
            and not re.search(r"([:,;]|\b(or|and|but))$", text)
            and len(words(LINK_RE.sub("", text))) >= 3
            and not TAGS_ONLY_RE.fullmatch(text) and len(text) <= FACT_MAX * 2)


def summary(view: EntryView, limit: int = 160) -> str:
    """One line for an entry: the note's `summary:` if it sets one; a bullet entry's own text,
    once; else its title and its first statement that is not the title."""
    chosen = view.chosen_summary
    if chosen:
        line = chosen
    elif is_bullet(view):
        line = next(iter(statements(view.text)), entry_title(view.key))
    else:
        title = entry_title(view.key)
        first = next((s for s in statements(view.text) if s.lower() != title.lower()), "")
        line = f"{title}: {first}" if first and title else (title or first)
    return line if len(line) <= limit else line[:limit - 1] + "…"


# ------------------------------------------------------- facts in notes vaultd writes
#
# The format consolidation and the heartbeat write, and flush reads (MEMORY.md renders a
# note's facts without their provenance): `# <Title>`, then one top-level bullet per fact,
# `- <fact verbatim> — [YYYY-MM-DD](<relative link to its source>)`.


def fact(view: EntryView) -> str:
    """An entry as one line, word for word: its lines joined by spaces, without a bullet
    marker or a heading line; a heading's title (its time dropped) leads when the body does
    not already say it."""
    lines = [line.strip() for line in view.text.split("\n")]
    title = ""
    if lines and lines[0].startswith("#"):
        title = entry_title(lines.pop(0).lstrip("#").strip())
    parts = [line for line in lines if line]
    if parts:
        parts[0] = re.sub(r"^[-*+]\s+", "", parts[0])
    text = " ".join(parts)
    if title and title.lower() not in text.lower():
        return f"{title}: {text}" if text else title
    return text


def provenance(view: EntryView, note: str, source: str, today: dt.date) -> str:
    """` — [date](link)`: when the fact was recorded (the entry's date, else its note's
    `created`, else today) and a link from the note `note` to `source`, where the fact's
    entry is (both vault paths)."""
    date = view.date or str(view.frontmatter.get("created") or "")[:10] or today.isoformat()
    link = posixpath.relpath(source, posixpath.dirname(note) or ".")
    return f" — [{date}]({link.replace(' ', '%20')})"
