"""flush: what an agent reads at session start, MEMORY.md's managed block, brought up to date.

A flush indexes what changed, connects new entries, routes proven knowledge, then renders the
block. Idempotent: with nothing new, every file stays byte-identical (and keeps its mtime).

The block is worth its budget (`[lifecycle] memory_budget`, 8,000 characters): it packs as many
distinct, specific facts as fit. Sections come from `templates/memory_block.md` (overridable by
`.vaultd/memory_block.md`): key facts, procedures, decisions, open threads, recent episodes.
A line states a fact itself, whole and verbatim — a daily log's bullet (once), a consolidated
note's bullet (its provenance suffix dropped), a note's most informative sentence (a note's
`summary:` frontmatter chooses it) — never a note's preamble, never cut mid-way. Lines are
grouped under their source, linked once; in a group, the agent's own lines that start with
the same name say it once ("Caroline: went to X; plans Y."), a quoted note's never.
Procedures, decisions, open threads and recent episodes get one line per entry, each section
within a share of the budget; key facts fill the rest, with whatever those had no room for.

A fact's value: its specificity (the IDF of its words over the vault: names, numbers, places,
rare terms) per character, times exp(-0.35 z) for an entry z standard deviations more central
than the vault's average (hubs are generic; what gets asked is specific), times what its words
say about being asked (`CUES`: a number or a time, up), times boosts for
proven status, recalls and durable notes. A consolidated note's facts restate one theme, so
they count for less per fact (CONSOLIDATED_WEIGHT) and the budget goes to distinct facts first
(giving each theme a line of its own regardless cost locomo-dev coverage).
Faded and merged entries (under `archive/`) are not candidates: fading lowers prominence
(search still finds them), and a merged entry's facts are in its note. The greedy choice skips
near-duplicates and discounts a fact close to one already chosen (MMR on the entries' vectors).
Tuned on locomo-dev (bench/quality/memory_lifecycle.py, bench/RESULTS.md). What does not fit
is counted in a closing line that says how to find it, never cut silently. vaultd owns only the
block between its markers; the rest of the file is the user's and is kept verbatim.
"""

from __future__ import annotations

import heapq
import math
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd import edits, layout
from vaultd.blocks import MarkerError, with_block
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.entries import (
    FACT_MAX,
    LIST_MARKER_RE,
    EntryView,
    is_bullet,
    snapshot,
    statements,
    words,
)
from vaultd.lifecycle.memory_lines import Fact, group_text, label, names_of, target
from vaultd.lifecycle.plans import FileChange, PhaseReport
from vaultd.notes import entry_title
from vaultd.provenance import Seals
from vaultd.redact import redact
from vaultd.store import RecallKey, Store

if TYPE_CHECKING:
    import numpy as np

    from vaultd.config import LifecycleSettings

TEMPLATE = "memory_block.md"
SECTIONS = ("key_facts", "procedures", "decisions", "open_threads", "recent")
OPEN_TAGS = {"todo", "open", "question", "followup", "follow-up", "wip"}
RECENT = 10  # recent episodes shown, at most
# The share of the budget each one-line-per-entry section may take; key facts get the rest
# (and whatever these leave unused). Filled in this order.
ONE_LINE = ("procedures", "decisions", "open_threads", "recent")
SHARES = {"procedures": 0.25, "decisions": 0.1, "open_threads": 0.1, "recent": 0.08}
# How a fact is valued: tuned on locomo-dev (bench/quality/memory_lifecycle.py; the figures
# of each choice are in bench/RESULTS.md)
LENGTH_POWER = 1.0  # value = specificity / characters^p: IDF per character (a higher power
# favours short facts, and the long, specific ones are asked about as often)
ONE_LINE_POWER = 1.0  # the same for the one line of a procedure, decision, thread or episode
GENERIC_PENALTY = 0.35  # value × exp(-this × z), z = how central the entry is (standardised)
PROVEN_BOOST = 1.5
DURABLE_BOOST = 1.2  # semantic notes and the user's notes: knowledge rather than an episode
# A consolidated note's facts are restatements of one theme (each ≥ the consolidate threshold
# to the others): a question about the theme needs one of them, so per fact they are asked about far
# less often than an unmerged episode's, on every locomo-dev conversation (bench/RESULTS.md).
# Valued as episodes times this (on the plateau of the tuning grid), not boosted as proven.
CONSOLIDATED_WEIGHT = 0.35
RECALL_BOOST = 0.2  # per query that recalled the entry, up to RECALL_CAP
RECALL_CAP = 5
SAME_ENTRY_DECAY = 0.6  # each further fact of one entry is worth this much less
SIMILARITY_PENALTY = 0.5  # MMR: value × (1 - this × cosine to the closest chosen entry)
DUPLICATE_WORDS = 0.8  # word Jaccard at which a fact repeats one already chosen
POOL = 3000  # candidates the greedy choice looks at (the most valuable first)
FACTOR = True  # a group's lines say a shared subject once (`memory_lines.factored`)
# What an agent is asked about first: cues in a fact's words, each a factor on its value.
# Cheap, deterministic and language-light: digits are any language's; the words are English,
# as the prototypes are. Each cue was measured alone on locomo-dev and only those that paid
# are here (bench/RESULTS.md, issue 28): a dated event ("last week", "in 2022") is what "when"
# questions ask. Cues for plans, preferences, relations between people, names and past-tense
# events did not pay. Lowering opinions ("feels", "important") paid a little on locomo-dev's
# chat, but in a working vault those words mark a user's rules and preferences ("it is
# important to run migrations first"), which an agent needs every session: not shipped.
CUES: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("number", re.compile(r"\d"), 1.6),
    ("when", re.compile(r"\b(?:yesterday|today|tonight|tomorrow|ago|recently|last|next|since|"
                        r"(?:mon|tues|wednes|thurs|fri|satur|sun)day|weekend|week|month|"
                        r"year)s?\b", re.I), 2.5),
)
CLOCK_RE = re.compile(r"^\d{1,2}[:.]\d{2}\b")  # a daily log's "09:30 …": when it was written


def cue_factor(text: str) -> float:
    """How much more likely a fact is to be asked about, by its cues (`CUES`): the product
    of the factors of those it has."""
    text = CLOCK_RE.sub("", text)
    factor = 1.0
    for _, pattern, weight in CUES:
        if pattern.search(text):
            factor *= weight
    return factor


@dataclass
class Section:
    """What one section shows: facts grouped by source path, in the order chosen."""
    groups: dict[str, list[Fact]] = field(default_factory=dict)
    chars: int = 0


def _template(root: Path, templates: Path) -> str:
    override = layout.state_dir(root) / TEMPLATE
    return (override if override.is_file() else templates / TEMPLATE).read_text(encoding="utf-8")


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _render_section(section: Section, links: dict[str, str], daily: set[str],
                    names: frozenset[str] = frozenset()) -> str:
    """Durable notes' groups first (most valuable first), then daily logs, newest first."""
    dailies = sorted((p for p in section.groups if p in daily), key=lambda p: (Path(p).stem, p),
                     reverse=True)
    return "\n".join(group_text(links[path], section.groups[path], names)
                     for path in [p for p in section.groups if p not in daily] + dailies)


def _tokens(text: str) -> set[str]:
    """Every word and number of a fact (short ones too: "day 44" is not "day 45")."""
    return set(re.findall(r"\w+", text.lower()))


class Chooser:
    """The greedy, budgeted choice of facts, shared by all sections (so a fact, an entry or a
    near-duplicate shown in one section is not shown again in another)."""

    def __init__(self, views: list[EntryView], vectors: np.ndarray, links: dict[str, str],
                 redact_secrets: bool = True, names: frozenset[str] = frozenset()):
        import numpy as np

        self.views, self.vectors, self.links = views, vectors, links
        self.names = names  # subjects a group's lines may say once (`memory_lines.factored`)
        self.redact_secrets = redact_secrets
        self._redacted: dict[tuple[int, int], Fact] = {}
        self.shown: Counter[int] = Counter()  # entry → facts shown
        self.word_sets: list[set[str]] = []
        self.chosen_vectors = np.zeros((0, vectors.shape[1] if vectors.size else 1),
                                       dtype=np.float32)
        self.chosen_entries: list[int] = []
        self.repeats: set[tuple[int, int]] = set()  # (entry, unit) near-duplicates skipped
        self.said: set[tuple[int, int]] = set()  # (entry, unit) shown

    def _adjusted(self, fact: Fact) -> float:
        value = fact.value * SAME_ENTRY_DECAY ** self.shown[fact.entry]
        others = [i for i, e in enumerate(self.chosen_entries) if e != fact.entry]
        if others and SIMILARITY_PENALTY:
            sims = self.chosen_vectors[others] @ self.vectors[fact.entry]
            value *= 1.0 - SIMILARITY_PENALTY * max(0.0, float(sims.max()))
        return value

    def _said_safely(self, fact: Fact) -> Fact:
        """The fact as it may be written: credentials redacted (`vaultd.redact`). Only facts
        the choice looks at pay for it, once each — not every statement of the vault."""
        if not self.redact_secrets:
            return fact
        key = (fact.entry, fact.unit)
        if key not in self._redacted:
            self._redacted[key] = replace(fact, prefix=redact(fact.prefix),
                                          body=redact(fact.body))
        return self._redacted[key]

    def _duplicate(self, fact: Fact) -> bool:
        said = _tokens(fact.text)
        return any(len(said & seen) / max(len(said | seen), 1) >= DUPLICATE_WORDS
                   for seen in self.word_sets)

    def fill(self, candidates: list[Fact], section: Section, room: int,
             one_line: bool = False) -> None:
        """Add the most valuable candidates to `section` while they fit in `room` characters."""
        import numpy as np

        pool = sorted(candidates, key=lambda f: (-f.value, f.entry, f.unit))[:POOL]
        heap = [(-f.value, n, f) for n, f in enumerate(pool)]
        heapq.heapify(heap)
        while heap:
            _, n, fact = heapq.heappop(heap)
            fact = self._said_safely(fact)
            if one_line and self.shown[fact.entry] and not fact.joins:
                continue  # a note's one line; a daily log's entry may say more on its line
            if fact.joins and not fact.prefix and fact.unit and (fact.entry, 0) not in self.said:
                continue  # an untitled entry's first sentence is its context: it comes first
            value = self._adjusted(fact)
            if heap and value < -heap[0][0] - 1e-12:
                heapq.heappush(heap, (-value, n, fact))  # lazily re-ranked: others may win now
                continue
            path = self.views[fact.entry].path
            had = section.groups.get(path, [])
            delta = len(group_text(self.links[path], [*had, fact], self.names)) + 1 - (
                len(group_text(self.links[path], had, self.names)) + 1 if had else 0)
            if section.chars + delta > room:
                continue
            if self._duplicate(fact):
                self.repeats.add((fact.entry, fact.unit))  # said already: not left out
                continue
            section.groups.setdefault(path, []).append(fact)
            self.said.add((fact.entry, fact.unit))
            section.chars += delta
            self.shown[fact.entry] += 1
            self.word_sets.append(_tokens(fact.text))
            if self.shown[fact.entry] == 1:
                self.chosen_entries.append(fact.entry)
                self.chosen_vectors = np.vstack([self.chosen_vectors,
                                                 self.vectors[fact.entry][None, :]])


def _idf(views: list[EntryView]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for v in views:
        df.update(words(v.text))
    n = len(views)
    return {w: math.log((n + 1) / (c + 0.5)) for w, c in df.items()}


def _centrality(vectors: np.ndarray) -> np.ndarray:
    """How central (generic) each entry is: its mean cosine to every entry (= its cosine to
    the mean vector), standardised over the vault. Hubs are generic; what gets asked is
    specific."""
    import numpy as np

    if len(vectors) < 2:
        return np.zeros(len(vectors))
    mean = vectors @ vectors.mean(axis=0)
    return (mean - mean.mean()) / max(float(mean.std()), 1e-9)


def _boost(view: EntryView, recalls: int) -> float:
    if view.consolidated:
        boost = CONSOLIDATED_WEIGHT
    else:
        boost = PROVEN_BOOST if view.proven else 1.0
        if view.type not in ("episodic", "procedural") and not view.is_daily:
            boost *= DURABLE_BOOST
    return boost * (1.0 + RECALL_BOOST * min(recalls, RECALL_CAP))


SPECIFIC_RE = re.compile(r"`[^`]+`|\b\w*\d\w*\b|(?<=[^.!?:]\s)[A-Z][\w-]+")


def specific_terms(text: str, known: str = "") -> int:
    """How many specific terms a statement names — numbers, `code`, capitalised names after
    its first word — leaving out the words of `known` (the note's title)."""
    skip = words(known)
    return sum(1 for m in SPECIFIC_RE.finditer(text)
               if not (words(m.group()) and words(m.group()) <= skip))


def _fallback(view: EntryView) -> list[str]:
    """An entry with no statement (too short, only code…) still says its first line."""
    for line in view.text.split("\n"):
        line = LIST_MARKER_RE.sub("", line.strip()).strip()
        if len(line) > 2 and not line.startswith(("#", "```", "~~~", "|")):
            return [line] if len(line) <= FACT_MAX else []
    return []


def _facts(view: EntryView) -> tuple[str, list[str]]:
    """What an entry can say, a fact a line: its `summary:` if it sets one, else its
    statements — a note's opening sentence only if it names something specific (else it is a
    preamble: "What we learned about X."). With the title (a daily log's titled entry) said
    before them."""
    chosen = view.chosen_summary
    if chosen:
        return "", [chosen]
    found = statements(view.text) or _fallback(view)
    if not view.is_daily and len(found) > 1 and not specific_terms(
            found[0], f"{view.frontmatter.get('title', '')} {view.key}"):
        found = found[1:]
    title = entry_title(view.key) if view.is_daily and not is_bullet(view) else ""
    if title and len(found) == 1 and found[0].lower().startswith(title.lower()):
        return "", found  # "Pool exhausted." under "Pool" needs no "Pool: "
    return title, [s for s in found if s.lower() != title.lower()] or [title]


def _section_of(view: EntryView, recent: set[int], index: int) -> str:
    tags = {t.lower() for t in view.tags}
    if view.type == "procedural":
        return "procedures"
    if "decision" in tags:
        return "decisions"
    if view.type == "episodic" and (tags & OPEN_TAGS or re.search(r"\bTODO\b", view.text)):
        return "open_threads"
    if index in recent:
        return "recent"
    return "key_facts"


def _closing(entries: int, statements: int, budget: int) -> str:
    """The closing line: what did not fit, and how to find it."""
    what = (f"{entries} more entr{'y' if entries == 1 else 'ies'}" + (
        f" (and {statements} more statement(s) of the sources above)" if statements else "")
        if entries else f"{statements} more statement(s) of the sources above")
    return (f"\n\n_{what} did not fit the {budget:,}-character budget: "
            "`vaultd search <topic>` finds them._")


def render(root: Path, templates: Path, store: Store, views: list[EntryView],
           budget: int, vectors: np.ndarray | None = None,
           scope: tuple[str, ...] = (), redact_secrets: bool = True) -> str:
    """The managed block's content, at most `budget` characters. Facts of entries outside
    `scope` (not the agent's own memory) are quoted; credentials in any fact are redacted
    (`vaultd.redact`) unless `redact_secrets` is off (`[privacy] redact = false`)."""
    import numpy as np

    template = _template(root, templates)
    present = _fields(template)
    recalls = store.recall_counts()
    # what the agent loads itself at session start would only be said twice, and so would an
    # entry a merged note keeps (its facts are offered from there)
    keep = [i for i, v in enumerate(views) if v.path != MEMORY_FILE and not v.settled
            and v.path not in layout.AGENT_LOADED]
    active = [views[i] for i in keep]
    if vectors is None or len(vectors) != len(views):
        vectors = np.zeros((len(views), 1), dtype=np.float32)
    vectors = vectors[keep] if keep else np.zeros((0, vectors.shape[1]), dtype=np.float32)
    idf = _idf(active)
    generic = _centrality(vectors)
    episodes = [i for i, v in enumerate(active) if v.type == "episodic"]
    recent = set(episodes[-RECENT:])
    # a note outside the agent's memory is named in quotes too: its title is its own words
    links = {v.path: (f"[{label(v)}]" if v.owned(scope) else f"[“{label(v)}”]")
             + f"({target(v.path)})" for v in active}
    daily = {v.path for v in active if v.is_daily}
    by_section: dict[str, list[Fact]] = {name: [] for name in SECTIONS}
    candidates: dict[str, set[int]] = {name: set() for name in SECTIONS}
    for i, view in enumerate(active):
        section = _section_of(view, recent, i)
        if section not in present:
            section = "key_facts"
        boost = _boost(view, recalls.get(RecallKey(view.path, view.key), 0)) * math.exp(
            -GENERIC_PENALTY * generic[i])
        power = LENGTH_POWER if section == "key_facts" else ONE_LINE_POWER
        prefix, said = _facts(view)
        values = [sum(idf.get(w, 0.0) for w in words(text)) * boost * cue_factor(text)
                  / (len(text) + 3) ** power for text in said]
        if view.is_daily and not prefix and values:
            values[0] = max(values)  # its first sentence leads (see Chooser.fill)
        quoted = not view.owned(scope)
        by_section[section].extend(Fact(section, i, unit, prefix, text, value, view.is_daily,
                                        quoted)
                                   for unit, (text, value) in enumerate(zip(said, values)))
        candidates[section].add(i)
    skeleton = len(template.format(**{k: "- (none yet)" for k in present}).rstrip("\n"))
    n_entries = sum(len(ids) for ids in candidates.values())
    n_facts = sum(len(facts) for facts in by_section.values())
    room = budget - skeleton - len(_closing(n_entries, n_facts, budget))  # its longest form
    names = names_of([f.body for facts in by_section.values() for f in facts]) if FACTOR else (
        frozenset())
    chooser = Chooser(active, vectors, links, redact_secrets, names)
    shown = {name: Section() for name in SECTIONS}
    for name in ONE_LINE:
        if name in present:
            chooser.fill(by_section[name], shown[name], min(room, int(budget * SHARES[name])),
                         one_line=True)
            room -= shown[name].chars
    if "key_facts" in present:  # with the entries the other sections had no room for
        rest = [f for name in SECTIONS if name != "key_facts" for f in by_section[name]
                if not chooser.shown[f.entry]]
        chooser.fill(by_section["key_facts"] + rest, shown["key_facts"], room)
        room -= shown["key_facts"].chars
    for name in ONE_LINE:  # room left: a daily entry shown there says more on its line
        here = {f.entry for facts in shown[name].groups.values() for f in facts}
        more = [f for f in by_section[name]
                if f.joins and f.entry in here and (f.entry, f.unit) not in chooser.said]
        if name in present and more and room > 0:
            before = shown[name].chars
            chooser.fill(more, shown[name], before + room, one_line=True)
            room -= shown[name].chars - before
    filled = {}
    for name in present:
        text = _render_section(shown[name], links, daily, names) if name in shown else ""
        filled[name] = text or "- (none yet)"
    body = template.format(**filled).rstrip("\n")
    told = set(chooser.shown) | {i for i, _ in chooser.repeats}  # entries said, or repeated
    entries_left = sum(1 for ids in candidates.values() for i in ids if i not in told)
    facts_left = sum(1 for facts in by_section.values() for f in facts
                     if f.entry in told and (f.entry, f.unit) not in chooser.repeats
                     ) - sum(chooser.shown.values())
    if entries_left or facts_left:
        body += _closing(entries_left, facts_left, budget)
    return body


def write_memory(root: Path, block: str, *, dry_run: bool = False) -> tuple[bool, str]:
    """Put `block` into MEMORY.md's managed block, keeping the user's text. Returns (written,
    unified diff). A user edit made between our read and our write is never lost: we re-read
    and merge once; if the file keeps changing, we report a conflict instead of writing.
    Markers of any shape but none or one block (`blocks.find_block`) are a RefusedError naming
    their lines: nothing is written, so no user text is lost to a guess."""
    import difflib

    path = edits.inside(root, root / MEMORY_FILE)  # a symlink out is neither followed nor replaced
    for _ in range(2):
        snap = edits.read(path) if path.exists() else None
        old = snap.text if snap else ""
        try:
            new = with_block(old, block.split("\n"))
        except MarkerError as exc:  # the user's markers are of a shape vaultd cannot claim
            raise edits.RefusedError(f"{MEMORY_FILE}: {exc}") from exc
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                            f"a/{MEMORY_FILE}", f"b/{MEMORY_FILE}"))
        if dry_run or new == old:
            return False, diff
        try:
            if snap is None:
                edits.create_new(path, new, root=root)
            else:
                edits.replace_checked(snap, new, root=root)
            return True, diff
        except edits.RefusedError:
            raise  # read-only, hard-linked…: new text will not change that
        except edits.ConflictError:
            continue  # the user saved in between: merge into their new text
    raise edits.ConflictError(f"{path}: kept changing while vaultd wrote its block; nothing "
                              "written (run `vaultd flush` again)")


@dataclass
class FlushReport:
    """What a flush did (or, dry, would do): typed here, serialised once by `to_dict` (`vaultd
    flush --json` and `POST /flush`), read back by `from_dict` (the CLI, from the daemon)."""

    indexed: str  # the index report's summary line
    phases: list[PhaseReport]  # connect's and route's
    memory_written: bool
    memory_diff: str
    memory_chars: int
    files: list[FileChange]  # every file the flush creates or changes: its phases', MEMORY.md

    def to_dict(self) -> dict[str, Any]:
        """The one serialised form: `vaultd flush --json` and `POST /flush`."""
        return {"indexed": self.indexed, "phases": [p.to_dict() for p in self.phases],
                "memory_written": self.memory_written, "memory_diff": self.memory_diff,
                "memory_chars": self.memory_chars, "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlushReport:
        return cls(data["indexed"], [PhaseReport.from_dict(p) for p in data["phases"]],
                   data["memory_written"], data["memory_diff"], data["memory_chars"],
                   [FileChange.from_dict(f) for f in data["files"]])


@dataclass(frozen=True)
class FlushInputs:
    """What a flush needs, passed in by its caller (`Vault.flush`): flush calls back through
    these and never imports the vault, which would make an import cycle."""

    root: Path
    store: Store
    seals: Seals
    settings: LifecycleSettings
    redact: bool  # `[privacy] redact`: credentials never reach MEMORY.md
    templates: Path  # the shipped templates (`memory_block.md`)
    index: Callable[[], str]  # reconcile the vault with the index; its summary line
    lifecycle: Callable[[list[str], bool], list[PhaseReport]]  # (phases, dry_run)
    sync: Callable[[list[str]], object]  # re-index these vault paths now


def flush(given: FlushInputs, *, dry_run: bool = False) -> FlushReport:
    """Index what changed, connect new entries, route proven knowledge, then write MEMORY.md's
    managed block."""
    indexed = given.index()
    phases = given.lifecycle(["connect", "route"], dry_run)
    views, vectors = snapshot(given.store, given.seals)
    block = render(given.root, given.templates, given.store, views,
                   given.settings.memory_budget, vectors, given.settings.scope, given.redact)
    written, diff = write_memory(given.root, block, dry_run=dry_run)
    if written:
        given.sync([MEMORY_FILE])
    files = [f for p in phases for f in p.files]
    if diff:
        change = "change" if (given.root / MEMORY_FILE).exists() else "create"
        files.append(FileChange(MEMORY_FILE, change, diff))
    return FlushReport(indexed, phases, written, diff, len(block),
                       sorted(files, key=lambda f: f.path))
