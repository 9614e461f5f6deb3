"""An in-memory copy of the index's vectors, for exact KNN in a long-lived process.

sqlite-vec's `vec0` scan reads every stored vector out of SQLite for each query; a scan of an
in-memory copy is one pass over a contiguous matrix, several times cheaper (bench/RESULTS.md).
The daemon keeps this copy warm; a one-shot CLI process does not, because loading the copy
costs more than the single query it would answer.

Each float32 is kept as its two halves: the top 16 bits (a bfloat16) and the bottom 16. A query
scans only the top halves (half the bytes of the float32 matrix: the scan is bound by memory
bandwidth), which gives every score to within a known bound (`scan_error`); the few rows that
can still be among the k best by that bound are scored again exactly, from both halves. So the
answer is the float32 one, for the same memory as the float32 matrix.

The copy is tagged with the store's vectors generation (bumped by every write that adds, removes
or re-flags a vector), checked on each query. When it moved, the copy is brought up to date
incrementally: the chunks' (rowid, content hash) pairs are listed, rows no longer there are
dropped and only new pairs' vectors are read (an edit costs milliseconds, not a reload of every
vector). The generation is read *before* the chunks, so a write that lands between the two reads
can only make the copy look older than it is (one extra refresh), never newer.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from vaultd.store import IndexStore


BLOCK = 4096  # rows read and normalised at a time: a load never holds a second full copy
SPLIT_ROWS = 4096  # from this many rows, a query's scan runs in two halves
EXACT_ROWS = 1024  # rows scored exactly at a time: bounds temporaries if every row is a candidate


@dataclass(frozen=True)
class _Halves:
    generation: str
    rowids: np.ndarray  # int64, (n,), ascending
    hashes: np.ndarray  # bytes (numpy "S"), (n,): content hash of each row's chunk
    live: np.ndarray  # bool, (n,): not archived
    # the L2-normalised float32 rows, (n, dims), as two uint16 halves of each float's bits:
    high: np.ndarray  # the top 16 bits, a bfloat16 (sign, exponent, 7 bits of mantissa)
    low: np.ndarray  # the other 16 bits of the mantissa

    @property
    def dims(self) -> int:
        return int(self.high.shape[1]) if self.high.ndim == 2 else 0


class VectorIndex:
    """Exact cosine KNN over an in-memory copy of a store's vectors (thread-safe)."""

    def __init__(self) -> None:
        self._snapshot: _Halves | None = None
        self._lock = threading.Lock()
        self.rows_loaded = 0  # vectors read from the store so far (full load + increments)

    @property
    def size(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else len(snap.rowids)

    @property
    def nbytes(self) -> int:
        snap = self._snapshot
        return 0 if snap is None else (snap.high.nbytes + snap.low.nbytes + snap.rowids.nbytes
                                       + snap.hashes.nbytes + snap.live.nbytes)

    def refresh(self, store: IndexStore) -> None:
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
        trim_heap()  # the load's transient buffers: give them back now, not at the next peak

    def _update(self, store: IndexStore, generation: str, snap: _Halves | None) -> _Halves:
        """The matrix filled in place, a block of rows at a time: a full load once peaked at
        several copies of the matrix (blobs, their join, the normalised rows, the matrix) and now
        holds one plus a block (bench/RESULTS.md)."""
        import numpy as np

        with store.read_snapshot():
            rowids_l, archived, hashes_l = store.chunk_keys()
            rowids = np.asarray(rowids_l, dtype=np.int64)
            hashes = hash_array(hashes_l)
            where = (np.full(len(rowids), -1, dtype=np.int64) if snap is None else
                     positions(snap.rowids, snap.hashes, rowids, hashes))
            new = np.flatnonzero(where < 0)
            self.rows_loaded += len({hashes_l[i] for i in new.tolist()})
            blocks = (new[start:start + BLOCK] for start in range(0, len(new), BLOCK))
            first = next(blocks, None)
            first_rows = None if first is None else _rows(store, [hashes_l[i] for i in first])
            dims = (snap.dims if snap is not None and snap.high.size else
                    first_rows.shape[1] if first_rows is not None else 0)
            if not len(rowids) or dims == 0:
                empty = np.zeros((0, 0), np.uint16)
                return _Halves(generation, np.zeros(0, np.int64), hash_array([]),
                                 np.zeros(0, bool), empty, empty)
            high = np.empty((len(rowids), dims), dtype=np.uint16)
            low = np.empty((len(rowids), dims), dtype=np.uint16)
            kept = np.flatnonzero(where >= 0)
            for start in range(0, len(kept), BLOCK):
                part = kept[start:start + BLOCK]
                high[part] = snap.high[where[part]]  # type: ignore[union-attr]
                low[part] = snap.low[where[part]]  # type: ignore[union-attr]
            if first is not None and first_rows is not None:
                high[first], low[first] = split_halves(first_rows)
                del first_rows
                for part in blocks:
                    high[part], low[part] = split_halves(
                        _rows(store, [hashes_l[i] for i in part]))
        return _Halves(generation, rowids, hashes, np.asarray(archived, dtype=np.int64) == 0,
                         high, low)

    def knn(self, store: IndexStore, query: np.ndarray, k: int, include_archive: bool,
            executor: Executor | None = None) -> list[tuple[int, float]]:
        """(chunk rowid, cosine similarity), best first; equal scores by path and line, so
        which of many tied chunks make the cut survives a rebuild. The scan's scores are
        within `scan_error` of the exact ones; every row that can be among the k best by that
        bound is scored again exactly, so the answer is the exact float32 one. With an
        `executor`, half of the scan runs on it (see `_scan`)."""
        import numpy as np

        self.refresh(store)
        snap = self._snapshot
        if snap is None or not len(snap.rowids) or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(q))
        if norm == 0.0 or q.shape[0] != snap.dims:
            return []
        q = (q / norm).astype(np.float32)
        eligible = np.arange(len(snap.rowids)) if include_archive else np.flatnonzero(snap.live)
        at, exact = candidates(snap.high, snap.low, q, eligible, k, executor)
        return best_k(store, snap.rowids[at], exact, np.arange(len(at)), k)


def candidates(high: np.ndarray, low: np.ndarray, query: np.ndarray, eligible: np.ndarray,
               k: int, executor: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positions, exact scores) of the `eligible` rows that can be among the k best for the
    unit-length float32 `query`: every row of the exact k best, and every row tied with the
    k-th, is among them. The rows are the halves of `split_halves`."""
    import numpy as np

    if k < len(eligible):
        rough = _scan(high, to_bfloat16(query), executor)[eligible]
        kth = rough[np.argpartition(-rough, k - 1)[k - 1]]
        # a row of the exact k best scans at least (k-th exact - error) >= (k-th scanned -
        # 2 errors): no row below that can be one of them
        eligible = eligible[rough >= kth - 2 * scan_error(high.shape[1])]
    return eligible, _exact_scores(high, low, eligible, query)


def best_k(store: IndexStore, rowids: np.ndarray, scores: np.ndarray, eligible: np.ndarray,
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


def _scan(high: np.ndarray, query: np.ndarray, executor: Executor | None) -> np.ndarray:
    """The bfloat16 rows' dot products with the bfloat16 query (float64, summed in float32
    by simsimd's SIMD kernels), in two halves side by side when there is an executor and rows
    enough.

    At 100k rows the scan is bound by memory bandwidth, which one core does not fill: the
    daemon's executor scans half the rows on the second core, free once the query is embedded
    (simsimd releases the GIL; its own `threads` leave a thread spinning after each call,
    which would take the core the next query's embedding needs)."""
    import numpy as np
    import simsimd

    def dots(rows: np.ndarray) -> np.ndarray:
        return np.asarray(simsimd.cdist(query[None], rows, metric="dot", dtype="bf16")
                          ).reshape(-1)

    n = high.shape[0]
    if executor is None or n < SPLIT_ROWS:
        return dots(high)
    half = n // 2
    other = executor.submit(dots, high[:half])
    try:
        mine = dots(high[half:])
    finally:
        first = other.result()
    return np.concatenate([first, mine])


def _exact_scores(high: np.ndarray, low: np.ndarray, at: np.ndarray,
                  query: np.ndarray) -> np.ndarray:
    """The dot products of the rows at `at` with the query, from their exact float32 values,
    EXACT_ROWS rows at a time (a query whose scores are all alike makes most rows candidates:
    its temporaries stay a block's). Each row is summed the same way wherever it stands (a
    BLAS product may sum a row differently by its position in the matrix, and then two
    identical rows would no longer tie)."""
    import numpy as np

    out = np.empty(len(at), dtype=np.float32)
    for start in range(0, len(at), EXACT_ROWS):
        part = at[start:start + EXACT_ROWS]
        np.multiply(join_halves(high[part], low[part]), query).sum(
            axis=1, dtype=np.float32, out=out[start:start + EXACT_ROWS])
    return out


def scan_error(dims: int) -> float:
    """A bound on |scanned score - exact score| for unit-length float32 vectors: each row's
    bfloat16 (truncated) is within 2^-7 of its value, the query's (rounded) within 2^-8, so
    each product is within the sum of both and their product of its own value; the products'
    absolute values add up to at most 1 (Cauchy-Schwarz), and summing `dims` of them in
    float32 adds at most dims * 2^-24. 1 % more for the norms' own rounding."""
    return 1.01 * (2**-7 + 2**-8 + 2**-15 + dims * 2**-24)


def split_halves(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows as (top 16 bits, bottom 16 bits) of each value, both uint16."""
    import numpy as np

    bits = np.ascontiguousarray(rows, dtype=np.float32).view(np.uint32)
    return (bits >> 16).astype(np.uint16), (bits & 0xFFFF).astype(np.uint16)


def join_halves(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The float32 values whose halves `split_halves` gave, bit for bit."""
    import numpy as np

    return ((high.astype(np.uint32) << 16) | low).view(np.float32)


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as uint16 bits."""
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _rows(store: IndexStore, hashes: list[str]) -> np.ndarray:
    """The vectors of `hashes`, in order, L2-normalised (a zero vector stays zero)."""
    import numpy as np

    blobs = store.cached_vectors(hashes)
    rows = np.frombuffer(b"".join(blobs[h] for h in hashes), dtype=np.float32)
    rows = rows.reshape(len(hashes), -1).copy()
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows /= np.where(norms == 0, 1.0, norms)
    return rows


def hash_array(hashes: list[str]) -> np.ndarray:
    """Content hashes (hex) as a numpy bytes array: a tenth of the memory of a list of str."""
    import numpy as np

    return np.array([h.encode("ascii") for h in hashes], dtype=np.bytes_) if hashes else \
        np.zeros(0, dtype="S1")


def positions(old_rowids: np.ndarray, old_hashes: np.ndarray, rowids: np.ndarray,
              hashes: np.ndarray) -> np.ndarray:
    """For each (rowid, hash) pair, its position among the old pairs (rowids ascending), or
    −1 when it is new (a new row, or a row whose content changed)."""
    import numpy as np

    if not len(old_rowids):
        return np.full(len(rowids), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(old_rowids, rowids), len(old_rowids) - 1)
    same = (old_rowids[at] == rowids) & (old_hashes[at] == hashes)
    return np.where(same, at, -1).astype(np.int64)


def trim_heap() -> None:
    """Give freed heap memory back to the system now (glibc), rather than keep a load's
    high-water mark resident in a long-lived daemon. Nothing to do elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once: `find_library` runs `ldconfig -p` (a
    subprocess), and the daemon trims after every load, batch of index work and search
    burst."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.util.find_library("c")
        return ctypes.CDLL(libc).malloc_trim if libc else None
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        return None
