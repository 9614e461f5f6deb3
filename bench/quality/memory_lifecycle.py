"""Does the lifecycle make an agent's memory better? The agent-memory protocol of the shared
data's README, on the three locomo-dev conversations.

One vault per conversation: every observation fact is one top-level bullet entry of the daily
log `episodic/YYYY-MM-DD.md` of its session (dates shifted so the last session is yesterday).
Gold for a question = the facts whose dialogue id is in its `evidence` (category 5 and questions
without gold are skipped). Measured per conversation and pooled (weighted by questions), right
after indexing ("before") and after four full lifecycle passes (what the daemon's schedule does
over about two weeks: passes on days 1, 4, 8 and 14 after the last session) and a flush
("after"):

- R@5: the share of a question's gold facts in the top 5 hits of default search (after: also
  with the archive ranked equal, "after+archive");
- top-5 characters: the length of the top 5 hits' text together, what an agent reading them
  pays (mean over questions);
- recall at a reading budget (`--budget`, 1,000 characters): the ranked hits (k = 20) taken
  whole, in rank order, while their text together fits the budget; the first hit that does
  not fit ends the reading (an agent reads a tool result from the top; a hit cut mid-way is
  not counted as read). "budget recall" is the share of a question's gold facts in what was
  read (R@5's measure), "budget found" the share of questions with at least one;
- MEMORY.md: the share of questions whose gold fact (verbatim, whitespace and case folded) is in
  it, or whose gold fact or answer string is, and its size; beside it, for scale, the same for
  raw facts chosen at random filling the same budget (`- fact` lines; 5 seeds: mean, min, max)
  and shortest first;
- the test of a merge (issue 28 point 2): budget recall before and after on the questions
  whose gold holds a fact that a merge took into a note;
- what the lifecycle did: links, merges, fades, extractions, notes created.

A hit "finds" a gold fact when the fact's text is inside the hit's text, so a fact that a merge
moved verbatim into a semantic note still counts, and one an LLM rewrote does not. In MEMORY.md a
line may say its subject once for several facts (`- Caroline: went to X; plans Y.` stands for
"Caroline went to X." and "Caroline plans Y."): a fact counts when it is there verbatim or so
restored (`restored`).

`--reuse DIR` (vaults built by an earlier `--keep DIR`) measures MEMORY.md alone: the block is
rendered again from the kept index, without indexing or lifecycle (seconds, for tuning the
block's choice of facts).

    python bench/quality/memory_lifecycle.py [--data DIR] [--conv conv-26] [--model NAME]
        [--keep DIR | --reuse DIR] [--budget 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, write_json  # noqa: E402

from vaultd import blocks, layout  # noqa: E402
from vaultd.lifecycle import PHASE_NAMES  # noqa: E402
from vaultd.notes import PROVENANCE_RE  # noqa: E402
from vaultd.vault import Vault, init_vault, open_vault  # noqa: E402

BUDGET = 8000  # MEMORY.md's (the default `[lifecycle] memory_budget`)
READING_BUDGET = 1000  # characters of ranked hits an agent reads (--budget)
READ_K = 20  # hits asked for when reading to a budget
PASS_DAYS = (1, 4, 8, 14)  # lifecycle passes, days after the last session
K = 5
SEEDS = 5


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".").lower()


def session_dates(conv: dict[str, Any]) -> dict[int, dt.date]:
    dates = {}
    for key, value in conv["conversation"].items():
        m = re.fullmatch(r"session_(\d+)_date_time", key)
        if m and f"session_{m.group(1)}" in conv["conversation"]:
            dates[int(m.group(1))] = dt.datetime.strptime(
                value.split(" on ", 1)[1], "%d %B, %Y").date()
    return dates


def facts_of(conv: dict[str, Any], today: dt.date) -> tuple[list[dict[str, Any]], dt.date]:
    """Every observation fact with its dialogue id and its (shifted) session date."""
    dates = session_dates(conv)
    shift = (today - dt.timedelta(days=1)) - max(dates.values())
    facts = []
    for key, by_speaker in conv["observation"].items():
        n = int(re.match(r"session_(\d+)_observation", key).group(1))
        for pairs in by_speaker.values():
            for text, dia in pairs:
                ids = dia if isinstance(dia, list) else [dia]
                facts.append({"text": " ".join(text.split()), "dia": [str(i) for i in ids],
                              "date": dates[n] + shift, "session": n})
    return facts, max(dates.values()) + shift


def questions_of(conv: dict[str, Any], facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_dia: dict[str, list[str]] = {}
    for f in facts:
        for d in f["dia"]:
            by_dia.setdefault(d, []).append(f["text"])
    out = []
    for qa in conv["qa"]:
        if qa.get("category") == 5:
            continue
        gold = sorted({t for e in qa.get("evidence", []) for t in by_dia.get(str(e), [])})
        if gold:
            out.append({"q": qa["question"], "answer": str(qa.get("answer", "")), "gold": gold})
    return out


def write_vault(root: Path, facts: list[dict[str, Any]]) -> None:
    init_vault(root)
    days: dict[dt.date, list[str]] = {}
    for f in facts:
        days.setdefault(f["date"], []).append(f["text"])
    for day, texts in sorted(days.items()):
        body = "".join(f"- {t}\n" for t in texts)
        (root / "episodic" / f"{day.isoformat()}.md").write_text(
            f"---\ntype: episodic\ndate: {day.isoformat()}\n---\n# {day.isoformat()}\n\n{body}",
            encoding="utf-8")


def share_found(gold: list[str], texts: list[str]) -> float:
    found = " \n ".join(norm(t) for t in texts)
    return sum(norm(g) in found for g in gold) / len(gold)


def read_to_budget(texts: list[str], budget: int) -> list[str]:
    """The hits an agent reads within `budget` characters: whole, in rank order, up to the
    first one that does not fit."""
    out, used = [], 0
    for text in texts:
        if used + len(text) > budget:
            break
        out.append(text)
        used += len(text)
    return out


def recall_at_k(vault: Vault, questions: list[dict[str, Any]], *, archive: bool) -> float:
    scores = [share_found(q["gold"], [h.text for h in vault.search(
        q["q"], k=K, archive="equal" if archive else "lower")]) for q in questions]
    return round(statistics.mean(scores), 4)


def reading(vault: Vault, questions: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """R@5, the top 5 hits' length, and recall within a reading budget (default search)."""
    r5, top5, recall, found = [], [], [], []
    for q in questions:
        texts = [h.text for h in vault.search(q["q"], k=K)]
        r5.append(share_found(q["gold"], texts))
        top5.append(sum(len(t) for t in texts))
        read = read_to_budget([h.text for h in vault.search(q["q"], k=READ_K)], budget)
        recall.append(share_found(q["gold"], read))
        found.append(float(recall[-1] > 0))
    return {"r5": round(statistics.mean(r5), 4), "top5_chars": round(statistics.mean(top5), 1),
            "budget_recall": round(statistics.mean(recall), 4),
            "budget_found": round(statistics.mean(found), 4), "per_question": recall}


def merged_facts(root: Path) -> set[str]:
    """The facts (normalised) of the notes consolidation wrote: `- fact — [date](link)`."""
    out = set()
    for path in (root / "semantic").glob("*.md"):
        text = path.read_text(encoding="utf-8")
        if "\nconsolidation:" in text:
            out |= {norm(PROVENANCE_RE.sub("", line[2:])) for line in text.splitlines()
                    if line.startswith("- ")}
    return out


def merge_test(questions: list[dict[str, Any]], before: dict[str, Any],
               after: dict[str, Any], merged: set[str]) -> dict[str, Any]:
    """Issue 28's test of a merge: recall at the reading budget, before and after, on the
    questions whose gold holds a fact that a merge took into a note."""
    idx = [i for i, q in enumerate(questions) if any(norm(g) in merged for g in q["gold"])]
    mean = lambda xs: round(statistics.mean(xs), 4) if xs else 0.0  # noqa: E731
    return {"questions": len(idx),
            "before": mean([before["per_question"][i] for i in idx]),
            "after": mean([after["per_question"][i] for i in idx])}


# a line that says its subject once for several facts: "- Caroline: went to X; plans Y."
# (in a group, or inline after its source's link)
SUBJECT_LINE_RE = re.compile(r"^(?:- |- \[[^\]]*\]\([^)]*\): )([A-Z][\w'-]*(?: [A-Z][\w'-]*)*): "
                             r"(.+)$", re.M)


def restored(text: str) -> str:
    """MEMORY.md with what a subject said once said before each of its facts again:
    `- Caroline: went to X; plans Y.` → `Caroline went to X. Caroline plans Y.` (kept beside
    the text as written, so nothing is lost to the guess)."""
    return text + "\n" + "\n".join(
        " ".join(f"{m.group(1)} {part}." for part in m.group(2).rstrip(".").split("; "))
        for m in SUBJECT_LINE_RE.finditer(text))


def coverage(text: str, questions: list[dict[str, Any]]) -> dict[str, float]:
    flat = norm(restored(text))
    fact = [any(norm(g) in flat for g in q["gold"]) for q in questions]
    loose = [f or (len(norm(q["answer"])) > 3 and norm(q["answer"]) in flat)
             for f, q in zip(fact, questions)]
    return {"gold_fact": round(sum(fact) / len(fact), 4),
            "gold_fact_or_answer": round(sum(loose) / len(loose), 4)}


def filled(texts: list[str], budget: int = BUDGET) -> str:
    out, used = [], 0
    for t in texts:
        line = f"- {t}\n"
        if used + len(line) > budget:
            continue
        out.append(line)
        used += len(line)
    return "".join(out)


def baselines(facts: list[dict[str, Any]], questions: list[dict[str, Any]],
              budget: int = BUDGET) -> dict[str, Any]:
    texts = [f["text"] for f in facts]
    randoms = []
    for seed in range(SEEDS):
        shuffled = texts[:]
        random.Random(seed).shuffle(shuffled)
        randoms.append(coverage(filled(shuffled, budget), questions)["gold_fact"])
    return {"random_fill": round(statistics.mean(randoms), 4),
            "random_fill_min": min(randoms), "random_fill_max": max(randoms),
            "shortest_first": coverage(filled(sorted(texts, key=len), budget),
                                       questions)["gold_fact"]}


def memory_stats(block: str, facts: list[dict[str, Any]]) -> dict[str, Any]:
    """How many of the conversation's facts the block says, and what each costs in it."""
    flat = norm(restored(block))
    shown = sum(norm(f["text"]) in flat for f in facts)
    return {"facts_shown": shown, "chars_per_fact": round(len(block) / max(shown, 1), 1)}


def tally(reports: list[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for report in reports:
        for action in report.actions:
            counts[f"{report.phase}.{action.kind}"] += 1
            if action.kind in ("merge", "extract"):  # the facts that became knowledge
                counts[f"{report.phase}.{action.kind}.facts"] += len(action.entries)
        counts[f"{report.phase}.created"] += len(report.created)
    return counts


def rendered(vault: Vault) -> str:
    """MEMORY.md's block as a flush would write it now, from the index as it is."""
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.flush import render
    from vaultd.vault import templates_dir

    views, vectors = snapshot(vault.store, vault.seals)
    cfg = vault.settings.lifecycle
    return render(vault.root, templates_dir(), vault.store, views, cfg.memory_budget, vectors,
                  cfg.scope, vault.settings.privacy.redact)


def memory_only(conv: dict[str, Any], work: Path) -> dict[str, Any]:
    """--reuse: MEMORY.md rendered again on a kept vault; no indexing, no lifecycle."""
    root = work / conv["sample_id"]
    facts, _ = facts_of(conv, dt.date.today())
    questions = questions_of(conv, facts)
    vault = open_vault(root)
    try:
        block = rendered(vault)
    finally:
        vault.close()
    return {"conversation": conv["sample_id"], "facts": len(facts),
            "questions": len(questions), "memory_block_chars": len(block),
            "memory": coverage(block, questions), **memory_stats(block, facts),
            "baselines": baselines(facts, questions)}


def run_conversation(conv: dict[str, Any], work: Path, model: str | None,
                     profile: dict[str, float] | None = None,
                     budget: int = READING_BUDGET) -> dict[str, Any]:
    today = dt.date.today()
    facts, last = facts_of(conv, today)
    questions = questions_of(conv, facts)
    root = work / conv["sample_id"]
    write_vault(root, facts)
    if model:
        (root / layout.STATE_DIR / "config.toml").write_text(
            f'[embedding]\nmodel = "{model}"\n', encoding="utf-8")
    vault = open_vault(root)
    if profile:  # thresholds under study (--set)
        vault.profile = replace(vault.profile, **profile)
    t0 = time.perf_counter()
    vault.index()
    index_s = time.perf_counter() - t0
    before = reading(vault, questions, budget)
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    for day in PASS_DAYS:
        counts += tally(vault.lifecycle(list(PHASE_NAMES), today=last + dt.timedelta(days=day)))
    lifecycle_s = time.perf_counter() - t0
    flush = vault.flush()
    memory = (root / layout.MEMORY_FILE).read_text(encoding="utf-8")
    after = reading(vault, questions, budget)
    merge = merge_test(questions, before, after, merged_facts(root))
    before.pop("per_question"), after.pop("per_question")
    result = {
        "conversation": conv["sample_id"], "facts": len(facts), "questions": len(questions),
        "before": before, "after": after, "merge_test": merge,
        "r5_before": before["r5"], "r5_after": after["r5"],
        "r5_after_archive": recall_at_k(vault, questions, archive=True),
        "memory_chars": len(memory), "memory_block_chars": flush.memory_chars,
        "memory": coverage(memory, questions),
        **memory_stats(blocks.block_of(memory) or "", facts),
        "baselines": baselines(facts, questions),
        "links": sum(1 for _ in vault.store.links()),
        "actions": dict(sorted(counts.items())),
        "notes_created": sorted(str(p.relative_to(root)) for p in root.rglob("*.md")
                                if p.parts[len(root.parts)] in ("semantic", "procedural")),
        "seconds": {"index": round(index_s, 1), "lifecycle": round(lifecycle_s, 1)},
    }
    vault.close()
    return result


def pool(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every per-question figure pooled over the conversations (weighted by questions)."""
    n = sum(r["questions"] for r in results)

    def mean(get: Any) -> float:
        return round(sum(get(r) * r["questions"] for r in results) / max(n, 1), 4)

    out: dict[str, Any] = {"questions": n}
    if all("before" in r for r in results):
        for when in ("before", "after"):
            for key in ("r5", "top5_chars", "budget_recall", "budget_found"):
                out[f"{key}_{when}"] = mean(lambda r, w=when, k=key: r[w][k])
        out["r5_after_archive"] = mean(lambda r: r["r5_after_archive"])
        asked = sum(r["merge_test"]["questions"] for r in results)
        out["merge_test_questions"] = asked
        for when in ("before", "after"):
            out[f"merge_test_{when}"] = round(sum(
                r["merge_test"][when] * r["merge_test"]["questions"] for r in results)
                / max(asked, 1), 4)
    out["memory_gold_fact"] = mean(lambda r: r["memory"]["gold_fact"])
    for key in ("random_fill", "random_fill_min", "random_fill_max", "shortest_first"):
        out[key] = mean(lambda r, k=key: r["baselines"][k])
    out["memory_over_random"] = round(out["memory_gold_fact"] - out["random_fill"], 4)
    return out


def line(r: dict[str, Any]) -> str:
    """One conversation's figures, as printed."""
    m, b = r["memory"], r["baselines"]
    memory = (f"MEMORY.md block {r['memory_block_chars']} chars, {r['facts_shown']} facts "
              f"({r['chars_per_fact']} chars each), gold fact {m['gold_fact']:.3f} (or answer "
              f"{m['gold_fact_or_answer']:.3f}); random fill {b['random_fill']:.3f} "
              f"[{b['random_fill_min']:.3f}, {b['random_fill_max']:.3f}], shortest first "
              f"{b['shortest_first']:.3f}")
    if "before" not in r:
        return f"{r['conversation']}: {memory}"
    reads = " | ".join(
        f"{w}: R@5 {r[w]['r5']:.3f}, top-5 {r[w]['top5_chars']:.0f} chars, budget recall "
        f"{r[w]['budget_recall']:.3f} (found {r[w]['budget_found']:.3f})"
        for w in ("before", "after"))
    m = r["merge_test"]
    return (f"{r['conversation']}: {r['facts']} facts, {r['questions']} questions | {reads} | "
            f"after+archive R@5 {r['r5_after_archive']:.3f} | the {m['questions']} questions a "
            f"merged fact answers: budget recall {m['before']:.3f} -> {m['after']:.3f} | "
            f"{memory} | links {r['links']} | "
            f"{r['actions']} | {r['seconds']}")


def load(data: Path) -> list[dict[str, Any]]:
    with tarfile.open(data / "locomo-dev.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("locomo-dev.json"))
        return json.load(tar.extractfile(member))  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--conv", action="append", help="only this conversation (repeatable)")
    ap.add_argument("--model", help="embedding model name (default: the configured default)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, help="build the vaults here and keep them")
    where.add_argument("--reuse", type=Path,
                       help="vaults kept by --keep: measure MEMORY.md alone, rendered again")
    ap.add_argument("--budget", type=int, default=READING_BUDGET,
                    help="characters of ranked hits an agent reads (default %(default)s)")
    ap.add_argument("--out", type=Path, default=OUT / "memory_lifecycle.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a profile threshold to try, e.g. consolidate_threshold=0.6")
    ap.add_argument("--max-group", type=int, help="consolidation's largest group to try")
    args = ap.parse_args()
    profile = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.max_group:
        from vaultd.lifecycle import consolidate

        consolidate.MAX_GROUP = args.max_group
    convs = [c for c in load(args.data) if not args.conv or c["sample_id"] in args.conv]
    if args.reuse:
        results = [memory_only(conv, args.reuse) for conv in convs]
        for r in results:
            print(line(r), flush=True)
        pooled = pool(results)
        print("pooled over " + f"{pooled['questions']} questions: " + ", ".join(
            f"{k} {v:.3f}" for k, v in pooled.items() if k != "questions"))
        write_json(args.out, {"budget": BUDGET, "reuse": True, "results": results,
                              "pooled": pooled})
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="vaultd-locomo-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for conv in convs:
            r = run_conversation(conv, work, args.model, profile, args.budget)
            results.append(r)
            print(line(r), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    pooled = pool(results)
    print("pooled over " + f"{pooled['questions']} questions: " + ", ".join(
        f"{k} {v:.3f}" for k, v in pooled.items() if k != "questions"))
    write_json(args.out, {"budget": BUDGET, "reading_budget": args.budget, "k": K,
                          "read_k": READ_K, "pass_days": PASS_DAYS, "profile": profile,
                          "max_group": args.max_group, "results": results, "pooled": pooled})


if __name__ == "__main__":
    main()
