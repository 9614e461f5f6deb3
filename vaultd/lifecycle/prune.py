"""prune: near-duplicate episodes fade (the better-connected copy stays)."""

from __future__ import annotations

from vaultd.lifecycle import state
from vaultd.lifecycle.actions import Fade
from vaultd.lifecycle.plans import Context, Phase, Plan, similarity_blocks


def plan(ctx: Context) -> Plan:
    """Near-duplicate episodes (cosine ≥ the duplicate threshold): keep the better-connected
    one (the older on a tie), archive the other."""
    import numpy as np

    views, matrix, th = ctx.views, ctx.matrix, ctx.thresholds
    result = Plan("prune")
    degree = ctx.store.link_degrees()
    idx = [i for i, v in enumerate(views) if v.type == "episodic" and not v.archived
           and v.protection(ctx.settings.scope) is None]
    gone: set[int] = set()
    episodes = matrix[idx]
    for start, sims in similarity_blocks(episodes, episodes) if len(idx) > 1 else ():
        for a in range(start, start + len(sims)):
            row = sims[a - start]
            for b in np.flatnonzero(row[a + 1:] >= th.duplicate) + a + 1:
                i, j = idx[a], idx[int(b)]
                if i in gone or j in gone:
                    continue
                keep, drop = sorted((i, j), key=lambda k: (-degree.get(views[k].id, 0),
                                                           views[k].order))
                gone.add(drop)
                result.actions.append(Fade(entries=(views[drop].id,),
                                           reason=f"near-duplicate (cosine {float(row[b]):.2f}) "
                                           f"of {views[keep].label()}"))
    result.notes.append(f"{len(gone)} near-duplicate(s) at cosine ≥ {th.duplicate:.2f}")
    return state.plan_files(ctx, result)


PHASE = Phase("prune", plan, state.apply, moves_entries=True)
