"""An in-memory copy of the index's vectors, for exact KNN in a long-lived process.

sqlite-vec's `vec0` scan costs about 12 ms per query at 10k chunks on this class of machine
(bench/RESULTS.md); one float32 matrix product over the same vectors costs about 1 ms. The daemon
keeps this copy warm; a one-shot CLI process does not, because loading the copy costs more than
the single query it would answer.

The copy is tagged with the store's vectors generation (bumped by every write that adds, removes
or re-flags a vector), checked on each query. When it moved, the copy is brought up to date
incrementally: the chunks' (rowid, content hash) pairs are listed, rows no longer there are
dropped and only new pairs' vectors are read (an edit costs milliseconds, not a reload of every
vector). The generation is read *before* the chunks, so a write that lands between the two reads
can only make the copy look older than it is (one extra refresh), never newer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from vaultd.store import Store


@dataclass(frozen=True)
class _Snapshot:
    generation: str
    rowids: np.ndarray  # int64, (n,)
    hashes: list[str]  # content hash of each row's chunk
    live: np.ndarray  # bool, (n,): not archived
    matrix: np.ndarray  # float32, (n, dims), rows L2-normalised


class VectorIndex:
    """Exact cosine KNN over an in-memory copy of a store's vectors (thread-safe)."""

    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self.rows_loaded = 0  # vectors read from the store so far (full load + increments)

    @property
    def size(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else len(snap.rowids)

    @property
    def nbytes(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else snap.matrix.nbytes + snap.rowids.nbytes + snap.live.nbytes

    def refresh(self, store: Store) -> None:
        """Bring the copy up to date with `store` when its vectors changed."""
        generation = store.vectors_generation()
        snap = self._snapshot
        if snap is not None and snap.generation == generation:
            return
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.generation == generation:
                return  # another thread refreshed it meanwhile
            self._snapshot = self._update(store, generation, snap)

    def _update(self, store: Store, generation: str, snap: _Snapshot | None) -> _Snapshot:
        import numpy as np

        rowids, archived, hashes = store.chunk_keys()
        old = {} if snap is None else {
            (int(r), h): i for i, (r, h) in enumerate(zip(snap.rowids.tolist(), snap.hashes))}
        keep = [old.get((r, h), -1) for r, h in zip(rowids, hashes)]
        missing = sorted({h for h, i in zip(hashes, keep) if i < 0})
        blobs = store.cached_vectors(missing)
        self.rows_loaded += len(missing)
        dims = (snap.matrix.shape[1] if snap is not None and snap.matrix.size else
                len(next(iter(blobs.values()), b"")) // 4)
        if not rowids or dims == 0:
            return _Snapshot(generation, np.zeros(0, np.int64), [], np.zeros(0, bool),
                             np.zeros((0, 0), np.float32))
        matrix = np.empty((len(rowids), dims), dtype=np.float32)
        where = np.asarray(keep)
        kept, new = np.flatnonzero(where >= 0), np.flatnonzero(where < 0)
        if snap is not None and len(kept):
            matrix[kept] = snap.matrix[where[kept]]
        if len(new):
            rows = np.frombuffer(b"".join(blobs[hashes[i]] for i in new),
                                 dtype=np.float32).reshape(len(new), dims)
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            matrix[new] = rows / np.where(norms == 0, 1.0, norms)
        return _Snapshot(generation, np.asarray(rowids, dtype=np.int64), list(hashes),
                         np.asarray(archived, dtype=np.int64) == 0, matrix)

    def knn(self, store: Store, query: np.ndarray, k: int,
            include_archive: bool) -> list[tuple[int, float]]:
        """(chunk rowid, cosine similarity), best first; equal scores by path and line, so
        which of many tied chunks make the cut survives a rebuild."""
        import numpy as np

        self.refresh(store)
        snap = self._snapshot
        if snap is None or not len(snap.rowids) or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(q))
        if norm == 0.0 or q.shape[0] != snap.matrix.shape[1]:
            return []
        scores = snap.matrix @ (q / norm)
        eligible = np.arange(len(scores)) if include_archive else np.flatnonzero(snap.live)
        return best_k(store, snap.rowids, scores, eligible, k)


def best_k(store: Store, rowids: np.ndarray, scores: np.ndarray, eligible: np.ndarray,
           k: int) -> list[tuple[int, float]]:
    """The k best (chunk rowid, score) among the `eligible` positions, best first; equal
    scores by path and line, and everything tied with the k-th best competes for the last
    places, so which of many tied chunks make the cut survives a rebuild. The in-memory
    vectors and the in-memory BM25 both rank with it."""
    import numpy as np

    found = scores[eligible]
    k = min(k, len(eligible))
    if k <= 0:
        return []
    if k < len(eligible):
        kth = found[np.argpartition(-found, k - 1)[k - 1]]
        top = eligible[found >= kth]
    else:
        top = eligible
    hits = [(int(rowids[i]), float(scores[i])) for i in top]
    if len(hits) > k or len({s for _, s in hits}) < len(hits):  # ties: by path and line
        place = store.chunk_positions([r for r, _ in hits])
        hits.sort(key=lambda h: (-h[1], *place.get(h[0], ("", 0))))
    else:
        hits.sort(key=lambda h: -h[1])
    return hits[:k]
