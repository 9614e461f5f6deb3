"""The memory lifecycle: connect, age/fade, consolidate, recall promotion — each phase a plan.

Every phase first computes a `Plan` (what would link, fade, merge or be promoted, each with its
reason) from the index and the files; `apply` then carries it out with checked atomic writes
(`vaultd.edits`), so `--dry-run` shows exactly what a real run would do.

What must survive an index rebuild lives in the files: `status: proven`, `pinned: true`,
`reprieves` counts, `consolidated_from`, and whatever sits under `archive/`. For a daily log,
whose entries share one frontmatter, per-entry state lives under a `vaultd:` key, by entry key
(the entry's heading, else its first line):

    vaultd: {proven: ["09:14 — Flaky refund webhook test"], reprieves: {"14:02 lunch": 1}}

Links are derivable (recomputed from vectors) and live only in the index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd import edits
from vaultd.store import Store, is_archived

if TYPE_CHECKING:
    import numpy as np

ARCHIVE = "archive"
MAX_REPRIEVES = 3
MAX_LINKS = 20  # per note in `related:`: the strongest links above the threshold are plenty
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

    @property
    def archived(self) -> bool:
        return is_archived(self.path)

    def _state(self) -> dict[str, Any]:
        state = self.frontmatter.get("vaultd")
        return state if isinstance(state, dict) else {}

    @property
    def proven(self) -> bool:
        if self.is_daily:
            proven = self._state().get("proven")
            return isinstance(proven, list) and self.key in proven
        return str(self.frontmatter.get("status", "")).lower() == "proven"

    @property
    def reprieves(self) -> int:
        raw = (self._state().get("reprieves", {}).get(self.key, 0)
               if self.is_daily and isinstance(self._state().get("reprieves"), dict)
               else (0 if self.is_daily else self.frontmatter.get("reprieves", 0)))
        try:
            return int(raw)
        except (TypeError, ValueError):
            return 0

    @property
    def pinned(self) -> bool:
        return self.frontmatter.get("pinned") is True or "pinned" in self.tags

    def protection(self) -> str | None:
        """Why this entry never fades, or None."""
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
        return None

    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}" + (
            f" ({self.key[:60]})" if self.is_daily else "")


@dataclass
class Action:
    kind: str  # link | reprieve | fade | merge | promote
    entries: list[str]  # entry ids
    reason: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, views: dict[str, EntryView]) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason,
                "entries": [views[e].label() if e in views else e for e in self.entries],
                **self.data}


@dataclass
class Plan:
    phase: str
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- snapshot


def snapshot(store: Store) -> tuple[list[EntryView], np.ndarray]:
    """Every indexed entry with its text and unit vector (the mean of its chunks' vectors)."""
    import numpy as np

    files = {p: (json.loads(fm), bool(daily)) for p, fm, daily in store.conn.execute(
        "SELECT path, frontmatter, is_daily FROM files")}
    rows = store.conn.execute(
        "SELECT e.id, e.path, e.key, e.heading, f.type, e.date, e.tags, e.start_line, "
        "e.end_line, e.hash FROM entries e JOIN files f ON f.path = e.path "
        "ORDER BY coalesce(e.date, ''), e.path, e.ordinal").fetchall()
    texts: dict[str, list[str]] = {}
    sums: dict[str, np.ndarray] = {}
    for entry_id, text, blob in store.conn.execute(
            "SELECT c.entry_id, c.text, v.vector FROM chunks c JOIN embeddings v "
            "ON v.hash = c.hash ORDER BY c.path, c.start_line"):
        texts.setdefault(entry_id, []).append(text)
        vec = np.frombuffer(blob, dtype=np.float32)
        sums[entry_id] = sums[entry_id] + vec if entry_id in sums else vec.copy()
    views: list[EntryView] = []
    vectors: list[np.ndarray] = []
    for order, (eid, path, key, heading, ntype, date, tags, start, end, h) in enumerate(rows):
        if eid not in sums:
            continue  # an entry with no text chunk (e.g. only a managed block)
        fm, daily = files.get(path, ({}, False))
        views.append(EntryView(eid, path, key, heading, ntype, date, tuple(json.loads(tags)),
                               start, end, "\n\n".join(texts[eid]), h, daily, fm, order))
        vec = sums[eid]
        vectors.append(vec / max(float(np.linalg.norm(vec)), 1e-12))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return views, matrix


# ---------------------------------------------------------------------------- connect


def plan_connect(store: Store, views: list[EntryView], matrix: np.ndarray,
                 th: Thresholds) -> Plan:
    """Link each buffered entry (new, or changed since it was last connected) to every active
    entry at cosine ≥ the link threshold.

    No per-entry cap: a link is a property of the pair alone, so the graph maintained entry by
    entry is the graph built from scratch (a top-N cap made it depend on the order entries
    were connected in, and a rebuilt index planned differently). `related:` shows the
    strongest MAX_LINKS."""
    import numpy as np

    plan = Plan("connect")
    done = dict(store.conn.execute("SELECT entry_id, hash FROM connected").fetchall())
    active = np.array([not v.archived for v in views], dtype=bool)
    buffer = [i for i, v in enumerate(views) if active[i] and done.get(v.id) != v.hash]
    plan.notes.append(f"{len(buffer)} buffered entr{'y' if len(buffer) == 1 else 'ies'} of "
                      f"{int(active.sum())} active; link threshold {th.link:.2f}")
    if not buffer:
        return plan
    sims = matrix[buffer] @ matrix.T
    for row, i in enumerate(buffer):
        sims[row, i] = -1.0
        sims[row, ~active] = -1.0
        above = np.flatnonzero(sims[row] >= th.link)
        above = above[np.argsort(-sims[row, above], kind="stable")]
        linked = [(views[j].id, float(sims[row, j])) for j in above]
        plan.actions.append(Action(
            "link", [views[i].id, *[j for j, _ in linked]],
            f"{len(linked)} link(s) at cosine ≥ {th.link:.2f}" if linked
            else f"no entry at cosine ≥ {th.link:.2f} (best {float(sims[row].max()):.2f})",
            {"scores": [round(s, 3) for _, s in linked], "hash": views[i].hash}))
    return plan


def apply_connect(store: Store, plan: Plan, now: float) -> None:
    with store.transaction():
        for action in plan.actions:
            entry, others = action.entries[0], action.entries[1:]
            store.conn.execute("DELETE FROM edges WHERE a = ? OR b = ?", (entry, entry))
            for other, score in zip(others, action.data["scores"]):
                store.conn.executemany("INSERT OR REPLACE INTO edges(a, b, score) VALUES (?,?,?)",
                                       [(entry, other, score), (other, entry, score)])
            store.conn.execute("INSERT OR REPLACE INTO connected(entry_id, hash, at) "
                               "VALUES (?, ?, ?)", (entry, action.data["hash"], now))
        # entries that no longer exist take their edges with them
        store.conn.execute("DELETE FROM edges WHERE a NOT IN (SELECT id FROM entries) "
                           "OR b NOT IN (SELECT id FROM entries)")
        store.conn.execute("DELETE FROM connected WHERE entry_id NOT IN (SELECT id FROM entries)")


def degrees(store: Store) -> dict[str, int]:
    return dict(store.conn.execute("SELECT a, count(*) FROM edges GROUP BY a").fetchall())


def related_links(store: Store, views: list[EntryView]) -> dict[str, list[str]]:
    """path → the notes its entries link to, as Obsidian wikilinks (for `related:`)."""
    by_id = {v.id: v for v in views}
    best: dict[str, dict[str, float]] = {}
    for a, b, score in store.conn.execute("SELECT a, b, score FROM edges"):
        if a in by_id and b in by_id and by_id[a].path != by_id[b].path:
            target = f"[[{by_id[b].path.removesuffix('.md')}]]"
            scores = best.setdefault(by_id[a].path, {})
            scores[target] = max(scores.get(target, -1.0), float(score))
    return {p: sorted(sorted(s, key=lambda t: (-s[t], t))[:MAX_LINKS])
            for p, s in best.items()}


# ---------------------------------------------------------------------------- age and fade


def plan_age(store: Store, views: list[EntryView], newer_than: int) -> Plan:
    """Fade by isolation, not time: an episode still unconnected once `newer_than` newer
    entries exist gets a reprieve at each age pass (daily, in the daemon), up to three; at the
    next pass it fades to archive/. Linking to anything in the meantime saves it. Protected
    entries (procedural and semantic notes, pinned, #decision, proven) never fade."""
    plan = Plan("age")
    degree = degrees(store)
    connected = {e for (e,) in store.conn.execute("SELECT entry_id FROM connected")}
    active = [v for v in views if not v.archived]
    total = len(active)
    for rank, view in enumerate(active):
        newer = total - rank - 1
        why = view.protection()
        if why or degree.get(view.id, 0) > 0 or view.id not in connected:
            continue  # protected, linked, or not yet through connect (still buffered)
        if newer < newer_than:
            continue
        if view.reprieves < MAX_REPRIEVES:
            plan.actions.append(Action("reprieve", [view.id],
                                       f"unconnected with {newer} newer entries; reprieve "
                                       f"{view.reprieves + 1} of {MAX_REPRIEVES}",
                                       {"reprieves": view.reprieves + 1}))
        else:
            plan.actions.append(Action("fade", [view.id],
                                       f"unconnected with {newer} newer entries after "
                                       f"{MAX_REPRIEVES} reprieves"))
    plan.notes.append(f"{total} active entries; reprieves start once {newer_than} newer "
                      "entries exist")
    return plan


# ---------------------------------------------------------------------------- consolidate


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]{3,}", text.lower()))


def clusters(views: list[EntryView], matrix: np.ndarray, threshold: float,
             min_size: int = 3) -> list[list[int]]:
    """Connected groups at ≥ threshold, pruned to cliques: while some pair is below the
    threshold, drop the member with the lowest mean similarity to the rest."""
    import numpy as np

    eligible = [i for i, v in enumerate(views) if not v.archived and v.type == "episodic"]
    if len(eligible) < min_size:
        return []
    sims = matrix[eligible] @ matrix[eligible].T
    adjacent = sims >= threshold
    np.fill_diagonal(adjacent, False)
    seen: set[int] = set()
    groups: list[list[int]] = []
    for start in range(len(eligible)):
        if start in seen:
            continue
        component, frontier = [], [start]
        seen.add(start)
        while frontier:
            node = frontier.pop()
            component.append(node)
            for nxt in np.flatnonzero(adjacent[node]):
                if int(nxt) not in seen:
                    seen.add(int(nxt))
                    frontier.append(int(nxt))
        members = sorted(component)
        while len(members) >= min_size:
            block = sims[np.ix_(members, members)]
            if (block + np.eye(len(members)) * 2 >= threshold).all():
                break
            means = (block.sum(axis=1) - 1.0) / (len(members) - 1)
            members.pop(int(np.argmin(means)))
        if len(members) >= min_size:
            groups.append([eligible[m] for m in members])
    return groups


def structural_noise(texts: list[str]) -> float | None:
    """Mean pairwise word-set Jaccard when the group's overlap is mostly template (> 0.8),
    else None."""
    sets = [_words(t) for t in texts]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    if not pairs:
        return None
    jaccard = sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / len(pairs)
    return jaccard if jaccard > 0.8 else None


def strip_template(texts: list[str]) -> list[str]:
    """Drop the lines every member shares (the template), keep what each says."""
    line_sets = [{line.strip() for line in t.splitlines() if line.strip()} for t in texts]
    shared = set.intersection(*line_sets) if line_sets else set()
    return ["\n".join(line for line in t.splitlines() if line.strip() not in shared)
            for t in texts]


def _sentences(text: str) -> list[str]:
    parts = [p.strip(" -*\t") for p in re.split(r"(?<=[.!?])\s+|\n+", text)]
    return [p for p in parts if len(p) > 2 and not re.fullmatch(r"(#[\w/-]+\s*)+", p)]


def extractive_merge(texts: list[str], centroid_order: list[int]) -> list[str]:
    """The representative's sentences, then each other member's sentences that add words."""
    kept: list[str] = []
    seen: list[set[str]] = []
    for idx in centroid_order:
        for sentence in _sentences(texts[idx]):
            words = _words(sentence)
            if not words:
                continue
            if any(len(words & s) / max(len(words | s), 1) >= 0.6 for s in seen):
                continue
            kept.append(sentence)
            seen.append(words)
    return kept


def plan_consolidate(views: list[EntryView], matrix: np.ndarray, th: Thresholds,
                     embed: Any = None) -> Plan:
    import numpy as np

    plan = Plan("consolidate")
    for members in clusters(views, matrix, th.consolidate):
        group = [views[i] for i in members]
        texts = [v.text for v in group]
        noise = structural_noise(texts)
        if noise is not None:
            plan.notes.append(f"skipped a group of {len(group)} as structural noise "
                              f"(word overlap {noise:.2f}): "
                              + ", ".join(v.label() for v in group))
            continue
        if embed is not None:
            # what each entry says without the lines they all share and without timestamps:
            # it must still be about one topic (at the link threshold)
            content = [re.sub(r"^\d{1,2}:\d{2}\s*[—-]?\s*", "", v.key) + "\n" + t
                       for v, t in zip(group, strip_template(texts))]
            cvecs = np.asarray(embed(content), dtype=np.float32)
            csims = cvecs @ cvecs.T
            if (csims + np.eye(len(group)) * 2 < th.link).any():
                plan.notes.append("skipped a group whose content without the shared template "
                                  "is not coherent: " + ", ".join(v.label() for v in group))
                continue
        block = matrix[members] @ matrix[members].T
        centrality = block.mean(axis=1)
        order = [int(i) for i in np.argsort(-centrality)]
        rep = group[order[0]]
        title = re.sub(r"^\d{1,2}:\d{2}\s*[—-]\s*", "", rep.key).strip() or rep.key
        low = float(block[~np.eye(len(group), dtype=bool)].min())
        plan.actions.append(Action(
            "merge", [v.id for v in group],
            f"{len(group)} entries, every pair at cosine ≥ {th.consolidate:.2f} (lowest {low:.2f})",
            {"title": title, "sentences": extractive_merge(texts, order),
             "tags": sorted({t for v in group for t in v.tags if t != "daily"})}))
    return plan


# ---------------------------------------------------------------------------- promotion


def calibrate(matrix: np.ndarray, link_default: float, consolidate_default: float
              ) -> dict[str, Any]:
    """The vault's similarity distribution and thresholds suggested from it: linking the
    closest ~1.5 % of all pairs, consolidating only the closest ~0.2 %."""
    import numpy as np

    n = matrix.shape[0]
    if n < 3:
        return {"entries": n, "note": "too few entries to calibrate"}
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -1.0)
    nearest = sims.max(axis=1)
    pairs = sims[np.triu_indices(n, 1)]
    pct = lambda a, q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    link = pct(pairs, 98.5)
    consolidate = max(round(link + 0.1, 3), pct(pairs, 99.8))
    return {
        "entries": n, "pairs": int(pairs.size),
        "nearest_neighbour": {f"p{q}": pct(nearest, q) for q in (10, 25, 50, 75, 90)},
        "all_pairs": {f"p{q}": pct(pairs, q) for q in (50, 90, 99, 99.9)},
        "current": {"link": link_default, "consolidate": consolidate_default},
        "suggested": {"link": link, "consolidate": min(consolidate, 0.99)},
        "linked_at_current": float((pairs >= link_default).mean()),
    }


def plan_promote(store: Store, views: list[EntryView], needed: int = 3) -> Plan:
    """An entry in the top 5 of searches on `needed` separate occasions becomes proven."""
    plan = Plan("promote")
    counts = {(p, k): n for p, k, n in store.conn.execute(
        "SELECT path, entry_key, count(*) FROM recalls GROUP BY path, entry_key")}
    for view in views:
        n = counts.get((view.path, view.key), 0)
        if n >= needed and not view.proven and not view.archived and view.type in (
                "episodic", "semantic", "procedural"):
            plan.actions.append(Action("promote", [view.id],
                                       f"in the top 5 of {n} different searches"))
    return plan


def record_recalls(store: Store, hits: Iterable[Any], query: str, now: float) -> None:
    """Remember that these hits (the top 5 of a search) were recalled for this query."""
    norm = " ".join(re.findall(r"\w+", query.lower()))
    if not norm:
        return
    keys = store.conn.execute(
        "SELECT e.path, e.key FROM entries e WHERE e.id IN ({})".format(
            ",".join("?" * len(ids := list(dict.fromkeys(h.entry_id for h in hits))))),
        ids).fetchall() if hits else []
    try:
        with store.transaction():
            store.conn.executemany("INSERT OR IGNORE INTO recalls(path, entry_key, query, at) "
                                   "VALUES (?, ?, ?, ?)", [(p, k, norm, now) for p, k in keys])
    except store.module.OperationalError:
        pass  # the index is busy (a long batch): losing one recall beats failing the search


# ---------------------------------------------------------------------------- writing plans


@dataclass
class Outcome:
    written: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def _now() -> str:
    return dt.datetime.now().astimezone().replace(microsecond=0).isoformat()


def _update_state(text: str, path: str, view: EntryView | None, *, reprieves: int | None = None,
                  proven: bool = False) -> str:
    """Frontmatter with one entry's durable state changed."""
    fm = edits.get_frontmatter(path, text)
    if view is not None and view.is_daily:
        state = dict(fm.get("vaultd") or {}) if isinstance(fm.get("vaultd"), dict) else {}
        if reprieves is not None:
            rep = dict(state.get("reprieves") or {})
            rep[view.key] = reprieves
            state["reprieves"] = rep
        if proven:
            state["proven"] = sorted(set(state.get("proven") or []) | {view.key})
        return edits.set_frontmatter(text, {"vaultd": state})
    updates: dict[str, Any] = {}
    if reprieves is not None:
        updates["reprieves"] = reprieves
    if proven:
        updates["status"] = "proven"
    return edits.set_frontmatter(text, updates)


def as_planned(text: str, view: EntryView) -> Any:
    """The entry of `text` that a plan was made on: same key and same content hash as when it
    was indexed. ConflictError when the user changed it since (the plan is stale)."""
    from vaultd.notes import parse

    note = parse(view.path, text)
    found = [e for e in note.entries if e.key == view.key]
    current = next((e for e in found
                    if hashlib.sha256(e.text.encode()).hexdigest()[:32] == view.hash), None)
    if current is None:
        raise edits.ConflictError(f"{view.path}: entry {view.key[:60]!r} changed or moved "
                                  "since it was indexed; left in place")
    return current


def cut_entry(text: str, view: EntryView) -> tuple[str, str]:
    """(file text without the entry, the entry's lines). The entry is found in the current
    text by its key, not by indexed line numbers (earlier writes may have shifted them), and
    must still hold the text it was planned on."""
    current = as_planned(text, view)
    lines = text.split("\n")
    start, end = current.start_line - 1, current.end_line
    taken = "\n".join(lines[start:end])
    rest = lines[:start] + lines[end:]
    if 0 < start <= len(rest) and not rest[start - 1].strip() and (
            start == len(rest) or not rest[start].strip()):
        del rest[start - 1]  # no double blank line where the entry was
    return "\n".join(rest), taken


def archive_entry(root: Path, view: EntryView, reason: str, out: Outcome) -> None:
    """Move an entry to archive/ (never delete): a whole note moves as a file; a daily-log
    entry moves into the same-named file under archive/."""
    src = edits.inside(root, root / view.path)
    snap = edits.read(src)
    stamp = {"archived_at": _now(), "archived_reason": reason, "archived_from": view.path}
    dest = edits.inside(root, root / ARCHIVE / view.path)
    if not view.is_daily:
        if view.hash:  # a planned fade or merge: only of the text it was planned on
            as_planned(snap.text, view)
        text = edits.set_frontmatter(snap.text, stamp)
        unstamp: dict[str, Any] = dict.fromkeys(stamp)
        if dest.exists() and edits.set_frontmatter(
                dest.read_text(encoding="utf-8"), unstamp) == snap.text:
            # a move a crash cut short (copy made, source not yet removed): finish it
            with edits.locked(src):
                if src.read_bytes() != snap.data:
                    raise edits.ConflictError(f"{src}: changed while archiving; left in place")
                src.unlink()
            out.written.append(view.path)
            return
        if dest.exists():
            dest = dest.with_name(f"{dest.stem}-{hashlib.sha1(_now().encode()).hexdigest()[:6]}"
                                  f"{dest.suffix}")
        edits.create_new(dest, text)
        # the source is removed only after its copy is safely in place, and only if unchanged
        with edits.locked(src):
            if src.read_bytes() != snap.data:
                dest.unlink()
                raise edits.ConflictError(f"{src}: changed while archiving; left in place")
            src.unlink()
        out.written.append(view.path)
        out.created.append(dest.relative_to(root).as_posix())
        return
    rest, taken = cut_entry(snap.text, view)
    state = edits.get_frontmatter(view.path, rest).get("vaultd")
    if isinstance(state, dict):  # the entry's bookkeeping leaves with it
        state = {k: ({kk: vv for kk, vv in v.items() if kk != view.key} if isinstance(v, dict)
                     else [x for x in v if x != view.key] if isinstance(v, list) else v)
                 for k, v in state.items()}
        rest = edits.set_frontmatter(rest, {"vaultd": {k: v for k, v in state.items() if v}
                                            or None})
    moved: str | None = None
    with edits.locked(dest):
        before = dest.read_bytes() if dest.exists() else None
        current = before.decode("utf-8") if before is not None else \
            edits.daily_header(view.date or dest.stem)
        state = edits.get_frontmatter(view.path, current)
        archived = dict(state.get("archived") or {}) if isinstance(state.get("archived"),
                                                                    dict) else {}
        # a move a crash cut short (copy written, source not yet cut) is finished, not
        # copied a second time
        if not (view.key in archived and _holds(f"{ARCHIVE}/{view.path}", current, view)):
            archived[view.key] = {"at": stamp["archived_at"], "reason": reason,
                                  "from": view.path}
            current = edits.set_frontmatter(current, {"archived": archived})
            moved = current.rstrip("\n") + "\n\n" + taken.strip("\n") + "\n"
            edits.atomic_write(dest, moved)
    try:
        edits.replace_checked(snap, rest)
    except edits.ConflictError:
        # the source changed after our read, so the entry stays there: take back its copy
        with edits.locked(dest):
            if moved is not None and dest.read_bytes() == moved.encode("utf-8"):
                if before is None:
                    dest.unlink()  # the archive file we just created, holding only this copy
                else:
                    edits.atomic_write(dest, before.decode("utf-8"))
        raise
    out.written.append(view.path)
    out.created.append(dest.relative_to(root).as_posix())


def _holds(rel: str, text: str, view: EntryView) -> bool:
    """Whether `text` (of the archive file `rel`) has the entry `view` word for word."""
    from vaultd.notes import parse

    return any(e.key == view.key and _entry_hash(e.text) == view.hash
               for e in parse(rel, text).entries)


def _entry_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def finish_interrupted(root: Path, views: list[EntryView]) -> Outcome:
    """Finish what a crash (SIGKILL, power loss) cut short, so a re-run converges:
    - a daily-log entry whose exact copy is already in its archive file under the same key
      (the copy was written, the source not yet cut) leaves the log;
    - an entry still in its log that a merged note lists as a source, with the text it was
      merged from (`consolidated_hashes`), moves to archive/ as the consolidation meant to.
    An entry changed since keeps its place. Nothing is deleted: each one is moved."""
    out = Outcome()
    copies = {(v.path.removeprefix(f"{ARCHIVE}/"), v.key, v.hash)
              for v in views if v.archived and v.is_daily}
    merged: dict[tuple[str, str], str] = {}  # (source, hash) → why
    for v in views:
        fm = v.frontmatter
        sources, hashes = fm.get("consolidated_from"), fm.get("consolidated_hashes")
        if v.archived or not fm.get("consolidation") or not isinstance(sources, list) \
                or not isinstance(hashes, list) or len(sources) != len(hashes):
            continue
        for source, digest in zip(sources, hashes):
            merged[(str(source), str(digest))] = \
                f"consolidated into {v.path} ({fm['consolidation']})"
    for v in sorted((v for v in views if not v.archived and v.is_daily),
                    key=lambda v: (v.path, -v.start_line)):
        why = ("finishing an interrupted move" if (v.path, v.key, v.hash) in copies
               else merged.get((f"{v.path}#{v.key}", v.hash)))
        if why is None:
            continue
        try:
            archive_entry(root, v, why, out)
        except (edits.ConflictError, FileNotFoundError) as exc:
            out.conflicts.append(str(exc))
    return out


def apply_state(root: Path, views: dict[str, EntryView], plan: Plan) -> Outcome:
    """Carry out reprieves, promotions and fades."""
    out = Outcome()
    # one file can hold several entries: re-read it for each, so line numbers stay right
    for action in plan.actions:
        view = views[action.entries[0]]
        try:
            if action.kind == "fade":
                archive_entry(root, view, action.reason, out)
                continue
            snap = edits.read(edits.inside(root, root / view.path))
            as_planned(snap.text, view)  # not on an entry the user changed since the plan
            if action.kind == "reprieve":
                text = _update_state(snap.text, view.path, view,
                                     reprieves=action.data["reprieves"])
            elif action.kind == "promote":
                text = _update_state(snap.text, view.path, view, proven=True)
            else:
                continue
            if edits.replace_checked(snap, text):
                out.written.append(view.path)
        except (edits.ConflictError, FileNotFoundError) as exc:
            out.conflicts.append(str(exc))
    return out


def merge_note(action: Action, views: dict[str, EntryView], merge_id: str,
               llm: Any = None) -> str:
    members = [views[e] for e in action.entries]
    sources = [f"{v.path}#{v.key}" if v.is_daily else v.path for v in members]
    items, merged_by, rejected = action.data["sentences"], "extractive", None
    if llm is not None:
        from vaultd.llm import llm_merge

        result = llm_merge([v.text for v in members], llm, items)
        items, merged_by, rejected = result.items, result.source, result.rejected
    body = [f"# {action.data['title']}", ""]
    body += [f"- {s}" for s in items]
    body += ["", "## Sources", ""]
    body += [f"- [[{ARCHIVE}/{v.path.removesuffix('.md')}]] {v.key}" for v in members]
    meta = {"type": "semantic", "title": action.data["title"],
            "created": dt.date.today().isoformat(), "status": "proven",
            "consolidation": merge_id, "consolidated_from": sources,
            # what each source said when merged: a consolidation a crash cut short is finished
            # on these (see finish_interrupted), never on an entry changed since
            "consolidated_hashes": [v.hash for v in members],
            "tags": action.data["tags"], "merged_by": merged_by}
    if rejected:
        meta["llm_rejected"] = rejected
    return edits.set_frontmatter("---\n---\n" + "\n".join(body) + "\n", meta)


def apply_consolidate(root: Path, views: dict[str, EntryView], plan: Plan,
                      llm: Any = None) -> Outcome:
    out = Outcome()
    for action in plan.actions:
        merge_id = hashlib.sha1("\0".join(sorted(action.entries)).encode()).hexdigest()[:10]
        slug = re.sub(r"[^a-z0-9]+", "-", action.data["title"].lower()).strip("-")[:60]
        rel = f"semantic/{slug or 'consolidated'}-{merge_id[:6]}.md"
        try:
            for e in action.entries:  # merge only what was planned: no member changed since
                as_planned(edits.read(root / views[e].path).text, views[e])
            edits.create_new(edits.inside(root, root / rel),
                             merge_note(action, views, merge_id, llm))
        except (edits.ConflictError, FileNotFoundError) as exc:
            out.conflicts.append(str(exc))
            continue
        out.created.append(rel)
        # archive bottom-up within a file so earlier line numbers stay valid
        for view in sorted((views[e] for e in action.entries),
                           key=lambda v: (v.path, -v.start_line)):
            try:
                archive_entry(root, view, f"consolidated into {rel} ({merge_id})", out)
            except (edits.ConflictError, FileNotFoundError) as exc:
                out.conflicts.append(str(exc))
    return out


# ---------------------------------------------------------------------------- restore and undo


def _append_entry_text(path: Path, day: str, entry: str) -> tuple[bytes | None, str]:
    """Append `entry` to the daily log at `path`; returns (its bytes before, the text written)
    so that a restore that cannot finish can take the entry back."""
    with edits.locked(path):
        before = path.read_bytes() if path.exists() else None
        current = before.decode("utf-8") if before is not None else edits.daily_header(day)
        text = current.rstrip("\n") + "\n\n" + entry.strip("\n") + "\n"
        edits.atomic_write(path, text)
    return before, text


def _take_back(path: Path, before: bytes | None, ours: str) -> None:
    """Undo our own write to `path` if nobody changed the file since."""
    with edits.locked(path):
        if path.exists() and path.read_bytes() == ours.encode("utf-8"):
            if before is None:
                path.unlink()  # the file we just created, holding only our copy
            else:
                edits.atomic_write(path, before.decode("utf-8"))


def restore(root: Path, rel: str, keys: list[str] | None = None) -> list[str]:
    """Bring archived material back where it came from. A whole note moves back (its archive
    keys removed); for an archived daily log, the named entries (default: all) go back into
    their daily log. Returns the vault paths written."""
    from vaultd.notes import parse

    if not is_archived(rel):
        raise edits.VaultdError(f"{rel}: not under {ARCHIVE}/; nothing to restore")
    _check_inside(root, rel)  # `archive/../..` or a symlink must not reach (and unlink) a file
    src = root / rel
    if not src.is_file():
        raise edits.VaultdError(f"{rel}: no such file")
    snap = edits.read(src)
    fm = edits.get_frontmatter(rel, snap.text)
    archived = fm.get("archived")
    if not isinstance(archived, dict):  # a whole note
        origin = str(fm.get("archived_from") or rel.split("/", 1)[1])
        _check_inside(root, origin)
        text = edits.set_frontmatter(snap.text, {"archived_at": None, "archived_reason": None,
                                                 "archived_from": None})
        edits.create_new(root / origin, text)
        with edits.locked(src):
            unchanged = src.read_bytes() == snap.data
            if unchanged:
                src.unlink()
        if not unchanged:  # the user edited the archived copy meanwhile: theirs stays
            _take_back(root / origin, None, text)
            raise edits.ConflictError(f"{rel}: changed while restoring; left in place")
        return [origin, rel]
    note = parse(rel, snap.text)
    wanted = set(keys) if keys else set(archived)
    text, written = snap.text, []
    appended: list[tuple[Path, bytes | None, str]] = []
    for entry in sorted(note.entries, key=lambda e: -e.start_line):
        if entry.key not in wanted or entry.key not in archived:
            continue
        info = archived[entry.key] if isinstance(archived[entry.key], dict) else {}
        origin = str(info.get("from") or rel.split("/", 1)[1])
        _check_inside(root, origin)
        lines = text.split("\n")
        appended.append((root / origin, *_append_entry_text(
            root / origin, note.created or Path(origin).stem,
            "\n".join(lines[entry.start_line - 1:entry.end_line]))))
        text = "\n".join(lines[:entry.start_line - 1] + lines[entry.end_line:])
        del archived[entry.key]
        written.append(origin)
    try:
        if not archived:
            with edits.locked(src):
                if src.read_bytes() != snap.data:
                    raise edits.ConflictError(f"{rel}: changed while restoring; left in place")
                src.unlink()  # every entry is back where it came from
        else:
            edits.replace_checked(snap, edits.set_frontmatter(text, {"archived": archived}))
    except edits.ConflictError:
        for path, before, ours in reversed(appended):  # no entry may end up in both places
            _take_back(path, before, ours)
        raise
    return sorted(set(written)) + [rel]


def _check_inside(root: Path, rel: str) -> None:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()) or rel.startswith("/"):
        raise edits.VaultdError(f"{rel}: outside the vault; refused")


def undo(root: Path, store: Store, merge_id: str) -> list[str]:
    """Undo a consolidation: its originals come back, the merged note goes to archive/."""
    row = next(((p, fm) for p, fm in store.conn.execute(
        "SELECT path, frontmatter FROM files")
        if str(json.loads(fm).get("consolidation", "")).startswith(merge_id) and merge_id), None)
    if row is None:
        raise edits.VaultdError(f"no consolidated note with id {merge_id} (see `consolidation:` "
                                "in a proven note's frontmatter)")
    path, fm_raw = row
    sources = json.loads(fm_raw).get("consolidated_from") or []
    by_file: dict[str, list[str]] = {}
    for source in sources:
        file_part, _, key = str(source).partition("#")
        by_file.setdefault(file_part, []).append(key)
    written: list[str] = []
    for file_part, keys in by_file.items():
        archived = f"{ARCHIVE}/{file_part}"
        if (root / archived).is_file():
            written += restore(root, archived, [k for k in keys if k] or None)
    view = EntryView(id="", path=path, key="", heading="", type="semantic", date=None, tags=(),
                     start_line=1, end_line=1, text="", hash="", is_daily=False,
                     frontmatter={})
    out = Outcome()
    archive_entry(root, view, f"undo of consolidation {merge_id}", out)
    return written + out.written + out.created


# ---------------------------------------------------------------------------- route

BEGIN, END = "<!-- vaultd:begin -->", "<!-- vaultd:end -->"


def resolve_target(root: Path, target: str, allowed_outside: Iterable[str]) -> Path:
    """A route target's path. Inside the vault unless explicitly allowed (no `..`, absolute
    paths or symlinks escaping it)."""
    raw = Path(target).expanduser()
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if path.is_relative_to(root.resolve()):
        if path.relative_to(root.resolve()).parts[:1] in ((".vaultd",), (".git",)):
            raise edits.VaultdError(f"route target {target} is in vaultd's or git's own "
                                    "folder; refused")
        return path
    allowed = {Path(a).expanduser().resolve() for a in allowed_outside}
    if path in allowed:
        return path
    raise edits.VaultdError(f"route target {target} is outside the vault; list it in "
                            "[lifecycle] route_outside to allow it")


def outside_block(text: str) -> str:
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        return head + rest.split(END, 1)[1]
    return text


def with_block(text: str, lines: list[str]) -> str:
    """`text` with vaultd's managed block holding `lines`; everything outside stays as is."""
    block = "\n".join([BEGIN, *lines, END])
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"


def summary(view: EntryView, limit: int = 160) -> str:
    title = re.sub(r"^(?:[-*+]\s+)?\d{1,2}:\d{2}\s*[—-]?\s*", "", view.key).strip()
    first = next((s for s in _sentences(view.text) if s.lower() != title.lower()), "")
    line = f"{title}: {first}" if first and title else (title or first)
    return line if len(line) <= limit else line[:limit - 1] + "…"


def plan_route(root: Path, views: list[EntryView], matrix: np.ndarray, th: Thresholds,
               targets: list[str], allowed_outside: Iterable[str], embed: Any) -> Plan:
    """Send each proven item to the declared target whose content is nearest, if above the
    route threshold; the rest stays for MEMORY.md."""
    import numpy as np

    plan = Plan("route")
    if not targets:
        plan.notes.append("no route targets declared ([lifecycle] route_targets)")
        return plan
    paths = {t: resolve_target(root, t, allowed_outside) for t in targets}
    texts = {t: outside_block(p.read_text(encoding="utf-8")) if p.exists() else t
             for t, p in paths.items()}
    tvecs = np.asarray(embed([texts[t][:4000] for t in targets]), dtype=np.float32)
    target_rel = {p.relative_to(root.resolve()).as_posix() for p in paths.values()
                  if p.is_relative_to(root.resolve())}
    items = [i for i, v in enumerate(views)
             if v.proven and not v.archived and v.path not in target_rel]
    routed: dict[str, list[str]] = {t: [] for t in targets}
    for i in items:
        sims = tvecs @ matrix[i]
        best = int(np.argmax(sims))
        view = views[i]
        if float(sims[best]) >= th.route:
            link = view.path.removesuffix(".md")
            routed[targets[best]].append(f"- {summary(view)} ([[{link}]])")
            plan.actions.append(Action("route", [view.id],
                                       f"nearest target {targets[best]} at cosine "
                                       f"{float(sims[best]):.2f} ≥ {th.route:.2f}",
                                       {"target": targets[best]}))
        else:
            plan.notes.append(f"{view.label()} stays for MEMORY.md (best target "
                              f"{targets[best]} at {float(sims[best]):.2f} < {th.route:.2f})")
    for target in targets:
        path = paths[target]
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if not routed[target] and BEGIN not in old:
            continue  # nothing to route there, and no block to empty
        new = with_block(old, sorted(set(routed[target])))
        if new != old:
            import difflib

            diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                f"a/{target}", f"b/{target}"))
            plan.actions.append(Action("write", [], f"managed block of {target}",
                                       {"target": target, "path": str(path), "diff": diff,
                                        "text": new, "before": old}))
    return plan


def apply_route(root: Path, plan: Plan) -> Outcome:
    out = Outcome()
    for action in plan.actions:
        if action.kind != "write":
            continue
        path = Path(action.data["path"])
        # a declared target outside the vault gets its lock file in .vaultd/, not beside it
        lock_dir = None if path.is_relative_to(root.resolve()) else root / ".vaultd" / "locks"
        try:
            if path.exists():
                snap = edits.read(path)
                if snap.text != action.data["before"]:
                    raise edits.ConflictError(f"{path}: changed since it was read")
                edits.replace_checked(snap, action.data["text"], lock_dir=lock_dir)
            else:
                edits.create_new(path, action.data["text"], lock_dir=lock_dir)
        except edits.ConflictError as exc:
            out.conflicts.append(str(exc))
            continue
        if path.is_relative_to(root.resolve()):
            out.written.append(path.relative_to(root.resolve()).as_posix())
    return out


# ---------------------------------------------------------------------------- heartbeat, prune


def plan_heartbeat(store: Store, views: list[EntryView], matrix: np.ndarray, days: int,
                   today: dt.date, llm: Any = None) -> Plan:
    """Review recent daily-log entries: classify each as episodic, semantic or procedural —
    by an LLM when one is configured, else (or when it fails) by the nearest typed centroid;
    extract the high-signal ones (linked or recalled) that are knowledge or how-tos into their
    own notes, with a link back."""
    import numpy as np

    plan = Plan("heartbeat")
    since = (today - dt.timedelta(days=days)).isoformat()
    centroids, labels = [], []
    for kind in ("episodic", "semantic", "procedural"):
        rows = [i for i, v in enumerate(views) if v.type == kind and not v.archived
                and not (kind == "episodic" and (v.date or "") >= since)]
        if rows:
            c = matrix[rows].mean(axis=0)
            centroids.append(c / max(float(np.linalg.norm(c)), 1e-12))
            labels.append(kind)
    degree = degrees(store)
    recalled = {(p, k) for p, k in store.conn.execute("SELECT path, entry_key FROM recalls")}
    recent = [i for i, v in enumerate(views) if v.is_daily and not v.archived
              and (v.date or "") >= since]
    plan.notes.append(f"{len(recent)} daily-log entries since {since}")
    if not centroids:
        return plan
    cmat = np.vstack(centroids)
    for i in recent:
        view = views[i]
        kind = labels[int(np.argmax(cmat @ matrix[i]))]
        if llm is not None:
            from vaultd.llm import llm_classify

            kind = llm_classify(view.text, llm) or kind
        state = view._state()
        done = isinstance(state.get("extracted"), list) and view.key in state["extracted"]
        signal = degree.get(view.id, 0) > 0 or (view.path, view.key) in recalled
        if kind != "episodic" and signal and not done:
            plan.actions.append(Action("extract", [view.id],
                                       f"reads as {kind}; "
                                       + ("linked" if degree.get(view.id) else "recalled"),
                                       {"type": kind}))
        else:
            plan.notes.append(f"{view.label()}: {kind}"
                              + ("" if signal else ", low signal") + (", done" if done else ""))
    return plan


def apply_heartbeat(root: Path, views: dict[str, EntryView], plan: Plan) -> Outcome:
    out = Outcome()
    for action in plan.actions:
        view = views[action.entries[0]]
        title = re.sub(r"^\d{1,2}:\d{2}\s*[—-]?\s*", "", view.key).strip() or view.key
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "note"
        rel = f"{action.data['type']}/{slug}-{view.id[:6]}.md"
        meta = {"type": action.data["type"], "title": title, "created": view.date,
                "extracted_from": f"[[{view.path.removesuffix('.md')}]]",
                "tags": sorted(t for t in view.tags if t != "daily")}
        text = edits.set_frontmatter("---\n---\n" + f"# {title}\n\n{view.text}\n", meta)
        try:
            snap = edits.read(edits.inside(root, root / view.path))
            as_planned(snap.text, view)  # not from an entry the user changed since the plan
            fm = edits.get_frontmatter(view.path, snap.text)
            state = dict(fm["vaultd"]) if isinstance(fm.get("vaultd"), dict) else {}
            state["extracted"] = sorted(set(state.get("extracted") or []) | {view.key})
            edits.create_new(edits.inside(root, root / rel), text)
            try:
                edits.replace_checked(snap, edits.set_frontmatter(snap.text, {"vaultd": state}))
            except edits.ConflictError:
                # unmarked, the entry would be extracted again: take the new note back
                _take_back(root / rel, None, text)
                raise
        except (edits.ConflictError, FileNotFoundError) as exc:
            out.conflicts.append(str(exc))
            continue
        out.created.append(rel)
        out.written.append(view.path)
    return out


def plan_prune(store: Store, views: list[EntryView], matrix: np.ndarray, th: Thresholds) -> Plan:
    """Near-duplicate episodes (cosine ≥ the duplicate threshold): keep the better-connected
    one (the older on a tie), archive the other."""
    import numpy as np

    plan = Plan("prune")
    degree = degrees(store)
    idx = [i for i, v in enumerate(views) if v.type == "episodic" and not v.archived
           and v.protection() is None]
    gone: set[int] = set()
    if len(idx) > 1:
        sims = matrix[idx] @ matrix[idx].T
        for a in range(len(idx)):
            for b in np.flatnonzero(sims[a, a + 1:] >= th.duplicate) + a + 1:
                i, j = idx[a], idx[int(b)]
                if i in gone or j in gone:
                    continue
                keep, drop = sorted((i, j), key=lambda k: (-degree.get(views[k].id, 0),
                                                           views[k].order))
                gone.add(drop)
                plan.actions.append(Action("fade", [views[drop].id],
                                           f"near-duplicate (cosine {float(sims[a, b]):.2f}) "
                                           f"of {views[keep].label()}"))
    plan.notes.append(f"{len(gone)} near-duplicate(s) at cosine ≥ {th.duplicate:.2f}")
    return plan
