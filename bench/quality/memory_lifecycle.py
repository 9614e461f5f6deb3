"""Does the lifecycle make an agent's memory better? The agent-memory protocol of the shared
data's README, on the three locomo-dev conversations.

One vault per conversation: every observation fact is one top-level bullet entry of the daily
log `episodic/YYYY-MM-DD.md` of its session (dates shifted so the last session is yesterday).
Gold for a question = the facts whose dialogue id is in its `evidence` (category 5 and questions
without gold are skipped). Measured per conversation:

- R@5 of the gold facts by default search right after indexing ("before");
- the same after four full lifecycle passes (what the daemon's schedule does over about two
  weeks: passes on days 1, 4, 8 and 14 after the last session) and a flush ("after"), and with
  the archive included ("after+archive");
- MEMORY.md: the share of questions whose gold fact (verbatim, whitespace and case folded) is in
  it, or whose gold fact or answer string is, and its size; for scale, the same for 8,000
  characters of raw facts chosen at random (median of 5 seeds) and shortest first;
- what the lifecycle did: links, merges, fades, extractions, notes created.

A hit "finds" a gold fact when the fact's text is inside the hit's text, so a fact that a merge
moved verbatim into a semantic note still counts, and one an LLM rewrote does not.

    python bench/quality/memory_lifecycle.py [--data DIR] [--conv conv-26] [--model NAME]
        [--keep DIR]
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

from vaultd import layout  # noqa: E402
from vaultd.lifecycle import PHASE_NAMES  # noqa: E402
from vaultd.vault import Vault, init_vault, open_vault  # noqa: E402

BUDGET = 8000
PASS_DAYS = (1, 4, 8, 14)  # lifecycle passes, days after the last session
K = 5


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


def recall_at_k(vault: Vault, questions: list[dict[str, Any]], *, archive: bool) -> float:
    scores = []
    for q in questions:
        hits = vault.search(q["q"], k=K, archive="equal" if archive else "lower")
        found = " \n ".join(norm(h.text) for h in hits)
        scores.append(sum(norm(g) in found for g in q["gold"]) / len(q["gold"]))
    return round(statistics.mean(scores), 4)


def coverage(text: str, questions: list[dict[str, Any]]) -> dict[str, float]:
    flat = norm(text)
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


def baselines(facts: list[dict[str, Any]], questions: list[dict[str, Any]]) -> dict[str, Any]:
    texts = [f["text"] for f in facts]
    randoms = []
    for seed in range(5):
        shuffled = texts[:]
        random.Random(seed).shuffle(shuffled)
        randoms.append(coverage(filled(shuffled), questions)["gold_fact"])
    return {"random_fill": round(statistics.median(randoms), 4),
            "shortest_first": coverage(filled(sorted(texts, key=len)), questions)["gold_fact"]}


def tally(reports: list[Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for report in reports:
        for action in report.actions:
            counts[f"{report.phase}.{action.kind}"] += 1
            if action.kind in ("merge", "extract"):  # the facts that became knowledge
                counts[f"{report.phase}.{action.kind}.facts"] += len(action.entries)
        counts[f"{report.phase}.created"] += len(report.created)
    return counts


def run_conversation(conv: dict[str, Any], work: Path, model: str | None,
                     profile: dict[str, float] | None = None) -> dict[str, Any]:
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
    before = recall_at_k(vault, questions, archive=False)
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    for day in PASS_DAYS:
        counts += tally(vault.lifecycle(list(PHASE_NAMES), today=last + dt.timedelta(days=day)))
    lifecycle_s = time.perf_counter() - t0
    flush = vault.flush()
    memory = (root / layout.MEMORY_FILE).read_text(encoding="utf-8")
    result = {
        "conversation": conv["sample_id"], "facts": len(facts), "questions": len(questions),
        "r5_before": before,
        "r5_after": recall_at_k(vault, questions, archive=False),
        "r5_after_archive": recall_at_k(vault, questions, archive=True),
        "memory_chars": len(memory), "memory_block_chars": flush.memory_chars,
        "memory": coverage(memory, questions), "baselines": baselines(facts, questions),
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

    return {"questions": n, "r5_before": mean(lambda r: r["r5_before"]),
            "r5_after": mean(lambda r: r["r5_after"]),
            "r5_after_archive": mean(lambda r: r["r5_after_archive"]),
            "memory_gold_fact": mean(lambda r: r["memory"]["gold_fact"]),
            "random_fill": mean(lambda r: r["baselines"]["random_fill"]),
            "shortest_first": mean(lambda r: r["baselines"]["shortest_first"])}


def load(data: Path) -> list[dict[str, Any]]:
    with tarfile.open(data / "locomo-dev.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("locomo-dev.json"))
        return json.load(tar.extractfile(member))  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--conv", action="append", help="only this conversation (repeatable)")
    ap.add_argument("--model", help="embedding model name (default: the configured default)")
    ap.add_argument("--keep", type=Path, help="build the vaults here and keep them")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a profile threshold to try, e.g. consolidate_threshold=0.6")
    ap.add_argument("--max-group", type=int, help="consolidation's largest group to try")
    args = ap.parse_args()
    profile = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.max_group:
        from vaultd.lifecycle import consolidate

        consolidate.MAX_GROUP = args.max_group
    convs = [c for c in load(args.data) if not args.conv or c["sample_id"] in args.conv]
    work = args.keep or Path(tempfile.mkdtemp(prefix="vaultd-locomo-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for conv in convs:
            r = run_conversation(conv, work, args.model, profile)
            results.append(r)
            m, b = r["memory"], r["baselines"]
            print(f"{r['conversation']}: {r['facts']} facts, {r['questions']} questions | R@5 "
                  f"before {r['r5_before']:.3f} after {r['r5_after']:.3f} "
                  f"after+archive {r['r5_after_archive']:.3f} | MEMORY.md {r['memory_chars']} "
                  f"chars, gold fact {m['gold_fact']:.3f} (or answer "
                  f"{m['gold_fact_or_answer']:.3f}); random fill {b['random_fill']:.3f}, "
                  f"shortest first {b['shortest_first']:.3f} | links {r['links']} | "
                  f"{r['actions']} | {r['seconds']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    pooled = pool(results)
    print("pooled over " + f"{pooled['questions']} questions: " + ", ".join(
        f"{k} {v:.3f}" for k, v in pooled.items() if k != "questions"))
    write_json(OUT / "memory_lifecycle.json", {"budget": BUDGET, "k": K, "pass_days": PASS_DAYS,
                                         "profile": profile, "max_group": args.max_group,
                                         "results": results, "pooled": pooled})


if __name__ == "__main__":
    main()
