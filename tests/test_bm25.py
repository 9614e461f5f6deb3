"""The daemon's in-memory BM25 answers exactly what FTS5 answers, and follows every change to
the index (new, edited, deleted and archived notes), through the delta and its merge."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fake_embedder, make_vault, write

from vaultd import bm25
from vaultd.bm25 import Bm25Index
from vaultd.search import fts_query, fts_terms
from vaultd.store import Filters
from vaultd.vault import Vault, open_vault

WORDS = ("caching", "cached", "caches", "retries", "retrying", "webhooks", "tokens", "queues",
         "queueing", "latency", "budgets", "ownership", "alerts", "rollbacks", "schemas",
         "naïve", "café", "résumé", "deploys", "deployment")


def note(rng: random.Random, i: int) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
    return f"# Topic {i} {rng.choice(WORDS)}\n\n{body}.\n"


@contextmanager
def topics(tmp_path: Path, seed: int, n: int, **options: Any) -> Iterator[Vault]:
    """A vault of `n` random topic notes, indexed (fake embedder)."""
    rng = random.Random(seed)
    notes = {f"semantic/topic-{i:02d}.md": note(rng, i) for i in range(n)}
    with open_vault(make_vault(tmp_path, notes), env={}, embedder=fake_embedder(tmp_path),
                    **options) as vault:
        vault.index()
        yield vault


QUERIES = ("caching latency", "webhooks alerts rollbacks", "schemas of queues", "tokens",
           "cache caches cached", "naive cafe resume", "DEPLOY deployment budgets ownership",
           "retry the queue", "nothing-matches-this zzz")


def assert_same_as_fts(vault: Vault, index: Bm25Index, include_archive: bool = False) -> int:
    """Every query: the same rows with the same scores as FTS5; returns how many hits."""
    total = 0
    for query in QUERIES:
        for k in (1, 5, 50):
            expected = vault.store.fts(fts_query(query), k, Filters(
                include_archive=include_archive))
            got = index.search(vault.store, fts_terms(query), k, include_archive)
            assert got is not None
            assert [r for r, _ in got] == [r for r, _ in expected], (query, k)
            assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-12)
            total += len(got)
    return total


def test_same_ranking_as_fts5(tmp_path: Path) -> None:
    with topics(tmp_path, 15, 40) as vault:
        index = Bm25Index()
        assert index.search(vault.store, ["caching"], 5, False) is None  # not loaded: ask FTS5
        index.load(vault.store)
        assert index.size == vault.store.counts()["chunks"] >= 40
        assert assert_same_as_fts(vault, index) > 100


def test_follows_edits_deletes_and_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    rng = random.Random(107)  # the edits' words
    with topics(tmp_path, 7, 30) as vault:
        root = vault.root
        index = Bm25Index()
        index.load(vault.store)
        monkeypatch.setattr(bm25, "MERGE_SHARE", 10.0)  # first through the delta
        write(root, "semantic/topic-03.md", note(rng, 103))
        write(root, "semantic/new-one.md", "# New\n\ncaching caching webhooks zebra.\n")
        (root / "semantic" / "topic-04.md").unlink()
        vault.index()
        assert_same_as_fts(vault, index)
        assert index.rows_tokenized == 2
        got = index.search(vault.store, ["zebra"], 5, False)
        assert got is not None and len(got) == 1  # a word only the new note has
        monkeypatch.setattr(bm25, "MERGE_SHARE", 0.0)  # now merged into the main postings
        (root / "archive").mkdir(exist_ok=True)
        (root / "semantic" / "topic-05.md").rename(root / "archive" / "topic-05.md")
        write(root, "semantic/topic-06.md", note(rng, 106))
        vault.index()
        assert_same_as_fts(vault, index)
        assert_same_as_fts(vault, index, include_archive=True)
        assert index.size == vault.store.counts()["chunks"]


def test_a_word_fts5_splits_goes_to_fts5(tmp_path: Path) -> None:
    with open_vault(make_vault(tmp_path, {"semantic/a.md": "# A\n\nsnake_case words here.\n"}),
                    env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        index = Bm25Index()
        index.load(vault.store)
        assert index.stems(vault.store, ["words", "caching"]) == ["word", "cach"]
        assert index.search(vault.store, ["snake_case"], 5, False) is None  # a phrase in FTS5
        hits = vault.search("snake_case", mode="bm25")
        assert [h.path for h in hits] == ["semantic/a.md"]


def test_the_daemon_path_uses_it(tmp_path: Path) -> None:
    with topics(tmp_path, 3, 20, daemon="never") as vault:
        cold = [h.chunk_id for h in vault.search("caching latency webhooks", mode="hybrid")]
        vault.keep_vectors_warm()  # loads on a thread of its own: FTS5 answers meanwhile
        assert vault.bm25 is not None and vault.bm25.wait(30)
        assert vault.bm25.size == vault.store.counts()["chunks"]
        warm = [h.chunk_id for h in vault.search("caching latency webhooks", mode="hybrid")]
        assert warm == cold and len(warm) == 10


def test_a_load_in_small_blocks_is_the_same_copy(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A full load counts FTS5's occurrences a block at a time (so it never holds them all):
    postings that run across a block's end are carried over, whatever the block size."""
    with topics(tmp_path, 3, 25) as vault:
        whole = Bm25Index()
        whole.load(vault.store)
        for size in (1, 2, 7, 64):
            monkeypatch.setattr(bm25, "LOAD_BLOCK", size)
            index = Bm25Index()
            index.load(vault.store)
            a, b = whole._snapshot, index._snapshot
            assert a is not None and b is not None
            for name in ("indptr", "docs", "tf"):
                assert np.array_equal(getattr(a.main, name), getattr(b.main, name)), (size, name)
            assert np.array_equal(a.doclen, b.doclen) and a.terms == b.terms
            assert_same_as_fts(vault, index)


def test_an_empty_index_then_notes(tmp_path: Path) -> None:
    """Loaded while the index is empty, the copy follows the first notes that arrive."""
    root = make_vault(tmp_path, {})
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        index = Bm25Index()
        index.load(vault.store)
        assert index.size == 0 and index.search(vault.store, ["caching"], 5, False) == []
        rng = random.Random(5)
        for i in range(6):
            write(root, f"semantic/topic-{i}.md", note(rng, i))
        vault.index()
        assert_same_as_fts(vault, index)
        assert index.size == vault.store.counts()["chunks"] >= 6


def test_the_loaded_term_dictionary_is_made_anew_with_the_same_ids() -> None:
    """After a full load the term → id dict is rebuilt from one joined string (its strings,
    made among each block's temporary rows, kept ~20 MB of them resident at 100k chunks):
    the same ids, for any term FTS5's tokenizer gives (accents, CJK, digits)."""
    from vaultd.bm25 import _compacted

    terms = {t: i for i, t in enumerate(["caracal", "café", "東京", "x86_64", "ǆ", "a"])}
    before = dict(terms)
    again = _compacted(terms)
    assert again == before and list(again) == list(before)
    assert _compacted({}) == {}
