"""route: proven knowledge goes to the declared config file whose content is nearest, inside
vaultd's managed block; what matches no target stays for MEMORY.md."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vaultd import edits, layout
from vaultd.blocks import BEGIN, outside_block, with_block
from vaultd.lifecycle.entries import summary
from vaultd.lifecycle.plans import CHANGE, CREATE, Action, Context, Outcome, Phase, Plan


def resolve_target(root: Path, target: str, allowed_outside: Iterable[str]) -> Path:
    """A route target's path. Inside the vault unless explicitly allowed (no `..`, absolute
    paths or symlinks escaping it)."""
    raw = Path(target).expanduser()
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if path.is_relative_to(root.resolve()):
        if path.relative_to(root.resolve()).parts[:1] in ((layout.STATE_DIR,), (".git",)):
            raise edits.VaultdError(f"route target {target} is in vaultd's or git's own "
                                    "folder; refused")
        return path
    allowed = {Path(a).expanduser().resolve() for a in allowed_outside}
    if path in allowed:
        return path
    raise edits.VaultdError(f"route target {target} is outside the vault; list it in "
                            "[lifecycle] route_outside to allow it")


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
            result.actions.append(Action("route", [view.id],
                                       f"nearest target {targets[best]} at cosine "
                                       f"{float(sims[best]):.2f} ≥ {th.route:.2f}",
                                       {"target": targets[best]}))
        else:
            result.notes.append(f"{view.label()} stays for MEMORY.md (best target "
                              f"{targets[best]} at {float(sims[best]):.2f} < {th.route:.2f})")
    for target in targets:
        path = paths[target]
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if not routed[target] and BEGIN not in old:
            continue  # nothing to route there, and no block to empty
        new = with_block(old, sorted(set(routed[target])))
        if new != old:
            root_r = root.resolve()
            shown = path.relative_to(root_r).as_posix() if path.is_relative_to(root_r) \
                else str(path)
            result.touch(shown, CHANGE if path.exists() else CREATE, old, new)
            result.actions.append(Action("write", [], f"managed block of {target}",
                                         {"target": target, "path": str(path),
                                          "diff": result.diffs[shown], "text": new,
                                          "before": old}))
    return result


def apply(ctx: Context, plan: Plan) -> Outcome:
    root = ctx.root
    out = Outcome()
    for action in plan.actions:
        if action.kind != "write":
            continue
        path = Path(action.data["path"])
        # a declared target outside the vault gets its lock file in .vaultd/, not beside it
        lock_dir = None if path.is_relative_to(root.resolve()) else layout.state_dir(root) / "locks"
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


PHASE = Phase("route", plan, apply)
