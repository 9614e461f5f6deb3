"""promote: what searches keep finding becomes proven knowledge (recall promotion)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from vaultd.lifecycle import state
from vaultd.lifecycle.actions import Promote
from vaultd.lifecycle.plans import Context, Phase, Plan
from vaultd.store import RecallKey, Store

RECALLED_TOP = 5  # a search's top hits that count as recalled


def plan(ctx: Context) -> Plan:
    """An entry in the top 5 of searches on `promote_after` separate occasions becomes
    proven."""
    needed = ctx.settings.promote_after
    result = Plan("promote")
    counts = ctx.store.recall_counts()
    for view in ctx.views:
        n = counts.get(RecallKey(view.path, view.key), 0)
        if n >= needed and not view.proven and not view.archived and ctx.in_scope(view) \
                and view.type in ("episodic", "semantic", "procedural"):
            result.actions.append(Promote(entries=(view.id,),
                                          reason=f"in the top 5 of {n} different searches"))
    return state.plan_files(ctx, result)


def record_recalls(store: Store, hits: Iterable[Any], query: str, now: float) -> None:
    """Remember that these hits (the top of a search) were recalled for this query. The index
    may be busy (a long batch): losing one recall beats failing the search."""
    norm = " ".join(re.findall(r"\w+", query.lower()))
    if not norm:
        return
    keys = store.entry_keys(h.entry_id for h in list(hits)[:RECALLED_TOP])
    if keys:
        store.add_recalls(keys, norm, now)


PHASE = Phase("promote", plan, state.apply)
