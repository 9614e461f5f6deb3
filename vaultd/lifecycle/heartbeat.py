"""heartbeat: a scheduled review of recent daily-log entries that extracts durable knowledge
and how-tos into their own notes, then brings MEMORY.md up to date."""

from __future__ import annotations

import contextlib
import datetime as dt
import re

from vaultd import edits
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.moves import as_planned, remove_ours
from vaultd.lifecycle.plans import CHANGE, CREATE, Action, Context, Drafts, Outcome, Phase, Plan
from vaultd.notes import entry_title


def plan(ctx: Context) -> Plan:
    """Review recent daily-log entries: classify each as episodic, semantic or procedural —
    by an LLM when one is configured, else (or when it fails) by the nearest typed centroid;
    extract the high-signal ones (linked or recalled) that are knowledge or how-tos into their
    own notes, with a link back."""
    import numpy as np

    views, matrix, llm = ctx.views, ctx.matrix, ctx.llm
    days, today = ctx.settings.heartbeat_days, ctx.today
    result = Plan("heartbeat")
    since = (today - dt.timedelta(days=days)).isoformat()
    centroids, labels = [], []
    for kind in ("episodic", "semantic", "procedural"):
        rows = [i for i, v in enumerate(views) if v.type == kind and not v.archived
                and not (kind == "episodic" and (v.date or "") >= since)]
        if rows:
            c = matrix[rows].mean(axis=0)
            centroids.append(c / max(float(np.linalg.norm(c)), 1e-12))
            labels.append(kind)
    degree = ctx.store.link_degrees()
    recalled = set(ctx.store.recall_counts())
    recent = [i for i, v in enumerate(views) if v.is_daily and not v.archived
              and ctx.in_scope(v) and (v.date or "") >= since]
    result.notes.append(f"{len(recent)} daily-log entries since {since}")
    if not centroids:
        return result
    cmat = np.vstack(centroids)
    for i in recent:
        view = views[i]
        kind = labels[int(np.argmax(cmat @ matrix[i]))]
        if llm is not None:
            from vaultd.llm import llm_classify

            kind = llm_classify(view.text, llm) or kind
        state = view.state()
        done = isinstance(state.get("extracted"), list) and view.key in state["extracted"]
        signal = degree.get(view.id, 0) > 0 or (view.path, view.key) in recalled
        if kind != "episodic" and signal and not done:
            result.actions.append(Action("extract", [view.id],
                                       f"reads as {kind}; "
                                       + ("linked" if degree.get(view.id) else "recalled"),
                                       {"type": kind}))
        else:
            result.notes.append(f"{view.label()}: {kind}"
                              + ("" if signal else ", low signal") + (", done" if done else ""))
    drafts = Drafts(ctx.root)
    for action in result.actions:
        view = ctx.by_id[action.entries[0]]
        result.touch(extracted_path(action, view), CREATE)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            drafts.change(result, view.path, marked_extracted(drafts.text(view.path), view))
    if result.actions:  # the review ends with a flush (see `vaultd flush --dry-run`)
        result.touch(MEMORY_FILE, CHANGE)
    return result


def extracted_path(action: Action, view: EntryView) -> str:
    """The vault path of the note an extraction creates (its plan and its apply agree)."""
    title = entry_title(view.key) or view.key
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "note"
    return f"{action.data['type']}/{slug}-{view.id[:6]}.md"


def marked_extracted(text: str, view: EntryView) -> str:
    """The daily log's text with the entry marked as extracted (so it is extracted once)."""
    fm = edits.get_frontmatter(view.path, text)
    state = dict(fm["vaultd"]) if isinstance(fm.get("vaultd"), dict) else {}
    state["extracted"] = sorted(set(state.get("extracted") or []) | {view.key})
    return edits.set_frontmatter(text, {"vaultd": state})


def apply(ctx: Context, plan: Plan) -> Outcome:
    root, views = ctx.root, ctx.by_id
    out = Outcome()
    for action in plan.actions:
        view = views[action.entries[0]]
        title = entry_title(view.key) or view.key
        rel = extracted_path(action, view)
        meta = {"type": action.data["type"], "title": title, "created": view.date,
                "extracted_from": f"[[{view.path.removesuffix('.md')}]]",
                "tags": sorted(t for t in view.tags if t != "daily")}
        text = edits.set_frontmatter("---\n---\n" + f"# {title}\n\n{view.text}\n", meta)
        try:
            snap = edits.read(edits.inside(root, root / view.path))
            as_planned(snap.text, view)  # not from an entry the user changed since the plan
            edits.check_writable(root / view.path)  # the log gets marked: it must be writable
            edits.create_new(edits.inside(root, root / rel), text, root=root)
            try:
                edits.replace_checked(snap, marked_extracted(snap.text, view), root=root)
            except edits.ConflictError:
                # unmarked, the entry would be extracted again: take the new note back
                remove_ours(root, root / rel, text.encode("utf-8"))
                raise
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(view.path, exc))
            continue
        out.created.append(rel)
        out.written.append(view.path)
    return out


PHASE = Phase("heartbeat", plan, apply, ends_with_flush=True)
