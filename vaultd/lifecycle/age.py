"""age: isolated episodes fade; connected ones survive."""

from __future__ import annotations

from vaultd.lifecycle import state
from vaultd.lifecycle.actions import Fade, Reprieve
from vaultd.lifecycle.plans import Context, Phase, Plan

MAX_REPRIEVES = 3


def plan(ctx: Context) -> Plan:
    """Fade by isolation, not time: an episode still unconnected once `newer_than` newer
    entries exist gets a reprieve at each age pass (daily, in the daemon), up to three; at the
    next pass it fades to archive/. Linking to anything in the meantime saves it. Protected
    entries (procedural and semantic notes, pinned, #decision, proven) never fade."""
    newer_than = ctx.settings.newer_entries
    result = Plan("age")
    degree = ctx.store.link_degrees()
    connected = set(ctx.store.connected())
    active = [v for v in ctx.views if not v.archived]
    total = len(active)
    for rank, view in enumerate(active):
        newer = total - rank - 1
        why = view.protection(ctx.settings.scope)
        if why or degree.get(view.id, 0) > 0 or view.id not in connected:
            continue  # protected, linked, or not yet through connect (still buffered)
        if newer < newer_than:
            continue
        if view.reprieves < MAX_REPRIEVES:
            result.actions.append(Reprieve(entries=(view.id,),
                                           reason=f"unconnected with {newer} newer entries; "
                                           f"reprieve {view.reprieves + 1} of {MAX_REPRIEVES}",
                                           reprieves=view.reprieves + 1))
        else:
            result.actions.append(Fade(entries=(view.id,),
                                       reason=f"unconnected with {newer} newer entries after "
                                       f"{MAX_REPRIEVES} reprieves"))
    result.notes.append(f"{total} active entries; reprieves start once {newer_than} newer "
                      "entries exist")
    return state.plan_files(ctx, result)


PHASE = Phase("age", plan, state.apply, moves_entries=True)
