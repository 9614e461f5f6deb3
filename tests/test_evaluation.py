"""Retrieval metrics by hand, and the harness end to end on a small vault with the fake embedder."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.evaluation import (
    EvalResult,
    Query,
    evaluate,
    evaluate_ranker,
    load_queries,
    mrr,
    ndcg_at,
    recall_at,
    unique_paths,
)
from vaultd.vault import Vault, init_vault, open_vault

# ---------------------------------------------------------------------------- metrics


def test_recall_is_the_share_of_gold_in_the_top_k() -> None:
    ranked = ["a", "x", "b", "y", "z"]
    assert recall_at(ranked, ["a"], 1) == 1.0
    assert recall_at(ranked, ["b"], 1) == 0.0
    assert recall_at(ranked, ["b"], 3) == 1.0
    assert recall_at(ranked, ["a", "b"], 1) == 0.5
    assert recall_at(ranked, ["a", "b", "q"], 5) == pytest.approx(2 / 3)
    assert recall_at(ranked, [], 5) == 0.0
    assert recall_at([], ["a"], 5) == 0.0


def test_mrr_is_the_reciprocal_rank_of_the_first_gold_note() -> None:
    assert mrr(["a", "b"], ["a"]) == 1.0
    assert mrr(["x", "y", "b", "a"], ["a", "b"]) == pytest.approx(1 / 3)
    assert mrr(["x"] * 3, ["a"]) == 0.0
    ranked = [f"n{i}" for i in range(10)] + ["a"]  # rank 11: outside the top 10
    assert mrr(ranked, ["a"]) == 0.0
    assert mrr(ranked, ["a"], k=11) == pytest.approx(1 / 11)


def test_ndcg_with_binary_relevance() -> None:
    assert ndcg_at(["a", "b", "c"], ["a"]) == 1.0
    # one gold note at rank 2: (1/log2 3) / 1
    assert ndcg_at(["x", "a"], ["a"]) == pytest.approx(1 / math.log2(3))  # 0.6309
    # two gold notes at ranks 1 and 3: (1 + 1/log2 4) / (1 + 1/log2 3) = 1.5 / 1.6309
    assert ndcg_at(["a", "x", "b"], ["a", "b"]) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at(["a", "x", "b"], ["a", "b"]) == pytest.approx(0.91972, abs=1e-5)
    assert ndcg_at(["x", "y"], ["a"]) == 0.0
    assert ndcg_at(["a"], []) == 0.0
    # gold beyond k counts neither in DCG nor beyond k in the ideal
    assert ndcg_at(["x", "a"], ["a"], k=1) == 0.0
    assert ndcg_at(["a", "b"], ["a", "b", "c"], k=2) == 1.0


def test_unique_paths_keeps_first_seen_order() -> None:
    assert unique_paths(["b.md", "a.md", "b.md", "c.md", "a.md"]) == ["b.md", "a.md", "c.md"]


def test_evaluate_ranker_averages_over_queries() -> None:
    queries = [Query("1", "q", ("a",)), Query("2", "q", ("b",))]
    answers = {"1": ["a", "a", "x"], "2": ["x", "y", "b"]}  # a repeated chunk counts once
    metrics = evaluate_ranker(lambda q: answers[q.id], queries)
    assert metrics.queries == 2
    assert metrics.recall == {1: 0.5, 5: 1.0, 10: 1.0}
    assert metrics.mrr == pytest.approx((1 + 1 / 3) / 2)
    assert metrics.ndcg == pytest.approx((1 + 1 / math.log2(4)) / 2)  # 0.75
    assert metrics.per_query[1].ranked == ("x", "y", "b")


# ---------------------------------------------------------------------------- query files


def test_load_queries_ignores_extra_keys_and_reads_conversation(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": 1, "query": "alpha", "gold_notes": ["a.md"], "extra": true}\n'
        "\n"
        '{"id": "c", "query": "beta", "gold_notes": ["c1/b.md"], "conversation": "c1/"}\n',
        encoding="utf-8")
    first, second = load_queries(path)
    assert first == Query("1", "alpha", ("a.md",), None)
    assert first.path_glob is None
    assert second.conversation == "c1"
    assert second.path_glob == "c1/*"


def test_load_queries_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 1, "query": "a", "gold_notes": ["a.md"]}\n{"id": 2}\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"q\.jsonl:2"):
        load_queries(path)


# ---------------------------------------------------------------------------- harness


NOTES = {
    "semantic/volcano.md": "# Volcanoes\n\nMagma chambers erupt basalt lava near tectonic rifts.\n",
    "semantic/sourdough.md": "# Sourdough\n\nLevain fermentation gives the crumb its tangy "
                             "flavour; proof overnight.\n",
    "semantic/tides.md": "# Tides\n\nThe moon pulls oceans, giving two tides a day.\n",
    "chats/c1/bread.md": "# Bread notes\n\nRye bread needs a levain too, and a long proof.\n",
    "chats/c2/bread.md": "# Bread notes\n\nRye bread needs a levain too, and a long proof.\n",
}
QUERIES = [
    # words that occur only in the gold note
    {"id": "only-words", "query": "magma basalt rifts", "gold_notes": ["semantic/volcano.md"]},
    # "levain" and "proof" also occur in the sourdough note, but the conversation scope
    # leaves only c2's copy of the bread note
    {"id": "scoped", "query": "levain proof", "gold_notes": ["chats/c2/bread.md"],
     "conversation": "chats/c2"},
    # two gold notes; the query's only word is in neither
    {"id": "miss", "query": "xylophone", "gold_notes": ["semantic/tides.md",
                                                        "semantic/sourdough.md"]},
]


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    root = tmp_path / "vault"
    init_vault(root)
    for rel, text in NOTES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    embedder = HashEmbedder(builtin_profiles(tmp_path / "cache")["hash-256"])
    v = open_vault(root, env={}, embedder=embedder)
    v.index()
    yield v
    v.close()


@pytest.fixture
def query_file(tmp_path: Path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8")
    return path


def test_harness_scores_every_mode(vault: Vault, query_file: Path) -> None:
    result = evaluate(vault, query_file)
    assert isinstance(result, EvalResult)
    assert result.queries == 3
    assert set(result.modes) == {"hybrid", "vector", "bm25"}

    bm25 = {s.id: s for s in result.modes["bm25"].per_query}
    assert bm25["only-words"].recall[1] == 1.0
    assert bm25["only-words"].ranked == ("semantic/volcano.md",)  # no other note matches
    assert bm25["scoped"].ranked == ("chats/c2/bread.md",)  # the scope held
    assert bm25["miss"].ranked == ()
    assert bm25["miss"].ndcg == 0.0
    metrics = result.modes["bm25"]
    assert metrics.recall[1] == pytest.approx(2 / 3)
    assert metrics.mrr == pytest.approx(2 / 3)
    assert metrics.ndcg == pytest.approx(2 / 3)

    for mode in ("hybrid", "vector"):
        scores = {s.id: s for s in result.modes[mode].per_query}
        assert scores["only-words"].ranked[0] == "semantic/volcano.md", mode
        assert scores["scoped"].ranked == ("chats/c2/bread.md",), mode
        # ranked notes are unique even though search returns chunks
        assert len(set(scores["only-words"].ranked)) == len(scores["only-words"].ranked)


def test_harness_to_dict_and_selected_modes(vault: Vault, query_file: Path) -> None:
    result = evaluate(vault, load_queries(query_file), modes=["bm25"])
    data = result.to_dict()
    assert list(data["modes"]) == ["bm25"]
    assert data["queries"] == 3
    assert data["modes"]["bm25"]["r@1"] == pytest.approx(0.6667)
    assert set(data["modes"]["bm25"]) == {"r@1", "r@5", "r@10", "mrr", "ndcg@10", "queries",
                                          "seconds"}
    json.dumps(data)  # serialisable
    assert "| bm25 | 0.6667 |" in result.markdown()
    with pytest.raises(ValueError, match="mode"):
        evaluate(vault, query_file, modes=["fuzzy"])
