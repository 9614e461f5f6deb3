"""connect: link each new or changed entry to every active entry it is related to.

Links are derivable (recomputed from vectors) and live only in the index; with
`[lifecycle] mirror_related` they are also written into `vaultd_related:` frontmatter,
for Obsidian's graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vaultd import edits
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.plans import (
    CHANGE,
    SIMILARITY_FLOATS,
    Action,
    Context,
    Outcome,
    Phase,
    Plan,
)

if TYPE_CHECKING:
    import numpy as np

    from vaultd.store import Store

MAX_LINKS = 20  # per note in `vaultd_related:`: the strongest links above the threshold
# vaultd's own frontmatter key for links: Obsidian's graph draws wikilinks in list properties,
# and a generic name such as `related` may already be the user's
RELATED_KEY = "vaultd_related"


def plan(ctx: Context) -> Plan:
    """Link each buffered entry (new, or changed since it was last connected) to every active
    entry at cosine ≥ the link threshold.

    No per-entry cap: a link is a property of the pair alone, so the graph maintained entry by
    entry is the graph built from scratch (a top-N cap made it depend on the order entries
    were connected in, and a rebuilt index planned differently). `vaultd_related:` shows the
    strongest MAX_LINKS."""
    import numpy as np

    views, matrix, th = ctx.views, ctx.matrix, ctx.thresholds
    result = Plan("connect")
    done = ctx.store.connected()
    active = np.array([not v.archived for v in views], dtype=bool)
    buffer = [i for i, v in enumerate(views) if active[i] and done.get(v.id) != v.hash]
    result.notes.append(f"{len(buffer)} buffered entr{'y' if len(buffer) == 1 else 'ies'} of "
                        f"{int(active.sum())} active; link threshold {th.link:.2f}")
    # a block of buffered rows at a time: all of them at once is buffered x entries floats
    # (a model change re-buffers every entry: 50k entries made a 10 GB matrix)
    block = max(1, SIMILARITY_FLOATS // max(len(views), 1))
    for start in range(0, len(buffer), block):
        rows = buffer[start:start + block]
        sims = matrix[rows] @ matrix.T
        for row, i in enumerate(rows):
            sims[row, i] = -1.0
            sims[row, ~active] = -1.0
            above = np.flatnonzero(sims[row] >= th.link)
            above = above[np.argsort(-sims[row, above], kind="stable")]
            linked = [(views[j].id, float(sims[row, j])) for j in above]
            result.actions.append(Action(
                "link", [views[i].id, *[j for j, _ in linked]],
                f"{len(linked)} link(s) at cosine ≥ {th.link:.2f}" if linked
                else f"no entry at cosine ≥ {th.link:.2f} (best {float(sims[row].max()):.2f})",
                {"scores": [round(s, 3) for _, s in linked], "hash": views[i].hash}))
    if ctx.settings.mirror_related and ctx.mirror:
        plan_mirror(ctx, result)
    return result


def apply(ctx: Context, plan: Plan) -> Outcome:
    links = [a for a in plan.actions if a.kind == "link"]
    ctx.store.save_links(((a.entries[0], list(zip(a.entries[1:], a.data["scores"])),
                           a.data["hash"]) for a in links), ctx.now)
    out = Outcome()
    for action in plan.actions:
        if action.kind != "mirror":
            continue
        path = action.data["path"]
        try:
            snap = edits.read(ctx.root / path)
            if snap.text != action.data["before"]:
                raise edits.ConflictError(f"{ctx.root / path}: changed since it was read; not "
                                          "overwritten (vaultd will try again with the new text)")
            if edits.replace_checked(snap, action.data["text"], root=ctx.root):
                out.written.append(path)
        except FileNotFoundError:
            continue
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(path, exc))
    return out


def related_links(links: Iterable[tuple[str, str, float]],
                  views: list[EntryView]) -> dict[str, list[str]]:
    """path → the notes its entries link to, as Obsidian wikilinks (for `vaultd_related:`)."""
    by_id = {v.id: v for v in views}
    best: dict[str, dict[str, float]] = {}
    for a, b, score in links:
        if a in by_id and b in by_id and by_id[a].path != by_id[b].path:
            target = f"[[{by_id[b].path.removesuffix('.md')}]]"
            scores = best.setdefault(by_id[a].path, {})
            scores[target] = max(scores.get(target, -1.0), float(score))
    return {p: sorted(sorted(s, key=lambda t: (-s[t], t))[:MAX_LINKS])
            for p, s in best.items()}


def links_after(store: Store, plan: Plan) -> list[tuple[str, str, float]]:
    """The link graph as applying `plan` leaves it: each buffered entry's links replaced by
    the plan's."""
    linking = [a for a in plan.actions if a.kind == "link"]
    buffered = {a.entries[0] for a in linking}
    kept = [(a, b, s) for a, b, s in store.links() if a not in buffered and b not in buffered]
    for action in linking:
        for other, score in zip(action.entries[1:], action.data["scores"]):
            kept += [(action.entries[0], other, score), (other, action.entries[0], score)]
    return kept


def plan_mirror(ctx: Context, plan: Plan) -> None:
    """Plan writing each note's links into its `vaultd_related:` frontmatter, a key vaultd
    owns (a user's own `related:` is theirs and never touched): in notes in the lifecycle's
    scope, and in the user's other notes only with `mirror_outside_scope`. Only that one key's
    lines change; a note without frontmatter gets none added. Files changed in the last
    `quiet_seconds` are left for next time (someone is likely editing them)."""
    links = related_links(links_after(ctx.store, plan), ctx.views)
    mirrored = {v.path for v in ctx.views if not v.archived
                and (ctx.in_scope(v) or ctx.settings.mirror_outside_scope)}
    for path in sorted(mirrored - {MEMORY_FILE}):
        want = links.get(path)
        try:
            if ctx.quiet_seconds and \
                    time.time() - (ctx.root / path).stat().st_mtime < ctx.quiet_seconds:
                continue  # being edited right now: next time
            text = edits.read(ctx.root / path).text
        except FileNotFoundError:
            continue
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            plan.notes.append(edits.per_file(path, exc))
            continue
        have = edits.get_frontmatter(path, text).get(RELATED_KEY)
        if (want or None) == (have or None) or edits.split_frontmatter(text)[0] is None:
            continue  # nothing new, or adding a frontmatter block would re-format the file
        new = edits.set_frontmatter(text, {RELATED_KEY: want})
        plan.actions.append(Action("mirror", [], f"{len(want or [])} link(s) into "
                                   f"{RELATED_KEY}:", {"path": path, "before": text,
                                                       "text": new}))
        plan.touch(path, CHANGE, text, new)


# What the shipped thresholds answer (bench/RESULTS.md, 2026-12-03; each profile's comment in
# vaultd/embedder.py), and how `vaultd calibrate` carries them to a vault and model with no
# labelled pairs: on locomo-dev, a random pair of facts of one conversation reaches the default
# model's link threshold with probability 0.24 and its consolidate threshold with 0.01. Most
# pairs of a vault are unrelated, so thresholds that link the same shares of the vault's pairs
# keep about the same false-positive rate.
LINK_CRITERION = ("related (not 'same meaning'): facts that are evidence for one question vs "
                  "random pairs of one conversation, locomo-dev, max recall - false-positive "
                  "rate (one-standard-error rule), STS-B gold >= 3 as a check; "
                  "bench/calibrate_relatedness.py")
CONSOLIDATE_CRITERION = ("stricter: every pair of a merged group reaches it; chosen on the "
                         "agent-memory benchmark, bench/memory_lifecycle.py")
LINK_RANDOM_SHARE = 0.24
CONSOLIDATE_RANDOM_SHARE = 0.01


def calibrate(matrix: np.ndarray, link_default: float, consolidate_default: float
              ) -> dict[str, Any]:
    """The vault's similarity distribution, what the model's thresholds mean (`criteria`), and
    thresholds suggested for this vault: those that link the same share of its pairs as the
    calibrated ones link of unrelated pairs (LINK_RANDOM_SHARE, CONSOLIDATE_RANDOM_SHARE)."""
    import numpy as np

    n = matrix.shape[0]
    if n < 3:
        return {"entries": n, "note": "too few entries to calibrate"}
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -1.0)
    nearest = sims.max(axis=1)
    pairs = sims[np.triu_indices(n, 1)]
    pct = lambda a, q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    link = pct(pairs, 100 * (1 - LINK_RANDOM_SHARE))
    consolidate = max(link + 0.05, pct(pairs, 100 * (1 - CONSOLIDATE_RANDOM_SHARE)))
    return {
        "entries": n, "pairs": int(pairs.size),
        "nearest_neighbour": {f"p{q}": pct(nearest, q) for q in (10, 25, 50, 75, 90)},
        "all_pairs": {f"p{q}": pct(pairs, q) for q in (50, 90, 99, 99.9)},
        "current": {"link": link_default, "consolidate": consolidate_default},
        "criteria": {"link": LINK_CRITERION, "consolidate": CONSOLIDATE_CRITERION},
        "suggested": {"link": link, "consolidate": round(min(consolidate, 0.99), 3)},
        "suggested_by": (f"rank: the vault's closest {LINK_RANDOM_SHARE:.0%} of pairs (link) "
                         f"and {CONSOLIDATE_RANDOM_SHARE:.0%} (consolidate), the shares of "
                         "unrelated pairs the calibrated thresholds let through on locomo-dev; a "
                         "rough start for a model with no calibration of its own (a vault more "
                         "varied than one conversation gets lower values)"),
        "linked_at_current": float((pairs >= link_default).mean()),
        "isolated_at_current": float((nearest < link_default).mean()),
    }


PHASE = Phase("connect", plan, apply)
