"""The memory lifecycle: buffer → connect → consolidate → route → age, plus recall promotion,
a scheduled heartbeat review and pruning of near-duplicates; `flush` writes what an agent reads
(MEMORY.md).

Each phase is a module with one contract (`plans.Phase`): `plan(ctx) -> Plan` computes what
would link, fade, merge or be promoted, each with its reason, writing nothing; `apply(ctx, plan)
-> Outcome` carries it out with checked atomic writes (`vaultd.edits`). So `--dry-run` shows
exactly what a real run would do. `PHASES` is the one table of phases, in the order
`--phase all` runs them: the CLI, the server, the daemon's schedule and the docs read it.

Shared parts: `actions` (one typed value per kind of action, serialised once), `entries`
(EntryView, snapshot), `moves` (archive, restore, undo), `state` (per-entry state in the
files), `recovery` (finishing what a crash cut short).

This module imports no phase until one is asked for, so the CLI can list phases cheaply.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultd.lifecycle.plans import Phase

# name → module; `--phase all` and POST /lifecycle run them in this order
PHASES: dict[str, str] = {
    "connect": "vaultd.lifecycle.connect",
    "promote": "vaultd.lifecycle.promote",
    "consolidate": "vaultd.lifecycle.consolidate",
    "route": "vaultd.lifecycle.route",
    "age": "vaultd.lifecycle.age",
    "heartbeat": "vaultd.lifecycle.heartbeat",
    "prune": "vaultd.lifecycle.prune",
}
PHASE_NAMES = tuple(PHASES)


def phase(name: str) -> Phase:
    """The phase called `name`; ValueError naming the valid ones otherwise."""
    if name not in PHASES:
        raise ValueError(f"unknown lifecycle phase {name!r}; valid: {', '.join(PHASE_NAMES)}")
    return import_module(PHASES[name]).PHASE
