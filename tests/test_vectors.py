"""The daemon's in-memory vector copy answers exactly what sqlite-vec answers, and follows every
change to the index."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_embedder, make_vault

from vaultd import vectors
from vaultd.store import Filters
from vaultd.vault import open_vault
from vaultd.vectors import VectorIndex

NOTES = {
    f"semantic/topic-{i:02d}.md": f"# Topic {i}\n\nFact number {i} about {word} and {other}.\n"
    for i, (word, other) in enumerate(
        [(w, o) for w in ("caching", "retries", "webhooks", "tokens", "queues")
         for o in ("latency", "budgets", "ownership", "alerts", "rollbacks", "schemas")])
}


def test_same_neighbours_as_sqlite_vec(tmp_path: Path) -> None:
    with open_vault(make_vault(tmp_path, NOTES), env={},
                    embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        index = VectorIndex()
        for query in ("caching latency", "webhooks alerts", "schemas of queues", "tokens"):
            qvec = vault.embedder.embed([query], kind="query")[0]
            expected = vault.store.knn(qvec.tobytes(), 10, Filters())
            got = index.knn(vault.store, qvec, 10, include_archive=False)
            # the same similarities in the same order; equal scores may list in any order
            assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
            cut = expected[-1][1] + 1e-4
            assert {r for r, s in got if s > cut} == {r for r, s in expected if s > cut}
            assert got[0][1] > cut  # the query has a clear best match: the check is not empty
        assert index.size == vault.store.counts()["chunks"] > len(NOTES) - 1


def test_follows_new_deleted_and_archived_notes(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES)
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        vault.keep_vectors_warm()
        assert vault.vectors is not None

        def top_paths(query: str, archive: bool = False) -> list[str]:
            return [h.path for h in vault.search(query, 5, mode="vector",
                                                 archive="equal" if archive else "none")]

        (root / "semantic" / "zebra.md").write_text("# Zebra\n\nZebra stripes confuse flies.\n",
                                                    encoding="utf-8")
        vault.index()
        assert top_paths("Zebra stripes confuse flies.")[0] == "semantic/zebra.md"

        (root / "archive").mkdir(exist_ok=True)
        (root / "semantic" / "zebra.md").rename(root / "archive" / "zebra.md")
        vault.index()
        assert "archive/zebra.md" not in top_paths("Zebra stripes confuse flies.")
        assert top_paths("Zebra stripes confuse flies.", archive=True)[0] == "archive/zebra.md"

        (root / "archive" / "zebra.md").unlink()
        vault.index()
        found = top_paths("Zebra stripes confuse flies.", archive=True)
        assert not any("zebra" in p for p in found)
        assert vault.vectors.size == vault.store.counts()["chunks"]


def test_reload_only_when_the_vectors_changed(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES)
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        before = vault.store.vectors_generation()
        index = VectorIndex()
        index.refresh(vault.store)
        first = index._snapshot
        index.refresh(vault.store)
        assert index._snapshot is first  # unchanged index: no reload
        vault.index()  # nothing changed on disk
        assert vault.store.vectors_generation() == before
        (root / "semantic" / "topic-00.md").write_text("# Topic 0\n\nRewritten.\n",
                                                       encoding="utf-8")
        vault.index()
        assert vault.store.vectors_generation() != before
        loaded = index.rows_loaded
        index.refresh(vault.store)
        assert index._snapshot is not first
        assert index.rows_loaded == loaded + 1  # only the edited chunk's vector was read
        fresh = VectorIndex()  # and the copy equals one loaded from scratch
        fresh.refresh(vault.store)
        qvec = vault.embedder.embed(["Rewritten"], kind="query")[0]
        assert index.knn(vault.store, qvec, 40, True) == fresh.knn(vault.store, qvec, 40, True)


def test_empty_index_answers_nothing(tmp_path: Path) -> None:
    with open_vault(make_vault(tmp_path), env={}, embedder=fake_embedder(tmp_path)) as vault:
        qvec = vault.embedder.embed(["anything"], kind="query")[0]
        assert VectorIndex().knn(vault.store, qvec, 10, include_archive=True) == []


def test_a_warm_vault_answers_exactly_what_a_cold_one_does(tmp_path: Path) -> None:
    """The daemon's path (vectors in memory, the query embedded on a worker thread while FTS
    runs) and the one-shot path (sqlite-vec, one thread) rank the same hits."""
    rng = random.Random(7)  # varied word sets: no two scores tie, in exact arithmetic or not
    vocab = [f"w{i:03d}" for i in range(150)]
    notes = {f"semantic/n{i:02d}.md": "# N\n\n" + " ".join(rng.sample(vocab, rng.randint(3, 14)))
             for i in range(60)}
    root = make_vault(tmp_path, notes)
    queries = [" ".join(rng.sample(vocab, 3)) for _ in range(12)] + ["zebra"]
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as cold:
        cold.index()
        expected = {q: [(h.path, round(h.score, 5)) for h in cold.search(q, 10)]
                    for q in queries}
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as warm:
        warm.keep_vectors_warm()
        assert warm.vectors is not None and warm._executor is not None
        for mode in ("hybrid", "vector", "bm25"):
            for q in queries:
                got = [(h.path, round(h.score, 5)) for h in warm.search(q, 10, mode=mode)]
                if mode == "hybrid":
                    assert got == expected[q], q
                assert got or q == "zebra"
    assert warm._executor is None  # closed with the vault


def test_a_load_in_small_blocks_is_the_same_copy(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The matrix is filled a block of rows at a time (no second full copy at start): any block
    size gives the same rows, and an edit reads only the changed chunk's vector."""
    root = make_vault(tmp_path, NOTES)
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        whole = VectorIndex()
        whole.refresh(vault.store)
        monkeypatch.setattr(vectors, "BLOCK", 4)
        blocks = VectorIndex()
        blocks.refresh(vault.store)
        a, b = whole._snapshot, blocks._snapshot
        assert a is not None and b is not None and len(b.rowids) > 3 * 4
        assert np.array_equal(a.rowids, b.rowids) and np.array_equal(a.hashes, b.hashes)
        assert np.array_equal(a.high, b.high) and np.array_equal(a.low, b.low)
        rows = vectors.join_halves(b.high, b.low)
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
        loaded = blocks.rows_loaded
        (root / "semantic" / "topic-07.md").write_text("# Topic 7\n\nSomething else now.\n")
        vault.index()
        blocks.refresh(vault.store)
        assert blocks.rows_loaded == loaded + 1
        whole = VectorIndex()
        whole.refresh(vault.store)
        assert whole._snapshot is not None and blocks._snapshot is not None
        assert np.array_equal(whole._snapshot.high, blocks._snapshot.high)
        assert np.array_equal(whole._snapshot.low, blocks._snapshot.low)
        assert np.array_equal(whole._snapshot.rowids, blocks._snapshot.rowids)


def test_the_scan_in_two_halves_gives_the_same_neighbours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an executor (the daemon's), half of the scan runs on it: same scores."""
    from concurrent.futures import ThreadPoolExecutor

    with open_vault(make_vault(tmp_path, NOTES), env={},
                    embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        index = VectorIndex()
        monkeypatch.setattr(vectors, "SPLIT_ROWS", 1)
        with ThreadPoolExecutor(2) as pool:
            for query in ("caching latency", "webhooks alerts", "tokens"):
                qvec = vault.embedder.embed([query], kind="query")[0]
                for archive in (False, True):
                    alone = index.knn(vault.store, qvec, 7, archive)
                    halves = index.knn(vault.store, qvec, 7, archive, executor=pool)
                    assert [r for r, _ in halves] == [r for r, _ in alone] and len(alone) == 7
                    assert [s for _, s in halves] == pytest.approx([s for _, s in alone],
                                                                   abs=1e-6)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def test_the_bfloat16_scan_stays_within_its_error_bound() -> None:
    """The scan reads only each float's top 16 bits. Its scores stay within `scan_error` of the
    exact ones, also for rows built to lose the most to truncation (all 16 dropped bits set),
    scanned with themselves as the query (every product's error the same sign)."""
    rng = np.random.default_rng(3)
    for dims in (8, 384, 1024):
        rows = _unit(rng.standard_normal((2000, dims)))
        worst = (rows.view(np.uint32) | 0xFFFF).view(np.float32)
        for matrix in (rows, worst):
            high, low = vectors.split_halves(matrix)
            assert np.array_equal(vectors.join_halves(high, low), matrix)  # bit for bit
            for query in (_unit(rng.standard_normal(dims)), matrix[0], matrix[1] * -1):
                scanned = vectors._scan(high, vectors.to_bfloat16(query), None)
                exact = matrix.astype(np.float64) @ query.astype(np.float64)
                error = np.abs(scanned - exact).max()
                assert error <= vectors.scan_error(dims)
                assert error > vectors.scan_error(dims) / 100  # the scan is rough: the
                # exact second pass is what makes the answer exact


def test_the_candidates_hold_the_exact_k_best_among_near_ties() -> None:
    """Rows crowded around the k-th best score (closer than the scan can tell apart), exact
    duplicates among them: the candidates still hold every row of the exact k best and every
    row tied with the k-th, with their exact float32 scores."""
    rng = np.random.default_rng(11)
    dims = 64
    for trial in range(30):
        query = _unit(rng.standard_normal(dims))
        base = _unit(rng.standard_normal((300, dims)))
        # 200 rows a hair's breadth apart, all about as close to the query as each other
        near = _unit(query * rng.uniform(0.5, 0.5005, (200, 1))
                     + _unit(rng.standard_normal((200, dims))) * 0.866)
        rows = np.concatenate([base, near, near[:20]])  # 20 exact duplicates
        rng.shuffle(rows)
        high, low = vectors.split_halves(rows)
        eligible = np.flatnonzero(rng.random(len(rows)) > 0.1)  # some archived
        k = int(rng.integers(1, 60))
        at, scores = vectors.candidates(high, low, query, eligible, k)
        exact = np.multiply(rows, query).sum(axis=1, dtype=np.float32)
        assert np.array_equal(scores, exact[at])  # exact, not scanned
        found = exact[eligible]
        kth = np.sort(found)[::-1][k - 1]
        must = set(eligible[found >= kth].tolist())  # the k best and all tied with the k-th
        assert must <= set(at.tolist()), trial
        assert len(at) < len(eligible)  # and the scan did leave rows out


def test_a_query_that_makes_every_row_a_candidate_scores_them_a_block_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows all alike to the query (closer together than the scan can tell): every row is a
    candidate. They are scored exactly a block at a time, so the query never holds a float32
    copy of all of them; any block size gives the same scores."""
    import tracemalloc

    rng = np.random.default_rng(5)
    dims, n = 128, 20_000
    query = _unit(rng.standard_normal(dims))
    rows = _unit(query + rng.standard_normal((n, dims)).astype(np.float32) * 1e-3)
    high, low = vectors.split_halves(rows)
    eligible = np.arange(n)
    tracemalloc.start()
    try:
        at, scores = vectors.candidates(high, low, query, eligible, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(at) == n  # all of them: the case this test is about
    assert peak < rows.nbytes / 2, peak  # one float32 copy of the rows would be rows.nbytes
    monkeypatch.setattr(vectors, "EXACT_ROWS", 7)
    again, small = vectors.candidates(high, low, query, eligible, 10)
    assert np.array_equal(again, at) and np.array_equal(small, scores)
    assert np.array_equal(scores, np.multiply(rows, query).sum(axis=1, dtype=np.float32))
