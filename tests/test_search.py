"""Search: fusion, filters, decay, MMR and hit shape, over real SQLite with the fake embedder."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from conftest import write

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.search import Hit, _rrf, fts_query
from vaultd.vault import Vault, init_vault, open_vault


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    root = tmp_path / "vault"
    init_vault(root)
    write(root, "episodic/2026-01-05.md",
          "# 2026-01-05\n\n## 10:00 — old outage\nredis cache outage took the api down #incident\n")
    write(root, "episodic/2026-11-20.md",
          "# 2026-11-20\n\n## 10:00 — new outage\nredis cache outage again, failover worked "
          "#incident\n\n## 12:00 — lunch\nramen\n")
    write(root, "semantic/redis.md",
          "---\ntags: [infra]\n---\n# Redis\n\n## Failover\nredis cache failover uses sentinel\n")
    write(root, "procedural/redis-restart.md",
          "---\ntags: [infra, runbook]\n---\n# Restart redis\n\n1. run `fly restart redis`\n")
    v = open_vault(root, env={}, embedder=HashEmbedder(builtin_profiles(tmp_path)["hash-256"]))
    v.index()
    yield v
    v.close()


def test_hit_has_the_documented_fields(vault: Vault) -> None:
    hit = vault.search("sentinel failover", k=1)[0]
    data = hit.to_dict()
    assert {"path", "score", "text", "type", "heading", "lines"} <= set(data)
    assert data["path"] == "semantic/redis.md" and data["type"] == "semantic"
    assert data["heading"] == "Redis > Failover" and data["lines"] == [7, 7]
    assert 0 < data["score"] <= 1
    # every field, and back again (the daemon's /search sends this; clients rebuild the hit)
    assert set(data) == {f.name for f in dataclasses.fields(Hit)}
    assert Hit.from_dict(data) == dataclasses.replace(hit, score=data["score"])


def test_filters_by_type_tag_path_and_date(vault: Vault) -> None:
    assert {h.type for h in vault.search("redis", types=["procedural"])} == {"procedural"}
    assert {h.path for h in vault.search("redis", tags=["runbook"])} == {
        "procedural/redis-restart.md"}
    assert {h.path for h in vault.search("redis outage", tags=["#incident"])} == {
        "episodic/2026-01-05.md", "episodic/2026-11-20.md"}
    assert {h.path for h in vault.search("redis", path_glob="episodic/*")} == {
        "episodic/2026-01-05.md", "episodic/2026-11-20.md"}
    assert {h.path for h in vault.search("outage", since="2026-11-01")} == {
        "episodic/2026-11-20.md"}
    assert {h.path for h in vault.search("outage", until="2026-02-01")} == {
        "episodic/2026-01-05.md"}


def test_filtered_vector_search_is_exhaustive(vault: Vault) -> None:
    # Only one chunk matches the filter; it is found however far down the global ranking it is.
    hits = vault.search("completely unrelated words", k=5, mode="vector", tags=["runbook"])
    assert [h.path for h in hits] == ["procedural/redis-restart.md"]


def test_modes_differ_and_hybrid_fuses(vault: Vault) -> None:
    bm25 = vault.search("sentinel", mode="bm25")
    assert [h.path for h in bm25] == ["semantic/redis.md"]  # the only chunk with the word
    assert len(vault.search("sentinel", mode="vector")) > 1  # vectors rank everything
    hybrid = vault.search("sentinel", mode="hybrid")
    assert hybrid[0].path == "semantic/redis.md"


def test_rrf_rewards_agreement() -> None:
    fused = _rrf([([(1, 0.9), (2, 0.8)], 1.0), ([(2, 5.0), (3, 4.0)], 1.0)], k=60)
    assert fused[2] > fused[1] > fused[3]
    assert _rrf([([(7, 0.5)], 1.0), ([(7, 1.0)], 1.0)], k=60)[7] == pytest.approx(1.0)


def test_recency_decay_prefers_recent_episodes(vault: Vault) -> None:
    today = dt.date(2026, 11, 21)
    plain = vault.search("redis cache outage took the api down", k=2, types=["episodic"])
    assert plain[0].path == "episodic/2026-01-05.md"  # the better text match wins without decay
    from vaultd.search import Searcher, SearchOptions
    from vaultd.store import Filters

    searcher = Searcher(vault.store, lambda q: vault.embed([q], kind="query")[0])
    decayed = searcher.search("redis cache outage took the api down", SearchOptions(
        k=3, filters=Filters(types=("episodic",)), half_life_days=30, today=today))
    assert decayed[0].path == "episodic/2026-11-20.md"
    old = next(h for h in decayed if h.path == "episodic/2026-01-05.md")
    assert old.score == pytest.approx(plain[0].score * 0.5 ** (320 / 30))


def test_recency_decay_ranks_the_same_with_bm25_beside_the_embedding(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's path (BM25 on an executor while the query embeds) gives what the
    one-thread path gives. With decay, ranking reads whole rows, so the BM25 job looks up no
    places of its own (it did, and they were read again)."""
    from concurrent.futures import ThreadPoolExecutor

    from vaultd.search import Searcher, SearchOptions
    from vaultd.store import Filters

    def embed(q: str) -> Any:
        return vault.embed([q], kind="query")[0]

    lookups: list[int] = []
    positions = vault.store.chunk_positions
    monkeypatch.setattr(vault.store, "chunk_positions",
                        lambda rowids: lookups.append(len(rowids)) or positions(rowids))
    for types in ((), ("episodic",)):
        options = SearchOptions(k=5, filters=Filters(types=types), half_life_days=30,
                                today=dt.date(2026, 11, 21))
        alone = Searcher(vault.store, embed).search("redis cache outage", options)
        alone_lookups, lookups[:] = list(lookups), []
        with ThreadPoolExecutor(1) as pool:
            beside = Searcher(vault.store, embed, executor=pool).search("redis cache outage",
                                                                       options)
        assert [(h.path, h.score) for h in beside] == [(h.path, h.score) for h in alone]
        assert alone and lookups == alone_lookups
        lookups[:] = []


def test_mmr_diversifies(vault: Vault) -> None:
    plain = vault.search("redis cache outage", k=3, mode="vector")
    diverse = vault.search("redis cache outage", k=3, mode="vector", mmr_lambda=0.3)
    assert plain[0].path == diverse[0].path
    assert [h.chunk_id for h in plain] != [h.chunk_id for h in diverse]


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "foo*", "-x", "a:b", "(", "NEAR(a b)",
                                   "ünïcödé", "''"])
def test_fts_syntax_in_queries_is_harmless(vault: Vault, query: str) -> None:
    vault.search(query, mode="bm25")  # must not raise an FTS5 syntax error
    assert all('"' not in part.strip('"') for part in fts_query(query).split(" OR "))


def test_a_wrong_request_is_an_error_not_an_empty_answer(vault: Vault) -> None:
    with pytest.raises(ValueError, match="'query' must be a non-empty string"):
        vault.search("   ")
    with pytest.raises(ValueError, match="'k' must be an integer from 1"):
        vault.search("redis", k=0)


def test_archived_notes_are_a_lower_tier_not_gone(vault: Vault) -> None:
    """Fading lowers prominence, never recall: an archived entry is found by default, marked,
    and ranked after a live one of similar relevance; `equal` ranks it alike, `none` leaves it
    out."""
    write(vault.root, "episodic/2026-11-21.md", "# 2026-11-21\n\n## 09:00 — zeppelin hangar\n"
          "the zeppelin hangar door sticks in frost\n")
    write(vault.root, "archive/episodic/2026-11-20.md", "# 2026-11-20\n\n## 09:00 — zeppelin "
          "hangar\nthe zeppelin hangar door sticks in the frost\n")
    vault.index()
    hits = vault.search("zeppelin hangar door", k=5)
    assert [(h.path, h.archived) for h in hits[:2]] == [("episodic/2026-11-21.md", False),
                                                         ("archive/episodic/2026-11-20.md", True)]
    assert hits[1].score < hits[0].score and hits[1].to_dict()["archived"] is True
    equal = vault.search("zeppelin hangar door", k=5, archive="equal")
    assert {h.path for h in equal[:2]} == {"episodic/2026-11-21.md",
                                           "archive/episodic/2026-11-20.md"}
    assert all(not h.archived for h in vault.search("zeppelin hangar door", archive="none"))
    with pytest.raises(ValueError, match="'archive' must be one of lower, equal, none"):
        vault.search("zeppelin", archive="all")


def test_an_archived_copy_of_a_live_hit_does_not_take_a_place(vault: Vault) -> None:
    """A merged entry lives on verbatim in its semantic note: the archived original is a
    second copy of a hit already shown, so the lower tier leaves it out (`equal` keeps it)."""
    fact = "the kiln thermocouple reads low after a firing"
    write(vault.root, "semantic/kiln.md", f"# Kiln\n\n- {fact} — [2026-11-02](x.md)\n"
          "- the glaze shelf holds six tiles\n")
    write(vault.root, "archive/episodic/2026-11-02.md", f"# 2026-11-02\n\n- {fact}\n")
    vault.index()
    lower = [h.path for h in vault.search("kiln thermocouple firing", k=5)]
    assert "semantic/kiln.md" in lower and "archive/episodic/2026-11-02.md" not in lower
    equal = [h.path for h in vault.search("kiln thermocouple firing", k=5, archive="equal")]
    assert "archive/episodic/2026-11-02.md" in equal


def test_archive_in_a_search_body_keeps_earlier_clients_working() -> None:
    from vaultd.search_request import SearchRequest

    tier = {value: SearchRequest.from_json({"query": "q", "archive": value}).archive
            for value in (True, False, None, "lower", "equal", "none")}
    assert tier == {True: "equal", False: "lower", None: "lower", "lower": "lower",
                    "equal": "equal", "none": "none"}
    with pytest.raises(ValueError, match="'archive'"):
        SearchRequest.from_json({"query": "q", "archive": "yes"})
    request = SearchRequest("q", archive="none")
    assert SearchRequest.from_json(request.to_json()).archive == "none"  # CLI → daemon
