"""Hybrid search: vector KNN and BM25, fused by a blend of their scores, each scaled to its own
list; a lift for an entry from the entry written just before it and for entries written on the
days the query names; a file's later hits yielding near-ties to other files; filters, optional
recency decay and MMR.

Why a score blend and not reciprocal-rank fusion (RRF, the first fusion here): cosine
similarities and BM25 scores live on unrelated scales (BM25 is unbounded and depends on the
query's length and term rarity), so raw scores cannot be added. RRF answers that by using only
each list's order, and so throws away how far ahead a list's best candidates are: when one
retriever is sure (a name, a number, a rare word that BM25 finds in three chunks) and the other
is not (forty near-equal cosines), RRF ranks the second list's noise beside the first list's
answer, and on conversations hybrid fell below BM25 alone. The blend scales each list min-max
over its own candidates (best 1, last 0, absent 0) and adds them with the share
`VECTOR_SHARE` for vectors: the gaps inside each list survive, the scales do not matter, and a
chunk both find still rises above one found by either alone. The share was chosen on locomo-dev
and SciFact train together (bench/RESULTS.md); it is one number, and it is near one half, which
is why it carries over: neither retriever is trusted more than the data showed.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vaultd.layout import is_archived
from vaultd.passages import PASSAGE_CHARS, passage
from vaultd.query_dates import DateRange, query_dates
from vaultd.search_request import MODES, Hit, Mode
from vaultd.store import ChunkRow, Filters, Store

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from vaultd.bm25 import Bm25Index
    from vaultd.vectors import VectorIndex

# An archived chunk's fused score is multiplied by this in the default ("lower") tier: it ranks
# after live chunks of similar relevance (its blended score 5 % lower) and
# above weak ones; an archived chunk whose words a live
# candidate holds is left out and lifts that one instead (see _without_copies).
# Chosen with RRF on locomo-dev (bench/quality/memory_lifecycle.py, R@5 after four passes;
# the blend kept it: R@5 still rises after the lifecycle):
# 0.9 did no better, and without the copy rule archived copies pushed gold facts
# out of the top 5, the more so the lower the weight (bench/RESULTS.md).
ARCHIVE_WEIGHT = 0.95
# The vector list's share of the blend (BM25's is the rest), before the configured weights.
# Chosen on locomo-dev's conversations and SciFact train (bench/RESULTS.md).
VECTOR_SHARE = 0.45
# Added to a blended score (0..1) of a chunk dated on a day the query names ("in May", "on 3
# June", "last week"): about a third of the scale, so a dated entry that both retrievers rank
# well comes first, and one neither ranks does not (bench/RESULTS.md).
DATE_LIFT = 0.3
# A candidate gains this share of the blended score of the entry written just before it (in its
# file, under its heading), when that entry is a candidate too. A log is read in order: an
# answer follows its question, "Yes, it was amazing!" follows what was amazing, and the words
# that match a query are often in the line before the one that holds its answer. Only across
# entries: the chunks of one long entry are split by length, not by what they say
# (bench/RESULTS.md, "Neighbours and repeats").
NEIGHBOUR_SHARE = 0.3
# Each candidate loses this much (on the blend's 0..1 scale) for every candidate of its file
# ranked above it: among near-equal candidates, one from a file (a day's log, a note) not yet
# shown comes first, so ten hits are not ten lines of one day when other days answer too. Small
# enough to reorder only near-ties (bench/RESULTS.md, "Neighbours and repeats").
REPEAT_STEP = 0.02
Fusion = Literal["blend", "rrf"]
EmbedQuery = Callable[[str], "np.ndarray"]

# Words that say how a question is put, not what it is about. Left in, they decide BM25's
# ranking among short chunks (a chat turn "Gina: Wow! What did you get?" matched "What did
# Gina design?" on "did" and the name); auxiliaries and pronouns were added for that
# (bench/RESULTS.md).
_STOPWORDS = frozenset([
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been",
    "being", "but", "by", "can", "could", "did", "do", "does", "doing", "done", "for", "from",
    "get", "got", "had", "has", "have", "he", "her", "hers", "herself", "him", "himself", "his",
    "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "mine", "more", "most", "my",
    "myself", "no", "nor", "not", "of", "on", "only", "or", "other", "our", "own", "s", "same",
    "she", "should", "so", "some", "such", "t", "than", "that", "the", "their", "them",
    "themselves", "then", "there", "these", "they", "this", "to", "too", "us", "very", "was",
    "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your", "yourself",
])
_TERM_RE = re.compile(r"\w+", re.UNICODE)


class Hits(list[Hit]):
    """The hits, best first. `pending_vectors`: chunks of the index that had no vector yet
    (the index's vectors phase was still running): a hybrid search ranked them by BM25 alone,
    a vector search could not find them. 0 for a BM25 search, which needs no vectors."""

    pending_vectors: int = 0


@dataclass(frozen=True)
class SearchOptions:
    k: int = 10
    mode: Mode = "hybrid"
    filters: Filters = Filters()
    vector_weight: float = 1.0  # multiplies VECTOR_SHARE (blend) or the vector list's RRF weight
    text_weight: float = 1.0
    rrf_k: int = 60  # only for fusion="rrf"
    candidates: int = 50
    half_life_days: float = 0.0  # 0: no recency decay
    mmr_lambda: float = 0.0  # 0: no MMR; else relevance weight in (0, 1]
    today: dt.date | None = None  # the query's day: for its dates and for decay; default today
    archive_weight: float = ARCHIVE_WEIGHT  # archived chunks' score factor (1.0: equal)
    fusion: Fusion = "blend"  # "rrf": reciprocal-rank fusion, kept for comparison (bench/)
    date_lift: float = DATE_LIFT  # 0: dates in the query change nothing
    neighbour_share: float = NEIGHBOUR_SHARE  # 0: no lift from the entry before (blend only)
    repeat_step: float = REPEAT_STEP  # 0: a file's later hits lose nothing (blend only)
    # a fact a merged note keeps and its log still holds: one candidate, the log's
    # (`_one_copy`, `_without_copies`); False: each copy its own candidate
    one_copy: bool = True
    # a hit's text: its chunk's lines that best match the query, within this many characters
    # (vaultd.passages); None: the chunk's whole text (a search's `full`)
    passage_chars: int | None = PASSAGE_CHARS


def fts_terms(query: str) -> list[str]:
    """The query's words as BM25 sees them: lowercased, stopwords dropped (unless nothing
    else is left), each once, in order."""
    terms = [t for t in _TERM_RE.findall(query.lower()) if t not in _STOPWORDS]
    if not terms:
        terms = _TERM_RE.findall(query.lower())
    return list(dict.fromkeys(terms))


def fts_query(query: str) -> str:
    """A safe FTS5 MATCH expression: each non-stopword term quoted, OR-ed."""
    return " OR ".join(f'"{t}"' for t in fts_terms(query))


class MergedHint:
    """Whether the index (at a `vectors_generation`) holds facts of merged notes that a query's
    lists met with twins: then a query fetches its lists twice as deep at once, instead of
    fetching again when it meets them (`Searcher.search`). Kept by the vault across searches;
    a stale answer costs time, never a different ranking."""

    def __init__(self) -> None:
        self.generation: str | None = None

    def deep(self, generation: str) -> bool:
        return self.generation == generation

    def met(self, generation: str) -> None:
        self.generation = generation


class Searcher:
    def __init__(self, store: Store, embed_query: EmbedQuery,
                 vectors: VectorIndex | None = None, executor: Executor | None = None,
                 bm25: Bm25Index | None = None, merged_hint: MergedHint | None = None) -> None:
        self.merged_hint = merged_hint
        self.store = store
        self.embed_query = embed_query
        self.vectors = vectors  # a warm in-memory copy (the daemon's), else sqlite-vec
        self.bm25 = bm25  # a warm in-memory copy of the FTS5 postings (the daemon's)
        # With an executor (the daemon's), a hybrid query's BM25 runs on it while this thread
        # embeds the query: onnxruntime, numpy and SQLite release the GIL, so the two overlap.
        self.executor = executor

    def search(self, query: str, options: SearchOptions) -> Hits:
        if options.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        out = Hits()
        if options.mode != "bm25":
            out.pending_vectors = self.store.pending_vectors()
        if not query.strip() or options.k <= 0:
            return out
        pool = max(options.candidates, options.k * 3)
        one_copy = options.one_copy and _twins_allowed(options.filters)
        hint = self.merged_hint if one_copy else None
        generation = self.store.vectors_generation() if hint is not None else ""
        fetch = 2 * pool if hint is not None and hint.deep(generation) else pool
        vector_hits: Sequence[tuple[int, float]] = []
        text_hits: Sequence[tuple[int, float]] = []
        # The embedding is the long pole (BM25 takes a fraction of it; bench/RESULTS.md): it
        # runs on this thread, BM25 beside it on the executor, joined before anything else
        # touches the store (one connection: KNN's refresh may open a read transaction too)
        # (with decay, ranking reads whole rows anyway: no places to look up beside it)
        text_job = (self.executor.submit(self._bm25_placed, query, fetch, options.filters,
                                         options.half_life_days <= 0)
                    if self.executor is not None and options.mode == "hybrid" else None)
        known: Mapping[int, tuple[str, int]] = {}  # places the BM25 job looked up meanwhile
        if options.mode == "bm25":
            text_hits = self._bm25(query, fetch, options.filters)
        if options.mode in ("hybrid", "vector"):
            import numpy as np

            if text_job is None:
                if options.mode == "hybrid":
                    text_hits = self._bm25(query, fetch, options.filters)
                qvec = np.asarray(self.embed_query(query), dtype=np.float32).reshape(-1)
            else:
                from concurrent.futures import wait

                try:
                    qvec = np.asarray(self.embed_query(query), dtype=np.float32).reshape(-1)
                finally:
                    wait([text_job])  # even when the embedding failed: then the store is free
                text_hits, known = text_job.result()
            vector_hits = self._knn(qvec, fetch, options.filters)

        # A fact a merged note keeps and its log still holds is counted once (`_one_copy`):
        # lists that hold such twins are fetched twice as deep (again, unless the hint said
        # so at once), so that twins take no other candidate's place, and cut back to `pool`
        # (a list without twins is left as it was, at the cost of one small lookup)
        facts: set[int] = set()  # merged facts without a twin (a headed entry's, say)
        if one_copy:
            merged = self.store.merged_facts(_rowids(vector_hits, text_hits))
            if fetch == pool and any(twin is not None for twin in merged.values()):
                if text_hits:
                    text_hits = self._bm25(query, 2 * pool, options.filters)
                if vector_hits:
                    vector_hits = self._knn(qvec, 2 * pool, options.filters)
                merged = self.store.merged_facts(_rowids(vector_hits, text_hits))
                if hint is not None:
                    hint.met(generation)
            twins = {r: twin for r, twin in merged.items() if twin is not None}
            if twins or fetch > pool:
                vector_hits, text_hits = _one_copy([vector_hits, text_hits], twins, pool)
            facts = {r for r, twin in merged.items() if twin is None}
        # (both lists come ranked with equal scores by path and line: store.knn, store.fts and
        # VectorIndex.knn order ties so, not by row order, which a rebuild changes)
        if options.mode == "vector":
            scores = dict(vector_hits)
        elif options.mode == "bm25":
            scores = dict(text_hits)
        elif options.fusion == "rrf":
            scores = _rrf([(vector_hits, options.vector_weight), (text_hits, options.text_weight)],
                          options.rrf_k)
        else:
            share = VECTOR_SHARE * options.vector_weight
            rest = (1 - VECTOR_SHARE) * options.text_weight
            scores = blend([(vector_hits, share), (text_hits, rest)])
        today = options.today or dt.date.today()
        # hybrid only: a single mode's scores are its retriever's own (the lift is on the
        # blend's 0..1 scale), so that modes compare retrievers, not retrievers and dates
        days = (query_dates(query, today) if options.mode == "hybrid" and options.date_lift > 0
                else [])
        # Whole rows (text and all) only where they are needed: ranking needs each
        # candidate's path and line (and its date, with decay or a date in the query); the
        # hits need the top k. A candidate's place costs well under its whole row
        # (bench/RESULTS.md).
        rows: dict[int, ChunkRow] = {}
        if options.half_life_days > 0 or days:
            rows = self.store.chunks_by_rowid(scores)
            places = {r: (row.path, row.start_line) for r, row in rows.items()}
        else:
            places = {r: known[r] for r in scores if r in known}
            places.update(self.store.chunk_positions([r for r in scores if r not in known]))
        blended = options.mode == "hybrid" and options.fusion == "blend"
        if blended and options.neighbour_share > 0:
            _lift_by_previous_entry(scores, places, rows, self.store, options.neighbour_share)
        lower = options.filters.include_archive and options.archive_weight != 1.0
        archived = [r for r, (path, _) in places.items() if is_archived(path)] if lower else []
        for rowid in archived:
            scores[rowid] *= options.archive_weight
        if days:
            for rowid, row in rows.items():
                if _dated_within(row, days):
                    scores[rowid] += options.date_lift
        if options.half_life_days > 0:
            for rowid, row in rows.items():
                scores[rowid] *= _decay(row, today, options.half_life_days)
        ranked = sorted(places, key=lambda r: (-scores[r], *places[r]))
        facts.intersection_update(places)
        if archived or facts:
            rows.update(self.store.chunks_by_rowid(r for r in ranked if r not in rows))
            ranked = _without_copies([r for r in ranked if r in rows], rows, scores,
                                     bool(archived), facts)
        if blended and options.repeat_step > 0:  # (MMR reads the whole list; else the top k)
            ranked = spread(ranked, scores, places, options.repeat_step,
                            len(ranked) if options.mmr_lambda > 0 else options.k)
        if options.mmr_lambda > 0:
            ranked = self._mmr(ranked, scores, options.mmr_lambda, options.k)
        top = ranked[:options.k]
        rows.update(self.store.chunks_by_rowid(r for r in top if r not in rows))
        terms = fts_terms(query) if options.passage_chars is not None else []
        out.extend(_hit(rows[r], scores[r], terms, options.passage_chars)
                   for r in top if r in rows)
        return out

    def _knn(self, qvec: Any, k: int, filters: Filters) -> Sequence[tuple[int, float]]:
        """The vector list: from the warm in-memory copy when there is one that can answer
        these filters, else from the store."""
        if self.vectors is not None and filters.only_archive_rule:
            return self.vectors.knn(self.store, qvec, k, filters.include_archive, self.executor)
        return self.store.knn(qvec.tobytes(), k, filters)

    def _bm25(self, query: str, k: int, filters: Filters) -> Sequence[tuple[int, float]]:
        """FTS5's BM25 ranking: from the in-memory copy when there is one that can answer
        (the same ranking, without FTS5 scoring every row that matches any term: far faster
        on a large vault; bench/RESULTS.md), else from FTS5."""
        terms = fts_terms(query)
        if not terms:
            return []
        if self.bm25 is not None and filters.only_archive_rule:
            hits = self.bm25.search(self.store, terms, k, filters.include_archive)
            if hits is not None:
                return hits
        return self.store.fts(" OR ".join(f'"{t}"' for t in terms), k, filters)

    def _bm25_placed(self, query: str, k: int, filters: Filters, placed: bool = True
                     ) -> tuple[Sequence[tuple[int, float]], Mapping[int, tuple[str, int]]]:
        """BM25's hits and (when `placed`) their places (path, line), both looked up while
        the query is embedded on the other thread: fewer places to read once the vector hits
        are in."""
        hits = self._bm25(query, k, filters)
        return hits, self.store.chunk_positions([r for r, _ in hits]) if placed else {}

    def _mmr(self, ranked: list[int], scores: dict[int, float], lam: float, k: int) -> list[int]:
        import numpy as np

        blobs = self.store.vectors_for(ranked)
        vecs = {r: np.frombuffer(blobs[r], dtype=np.float32) for r in ranked if r in blobs}
        top = max((scores[r] for r in ranked), default=1.0) or 1.0
        chosen: list[int] = []
        left = [r for r in ranked if r in vecs]
        while left and len(chosen) < k:
            def value(r: int) -> float:
                redundancy = max((float(vecs[r] @ vecs[c]) for c in chosen), default=0.0)
                return lam * scores[r] / top - (1 - lam) * redundancy
            best = max(left, key=value)
            chosen.append(best)
            left.remove(best)
        return chosen + [r for r in ranked if r not in chosen]


def _flat(text: str) -> str:
    return " ".join(text.split()).lstrip("-*+ ").lower()


COPY_MIN_CHARS = 20  # an entry this short holds too little to be taken for another's copy


def _without_copies(ranked: list[int], rows: dict[int, ChunkRow], scores: dict[int, float],
                    lower: bool, facts: set[int]) -> list[int]:
    """A second copy is not a second answer; the copy that stays ranks at least where the one
    left out would have. Left out: in the lower tier (`lower`), an archived chunk whose words a
    live candidate holds (an entry an earlier vaultd moved when it merged it, kept verbatim in
    its note); and each of `facts` (merged facts with no twin by content hash: a headed entry's
    fact reads "title: body") that holds a live episode candidate's words or whose words one
    holds (the entry it was merged from, still in its log, where the entry before it lends it
    context)."""
    live = [(r, _flat(rows[r].text)) for r in ranked if not is_archived(rows[r].path)]
    episodes = [(r, text) for r, text in live
                if rows[r].type == "episodic" and len(text) >= COPY_MIN_CHARS] if facts else []
    dropped = set()
    for r in ranked:
        row = rows[r]
        if lower and is_archived(row.path):
            flat = _flat(row.text)
            holder = next((h for h, text in live if flat and flat in text), None)
        elif r in facts:
            flat = _flat(row.text)
            holder = next((h for h, text in episodes if text in flat or flat in text), None)
        else:
            continue
        if holder is not None:
            dropped.add(r)
            scores[holder] = max(scores[holder], scores[r])
    if not dropped:
        return ranked
    return sorted((r for r in ranked if r not in dropped),
                  key=lambda r: (-scores[r], rows[r].path, rows[r].start_line))


def _rowids(*lists: Sequence[tuple[int, float]]) -> list[int]:
    return sorted({rowid for hits in lists for rowid, _ in hits})


def _twins_allowed(filters: Filters) -> bool:
    """Whether a merged fact may be answered by its daily log's chunk: when the filters let
    an episode through wherever the merged note's chunk got through (no type, tag or path
    filter that could leave the log out)."""
    return (not filters.types or "episodic" in filters.types) and not filters.tags \
        and not filters.path_glob


def _one_copy(lists: list[Sequence[tuple[int, float]]], twins: Mapping[int, int], pool: int
              ) -> list[list[tuple[int, float]]]:
    """Each candidate list (fetched deeper than `pool`) with a fact that a merged note keeps
    and its daily log still holds, word for word (`twins`: the note's chunk → the log's),
    counted once: as the log's chunk, where the entry before it lends it context (the
    neighbour lift), with the better of the two scores; then cut to `pool`. A list without
    such twins is exactly its top `pool`."""
    out = []
    for hits in lists:
        best: dict[int, float] = {}
        for rowid, score in hits:  # best first: the first copy met has the better score
            best.setdefault(twins.get(rowid, rowid), score)
        out.append(list(best.items())[:pool])
    return out


def _lift_by_previous_entry(scores: dict[int, float], places: Mapping[int, tuple[str, int]],
                            rows: dict[int, ChunkRow], store: Store, share: float) -> None:
    """Add to each candidate `share` of the blended score of the candidate just before it:
    another entry, in the same file under the same heading, whose last line is the line before
    this one's first (a list's items; not across a blank line, past which the line before
    could be an entry that is not a candidate). Reads the rows (into `rows`) only of
    candidates that share a file with another candidate."""
    by_path: dict[str, list[int]] = {}
    for rowid, (path, _) in places.items():
        by_path.setdefault(path, []).append(rowid)
    shared = [r for group in by_path.values() if len(group) > 1 for r in group]
    if not shared:
        return
    rows.update(store.chunks_by_rowid(r for r in shared if r not in rows))
    base = {r: scores[r] for r in shared}  # the lift is of blended scores, never of lifted ones
    for group in by_path.values():
        if len(group) < 2:
            continue
        group = sorted((r for r in group if r in rows), key=lambda r: rows[r].start_line)
        for before, after in zip(group, group[1:]):
            a, b = rows[before], rows[after]
            if (a.heading == b.heading and a.entry_id != b.entry_id
                    and b.start_line == a.end_line + 1):
                scores[after] += share * base[before]


def spread(ranked: Sequence[int], scores: dict[int, float],
           places: Mapping[int, tuple[str, int]], step: float, limit: int | None = None
           ) -> list[int]:
    """`ranked` reordered so that each candidate's score loses `step` for every candidate of
    its file placed before it: best adjusted score first (equal ones by path and line). The
    adjusted scores are written back to `scores`; they fall along the result. With `limit`,
    only that many are placed so; the rest follow in their order, their scores as they were."""
    placed: dict[str, int] = {}
    heap = [(-scores[r], *places[r], 0, r) for r in ranked]
    heapq.heapify(heap)
    out: list[int] = []
    while heap and (limit is None or len(out) < limit):
        neg, path, line, seen, rowid = heapq.heappop(heap)
        now = placed.get(path, 0)
        if now != seen:  # its file gained hits since this score was taken: take it again
            heapq.heappush(heap, (neg + step * (now - seen), path, line, now, rowid))
            continue
        placed[path] = now + 1
        scores[rowid] = -neg
        out.append(rowid)
    if heap:
        taken = set(out)
        out += [r for r in ranked if r not in taken]
    return out


def blend(lists: list[tuple[Sequence[tuple[int, float]], float]]) -> dict[int, float]:
    """Each list's scores scaled min-max over its own candidates (best 1.0, last 0.0; a list
    whose scores are all equal gives each 1.0), times the list's weight, summed over the lists
    a chunk is in; divided by the weights' sum, so a chunk first in every list scores 1.0.
    Higher is better in every list (cosine, BM25 ≥ 0)."""
    fused: dict[int, float] = {}
    total = 0.0
    for hits, weight in lists:
        if not hits or weight <= 0:
            continue
        total += weight
        high = max(score for _, score in hits)
        low = min(score for _, score in hits)
        span = high - low
        for rowid, score in hits:
            part = weight * ((score - low) / span if span > 0 else 1.0)
            fused[rowid] = fused.get(rowid, 0.0) + part
    return {r: s / total for r, s in fused.items()} if total > 0 else fused


def _day(row: ChunkRow) -> dt.date | None:
    """The day a chunk's entry is dated, or None (no date, or not a date)."""
    if not row.date:
        return None
    try:
        return dt.date.fromisoformat(row.date[:10])
    except ValueError:
        return None


def _dated_within(row: ChunkRow, days: Sequence[DateRange]) -> bool:
    day = _day(row)
    return day is not None and any(day in r for r in days)


def _rrf(lists: list[tuple[Sequence[tuple[int, float]], float]], k: int) -> dict[int, float]:
    fused: dict[int, float] = {}
    for hits, weight in lists:
        for rank, (rowid, _) in enumerate(hits, start=1):
            fused[rowid] = fused.get(rowid, 0.0) + weight / (k + rank)
    # Scale so that rank 1 in every list scores 1.0.
    best = sum(w for _, w in lists) / (k + 1)
    return {r: s / best for r, s in fused.items()} if best > 0 else fused


def _decay(row: ChunkRow, today: dt.date, half_life: float) -> float:
    """Episodes fade with age (half-life in days); what is known does not."""
    day = _day(row) if row.type == "episodic" else None
    if day is None:
        return 1.0
    return math.pow(0.5, max((today - day).days, 0) / half_life)


def _hit(row: ChunkRow, score: float, terms: Sequence[str] = (),
         passage_chars: int | None = None) -> Hit:
    text = row.text if passage_chars is None else passage(row.text, terms, passage_chars)
    return Hit(path=row.path, score=score, text=text, type=row.type, heading=row.heading,
               lines=(row.start_line, row.end_line), chunk_id=row.id, entry_id=row.entry_id,
               date=row.date, archived=is_archived(row.path))

