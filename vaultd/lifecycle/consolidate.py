"""consolidate: groups of ≥ 3 connected episodes become one proven semantic note.

The merged note keeps what each member says (extractively, or rewritten by an optional LLM whose
output is checked and else discarded) and records its sources and their hashes. The members stay
where they are: a daily log keeps its entries in their order, where the entries around one help
find it (a merge that moved them out cost recall at an agent's reading budget, bench/RESULTS.md,
2026-12-07), and search shows a fact the note and its log both hold once. A member is merged
once (`EntryView.merged_into`); `vaultd undo` archives the note and nothing else changes.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd import edits
from vaultd.layout import archive_path, home_of
from vaultd.lifecycle.actions import Merge
from vaultd.lifecycle.entries import EntryView, fact, provenance, words
from vaultd.lifecycle.moves import as_planned
from vaultd.lifecycle.plans import (
    CREATE,
    Context,
    Outcome,
    Phase,
    Plan,
    similarity_blocks,
)
from vaultd.notes import entry_title
from vaultd.provenance import Seals, seal_note_text

if TYPE_CHECKING:
    import numpy as np

MAX_GROUP = 6  # episodes merged into one note at most: bench/RESULTS.md, 2026-12-03


def clusters(views: list[EntryView], matrix: np.ndarray, threshold: float,
             min_size: int = 3, scope: Iterable[str] | None = None,
             max_size: int | None = None) -> list[list[int]]:
    """Groups in which every pair is at ≥ threshold (cliques), found greedily: the episode
    with the most close neighbours not yet grouped seeds a group, which takes in, one at a
    time, the neighbour closest on average to the group that is close to every member, up to
    `max_size` (default MAX_GROUP); a seed that cannot gather `min_size` is passed over. So
    one large connected region yields several groups (each about one thing), not one clique
    and the rest left out. Deterministic in the entries' order. Only episodes in `scope`
    (the agent's memory) take part, when given."""
    import numpy as np

    max_size = max_size or MAX_GROUP
    eligible = [i for i, v in enumerate(views) if not v.settled and v.type == "episodic"
                and (scope is None or v.owned(scope))]
    if len(eligible) < min_size:
        return []
    vectors = matrix[eligible]
    # each episode's close neighbours, a block of rows at a time: all pairs at once was an
    # episodes x episodes matrix, quadratic in the vault, and each seed recounted every degree
    near = neighbours(vectors, threshold)
    degree = np.array([len(n) for n in near])  # neighbours not yet grouped
    free = np.ones(len(eligible), dtype=bool)
    tried = np.zeros(len(eligible), dtype=bool)
    groups: list[list[int]] = []
    while True:
        seed = int(np.argmax(np.where(free & ~tried, degree, -1)))
        if not free[seed] or tried[seed] or degree[seed] < min_size - 1:
            break
        tried[seed] = True
        members = [seed]
        pool = near[seed][free[near[seed]]]
        while len(pool) and len(members) < max_size:
            closeness = (vectors[pool] @ vectors[members].T).mean(axis=1)
            best = int(pool[int(np.argmax(closeness))])
            members.append(best)
            pool = np.intersect1d(pool, near[best], assume_unique=True)
        if len(members) >= min_size:
            free[members] = False
            for m in members:
                np.subtract.at(degree, near[m], 1)
            groups.append(sorted(eligible[m] for m in members))
    return sorted(groups)


def neighbours(vectors: np.ndarray, threshold: float) -> list[np.ndarray]:
    """For each row, the other rows at cosine ≥ threshold (ascending), from a block of rows'
    similarities at a time."""
    import numpy as np

    out: list[np.ndarray] = []
    for start, sims in similarity_blocks(vectors, vectors):
        for row in range(len(sims)):
            sims[row, start + row] = -np.inf
            out.append(np.flatnonzero(sims[row] >= threshold))
    return out


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


# Words a subject is never named by (function words, and what every diary says).
_STOPWORDS = """
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each even ever every
few for from further get gets got had has have having he her here hers herself him himself his
how i if in into is it its itself just let like lot lots made make makes many me more most much
my myself new no nor not now of off on once one only or other our ours ourselves out over own
really recently said same say says she should so some such than that the their theirs them
themselves then there these they this those through to too two under until up upon us very
was we were what when where which while who whom why will with would yes yet you your yours
yourself today yesterday tomorrow week weeks day days time times year years month months
thing things something way ways people person lately
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
monday tuesday wednesday thursday friday saturday sunday mon tue wed thu fri sat sun
morning afternoon evening night tonight last next ago
"""
STOPWORDS = frozenset(_STOPWORDS.split())


# a word of prose: not part of an identifier, a path or code (`test_refund_webhook`, a/b.py)
_WORD = re.compile(r"(?<![\w/`.-])[A-Za-z][A-Za-z'’-]*[A-Za-z](?![\w/`]|[.-]\w)")


def _phrases(text: str) -> list[list[str]]:
    """Runs of words between punctuation, possessives folded ("Caroline's" → "Caroline")."""
    return [[re.sub(r"['’]s$", "", w) for w in _WORD.findall(run)]
            for run in re.split(r"[!?;:,()\[\]\n—–\"]+|\.\s", text)]


def terms(text: str) -> dict[str, str]:
    """A text's candidate subject terms, lower case → as written: words of three letters or
    more that are not stop words, and pairs of them side by side."""
    out: dict[str, str] = {}
    for run in _phrases(text):
        keep = [w if w.lower() not in STOPWORDS and len(w) > 2 else "" for w in run]
        for i, w in enumerate(keep):
            if w:
                out.setdefault(w.lower(), w)
                if i + 1 < len(keep) and keep[i + 1]:
                    out.setdefault(f"{w} {keep[i + 1]}".lower(), f"{w} {keep[i + 1]}")
    return out


def subject(texts: list[str], vault_df: Counter[str], vault_size: int) -> str:
    """What a group is about, offline: its most common name (a word written capitalised, not
    in capitals, in every one of its uses, in at least half the members), then the two terms
    (words or pairs of words, sharing no word) most distinctive of the group against the whole
    vault (share of members that use it × log inverse document frequency in the vault), e.g.
    "Caroline — adoption, LGBTQ support". Empty when nothing is shared by two members."""
    import math

    used = [terms(t) for t in texts]
    df: Counter[str] = Counter(k for u in used for k in u)
    forms: dict[str, Counter[str]] = {}
    for u in used:
        for k, form in u.items():
            forms.setdefault(k, Counter())[form] += 1
    names = [k for k in df if " " not in k and df[k] >= max(2, len(texts) / 2)
             and all(f[:1].isupper() and not f.isupper() for f in forms[k])]
    name = max(names, key=lambda k: (df[k], k), default="")
    # a phrase of two words says more than either word: a fifth more weight
    score = {k: df[k] / len(texts) * math.log((vault_size + 1) / (vault_df.get(k, 0) + 1))
             * (1.2 if " " in k else 1.0)
             for k in df if df[k] >= 2 and k != name and name not in k.split()}
    chosen: list[str] = []
    for k in sorted(score, key=lambda k: (-score[k], k)):
        if not any(set(k.split()) & set(c.split()) for c in chosen):
            chosen.append(k)
        if len(chosen) == 2:
            break
    # as written most often; in lower case if it is ever written so (a capital at the start of
    # a sentence or a heading does not make a term a name)
    shown = [k if k in forms[k] else forms[k].most_common(1)[0][0] for k in chosen]
    head = forms[name].most_common(1)[0][0] if name else ""
    if head and shown:
        return f"{head} — {', '.join(shown)}"
    return head or ", ".join(shown)[:1].upper() + ", ".join(shown)[1:]


def plan(ctx: Context) -> Plan:
    """Merge each group of ≥ 3 episodes, every pair at cosine ≥ the consolidate threshold,
    into one proven semantic note named by its subject, that keeps each member word for word
    with its date and a link to it (a near-duplicate once, with both); the members stay where
    they are, merged (an entry already merged is not grouped again).

    The coherence check (what each entry says without the lines all share and without its
    time must still be about one topic) runs on dry runs too: a dry run plans what a real run
    does."""
    import numpy as np

    views, matrix, th = ctx.views, ctx.matrix, ctx.thresholds
    embed = ctx.embed
    result = Plan("consolidate")
    active = [v for v in views if not v.archived]
    vault_df: Counter[str] = Counter(k for v in active for k in terms(v.text))
    taken: set[str] = set()
    merges: list[Merge] = []
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
        rep = group[int(np.argmax(block.mean(axis=1)))]
        title = subject([fact(v) for v in group], vault_df, len(active)) \
            or entry_title(rep.key) or fact(rep)[:60] or "Consolidated"
        homes = {home_of(v.path) for v in group}  # members of one memory/ folder stay in it
        path = free_path(ctx.root, (homes.pop() if len(homes) == 1 else "") + "semantic",
                         title, taken)
        taken.add(path)
        low = float(block[~np.eye(len(group), dtype=bool)].min())
        by_time = sorted(group, key=lambda v: v.order)
        merges.append(Merge(
            entries=tuple(v.id for v in group),
            reason=f"{len(group)} entries, every pair at cosine ≥ {th.consolidate:.2f} "
                   f"(lowest {low:.2f})",
            title=title, path=path, created=ctx.today.isoformat(),
            facts=said_once(by_time, matrix[[members[group.index(v)] for v in by_time]],
                            th.duplicate, path, ctx),
            tags=tuple(sorted({t for v in group for t in v.tags if t != "daily"}))))
    result.actions += merges
    for action in merges:
        result.touch(action.path, CREATE)
    return result


def said_once(members: list[EntryView], vectors: np.ndarray, duplicate: float, path: str,
              ctx: Context) -> tuple[str, ...]:
    """The merged note's lines, oldest first: one per fact, with its date and a link to its
    source. A member at cosine ≥ `duplicate` (the near-duplicate threshold) to a line already
    there says the same thing again: it joins that line as a second source, and the longer of
    the two wordings stays (the other is still in its log, where the link points). A
    reader pays for a fact once, and its two dates still say it was said twice."""
    lines: list[tuple[str, list[str]]] = []  # (wording, provenances)
    kept: list[int] = []  # the member each line was first said by
    for i, view in enumerate(members):
        said = fact(view)
        source = provenance(view, path, view.path, ctx.today)
        sims = [float(vectors[i] @ vectors[k]) for k in kept]
        best = max(range(len(sims)), key=sims.__getitem__, default=None)
        if best is not None and sims[best] >= duplicate:
            wording, sources = lines[best]
            lines[best] = (said if len(said) > len(wording) else wording,
                           sources + [source.removeprefix(" — ")])
            continue
        lines.append((said, [source]))
        kept.append(i)
    return tuple(wording + ", ".join(sources) for wording, sources in lines)


def free_path(root: Path, folder: str, title: str, taken: set[str]) -> str:
    """`folder/<title-slug>.md`, with `-2`, `-3`… when a note (or one planned) has the name."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-") or "note"
    n = 1
    while True:
        path = f"{folder}/{slug}{f'-{n}' if n > 1 else ''}.md"
        if path not in taken and not (root / path).exists() \
                and not (root / archive_path(path)).exists():
            return path
        n += 1


def merge_note(action: Merge, views: dict[str, EntryView], merge_id: str,
               llm: Any = None, seals: Seals | None = None) -> str:
    """The merged note (format shared with flush, which renders its facts in MEMORY.md):
    `# <subject>`, then one bullet per fact, verbatim, ending ` — [date](link)` (a fact said
    twice: once, ending with both sources; see `said_once`). An LLM's
    rewrite, when one is configured and passes the checks of `vaultd.llm`, is added under
    `## Summary`: it never replaces the members' own words."""
    members = [views[e] for e in action.entries]
    sources = [v.source for v in members]
    merged_by, rejected = "extractive", None
    body = [f"# {action.title}", ""] + [f"- {f}" for f in action.facts]
    if llm is not None:
        from vaultd.llm import llm_merge

        result = llm_merge([v.text for v in members], llm, [])
        merged_by, rejected = result.source, result.rejected
        if result.source == "llm":
            body += ["", "## Summary", ""] + [f"- {s}" for s in result.items]
    meta = {"type": "semantic", "title": action.title,
            "created": action.created, "status": "proven",
            "consolidation": merge_id, "consolidated_from": sources,
            # what each source said when merged: a consolidation a crash cut short is finished
            # on these (see finish_interrupted), never on an entry changed since
            "consolidated_hashes": [v.hash for v in members],
            "tags": list(action.tags), "merged_by": merged_by}
    if rejected:
        meta["llm_rejected"] = rejected
    text = edits.set_frontmatter("---\n---\n" + "\n".join(body) + "\n", meta)
    # vaultd's claims (proven, the merge and its sources) sealed on this very body
    return seal_note_text(seals or Seals.none(), action.path, text,
                          ("status", "consolidation", "consolidated_from", "consolidated_hashes"))


def consolidation_id(action: Merge) -> str:
    return hashlib.sha1("\0".join(sorted(action.entries)).encode()).hexdigest()[:10]


def apply(ctx: Context, plan: Plan) -> Outcome:
    root, views, llm = ctx.root, ctx.by_id, ctx.llm
    out = Outcome()
    for action in plan.actions:
        if not isinstance(action, Merge):
            continue
        rel = action.path
        merge_id = consolidation_id(action)
        text = merge_note(action, views, merge_id, llm, ctx.seals)
        try:
            for e in action.entries:  # merge only what was planned: no member changed since
                as_planned(edits.read(root / views[e].path).text, views[e])
            edits.create_new(edits.inside(root, root / rel), text, root=root)
        except (edits.ConflictError, OSError) as exc:  # one file never stops the phase
            out.conflicts.append(edits.per_file(rel, exc))
            continue
        out.created.append(rel)
    return out


PHASE = Phase("consolidate", plan, apply)
