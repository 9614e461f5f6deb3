"""An in-memory copy of the index's vectors, for exact KNN in a long-lived process.

sqlite-vec's `vec0` scan costs about 12 ms per query at 10k chunks on this class of machine
(bench/RESULTS.md); one float32 matrix product over the same vectors costs about 1 ms. The daemon
keeps this copy warm; a one-shot CLI process does not, because loading the copy costs more than
the single query it would answer.

The copy is tagged with the store's vectors generation (bumped by every write that adds, removes
or re-flags a vector), checked on each query and reloaded when it moved. The generation is read
*before* the vectors, so a write that lands between the two reads can only make the copy look
older than it is (one extra reload), never newer.
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
    live: np.ndarray  # bool, (n,): not archived
    matrix: np.ndarray  # float32, (n, dims), rows L2-normalised


class VectorIndex:
    """Exact cosine KNN over an in-memory copy of a store's vectors (thread-safe)."""

    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else len(snap.rowids)

    @property
    def nbytes(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else snap.matrix.nbytes + snap.rowids.nbytes + snap.live.nbytes

    def refresh(self, store: Store) -> None:
        """Reload from `store` when its vectors changed since the last load."""
        generation = store.vectors_generation()
        snap = self._snapshot
        if snap is not None and snap.generation == generation:
            return
        with self._lock:
            snap = self._snapshot
            if snap is not None and snap.generation == generation:
                return  # another thread reloaded it meanwhile
            self._snapshot = _load(store, generation)

    def knn(self, store: Store, query: np.ndarray, k: int,
            include_archive: bool) -> list[tuple[int, float]]:
        """(chunk rowid, cosine similarity), best first; equal scores by path and line (the
        order the copy is kept in), so which of many tied chunks make the cut survives a
        rebuild."""
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
        if not include_archive:
            scores = np.where(snap.live, scores, -np.inf)
        k = min(k, len(scores))
        if k < len(scores):  # everything tied with the k-th best competes for the last places
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            top = np.flatnonzero(scores >= kth)
        else:
            top = np.arange(len(scores))
        top = top[np.isfinite(scores[top])]
        order = top[np.lexsort((top, -scores[top]))][:k]
        return [(int(snap.rowids[i]), float(scores[i])) for i in order]


def _load(store: Store, generation: str) -> _Snapshot:
    import numpy as np

    rowids, archived, blobs = store.all_vectors()
    if not blobs:
        return _Snapshot(generation, np.zeros(0, np.int64), np.zeros(0, bool),
                         np.zeros((0, 0), np.float32))
    matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms == 0, 1.0, norms)
    return _Snapshot(generation, np.asarray(rowids, dtype=np.int64),
                     np.asarray(archived, dtype=np.int64) == 0, matrix)
