"""An in-memory copy of the FTS5 index, for BM25 in a long-lived process: FTS5's ranking,
computed from sparse postings with numpy.

Why: FTS5 scores every row that matches any term of an OR query, reading each row's position
lists. A sentence's worth of OR terms matches a large share of all chunks, so an FTS5 query's
cost grows with the vault. Here a query costs one vectorised pass over its terms' postings
(the figures, at 10k and 100k chunks: bench/RESULTS.md).

Same answer as `Store.fts`, by construction: the postings are FTS5's own tokens (read from
its `instance` vocabulary; new chunks and query terms are tokenized by a scratch FTS5 table
with the same tokenizer), and the score is FTS5's `bm25()` formula (k1 = 1.2, b = 0.75, IDF
log((N − n + 0.5)/(n + 0.5)) floored at 1e-6, document length over both columns, each query
term a phrase of its own, summed in query order in double precision). A full load checks its
row and token totals against FTS5's; anything this copy cannot answer exactly (filters other
than the archive rule, a term FTS5 splits into a phrase, a load that failed its check) goes to
FTS5.

Kept in step like the vector matrix (vaultd.vectors): tagged with the store's vectors
generation, which every write that adds or removes chunks bumps (a chunk's rowid and content
hash identify its text). On a change, removed chunks are masked out and new chunks' postings go
to a small delta, scored together with the main postings; the delta is merged into the main
arrays when it grows past a tenth of them. Document frequencies and the average length are
computed over the chunks present, so the masked rows do not count.

Memory: int32 row positions + uint16 term counts per (term, chunk) pair, about 6 bytes per
posting plus the term dictionary: linear in the vault's postings (sizes in bench/RESULTS.md).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaultd.vectors import hash_array, positions, trim_heap

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from vaultd.store import IndexStore

log = logging.getLogger(__name__)

K1, B = 1.2, 0.75  # FTS5's bm25() constants
MERGE_SHARE = 0.1  # merge the delta into the main postings past this share of them
_STEM_CACHE = 50_000
LOAD_BLOCK = 1 << 16  # FTS5 occurrences counted at a time by a full load


@dataclass(frozen=True)
class _Postings:
    """Column-compressed (term → chunk positions, counts) pairs."""
    indptr: np.ndarray  # int64, (terms + 1,)
    docs: np.ndarray  # int32 positions into the snapshot's rows
    tf: np.ndarray  # uint16/uint32 occurrences in heading + text

    def column(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        if term + 1 >= len(self.indptr):
            return self.docs[:0], self.tf[:0]
        start, end = int(self.indptr[term]), int(self.indptr[term + 1])
        return self.docs[start:end], self.tf[start:end]

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.docs.nbytes + self.tf.nbytes


@dataclass(frozen=True)
class _Copy:
    generation: str
    rowids: np.ndarray  # int64, (n,): every row position ever given out in this lineage
    # the present rows, by chunk rowid (ascending): content hash and position — numpy arrays,
    # not a dict of (rowid, hash) tuples (three Python objects a row: many times the arrays)
    key_rowids: np.ndarray  # int64
    key_hashes: np.ndarray  # bytes (numpy "S")
    key_pos: np.ndarray  # int64
    present: np.ndarray  # bool, (n,): still in the index
    archived: np.ndarray  # bool, (n,)
    doclen: np.ndarray  # int32, (n,): tokens in heading + text
    terms: dict[str, int]
    main: _Postings
    delta: _Postings
    rows: int  # present rows
    tokens: int  # their tokens


def _postings(terms: np.ndarray, docs: np.ndarray, tf: np.ndarray, n_terms: int) -> _Postings:
    import numpy as np

    order = np.lexsort((docs, terms))
    counts = np.bincount(terms, minlength=n_terms)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return _Postings(indptr, docs[order].astype(np.int32), _counts(tf[order]))


def _compacted(terms: dict[str, int]) -> dict[str, int]:
    """The same term → id dict (ids 0..n-1 in insertion order), its strings made anew. Each
    was made among a block's temporary rows, and held, kept the memory of those around it from
    going back to the system (resident memory the arrays do not account for: bench/RESULTS.md)."""
    joined = "\n".join(terms)  # (FTS5's unicode61 tokens never hold whitespace)
    n = len(terms)
    terms.clear()
    return dict(zip(joined.split("\n"), range(n))) if n else {}


def _empty() -> _Postings:
    import numpy as np

    return _Postings(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint16))


def _counts(tf: np.ndarray) -> np.ndarray:
    import numpy as np

    return tf.astype(np.uint16 if tf.size == 0 or int(tf.max()) < 65536 else np.uint32,
                     copy=False)


class Bm25Index:
    """FTS5's BM25 over an in-memory copy of its postings (thread-safe)."""

    def __init__(self) -> None:
        self._snapshot: _Copy | None = None
        self._lock = threading.Lock()
        self._stems: dict[str, str | None] = {}
        self.unusable = ""  # why this copy answers nothing (a failed self-check), else ""
        self._loader: threading.Thread | None = None
        self.rows_tokenized = 0  # chunks tokenized for increments so far
        self._norms: tuple[_Copy, np.ndarray] | None = None  # see _length_norms

    @property
    def size(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else snap.rows

    @property
    def nbytes(self) -> int:
        snap = self._snapshot
        if snap is None:
            return 0
        return (snap.main.nbytes + snap.delta.nbytes + snap.rowids.nbytes + snap.present.nbytes
                + snap.archived.nbytes + snap.doclen.nbytes + snap.key_hashes.nbytes
                + snap.key_pos.nbytes + (0 if snap.key_rowids is snap.rowids else
                                         snap.key_rowids.nbytes))

    # -- keeping in step
    def load(self, store: IndexStore, background: bool = False) -> None:
        """Load (or bring up to date) now: the daemon does this at start and after each batch
        of writes, so no query pays for it. With `background`, a first load runs on a thread
        of its own with its own read-only connection (it reads every posting: seconds at 10k
        chunks, tens of seconds at 100k); until it is done, FTS5 answers."""
        if self._snapshot is None and background:
            with self._lock:
                if self._loader is None and self._snapshot is None:
                    self._loader = threading.Thread(target=self._load_apart, args=(store.path,),
                                                    name="vaultd-bm25-load", daemon=True)
                    self._loader.start()
            return
        self._refresh(store, full=self._snapshot is None)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background load; True once loaded."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
        return self._snapshot is not None

    def _load_apart(self, path: Path) -> None:
        from vaultd.store import open_index_as_is

        try:
            store = open_index_as_is(path)
        except Exception as exc:  # noqa: BLE001 - FTS5 keeps answering; say why
            self._give_up(f"cannot open {path} to load: {exc}")
            return
        try:
            snap = self._full(store)
            with self._lock:
                if self._snapshot is None:
                    self._snapshot = snap
        except Exception as exc:  # noqa: BLE001 - FTS5 keeps answering; say why
            self._give_up(f"load failed: {exc}")
        finally:
            store.close()
            trim_heap()  # what the load and its connection freed, back to the system

    def _refresh(self, store: IndexStore, full: bool) -> bool:
        """Up to date with `store`? A full load happens only when asked for (it takes seconds
        at 100k chunks); without one, a query is answered by FTS5."""
        if self.unusable:
            return False
        generation = store.vectors_generation()
        snap = self._snapshot
        if snap is not None and snap.generation == generation:
            return True
        if snap is None and not full:
            return False
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.generation == generation:
                return True
            if snap is None:
                if not full:
                    return False
                self._snapshot = self._full(store)
            else:
                self._snapshot = self._update(store, snap)
        return self._snapshot is not None

    def _full(self, store: IndexStore) -> _Copy | None:
        """Every posting, counted a block of occurrences at a time: what stays per block is
        one (row, count) pair per posting, never the occurrences themselves (held whole and
        then concatenated, they made the load's peak several times what it keeps)."""
        import numpy as np

        terms: dict[str, int] = {}
        postings = _Collector()
        with store.read_snapshot():
            generation = store.vectors_generation()
            rowids_l, archived_l, hashes = store.chunk_keys(embedded_only=False)
            rowids = np.asarray(rowids_l, dtype=np.int64)
            occurrences = store.fts_occurrences()
            while True:  # in blocks of numpy arrays: no Python object per occurrence is kept
                block = list(itertools.islice(occurrences, LOAD_BLOCK))
                if not block:
                    break
                t_ids = np.fromiter((terms.setdefault(t, len(terms)) for t, _ in block),
                                    dtype=np.int32, count=len(block))
                doc_rowids = np.fromiter((d for _, d in block), np.int64, len(block))
                del block
                pos = np.searchsorted(rowids, doc_rowids)
                if pos.max() >= len(rowids) or (rowids[pos] != doc_rowids).any():
                    self._give_up("the FTS5 index has rows that are not chunks")
                    return None
                postings.add(t_ids, pos.astype(np.int32))
            fts_rows, fts_tokens = store.fts_totals()
        main = postings.done(len(terms))
        terms = _compacted(terms)
        trim_heap()
        doclen = np.bincount(main.docs, weights=main.tf, minlength=len(rowids)).astype(np.int64)
        if fts_rows != len(rowids) or fts_tokens != int(doclen.sum()):
            self._give_up(f"totals differ from FTS5's ({len(rowids)} rows, "
                          f"{int(doclen.sum())} tokens vs {fts_rows}, {fts_tokens})")
            return None
        return _Copy(generation, rowids, rowids, hash_array(hashes),
                         np.arange(len(rowids), dtype=np.int64),
                         np.ones(len(rowids), bool), np.asarray(archived_l, dtype=bool),
                         doclen.astype(np.int32), terms, main, _empty(), len(rowids),
                         int(doclen.sum()))

    def _give_up(self, why: str) -> None:
        self.unusable = why
        log.warning("in-memory BM25 off, FTS5 answers: %s", why)

    def _update(self, store: IndexStore, snap: _Copy) -> _Copy:
        import numpy as np

        with store.read_snapshot():
            generation = store.vectors_generation()
            rowids_l, archived_l, hashes_l = store.chunk_keys(embedded_only=False)
            cur_rowids = np.asarray(rowids_l, dtype=np.int64)
            cur_hashes = hash_array(hashes_l)
            at = positions(snap.key_rowids, snap.key_hashes, cur_rowids, cur_hashes)
            fresh = np.flatnonzero(at < 0)
            new_rows = cur_rowids[fresh].tolist()
            texts = store.chunk_texts(new_rows)
        n_old = len(snap.rowids)
        now = np.empty(len(at), dtype=np.int64)  # each present row's position
        kept = at >= 0
        now[kept] = snap.key_pos[at[kept]]
        now[fresh] = n_old + np.arange(len(fresh))
        positions_new = {r: n_old + i for i, r in enumerate(new_rows)}
        tokens = store.fts_tokens(texts) if texts else []
        self.rows_tokenized += len(new_rows)
        terms = dict(snap.terms)
        for term, _, _ in tokens:
            if term not in terms:
                terms[term] = len(terms)
        present = np.zeros(n_old + len(new_rows), dtype=bool)
        archived = np.zeros(n_old + len(new_rows), dtype=bool)
        present[now] = True
        archived[now] = np.asarray(archived_l, dtype=bool)
        rowids = np.concatenate([snap.rowids, np.asarray(new_rows, dtype=np.int64)])
        new_t = np.asarray([terms[t] for t, _, _ in tokens], dtype=np.int64)
        new_d = np.asarray([positions_new[d] for _, d, _ in tokens], dtype=np.int64)
        new_tf = np.asarray([c for _, _, c in tokens], dtype=np.int64)
        doclen = np.concatenate([snap.doclen, np.bincount(
            new_d - n_old, weights=new_tf, minlength=len(new_rows)).astype(np.int32)])
        # the delta again, with the new rows' postings (dead rows stay, masked by `present`)
        old_t = np.repeat(np.arange(len(snap.delta.indptr) - 1), np.diff(snap.delta.indptr))
        d_terms = np.concatenate([old_t, new_t])
        d_docs = np.concatenate([snap.delta.docs.astype(np.int64), new_d])
        d_tf = np.concatenate([snap.delta.tf.astype(np.int64), new_tf])
        main = snap.main
        dead = len(present) - int(present.sum())
        if len(d_docs) > MERGE_SHARE * max(len(main.docs), 1) or dead > MERGE_SHARE * len(
                present):
            main, present, archived, doclen, rowids, now = _merge(
                main, d_terms, d_docs, d_tf, present, archived, doclen, rowids, now, len(terms))
            delta = _empty()
        else:
            delta = _postings(d_terms, d_docs, d_tf, len(terms))
        return _Copy(generation, rowids, cur_rowids, cur_hashes, now, present, archived,
                         doclen, terms, main, delta, int(present.sum()),
                         int(doclen[present].sum()))

    # -- querying
    def _length_norms(self, snap: _Copy) -> np.ndarray:
        """K1·(1 − B + B·length/avgdl) of every row, once per snapshot (the same operations
        as per query before, so the same scores to the last bit)."""
        import numpy as np

        cached = self._norms
        if cached is None or cached[0] is not snap:
            avgdl = snap.tokens / snap.rows
            cached = (snap, K1 * (1 - B + B * snap.doclen.astype(np.float64) / avgdl))
            self._norms = cached
        return cached[1]

    def stems(self, store: IndexStore, words: list[str]) -> list[str] | None:
        """Each query word as the index's one token; None if FTS5 would make any of them a
        phrase of several tokens (or of none), which this copy does not score."""
        unknown = [w for w in dict.fromkeys(words) if w not in self._stems]
        if unknown:
            if len(self._stems) > _STEM_CACHE:
                self._stems.clear()
            got: dict[int, list[str]] = {}
            for term, doc, _ in store.fts_tokens([(i + 1, "", w) for i, w in enumerate(unknown)]):
                got.setdefault(doc, []).append(term)
            for i, w in enumerate(unknown):
                found = got.get(i + 1, [])
                self._stems[w] = found[0] if len(found) == 1 else None
        out = [self._stems[w] for w in words]
        stems = [s for s in out if s is not None]
        return stems if len(stems) == len(out) else None

    def search(self, store: IndexStore, words: list[str], k: int,
               include_archive: bool) -> list[tuple[int, float]] | None:
        """(chunk rowid, BM25 score, higher is better), best first, equal scores by path and
        line — what `Store.fts` answers for the OR of `words` — or None when this copy cannot
        answer (not loaded, or a word FTS5 would split): then ask FTS5."""
        import numpy as np

        if not words or k <= 0 or not self._refresh(store, full=False):
            return None
        stems = self.stems(store, words)
        snap = self._snapshot
        if stems is None or snap is None:
            return None
        if not snap.rows:
            return []
        scores = np.zeros(len(snap.rowids), dtype=np.float64)
        matched = np.zeros(len(snap.rowids), dtype=bool)
        norm = self._length_norms(snap)
        some_dead = snap.rows < len(snap.rowids)
        for stem in stems:
            term = snap.terms.get(stem)
            if term is None:
                continue
            docs_m, tf_m = snap.main.column(term)
            docs_d, tf_d = snap.delta.column(term)
            docs = np.concatenate([docs_m, docs_d]) if len(docs_d) else docs_m
            tf = np.concatenate([tf_m, tf_d]) if len(docs_d) else tf_m
            if some_dead:
                alive = snap.present[docs]
                if not alive.all():
                    docs, tf = docs[alive], tf[alive]
            if not len(docs):
                continue
            n_hit = len(docs)
            idf = math.log((snap.rows - n_hit + 0.5) / (n_hit + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            freq = tf.astype(np.float64)
            scores[docs] += idf * ((freq * (K1 + 1.0)) / (freq + norm[docs]))
            matched[docs] = True
        if not include_archive:
            matched &= ~snap.archived
        from vaultd.vectors import best_k

        return best_k(store, snap.rowids, scores, np.flatnonzero(matched), k)


def _merge(main: _Postings, d_terms: np.ndarray, d_docs: np.ndarray, d_tf: np.ndarray,
           present: np.ndarray, archived: np.ndarray, doclen: np.ndarray, rowids: np.ndarray,
           key_pos: np.ndarray, n_terms: int
           ) -> tuple[_Postings, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Main and delta postings as one, without the rows no longer present (renumbered)."""
    import numpy as np

    m_terms = np.repeat(np.arange(len(main.indptr) - 1), np.diff(main.indptr))
    terms = np.concatenate([m_terms, d_terms])
    docs = np.concatenate([main.docs.astype(np.int64), d_docs])
    tf = np.concatenate([main.tf.astype(np.int64), d_tf])
    keep = present[docs]
    renumber = np.cumsum(present) - 1
    merged = _postings(terms[keep], renumber[docs[keep]], tf[keep], n_terms)
    return (merged, np.ones(int(present.sum()), bool), archived[present], doclen[present],
            rowids[present], renumber[key_pos].astype(np.int64))


class _Collector:
    """Postings from FTS5's occurrences (ordered by term, then row), a block at a time: each
    block is reduced to one (row, count) pair per posting at once; a posting that runs on into
    the next block is carried over."""

    def __init__(self) -> None:
        self.docs: list[np.ndarray] = []
        self.tf: list[np.ndarray] = []
        self.term_counts: list[tuple[np.ndarray, np.ndarray]] = []
        self.carry: tuple[int, int, int] | None = None  # (term, row, count) of the last one

    def add(self, t_ids: np.ndarray, docs: np.ndarray) -> None:
        import numpy as np

        first = np.ones(len(t_ids), dtype=bool)
        first[1:] = (t_ids[1:] != t_ids[:-1]) | (docs[1:] != docs[:-1])
        starts = np.flatnonzero(first)
        t, d = t_ids[starts], docs[starts]
        tf = np.diff(np.append(starts, len(t_ids))).astype(np.uint32)
        if self.carry is not None:
            ct, cd, cc = self.carry
            if t[0] == ct and d[0] == cd:
                tf[0] += cc
            else:
                self._keep(np.asarray([ct], np.int32), np.asarray([cd], np.int32),
                           np.asarray([cc], np.uint32))
        self.carry = (int(t[-1]), int(d[-1]), int(tf[-1]))
        self._keep(t[:-1], d[:-1], tf[:-1])

    def _keep(self, t: np.ndarray, d: np.ndarray, tf: np.ndarray) -> None:
        import numpy as np

        if len(t):
            self.docs.append(d)
            # counts as uint16 where they fit (all but freak texts): 2 bytes a posting held
            self.tf.append(tf.astype(np.uint16) if int(tf.max()) < 65536 else tf)
            # terms come in order, so a block holds a narrow range of them: its distinct
            # terms and their posting counts (a bincount from 0 would be a whole vocabulary
            # long, every block: memory that grows with vocabulary times blocks)
            self.term_counts.append(np.unique(t, return_counts=True))

    def done(self, n_terms: int) -> _Postings:
        import numpy as np

        if self.carry is not None:
            ct, cd, cc = self.carry
            self._keep(np.asarray([ct], np.int32), np.asarray([cd], np.int32),
                       np.asarray([cc], np.uint32))
            self.carry = None
        counts = np.zeros(n_terms, dtype=np.int64)
        for terms, c in self.term_counts:
            np.add.at(counts, terms, c)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        docs = np.concatenate(self.docs) if self.docs else np.zeros(0, np.int32)
        self.docs = []
        tf = _counts(np.concatenate(self.tf) if self.tf else np.zeros(0, np.uint16))
        self.tf, self.term_counts = [], []
        return _Postings(indptr, docs, tf)  # in term, then row order
