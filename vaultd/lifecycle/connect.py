"""connect: link each new or changed entry to every active entry it is related to.

Links are derivable (recomputed from vectors) and live only in the index; with
`[lifecycle] mirror_related` they are also written into `vaultd_related:` frontmatter,
for Obsidian's graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from vaultd import edits
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.actions import Link, Links, Mirror, Rewrite
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.plans import (
    CHANGE,
    Context,
    Outcome,
    Phase,
    Plan,
    similarity_blocks,
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
    # (a model change re-buffers every entry: then it is quadratic in the vault)
    inactive = ~active
    for start, sims in similarity_blocks(matrix, matrix, buffer):
        sims[:, inactive] = -1.0
        for row, i in enumerate(buffer[start:start + len(sims)]):
            sims[row, i] = -1.0
            above = np.flatnonzero(sims[row] >= th.link)
            above = above[np.argsort(-sims[row, above], kind="stable")]
            scores = np.array([round(s, 3) for s in sims[row, above].tolist()], dtype=float)
            # every link is held compactly (a dense vault links an entry to thousands: as
            # Python objects, a large vault's plan outgrew its memory); the report shows the
            # strongest
            result.actions.append(Link(
                entries=(views[i].id, *(views[j].id for j in above[:MAX_LINKS])),
                reason=f"{len(above)} link(s) at cosine ≥ {th.link:.2f}" if len(above)
                else f"no entry at cosine ≥ {th.link:.2f} (best {float(sims[row].max()):.2f})",
                scores=tuple(scores[:MAX_LINKS].tolist()), links=int(len(above)),
                hash=views[i].hash, held=Links([views[j].id for j in above], scores)))
    if ctx.settings.mirror_related and ctx.mirror:
        plan_mirror(ctx, result)
    return result


def apply(ctx: Context, plan: Plan) -> Outcome:
    ctx.store.save_links(((a.entries[0], a.every_link.pairs(), a.hash)
                          for a in plan.actions if isinstance(a, Link)), ctx.now)
    out = Outcome()
    for action in plan.actions:
        if not isinstance(action, Mirror):
            continue
        path, rewrite = action.path, action.rewrite
        try:
            snap = edits.read(ctx.root / path)
            if snap.text != rewrite.before:
                raise edits.ConflictError(f"{ctx.root / path}: changed since it was read; not "
                                          "overwritten (vaultd will try again with the new text)")
            if edits.replace_checked(snap, rewrite.text, root=ctx.root):
                out.written.append(path)
        except FileNotFoundError:
            continue
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(path, exc))
    return out


def related_links(links: Iterable[tuple[str, str, float]],
                  views: list[EntryView]) -> dict[str, list[str]]:
    """path → the notes its entries link to, as Obsidian wikilinks (for `vaultd_related:`):
    the MAX_LINKS strongest. One pass over the links, holding a few strongest per note, not
    every link (a dense vault has millions)."""
    path = {v.id: v.path for v in views}
    target = {v.id: f"[[{v.path.removesuffix('.md')}]]" for v in views}
    best: dict[str, dict[str, float]] = {}
    for a, b, score in links:
        if a not in path or b not in path or path[a] == path[b]:
            continue
        scores = best.setdefault(path[a], {})
        if score > scores.get(target[b], -1.0):
            scores[target[b]] = float(score)
            if len(scores) > 4 * MAX_LINKS:  # the ones below the MAX_LINKS strongest go
                best[path[a]] = {t: scores[t] for t in _strongest(scores)}
    return {p: sorted(_strongest(s)) for p, s in best.items()}


def _strongest(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda t: (-scores[t], t))[:MAX_LINKS]


def links_after(store: Store, plan: Plan) -> Iterator[tuple[str, str, float]]:
    """The link graph as applying `plan` leaves it, one link at a time: each buffered entry's
    links replaced by the plan's."""
    linking = [a for a in plan.actions if isinstance(a, Link)]
    buffered = {a.entries[0] for a in linking}
    for a, b, s in store.links():
        if a not in buffered and b not in buffered:
            yield a, b, s
    for action in linking:
        for other, score in action.every_link.pairs():
            yield action.entries[0], other, score
            yield other, action.entries[0], score


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
        plan.actions.append(Mirror(entries=(), reason=f"{len(want or [])} link(s) into "
                                   f"{RELATED_KEY}:", path=path, held=Rewrite(text, new)))
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
                  "bench/quality/calibrate_relatedness.py")
CONSOLIDATE_CRITERION = ("stricter: every pair of a merged group reaches it; chosen on the "
                         "agent-memory benchmark, bench/quality/memory_lifecycle.py")
LINK_RANDOM_SHARE = 0.24
CONSOLIDATE_RANDOM_SHARE = 0.01


CALIBRATION_BINS = 1 << 17  # over cosines -1..1


def _bin(cosines: np.ndarray) -> np.ndarray:
    import numpy as np

    scaled = (cosines.astype(np.float64) + 1.0) * (CALIBRATION_BINS / 2.0)
    return np.clip(scaled.astype(np.int64), 0, CALIBRATION_BINS - 1)


def calibrate(matrix: np.ndarray, link_default: float, consolidate_default: float
              ) -> dict[str, Any]:
    """The vault's similarity distribution, what the model's thresholds mean (`criteria`), and
    thresholds suggested for this vault: those that link the same share of its pairs as the
    calibrated ones link of unrelated pairs (LINK_RANDOM_SHARE, CONSOLIDATE_RANDOM_SHARE)."""
    import numpy as np

    n = matrix.shape[0]
    if n < 3:
        return {"entries": n, "note": "too few entries to calibrate"}
    # every pair's cosine counted into fine bins, a block of rows at a time: all pairs at once
    # is an entries x entries matrix, quadratic in the vault; a percentile is then exact to half
    # a bin (1e-5), well inside the 3 places reported
    counts = np.zeros(CALIBRATION_BINS, dtype=np.int64)
    nearest = np.empty(n, dtype=np.float32)
    linked = 0
    for start, sims in similarity_blocks(matrix, matrix):
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -1.0
        nearest[start:start + len(sims)] = sims.max(axis=1)
        pairs = sims[np.arange(n)[None, :] > (start + rows)[:, None]]  # each pair once
        linked += int((pairs >= link_default).sum())
        counts += np.bincount(_bin(pairs), minlength=CALIBRATION_BINS)
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])

    def pct(q: float) -> float:  # numpy's percentile of all pairs, read off the bins
        rank = int(q / 100 * (total - 1))
        b = int(np.searchsorted(cumulative, rank, side="right"))
        return round(-1.0 + (b + 0.5) * 2.0 / CALIBRATION_BINS, 3)

    near = lambda q: round(float(np.percentile(nearest, q)), 3)  # noqa: E731
    link = pct(100 * (1 - LINK_RANDOM_SHARE))
    consolidate = max(link + 0.05, pct(100 * (1 - CONSOLIDATE_RANDOM_SHARE)))
    return {
        "entries": n, "pairs": total,
        "nearest_neighbour": {f"p{q}": near(q) for q in (10, 25, 50, 75, 90)},
        "all_pairs": {f"p{q}": pct(q) for q in (50, 90, 99, 99.9)},
        "current": {"link": link_default, "consolidate": consolidate_default},
        "criteria": {"link": LINK_CRITERION, "consolidate": CONSOLIDATE_CRITERION},
        "suggested": {"link": link, "consolidate": round(min(consolidate, 0.99), 3)},
        "suggested_by": (f"rank: the vault's closest {LINK_RANDOM_SHARE:.0%} of pairs (link) "
                         f"and {CONSOLIDATE_RANDOM_SHARE:.0%} (consolidate), the shares of "
                         "unrelated pairs the calibrated thresholds let through on locomo-dev; a "
                         "rough start for a model with no calibration of its own (a vault more "
                         "varied than one conversation gets lower values)"),
        "linked_at_current": linked / total,
        "isolated_at_current": float((nearest < link_default).mean()),
    }


PHASE = Phase("connect", plan, apply)
