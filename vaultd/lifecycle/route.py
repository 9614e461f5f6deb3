"""route: proven knowledge goes to the declared config file whose content is nearest, inside
vaultd's managed block; what matches no target stays for MEMORY.md."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vaultd import edits, gate
from vaultd.blocks import MarkerError, find_block, inline, outside_block, with_block
from vaultd.lifecycle.actions import Rewrite, Route, Write
from vaultd.lifecycle.entries import summary
from vaultd.lifecycle.plans import CHANGE, CREATE, Context, Outcome, Phase, Plan
from vaultd.redact import redact_if


def resolve_target(root: Path, target: str, allowed_outside: Iterable[str]) -> Path:
    """A route target's path, judged lexically (`..` collapsed, no link resolved) and allowed
    by the write gate (`gate.place`): inside the vault, through no symbolic link, not in
    `.git/`, `.vaultd/`, `.obsidian/`, … nor in a nested vault. Outside the vault only when
    listed in `allowed_outside` (`[lifecycle] route_outside`), and even then through no link.
    The file's kind (a FIFO, a device) is refused where it is read and written."""
    raw = Path(target).expanduser()
    path = Path(os.path.normpath(raw if raw.is_absolute() else root / raw))
    if not gate.within(root, path):
        allowed = {Path(os.path.abspath(Path(a).expanduser())) for a in allowed_outside}
        if Path(os.path.abspath(path)) not in allowed:
            raise edits.OutsideError(f"route target {target} is outside the vault; list it in "
                                     "[lifecycle] route_outside to allow it")
        gate.allow_outside(root, path)
    gate.place(root, path)
    return path


def plan(ctx: Context) -> Plan:
    """Send each proven item to the declared target whose content is nearest, if above the
    route threshold; the rest stays for MEMORY.md."""
    import numpy as np

    root, views, matrix, th, embed = ctx.root, ctx.views, ctx.matrix, ctx.thresholds, ctx.embed
    targets = list(ctx.settings.route_targets)
    allowed_outside = ctx.settings.route_outside
    result = Plan("route")
    if not targets:
        result.notes.append("no route targets declared ([lifecycle] route_targets)")
        return result
    paths = {t: resolve_target(root, t, allowed_outside) for t in targets}
    current: dict[str, str] = {}
    for t, p in list(paths.items()):
        try:  # read as every write reads it: its encoding, "\n" line ends
            current[t] = edits.read(p).text if p.exists() else ""
        except (edits.ConflictError, OSError) as exc:  # this target only is skipped
            result.notes.append(edits.per_file(t, exc))
            del paths[t]
    targets = list(paths)
    if not targets:
        return result
    texts = {t: outside_block(current[t]) if paths[t].exists() else t for t in targets}
    tvecs = np.asarray(embed([texts[t][:4000] for t in targets]), dtype=np.float32)
    target_rel = {p.relative_to(root.resolve()).as_posix() for p in paths.values()
                  if p.is_relative_to(root.resolve())}
    # only knowledge proven from the agent's own memory (its scope, or a note vaultd made from
    # it), as vaultd verifiably recorded it: a note elsewhere that calls itself proven is the
    # note's own words, and what it says must not become an instruction in CLAUDE.md
    items = [i for i, v in enumerate(views)
             if v.proven and ctx.in_scope(v) and not v.archived and v.path not in target_rel]
    routed: dict[str, list[str]] = {t: [] for t in targets}
    for i in items:
        sims = tvecs @ matrix[i]
        best = int(np.argmax(sims))
        view = views[i]
        if float(sims[best]) >= th.route:
            link = view.path.removesuffix(".md")
            said = inline(redact_if(summary(view), ctx.redact))
            routed[targets[best]].append(f"- {said} ([[{inline(link)}]])")
            result.actions.append(Route(entries=(view.id,),
                                        reason=f"nearest target {targets[best]} at cosine "
                                        f"{float(sims[best]):.2f} ≥ {th.route:.2f}",
                                        target=targets[best]))
        else:
            result.notes.append(f"{view.label()} stays for MEMORY.md (best target "
                              f"{targets[best]} at {float(sims[best]):.2f} < {th.route:.2f})")
    for target in targets:
        path = paths[target]
        old = current[target]
        try:
            if not routed[target] and find_block(old) is None:
                continue  # nothing to route there, and no block to empty
            new = with_block(old, sorted(set(routed[target])))
        except MarkerError as exc:  # markers of a shape vaultd cannot claim: that file only
            result.notes.append(edits.per_file(target, edits.RefusedError(f"{target}: {exc}")))
            continue
        if new != old:
            root_r = root.resolve()
            shown = path.relative_to(root_r).as_posix() if path.is_relative_to(root_r) \
                else str(path)
            result.touch(shown, CHANGE if path.exists() else CREATE, old, new)
            result.actions.append(Write(entries=(), reason=f"managed block of {target}",
                                        target=target, path=str(path),
                                        diff=result.diffs[shown], held=Rewrite(old, new)))
    return result


def apply(ctx: Context, plan: Plan) -> Outcome:
    root = ctx.root
    out = Outcome()
    for action in plan.actions:
        if not isinstance(action, Write):
            continue
        path, rewrite = Path(action.path), action.rewrite
        try:  # both write through the gate: a link, a FIFO or a device is refused, not followed
            if os.path.lexists(path):
                snap = edits.read(path)
                if snap.text != rewrite.before:
                    raise edits.ConflictError(f"{path}: changed since it was read")
                edits.replace_checked(snap, rewrite.text, root=root)
            else:
                edits.create_new(path, rewrite.text, root=root)
        except (edits.ConflictError, OSError) as exc:
            out.conflicts.append(edits.per_file(str(path), exc))
            continue
        if path.is_relative_to(root.resolve()):
            out.written.append(path.relative_to(root.resolve()).as_posix())
    return out


PHASE = Phase("route", plan, apply)
