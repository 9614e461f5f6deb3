"""Per-entry durable state written into the files: reprieves and `proven` (in a daily log's
`vaultd:` key, else in the note's own frontmatter), and the phases that only change state or
fade entries (promote, age, prune) carried out together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaultd import edits
from vaultd.lifecycle.actions import Fade, Promote, Reprieve
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.moves import archive_entry, as_planned, plan_archive
from vaultd.lifecycle.plans import Context, Drafts, Outcome, Plan
from vaultd.provenance import DAILY_SEALS, Seals, seal_note_text


def update_state(text: str, path: str, view: EntryView | None, *,
                 reprieves: int | None = None, proven: bool = False,
                 seals: Seals | None = None) -> str:
    """Frontmatter with one entry's durable state changed. `proven` is vaultd's claim, so it
    is sealed with `seals` (`provenance`): on the entry's key and content hash in a daily log,
    with the note's other verified claims on a whole note."""
    seals = seals or Seals.none()
    fm = edits.get_frontmatter(path, text)
    if view is not None and view.is_daily:
        state = dict(fm.get("vaultd") or {}) if isinstance(fm.get("vaultd"), dict) else {}
        if reprieves is not None:
            rep = dict(state.get("reprieves") or {})
            rep[view.key] = reprieves
            state["reprieves"] = rep
        if proven:
            state["proven"] = sorted(set(state.get("proven") or []) | {view.key})
            marks = state.get(DAILY_SEALS)
            state[DAILY_SEALS] = {**(marks if isinstance(marks, dict) else {}),
                                  view.key: seals.entry_mac(view.key, view.hash)}
        return edits.set_frontmatter(text, {"vaultd": state})
    updates: dict[str, Any] = {}
    if reprieves is not None:
        updates["reprieves"] = reprieves
    if proven:
        updates["status"] = "proven"
    text = edits.set_frontmatter(text, updates)
    if proven:
        claims = view.claims if view is not None else frozenset()
        text = seal_note_text(seals, path, text, {*claims, "status"})
    return text


def apply_state(root: Path, views: dict[str, EntryView], plan: Plan, seals: Seals) -> Outcome:
    """Carry out reprieves, promotions and fades."""
    out = Outcome()
    # one file can hold several entries: re-read it for each, so line numbers stay right
    for action in plan.actions:
        view = views[action.entries[0]]
        try:
            if isinstance(action, Fade):
                archive_entry(root, view, action.reason, out, seals=seals)
                continue
            snap = edits.read(edits.inside(root, root / view.path))
            as_planned(snap.text, view)  # not on an entry the user changed since the plan
            if isinstance(action, Reprieve):
                text = update_state(snap.text, view.path, view,
                                    reprieves=action.reprieves, seals=seals)
            elif isinstance(action, Promote):
                text = update_state(snap.text, view.path, view, proven=True, seals=seals)
            else:
                continue
            if edits.replace_checked(snap, text, root=root):
                out.written.append(view.path)
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(view.path, exc))
    return out


def apply(ctx: Context, plan: Plan) -> Outcome:
    """How promote, age and prune apply their plans."""
    return apply_state(ctx.root, ctx.by_id, plan, ctx.seals)


def plan_files(ctx: Context, plan: Plan) -> Plan:
    """Record the files promote, age and prune's actions touch, with diffs, in the order
    `apply_state` carries them out."""
    drafts = Drafts(ctx.root)
    for action in plan.actions:
        view = ctx.by_id[action.entries[0]]
        if isinstance(action, Fade):
            plan_archive(plan, drafts, view)
            continue
        try:
            text = drafts.text(view.path)
        except (OSError, UnicodeDecodeError):
            continue  # applying it will report why it was left alone
        if isinstance(action, Reprieve):
            drafts.change(plan, view.path, update_state(text, view.path, view,
                                                        reprieves=action.reprieves,
                                                        seals=ctx.seals))
        elif isinstance(action, Promote):
            drafts.change(plan, view.path, update_state(text, view.path, view, proven=True,
                                                        seals=ctx.seals))
    return plan
