"""heartbeat: a scheduled review of recent daily-log entries that extracts durable knowledge
and how-tos into notes of their kind, then brings MEMORY.md up to date.

What counts as knowledge is learnt from the vault's own curated semantic and procedural notes
(their centroids) when it has some; a fresh vault has none, so built-in prototypes decide:
short example texts per kind (preferences, identities, relationships, decisions, plans →
semantic; how-tos → procedural; events → stay episodic), shipped as `templates/prototypes.toml`
and overridable by `.vaultd/prototypes.toml`. An extracted entry is copied word for word, with
its date and a link back, into its kind's note (`semantic/preferences.md`, ...; the format
consolidation writes too) and marked `extracted` in its daily log — never moved or deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd import edits, layout
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.actions import Extract
from vaultd.lifecycle.entries import EntryView, fact, provenance
from vaultd.lifecycle.moves import as_planned, remove_ours
from vaultd.lifecycle.plans import CHANGE, CREATE, Context, Drafts, Outcome, Phase, Plan
from vaultd.notes import parse
from vaultd.provenance import Seals, seal_note_text

if TYPE_CHECKING:
    import numpy as np

PROTOTYPES = "prototypes.toml"
KNOWLEDGE = ("semantic", "procedural")


@dataclass(frozen=True)
class Kind:
    name: str
    type: str  # semantic | procedural | episodic
    title: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Prototypes:
    kinds: tuple[Kind, ...]
    min_similarity: float

    def classify(self, vectors: np.ndarray, examples: np.ndarray) -> list[tuple[Kind, float]]:
        """Each vector's kind — that of its nearest example — and the similarity to it.
        `examples` holds the examples' unit vectors in `kinds` order."""
        import numpy as np

        owner = [k for k in self.kinds for _ in k.examples]
        sims = vectors @ examples.T
        best = np.argmax(sims, axis=1)
        return [(owner[int(j)], float(sims[i, j])) for i, j in enumerate(best)]

    def texts(self) -> list[str]:
        return [e for k in self.kinds for e in k.examples]


def load_prototypes(root: Path, templates: Path) -> Prototypes:
    """`.vaultd/prototypes.toml` if the vault has one, else the one shipped in `templates`. A
    broken file is a ConfigError naming it."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    from vaultd.errors import ConfigError

    override = layout.state_dir(root) / PROTOTYPES
    path = override if override.is_file() else templates / PROTOTYPES
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        kinds = tuple(Kind(name, str(t["type"]), str(t.get("title") or name.capitalize()),
                           tuple(str(e) for e in t["examples"]))
                      for name, t in data["kinds"].items())
        protos = Prototypes(kinds, float(data.get("min_similarity", 0.5)))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise ConfigError(f"{path}: not a prototypes file ({exc})") from exc
    bad = [k.name for k in kinds if k.type not in (*KNOWLEDGE, "episodic") or not k.examples]
    if bad or not any(k.type in KNOWLEDGE for k in kinds):
        raise ConfigError(f"{path}: every kind needs examples and a type of episodic, semantic "
                          f"or procedural, and one kind must be knowledge ({', '.join(bad)})")
    return protos


def note_path(kind: Kind, home: str = "") -> str:
    """The note a kind's extractions go to, under `home` (`layout.home_of` the entry)."""
    slug = re.sub(r"[^a-z0-9]+", "-", kind.title.lower()).strip("-") or kind.name
    return f"{home}{kind.type}/{slug}.md"


def plan(ctx: Context) -> Plan:
    """Review recent daily-log entries and extract the linked or recalled ones that read as
    knowledge or how-tos, word for word with a link back, into the note of their kind. The
    type comes from an LLM when one is configured; else from the nearest centroid of the
    vault's curated semantic and procedural notes; in a vault with none, from the built-in
    prototypes (`templates/prototypes.toml`): nearest example, at ≥ its `min_similarity`."""
    import numpy as np

    views, matrix, llm = ctx.views, ctx.matrix, ctx.llm
    days, today = ctx.settings.heartbeat_days, ctx.today
    result = Plan("heartbeat")
    since = (today - dt.timedelta(days=days)).isoformat()
    recent = [i for i, v in enumerate(views) if v.is_daily and not v.settled
              and ctx.in_scope(v) and (v.date or "") >= since]
    result.notes.append(f"{len(recent)} daily-log entries since {since}")
    if not recent:
        return result
    protos = load_prototypes(ctx.root, ctx.templates)
    examples = np.asarray(ctx.embed(protos.texts()), dtype=np.float32)
    nearest = protos.classify(matrix[recent], examples)
    centroids, labels = [], []
    for kind in ("episodic", *KNOWLEDGE):
        # the user's curated notes teach what knowledge looks like; the notes vaultd made from
        # episodes would only teach it what episodes look like
        rows = [i for i, v in enumerate(views) if v.type == kind and not v.archived
                and not v.made_by_vaultd
                and not (kind == "episodic" and (v.date or "") >= since)]
        if rows:
            c = matrix[rows].mean(axis=0)
            centroids.append(c / max(float(np.linalg.norm(c)), 1e-12))
            labels.append(kind)
    learnt = any(label in KNOWLEDGE for label in labels)
    result.notes.append("types from the vault's own semantic/procedural notes" if learnt else
                        f"types from the built-in prototypes (nearest example ≥ "
                        f"{protos.min_similarity:.2f})")
    degree = ctx.store.link_degrees()
    recalled = set(ctx.store.recall_counts())
    drafts = Drafts(ctx.root)
    for i, (proto, score) in zip(recent, nearest):
        view = views[i]
        if learnt:
            kind, why = labels[int(np.argmax(np.vstack(centroids) @ matrix[i]))], "centroid"
        else:
            kind = proto.type if score >= protos.min_similarity else "episodic"
            why = f"like a {proto.name} example ({score:.2f})"
        if llm is not None:
            from vaultd.llm import llm_classify

            answer = llm_classify(view.text, llm)
            kind, why = (answer, "LLM") if answer else (kind, why)
        state = view.state()
        done = isinstance(state.get("extracted"), list) and view.key in state["extracted"]
        signal = degree.get(view.id, 0) > 0 or (view.path, view.key) in recalled
        if kind not in KNOWLEDGE or not signal or done:
            result.notes.append(f"{view.label()}: {kind}" + ("" if signal else ", low signal")
                                + (", done" if done else ""))
            continue
        # the note is named by the nearest prototype kind of that type
        target = proto if proto.type == kind else next(k for k in protos.kinds
                                                       if k.type == kind)
        path = note_path(target, layout.home_of(view.path))
        bullet = f"- {fact(view)}{provenance(view, path, view.path, today)}"
        result.actions.append(Extract(entries=(view.id,),
                                      reason=f"reads as {kind} ({why}); "
                                      + ("linked" if degree.get(view.id) else "recalled"),
                                      type=kind, path=path, title=target.title, bullet=bullet))
        with contextlib.suppress(OSError, UnicodeDecodeError, edits.ConflictError):
            if path not in drafts.current and not (ctx.root / path).exists():
                drafts.original[path] = drafts.current[path] = ""
                result.touch(path, CREATE)
            text = drafts.current[path] if path in drafts.current else drafts.text(path)
            drafts.current[path] = with_fact(text, path, target.title, view, bullet, ctx.seals)
            if drafts.original[path]:
                result.touch(path, CHANGE, drafts.original[path], drafts.current[path])
            drafts.change(result, view.path, marked_extracted(drafts.text(view.path), view))
    if result.actions:  # the review ends with a flush (see `vaultd flush --dry-run`)
        result.touch(MEMORY_FILE, CHANGE)
    return result


def with_fact(text: str, path: str, title: str, view: EntryView, bullet: str,
              seals: Seals | None = None) -> str:
    """The kind's note (`text`, empty when new) with the fact added, unless it holds it; its
    claims (proven, extracted from) sealed anew on the new body (`provenance`)."""
    seals = seals or Seals.none()
    source = f"[[{view.path.removesuffix('.md')}]]"
    if not text:
        meta = {"type": path.rsplit("/", 2)[-2], "title": title, "status": "proven",
                "created": view.date, "extracted_from": [source]}
        return seal_note_text(seals, path, edits.set_frontmatter(
            "---\n---\n" + f"# {title}\n\n{bullet}\n", meta), ("status", "extracted_from"))
    if bullet in text.split("\n"):
        return text
    claims = extracted_claims(seals, path, text)
    fm = edits.get_frontmatter(path, text)
    sources = fm.get("extracted_from")
    sources = sources if isinstance(sources, list) else [sources] if sources else []
    body = text.rstrip("\n") + f"\n{bullet}\n"
    body = edits.set_frontmatter(body, {"extracted_from": sorted({*map(str, sources), source})})
    return seal_note_text(seals, path, body, claims)


def extracted_claims(seals: Seals, path: str, text: str) -> frozenset[str]:
    """The verified claims of a note the heartbeat extracts into (empty: not vaultd's)."""
    return seals.claims_of(parse(path, text))


def marked_extracted(text: str, view: EntryView) -> str:
    """The daily log's text with the entry marked as extracted (so it is extracted once)."""
    fm = edits.get_frontmatter(view.path, text)
    state = dict(fm["vaultd"]) if isinstance(fm.get("vaultd"), dict) else {}
    state["extracted"] = sorted(set(state.get("extracted") or []) | {view.key})
    return edits.set_frontmatter(text, {"vaultd": state})


def apply(ctx: Context, plan: Plan) -> Outcome:
    """Per entry: the fact goes into its kind's note (created, or appended to when vaultd made
    it), then the daily log marks the entry extracted; if the log cannot be marked, the note
    is taken back, so an entry is never extracted twice."""
    root, views = ctx.root, ctx.by_id
    out = Outcome()
    for action in plan.actions:
        if not isinstance(action, Extract):
            continue
        view = views[action.entries[0]]
        rel = action.path
        note = edits.inside(root, root / rel)
        try:
            snap = edits.read(edits.inside(root, root / view.path))
            as_planned(snap.text, view)  # not from an entry the user changed since the plan
            edits.check_writable(root / view.path, root=root)  # the log is marked too
            before: Any = edits.read(note) if note.exists() else None
            if before is not None and "extracted_from" not in extracted_claims(
                    ctx.seals, rel, before.text):
                raise edits.ConflictError(f"{rel}: exists and is not a note vaultd extracted "
                                          "into (no verified `extracted_from`); left alone")
            text = with_fact(before.text if before else "", rel, action.title, view,
                             action.bullet, ctx.seals)
            if before is None:
                edits.create_new(note, text, root=root)
            elif text != before.text:
                edits.replace_checked(before, text, root=root)
            try:
                edits.replace_checked(snap, marked_extracted(snap.text, view), root=root)
            except edits.ConflictError:
                # unmarked, the entry would be extracted again: take the fact back
                if before is None:
                    remove_ours(root, note, text.encode("utf-8"))
                elif text != before.text:
                    with contextlib.suppress(edits.ConflictError, OSError):
                        now = edits.read(note)
                        if now.text == text:
                            edits.replace_checked(now, before.text, root=root)
                raise
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(view.path, exc))
            continue
        (out.created if before is None else out.written).append(rel)
        out.written.append(view.path)
    return out


PHASE = Phase("heartbeat", plan, apply, ends_with_flush=True)
