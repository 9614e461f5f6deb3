"""Finishing what a crash cut short, before any phase that moves entries runs again.

It acts only on what vaultd can verify it started (`provenance`): an archive record it sealed;
and only inside the lifecycle's scope (the agent's memory). It plans like a phase, so
`--dry-run` and the report show each move. (A merge moves nothing: its members stay in their
logs, so an entry a merged note lists is where it belongs, not a move cut short.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from vaultd import edits
from vaultd.layout import in_scope, unarchived
from vaultd.lifecycle.actions import Fade
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.moves import archive_entry, archived_records, interrupted, plan_archive
from vaultd.lifecycle.plans import Drafts, Outcome, Plan
from vaultd.provenance import Seals

PHASE_NAME = "recovery"


def plan_interrupted(root: Path, views: list[EntryView], scope: Iterable[str],
                     seals: Seals) -> Plan:
    """What a crash (SIGKILL, power loss) left half done, as a plan of moves: a daily-log
    entry whose exact copy is already in its archive file under the same key, recorded by a
    sealed record (the copy was written, the source not yet cut), leaves the log.
    Only entries in `scope` move. An entry changed since keeps its place. Nothing is deleted:
    each one is moved."""
    scope = tuple(scope)
    plan = Plan(PHASE_NAME)
    copies = {(unarchived(v.path), v.key, v.hash)
              for v in views if v.archived and v.is_daily}
    records = {unarchived(v.path): archived_records(v.frontmatter, seals)
               for v in views if v.archived and v.is_daily}
    live = Counter((v.path, v.key, v.hash) for v in views if not v.archived and v.is_daily)
    # an identical twin left in the log on purpose is not an interrupted move
    copies = {c for c in copies if interrupted(records.get(c[0], []), c[1], c[2], live[c])}
    drafts = Drafts(root)
    for v in sorted((v for v in views if not v.archived and v.is_daily
                     and (v.path, v.key, v.hash) in copies),
                    key=lambda v: (v.path, -v.start_line)):
        if not in_scope(v.path, scope):
            plan.notes.append(f"{v.label()}: outside the lifecycle's scope; a move of it is "
                              "not finished (only the agent's memory is moved)")
            continue
        plan.actions.append(Fade(entries=(v.id,), reason="finishing an interrupted move"))
        plan_archive(plan, drafts, v)
    return plan


def finish_interrupted(root: Path, views: list[EntryView], scope: Iterable[str],
                       seals: Seals, plan: Plan | None = None) -> Outcome:
    """Carry out `plan_interrupted` (or the `plan` given): each move through `archive_entry`."""
    plan = plan or plan_interrupted(root, views, scope, seals)
    by_id = {v.id: v for v in views}
    out = Outcome()
    for action in plan.actions:
        v = by_id[action.entries[0]]
        try:
            archive_entry(root, v, action.reason, out, seals=seals)
        except (edits.ConflictError, OSError) as exc:  # one file never stops the run
            out.conflicts.append(edits.per_file(v.path, exc))
    return out
