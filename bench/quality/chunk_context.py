"""What each kind of context buys a short chunk's vector, on locomo-dev (vector search only,
scored exactly as bench/quality/eval_locomo_sessions.py scores it): the raw dialog (one
`- Speaker: text` bullet per turn, top 10) and the observation facts (one bullet per fact,
fact R@5).

Every line is embedded once per variant of the text the model is given; hits still show the
line's own text and point at its daily log. Variants:

- `bare`: the turn alone (`Speaker: text`), no date;
- `no-speaker`: the date, then the turn without its speaker;
- `date` (what vaultd embedded before context): the date (the log's title), then the line;
- `prev`, `next`, `both`: the date, the line, and its previous / next / both neighbouring
  lines of the same daily log (`prev2`, `both2`: two on each side);
- `prev@T`: `prev` only for lines of at most T tokens.

This is a cheap sweep that needs no index; the chosen kinds are then measured through the
real indexer and all search modes with eval_locomo_sessions.py and `VAULTD_INDEX_CONTEXT`.

    python bench/quality/chunk_context.py [--data DIR] [--variants date,prev,both]
        [--fact-variants date,prev]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/quality

from benchlib import DEFAULT_DATA, OUT, machine, write_json  # noqa: E402
from eval_locomo_sessions import (  # noqa: E402
    FACT_K,
    K,
    dialog_log_path,
    dialog_questions,
    means,
    score_dialog,
    score_facts,
    session_dates,
)
from memory_lifecycle import facts_of, load, questions_of  # noqa: E402

from vaultd.embedder import Kind  # noqa: E402
from vaultd.vault import init_vault, open_vault  # noqa: E402


class Hit(NamedTuple):  # what score_dialog reads of a hit
    path: str
    text: str


VARIANTS = ("bare", "no-speaker", "date", "prev", "next", "both", "prev2", "both2",
            "prev@12", "prev@24", "prev@40")
FACT_VARIANTS = ("date", "prev", "prev@12", "prev@24", "prev@40")


def turn_rows(conv: dict[str, Any]) -> list[tuple[dt.date, str, str]]:
    """(date, speaker, text) of every turn, in the order of the daily logs."""
    dates = session_dates(conv)
    rows = []
    for session in sorted(dates):
        for turn in conv["conversation"][f"session_{session}"]:
            rows.append((dates[session], turn["speaker"], " ".join(turn["text"].split())))
    return sorted(rows, key=lambda r: r[0])  # stable: a log's turns stay in order


def fact_rows(conv: dict[str, Any]) -> list[tuple[dt.date, str, str]]:
    """(date, "", fact) of every observation fact, as memory_lifecycle's vault orders them."""
    facts, _ = facts_of(conv, dt.date(2026, 12, 7))
    return sorted(((f["date"], "", f["text"]) for f in facts), key=lambda r: r[0])


def line(row: tuple[dt.date, str, str], speaker: bool = True) -> str:
    return f"{row[1]}: {row[2]}" if row[1] and speaker else row[2]


def embed_texts(rows: list[tuple[dt.date, str, str]], variant: str,
                count: Callable[[str], int]) -> list[str]:
    """What the model is given for each row under `variant` (`prev@T`: the previous row as
    context only for rows of at most T tokens)."""
    name, _, limit = variant.partition("@")
    out = []
    for i, row in enumerate(rows):
        day = row[0].isoformat()
        if name == "bare":
            out.append(line(row))
            continue
        if name == "no-speaker":
            out.append(f"{day}\n{line(row, speaker=False)}")
            continue
        before = {"prev": 1, "both": 1, "prev2": 2, "both2": 2}.get(name, 0)
        after = {"next": 1, "both": 1, "both2": 2}.get(name, 0)
        if limit and count(line(row)) > int(limit):
            before = after = 0
        same = [j for j in range(i - before, i + after + 1)
                if 0 <= j < len(rows) and rows[j][0] == row[0]]
        out.append(day + "\n" + "\n".join(line(rows[j]) for j in same))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--fact-variants", default=",".join(FACT_VARIANTS))
    ap.add_argument("--out", type=Path, default=OUT / "chunk_context.json")
    args = ap.parse_args(argv)
    convs = load(args.data)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        init_vault(Path(tmp))
        with open_vault(Path(tmp), daemon="never") as vault:
            embedder = vault.embedder
            cache: dict[tuple[str, str], np.ndarray] = {}

            def embed(texts: list[str], kind: Kind) -> np.ndarray:
                todo = [t for t in dict.fromkeys(texts) if (kind, t) not in cache]
                if todo:
                    vecs = np.asarray(embedder.embed(todo, kind=kind))
                    cache.update({(kind, t): v for t, v in zip(todo, vecs)})
                return np.stack([cache[(kind, t)] for t in texts])

            def run(corpus: str, variant: str) -> dict[str, float]:
                scored = []
                for conv in convs:
                    if corpus == "dialog":
                        rows, questions, k = turn_rows(conv), dialog_questions(conv), K
                    else:
                        facts, _ = facts_of(conv, dt.date(2026, 12, 7))
                        rows, questions, k = fact_rows(conv), questions_of(conv, facts), FACT_K
                    docs = embed(embed_texts(rows, variant, embedder.count_tokens), "document")
                    scores = embed([q["q"] for q in questions], "query") @ docs.T
                    for q, s in zip(questions, scores):
                        hits = [Hit(dialog_log_path(rows[i][0]), "- " + line(rows[i]))
                                for i in np.argsort(-s, kind="stable")[:k]]
                        scored.append(score_dialog(hits, q) if corpus == "dialog"
                                      else score_facts(hits, q))  # type: ignore[arg-type]
                result = means(scored)
                print(f"{corpus:>6} {variant:>10}: "
                      + ", ".join(f"{key} {v:.3f}" for key, v in result.items()), flush=True)
                return result

            result = {
                "dialog": {v: run("dialog", v) for v in args.variants.split(",") if v},
                "facts": {v: run("facts", v) for v in args.fact_variants.split(",") if v}}
    write_json(args.out, {"benchmark": "locomo-dev, vector only, by context", "k": K,
                          "fact_k": FACT_K, "variants": result, "machine": machine(),
                          "seconds": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
