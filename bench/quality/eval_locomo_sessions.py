"""Retrieval on conversations: the raw-dialog protocol of the shared data's README on the three
locomo-dev conversations, for hybrid, vector and BM25 search with the real default model.

One vault per conversation: the daily log `episodic/YYYY-MM-DD.md` of each session's (real)
date holds that session's turns, one top-level bullet per turn, `- Speaker: text`. For each
question with evidence (category 5 left out), gold sessions = the sessions of its evidence ids
`D<session>:<turn>`; gold turns = those turns' text. For the top 10 hits of each mode:

- session recall@10: the mean share of a question's gold sessions whose daily log is among
  the hits' files;
- session found@10: the share of questions with at least one;
- turn recall@10: the mean share of a question's evidence turns whose text (first 80
  characters, whitespace-normalised, lower case) is in the hits' text.

Beside them, R@5 of facts: the observation-fact vaults of bench/quality/memory_lifecycle.py
(one bullet per fact, dates shifted so the last session is yesterday), a question's gold facts
found in the top 5 hits' text, right after indexing. Every figure per conversation, per
question category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop) and pooled over
questions.

A question is asked the day after its conversation's last session: `today` of the search
(what relative dates in a query, "last week", "in May", are read against) is that day.

    python bench/quality/eval_locomo_sessions.py [--modes hybrid,bm25,vector] [--out FILE.json]
        [--data DIR] [--conv conv-26] [--no-facts] [--keep DIR] [--sweep]

`--sweep` also scores hybrid fusion settings (rank fusion against the score blend at several
vector shares, with and without the date lift, the lift from the previous entry and the
same-file repeat step) through a `Searcher` on the same indexes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/quality: memory_lifecycle

from benchlib import DEFAULT_DATA, OUT, machine, write_json  # noqa: E402
from memory_lifecycle import facts_of, load, norm, questions_of, write_vault  # noqa: E402

from vaultd.search import MODES, VECTOR_SHARE, Hits, Searcher, SearchOptions  # noqa: E402
from vaultd.vault import Vault, init_vault, open_vault  # noqa: E402

K = 10  # hits scored for sessions and turns
FACT_K = 5  # hits scored for facts (the memory protocol's R@5)
TURN_CHARS = 80
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
_DIA_RE = re.compile(r"D(\d+):(\d+)")
# A search: (vault, query, k, mode, today) → hits. The default is the library's default path;
# a study of fusion settings passes its own.
Search = Callable[[Vault, str, int, str, dt.date], Hits]


def default_search(vault: Vault, query: str, k: int, mode: str, today: dt.date) -> Hits:
    return vault.search(query, k=k, mode=mode, today=today.isoformat())


# name → hybrid SearchOptions fields; a blend's vector share `a` is set through the weights.
# "n": the share of the previous entry's score a candidate gains, "r": the repeat step
# (vaultd.search.NEIGHBOUR_SHARE, REPEAT_STEP); the rows before them have both at 0.
_PLAIN = {"neighbour_share": 0.0, "repeat_step": 0.0}
SWEEP: dict[str, dict[str, Any]] = {
    "rrf k=60": {"fusion": "rrf", "rrf_k": 60, "date_lift": 0.0},
    "rrf k=10": {"fusion": "rrf", "rrf_k": 10, "date_lift": 0.0},
    **{f"blend a={a:g}": {"share": a, "date_lift": 0.0, **_PLAIN}
       for a in (0.35, 0.4, 0.45, 0.5, 0.55)},
    **{f"blend a=0.45 lift={lift:g}": {"share": 0.45, "date_lift": lift, **_PLAIN}
       for lift in (0.1, 0.3, 0.5)},
    **{f"blend a=0.45 lift=0.3 n={n:g} r={r:g}": {"share": 0.45, "neighbour_share": n,
                                                   "repeat_step": r}
       for n, r in ((0.3, 0.0), (0.0, 0.02), (0.2, 0.02), (0.3, 0.01), (0.3, 0.02),
                    (0.3, 0.03), (0.4, 0.02))},
    **{f"blend a={a:g} lift=0.3 n=0.3 r=0.02": {"share": a} for a in (0.4, 0.5)},
}


def sweep_search(setting: dict[str, Any]) -> Search:
    """A Search that runs hybrid with `setting` (any mode asked), query vectors cached."""
    cache: dict[tuple[str, str], Any] = {}
    fields = dict(setting)
    share = fields.pop("share", None)
    if share is not None:  # weights whose blend gives the vector list this share
        fields["vector_weight"] = 1.0
        fields["text_weight"] = VECTOR_SHARE * (1 - share) / ((1 - VECTOR_SHARE) * share)

    def search(vault: Vault, query: str, k: int, mode: str, today: dt.date) -> Hits:
        def embed(text: str) -> Any:
            key = (str(vault.root), text)
            if key not in cache:
                cache[key] = vault.embedder.embed([text], kind="query")[0]
            return cache[key]

        options = SearchOptions(k=k, mode="hybrid", today=today,
                                candidates=vault.settings.search.candidates, **fields)
        return Searcher(vault.store, embed).search(query, options)

    return search


def session_dates(conv: dict[str, Any]) -> dict[int, dt.date]:
    """Each session's real date (`%I:%M %p on %d %B, %Y`)."""
    dates = {}
    for key, value in conv["conversation"].items():
        m = re.fullmatch(r"session_(\d+)_date_time", key)
        if m and f"session_{m.group(1)}" in conv["conversation"]:
            dates[int(m.group(1))] = dt.datetime.strptime(value, "%I:%M %p on %d %B, %Y").date()
    return dates


def turns_of(conv: dict[str, Any]) -> dict[str, tuple[int, str, str]]:
    """dialogue id → (session, speaker, text) for every turn."""
    out = {}
    for key, value in conv["conversation"].items():
        m = re.fullmatch(r"session_(\d+)", key)
        if not m:
            continue
        for turn in value:
            out[turn["dia_id"]] = (int(m.group(1)), turn["speaker"], " ".join(turn["text"].split()))
    return out


def dialog_log_path(day: dt.date) -> str:
    return f"episodic/{day.isoformat()}.md"


def write_dialog_vault(root: Path, conv: dict[str, Any]) -> None:
    """One daily log per session date, one `- Speaker: text` bullet per turn, in order (two
    sessions on one date share the log)."""
    init_vault(root)
    dates = session_dates(conv)
    days: dict[dt.date, list[str]] = {}
    for session in sorted(dates):
        for turn in conv["conversation"][f"session_{session}"]:
            text = " ".join(turn["text"].split())
            days.setdefault(dates[session], []).append(f"- {turn['speaker']}: {text}\n")
    for day, lines in sorted(days.items()):
        (root / dialog_log_path(day)).write_text(
            f"---\ntype: episodic\ndate: {day.isoformat()}\n---\n# {day.isoformat()}\n\n"
            + "".join(lines), encoding="utf-8")


def dialog_questions(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """Questions with evidence (category 5 left out): gold session logs and gold turn texts."""
    dates = session_dates(conv)
    turns = turns_of(conv)
    out = []
    for qa in conv["qa"]:
        if qa.get("category") == 5:
            continue
        ids = [f"D{s}:{t}" for e in qa.get("evidence", []) for s, t in _DIA_RE.findall(str(e))]
        sessions = sorted({int(i.split(":")[0][1:]) for i in ids} & set(dates))
        if not sessions:
            continue
        gold_turns = sorted({norm(turns[i][2])[:TURN_CHARS] for i in ids if i in turns})
        out.append({"q": qa["question"], "category": qa["category"],
                    "answer": str(qa.get("answer", "")),
                    "gold_logs": sorted({dialog_log_path(dates[s]) for s in sessions}),
                    "gold_turns": gold_turns})
    return out


def score_dialog(hits: Hits, q: dict[str, Any]) -> dict[str, float]:
    paths = {h.path for h in hits}
    text = " \n ".join(norm(h.text) for h in hits)
    share = sum(p in paths for p in q["gold_logs"]) / len(q["gold_logs"])
    turns = (sum(t in text for t in q["gold_turns"]) / len(q["gold_turns"])
             if q["gold_turns"] else 0.0)
    return {"session_recall": share, "session_found": float(share > 0), "turn_recall": turns}


def score_facts(hits: Hits, q: dict[str, Any]) -> dict[str, float]:
    text = " \n ".join(norm(h.text) for h in hits)
    return {"fact_r5": sum(norm(g) in text for g in q["gold"]) / len(q["gold"])}


def means(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {}
    return {key: round(statistics.mean(r[key] for r in rows), 4) for key in rows[0]}


def run_dialog(conv: dict[str, Any], work: Path, modes: list[str], search: Search
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-question scores per mode on the raw-dialog vault, and how the index was built."""
    root = work / "dialog" / conv["sample_id"]
    if not (root / ".vaultd").exists():
        write_dialog_vault(root, conv)
    today = max(session_dates(conv).values()) + dt.timedelta(days=1)
    questions = dialog_questions(conv)
    with open_vault(root, daemon="never") as vault:
        started = time.perf_counter()
        report = vault.index()
        index_s = time.perf_counter() - started
        vault.embedder.embed(["warm up"], kind="query")
        rows = []
        for q in questions:
            row: dict[str, Any] = {"q": q["q"], "category": q["category"]}
            for mode in modes:
                row[mode] = score_dialog(search(vault, q["q"], K, mode, today), q)
            rows.append(row)
        stats = {"chunks": vault.store.counts()["chunks"], "index_seconds": round(index_s, 1),
                 "chunks_embedded": report.chunks_embedded, "today": today.isoformat()}
    return rows, stats


def run_facts(conv: dict[str, Any], work: Path, modes: list[str], search: Search
              ) -> list[dict[str, Any]]:
    """Per-question fact R@5 per mode on the observation-fact vault (memory_lifecycle's)."""
    root = work / "facts" / conv["sample_id"]
    today = dt.date.today()
    facts, last = facts_of(conv, today)
    categories = {qa["question"]: qa["category"] for qa in conv["qa"]}
    questions = questions_of(conv, facts)
    if not (root / ".vaultd").exists():
        write_vault(root, facts)
    with open_vault(root, daemon="never") as vault:
        vault.index()
        rows = []
        for q in questions:
            row: dict[str, Any] = {"q": q["q"], "category": categories[q["q"]]}
            for mode in modes:
                row[mode] = score_facts(search(vault, q["q"], FACT_K, mode,
                                               last + dt.timedelta(days=1)), q)
            rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    """Means per mode: over all the rows, and per question category."""
    out: dict[str, Any] = {"questions": len(rows),
                           "modes": {m: means(r[m] for r in rows) for m in modes}}
    out["categories"] = {
        CATEGORIES.get(c, str(c)): {"questions": len(sub),
                                    "modes": {m: means(r[m] for r in sub) for m in modes}}
        for c in sorted({r["category"] for r in rows})
        for sub in [[r for r in rows if r["category"] == c]]}
    return out


def evaluate(convs: list[dict[str, Any]], work: Path, modes: list[str], *, facts: bool = True,
             search: Search = default_search, log: Callable[[str], None] = print
             ) -> dict[str, Any]:
    """The whole benchmark: per conversation and pooled, dialog and (with `facts`) facts."""
    result: dict[str, Any] = {"conversations": {}, "index": {}}
    dialog_rows: list[dict[str, Any]] = []
    fact_rows: list[dict[str, Any]] = []
    for conv in convs:
        name = conv["sample_id"]
        rows, stats = run_dialog(conv, work, modes, search)
        dialog_rows += rows
        entry: dict[str, Any] = {"dialog": summarise(rows, modes)}
        result["index"][name] = stats
        if facts:
            frows = run_facts(conv, work, modes, search)
            fact_rows += frows
            entry["facts"] = summarise(frows, modes)
        result["conversations"][name] = entry
        log(f"{name}: " + "; ".join(
            f"{m} " + ", ".join(f"{k} {v:.3f}" for k, v in entry["dialog"]["modes"][m].items())
            + (f", fact_r5 {entry['facts']['modes'][m]['fact_r5']:.3f}" if facts else "")
            for m in modes))
    result["pooled"] = {"dialog": summarise(dialog_rows, modes)}
    if facts:
        result["pooled"]["facts"] = summarise(fact_rows, modes)
    result["per_question"] = {"dialog": dialog_rows, "facts": fact_rows}
    return result


def markdown(result: dict[str, Any], modes: list[str]) -> str:
    """Tables: pooled and per conversation, then per category (pooled)."""
    metrics = ["session_recall", "session_found", "turn_recall"]
    has_facts = "facts" in result["pooled"]
    head = "| set | n | mode | session recall@10 | session found@10 | turn recall@10 |"
    head += " fact R@5 (n) |" if has_facts else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def add(label: str, block: dict[str, Any]) -> None:
        d = block["dialog"]
        for m in modes:
            cells = [f"{d['modes'][m][k]:.3f}" for k in metrics]
            if has_facts:
                f = block["facts"]
                cells.append(f"{f['modes'][m]['fact_r5']:.3f} ({f['questions']})")
            lines.append(f"| {label} | {d['questions']} | {m} | " + " | ".join(cells) + " |")

    add("pooled", result["pooled"])
    for name, block in result["conversations"].items():
        add(name, block)
    pooled = result["pooled"]
    for cat, block in pooled["dialog"]["categories"].items():
        sub = {"dialog": block}
        if has_facts:
            sub["facts"] = pooled["facts"]["categories"].get(
                cat, {"questions": 0, "modes": {m: {"fact_r5": float("nan")} for m in modes}})
        add(cat, sub)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="folder holding locomo-dev.tar.gz")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated search modes (default: hybrid,vector,bm25)")
    ap.add_argument("--out", type=Path, default=OUT / "eval_locomo_sessions.json",
                    help="the JSON result file")
    ap.add_argument("--conv", action="append", help="only this conversation (repeatable)")
    ap.add_argument("--no-facts", action="store_true", help="skip the observation-fact vaults")
    ap.add_argument("--sweep", action="store_true",
                    help="also score hybrid fusion settings (rank fusion, blend shares, date lift)")
    ap.add_argument("--keep", type=Path,
                    help="build the vaults here and keep them; a later run reuses them "
                         "(indexing only what changed)")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: {m!r} is not one of {', '.join(MODES)}")
    convs = [c for c in load(args.data) if not args.conv or c["sample_id"] in args.conv]
    work = args.keep or Path(tempfile.mkdtemp(prefix="vaultd-locomo-sessions-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = evaluate(convs, work, modes, facts=not args.no_facts)
        if args.sweep:
            result["sweep"] = {}
            for name, setting in SWEEP.items():
                swept = evaluate(convs, work, ["hybrid"], facts=not args.no_facts,
                                 search=sweep_search(setting), log=lambda _: None)
                result["sweep"][name] = {part: block["modes"]["hybrid"]
                                         for part, block in swept["pooled"].items()}
                print(f"sweep {name}: " + ", ".join(
                    f"{k} {v:.3f}" for block in result["sweep"][name].values()
                    for k, v in block.items()), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(result, modes)
    print("\n" + table)
    result.update({"benchmark": "locomo-dev raw dialog", "k": K, "fact_k": FACT_K,
                   "modes_run": modes, "seconds": round(time.perf_counter() - started, 1),
                   "machine": machine(), "markdown": table})
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
