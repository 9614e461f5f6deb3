"""consolidate: groups of ≥ 3 connected episodes become one proven semantic note.

The merged note keeps what each member says (extractively, or rewritten by an optional LLM whose
output is checked and else discarded) and records its sources and their hashes, so `vaultd undo`
can reverse it and a consolidation a crash cut short is finished, not repeated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from vaultd import edits
from vaultd.layout import ARCHIVE_DIR
from vaultd.lifecycle.entries import EntryView, sentences, words
from vaultd.lifecycle.moves import archive_entry, as_planned, plan_archive, remove_ours
from vaultd.lifecycle.plans import CREATE, Action, Context, Drafts, Outcome, Phase, Plan
from vaultd.notes import entry_title

if TYPE_CHECKING:
    import numpy as np


def clusters(views: list[EntryView], matrix: np.ndarray, threshold: float,
             min_size: int = 3, scope: Iterable[str] | None = None) -> list[list[int]]:
    """Connected groups at ≥ threshold, pruned to cliques: while some pair is below the
    threshold, drop the member with the lowest mean similarity to the rest. Only episodes in
    `scope` (the agent's memory) take part, when given."""
    import numpy as np

    eligible = [i for i, v in enumerate(views) if not v.archived and v.type == "episodic"
                and (scope is None or v.owned(scope))]
    if len(eligible) < min_size:
        return []
    sims = matrix[eligible] @ matrix[eligible].T
    adjacent = sims >= threshold
    np.fill_diagonal(adjacent, False)
    seen: set[int] = set()
    groups: list[list[int]] = []
    for start in range(len(eligible)):
        if start in seen:
            continue
        component, frontier = [], [start]
        seen.add(start)
        while frontier:
            node = frontier.pop()
            component.append(node)
            for nxt in np.flatnonzero(adjacent[node]):
                if int(nxt) not in seen:
                    seen.add(int(nxt))
                    frontier.append(int(nxt))
        members = sorted(component)
        while len(members) >= min_size:
            block = sims[np.ix_(members, members)]
            if (block + np.eye(len(members)) * 2 >= threshold).all():
                break
            means = (block.sum(axis=1) - 1.0) / (len(members) - 1)
            members.pop(int(np.argmin(means)))
        if len(members) >= min_size:
            groups.append([eligible[m] for m in members])
    return groups


def structural_noise(texts: list[str]) -> float | None:
    """Mean pairwise word-set Jaccard when the group's overlap is mostly template (> 0.8),
    else None."""
    sets = [words(t) for t in texts]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    if not pairs:
        return None
    jaccard = sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / len(pairs)
    return jaccard if jaccard > 0.8 else None


def strip_template(texts: list[str]) -> list[str]:
    """Drop the lines every member shares (the template), keep what each says."""
    line_sets = [{line.strip() for line in t.splitlines() if line.strip()} for t in texts]
    shared = set.intersection(*line_sets) if line_sets else set()
    return ["\n".join(line for line in t.splitlines() if line.strip() not in shared)
            for t in texts]


def extractive_merge(texts: list[str], centroid_order: list[int]) -> list[str]:
    """The representative's sentences, then each other member's sentences that add words."""
    kept: list[str] = []
    seen: list[set[str]] = []
    for idx in centroid_order:
        for sentence in sentences(texts[idx]):
            said = words(sentence)
            if not said:
                continue
            if any(len(said & s) / max(len(said | s), 1) >= 0.6 for s in seen):
                continue
            kept.append(sentence)
            seen.append(said)
    return kept


def plan(ctx: Context) -> Plan:
    """Merge each group of ≥ 3 episodes, every pair at cosine ≥ the consolidate threshold,
    into one proven semantic note; the originals move to archive/.

    The coherence check (what each entry says without the lines all share and without its
    time must still be about one topic) runs on dry runs too: a dry run plans what a real run
    does."""
    import numpy as np

    views, matrix, th = ctx.views, ctx.matrix, ctx.thresholds
    embed = ctx.embed
    result = Plan("consolidate")
    for members in clusters(views, matrix, th.consolidate, scope=ctx.settings.scope):
        group = [views[i] for i in members]
        texts = [v.text for v in group]
        noise = structural_noise(texts)
        if noise is not None:
            result.notes.append(f"skipped a group of {len(group)} as structural noise "
                              f"(word overlap {noise:.2f}): "
                              + ", ".join(v.label() for v in group))
            continue
        if embed is not None:
            # what each entry says without the lines they all share and without timestamps:
            # it must still be about one topic (at the link threshold)
            content = [entry_title(v.key) + "\n" + t
                       for v, t in zip(group, strip_template(texts))]
            cvecs = np.asarray(embed(content), dtype=np.float32)
            csims = cvecs @ cvecs.T
            if (csims + np.eye(len(group)) * 2 < th.link).any():
                result.notes.append("skipped a group whose content without the shared template "
                                  "is not coherent: " + ", ".join(v.label() for v in group))
                continue
        block = matrix[members] @ matrix[members].T
        centrality = block.mean(axis=1)
        order = [int(i) for i in np.argsort(-centrality)]
        rep = group[order[0]]
        title = entry_title(rep.key) or rep.key
        low = float(block[~np.eye(len(group), dtype=bool)].min())
        result.actions.append(Action(
            "merge", [v.id for v in group],
            f"{len(group)} entries, every pair at cosine ≥ {th.consolidate:.2f} (lowest {low:.2f})",
            {"title": title, "sentences": extractive_merge(texts, order),
             "tags": sorted({t for v in group for t in v.tags if t != "daily"})}))
    drafts = Drafts(ctx.root)
    for action in result.actions:
        result.touch(merged_path(action), CREATE)
        for view in members_bottom_up(action, ctx.by_id):
            plan_archive(result, drafts, view)
    return result


def merge_note(action: Action, views: dict[str, EntryView], merge_id: str,
               llm: Any = None) -> str:
    members = [views[e] for e in action.entries]
    sources = [f"{v.path}#{v.key}" if v.is_daily else v.path for v in members]
    items, merged_by, rejected = action.data["sentences"], "extractive", None
    if llm is not None:
        from vaultd.llm import llm_merge

        result = llm_merge([v.text for v in members], llm, items)
        items, merged_by, rejected = result.items, result.source, result.rejected
    body = [f"# {action.data['title']}", ""]
    body += [f"- {s}" for s in items]
    body += ["", "## Sources", ""]
    body += [f"- [[{ARCHIVE_DIR}/{v.path.removesuffix('.md')}]] {v.key}" for v in members]
    meta = {"type": "semantic", "title": action.data["title"],
            "created": dt.date.today().isoformat(), "status": "proven",
            "consolidation": merge_id, "consolidated_from": sources,
            # what each source said when merged: a consolidation a crash cut short is finished
            # on these (see finish_interrupted), never on an entry changed since
            "consolidated_hashes": [v.hash for v in members],
            "tags": action.data["tags"], "merged_by": merged_by}
    if rejected:
        meta["llm_rejected"] = rejected
    return edits.set_frontmatter("---\n---\n" + "\n".join(body) + "\n", meta)


def consolidation_id(action: Action) -> str:
    return hashlib.sha1("\0".join(sorted(action.entries)).encode()).hexdigest()[:10]


def merged_path(action: Action) -> str:
    """The vault path of the note a merge creates (its plan and its apply agree on it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", action.data["title"].lower()).strip("-")[:60]
    return f"semantic/{slug or 'consolidated'}-{consolidation_id(action)[:6]}.md"


def members_bottom_up(action: Action, views: dict[str, EntryView]) -> list[EntryView]:
    """A merge's members in the order they are archived: bottom-up within a file, so earlier
    line numbers stay valid."""
    return sorted((views[e] for e in action.entries), key=lambda v: (v.path, -v.start_line))


def apply(ctx: Context, plan: Plan) -> Outcome:
    root, views, llm = ctx.root, ctx.by_id, ctx.llm
    out = Outcome()
    for action in plan.actions:
        rel = merged_path(action)
        merge_id = consolidation_id(action)
        text = merge_note(action, views, merge_id, llm)
        try:
            for e in action.entries:  # merge only what was planned: no member changed since
                as_planned(edits.read(root / views[e].path).text, views[e])
            for e in action.entries:  # every source and its archive copy must be writable
                edits.check_writable(root / views[e].path)  # before the merged note exists
                edits.check_writable(root / ARCHIVE_DIR / views[e].path)
            edits.create_new(edits.inside(root, root / rel), text, root=root)
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(rel, exc))
            continue
        why = f"consolidated into {rel} ({merge_id})"
        moved = 0
        for view in members_bottom_up(action, views):
            try:
                archive_entry(root, view, why, out)
                moved += 1
            except (edits.ConflictError, OSError) as exc:
                out.conflicts.append(edits.per_file(view.path, exc))
        if moved:
            # a member left behind is finished later (`recovery.finish_interrupted` moves an
            # entry a merged note lists with the same hash); the merged note must stay for that
            out.created.append(rel)
        else:  # nothing moved: the merged note alone would duplicate every member
            remove_ours(root, root / rel, text.encode("utf-8"))
    return out


PHASE = Phase("consolidate", plan, apply, moves_entries=True)
