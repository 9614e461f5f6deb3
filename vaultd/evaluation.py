"""Retrieval evaluation: run a query file through search and score the ranked notes.

A query file is JSON Lines, one query per line:

    {"id": "q1", "query": "how do we roll back a deploy", "gold_notes": ["procedural/deploy.md"]}

Extra keys are ignored, except `conversation`: when present, that query searches only the notes
under that folder (`path_glob="<conversation>/*"`).

Search returns chunks; a note can own several, so hits are collapsed to unique note paths in
rank order before scoring. Metrics use binary relevance over `gold_notes`, averaged over queries:
R@1, R@5, R@10 (the share of a query's gold notes found in the top k, as in BEIR), MRR over the
top 10 notes, and nDCG@10. The metric functions are pure; `evaluate` does the I/O.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vaultd.search import MODES, Hit, Mode

if TYPE_CHECKING:
    from vaultd.vault import Vault

CHUNK_K = 50  # chunks asked of search, enough to fill the top 10 unique notes
TOP_NOTES = 10
CUTOFFS = (1, 5, 10)

# One query's ranked note paths, best first. `evaluate_ranker` takes any such function, so a
# benchmark can score search options the vault's settings do not expose.
Ranker = Callable[["Query"], list[str]]


@dataclass(frozen=True)
class Query:
    id: str
    query: str
    gold_notes: tuple[str, ...]
    conversation: str | None = None

    @property
    def path_glob(self) -> str | None:
        return f"{self.conversation}/*" if self.conversation else None


def load_queries(path: str | os.PathLike[str]) -> list[Query]:
    """Read a JSONL query file. Blank lines are skipped; a malformed line raises ValueError
    naming its line number."""
    out: list[Query] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                gold = raw["gold_notes"]
                if isinstance(gold, str) or not isinstance(gold, list):
                    raise TypeError("gold_notes must be a list of paths")
                conversation = raw.get("conversation")
                out.append(Query(id=str(raw["id"]), query=str(raw["query"]),
                                 gold_notes=tuple(str(g) for g in gold),
                                 conversation=(str(conversation).strip("/")
                                               if conversation else None)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: bad query line: {exc}") from exc
    return out


# ---------------------------------------------------------------------------- metrics (pure)


def unique_paths(hits: Iterable[Hit | str]) -> list[str]:
    """Note paths in first-seen order: chunk hits collapsed to their notes."""
    return list(dict.fromkeys(h if isinstance(h, str) else h.path for h in hits))


def recall_at(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of the gold notes found in the top `k` (0.0 when there is no gold)."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def mrr(ranked: Sequence[str], gold: Iterable[str], k: int = TOP_NOTES) -> float:
    """Reciprocal rank of the first gold note within the top `k`, else 0.0."""
    wanted = set(gold)
    for rank, path in enumerate(ranked[:k], start=1):
        if path in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], gold: Iterable[str], k: int = TOP_NOTES) -> float:
    """nDCG@k with binary relevance: DCG = Σ 1/log2(rank + 1) over gold notes in the top k,
    divided by the DCG of a ranking with every gold note first."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1)
              for rank, path in enumerate(ranked[:k], start=1) if path in wanted)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class QueryScore:
    id: str
    ranked: tuple[str, ...]  # top unique notes
    recall: dict[int, float]
    mrr: float
    ndcg: float


@dataclass(frozen=True)
class ModeMetrics:
    recall: dict[int, float]  # cutoff → mean recall
    mrr: float
    ndcg: float  # nDCG@10
    queries: int
    seconds: float
    per_query: tuple[QueryScore, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"r@{k}": round(v, 4) for k, v in self.recall.items()}
        out.update({"mrr": round(self.mrr, 4), "ndcg@10": round(self.ndcg, 4),
                    "queries": self.queries, "seconds": round(self.seconds, 3)})
        return out


@dataclass(frozen=True)
class EvalResult:
    modes: dict[str, ModeMetrics]
    queries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "seconds": round(self.seconds, 3),
                "modes": {m: metrics.to_dict() for m, metrics in self.modes.items()}}

    def markdown(self) -> str:
        """A table: mode, R@1, R@5, R@10, MRR, nDCG@10."""
        return markdown_table({m: metrics for m, metrics in self.modes.items()})


def markdown_table(rows: dict[str, ModeMetrics], label: str = "mode") -> str:
    head = f"| {label} | R@1 | R@5 | R@10 | MRR | nDCG@10 |"
    lines = [head, "|" + "---|" * 6]
    for name, m in rows.items():
        cells = [m.recall[k] for k in CUTOFFS] + [m.mrr, m.ndcg]
        lines.append(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- running


def score_query(query: Query, ranked: Sequence[str]) -> QueryScore:
    top = tuple(ranked[:TOP_NOTES])
    return QueryScore(id=query.id, ranked=top,
                      recall={k: recall_at(top, query.gold_notes, k) for k in CUTOFFS},
                      mrr=mrr(top, query.gold_notes), ndcg=ndcg_at(top, query.gold_notes))


def evaluate_ranker(rank: Ranker, queries: Sequence[Query]) -> ModeMetrics:
    """Score one ranking function over all queries (means over queries)."""
    started = time.perf_counter()
    scores = [score_query(q, unique_paths(rank(q))) for q in queries]
    seconds = time.perf_counter() - started
    n = len(scores)

    def mean(values: Iterable[float]) -> float:
        return sum(values) / n if n else 0.0

    return ModeMetrics(recall={k: mean(s.recall[k] for s in scores) for k in CUTOFFS},
                       mrr=mean(s.mrr for s in scores), ndcg=mean(s.ndcg for s in scores),
                       queries=n, seconds=seconds, per_query=tuple(scores))


def vault_ranker(vault: Vault, mode: Mode, chunk_k: int = CHUNK_K) -> Ranker:
    def rank(query: Query) -> list[str]:
        hits = vault.search(query.query, k=chunk_k, path_glob=query.path_glob, mode=mode)
        return unique_paths(hits)

    return rank


def evaluate(vault: Vault, queries: Sequence[Query] | str | os.PathLike[str],
             modes: Iterable[str] = MODES, chunk_k: int = CHUNK_K) -> EvalResult:
    """Run every query through `vault.search` in each mode and score the top 10 notes."""
    if isinstance(queries, (str, os.PathLike, Path)):
        queries = load_queries(queries)
    started = time.perf_counter()
    results: dict[str, ModeMetrics] = {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        ranker = vault_ranker(vault, cast(Mode, mode), chunk_k)
        results[mode] = evaluate_ranker(ranker, queries)
    return EvalResult(modes=results, queries=len(queries),
                      seconds=time.perf_counter() - started)
