"""Hybrid fusion: the score blend, the stopwords BM25 skips, and the lift for the days a query
names — over real SQLite with the fake embedder where a vault is needed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import write

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.search import _rrf, blend, fts_terms
from vaultd.search_request import SearchRequest
from vaultd.vault import Vault, init_vault, open_vault


def test_the_best_of_every_list_scores_one_and_the_last_nothing() -> None:
    fused = blend([([(1, 0.9), (2, 0.5), (3, 0.1)], 1.0), ([(1, 7.0), (4, 2.0)], 1.0)])
    assert fused[1] == pytest.approx(1.0)
    assert fused[3] == pytest.approx(0.0) and fused[4] == pytest.approx(0.0)
    assert fused[2] == pytest.approx(0.25)  # half of one list's span, half the weight


def test_a_sure_retriever_is_not_drowned_by_an_unsure_one() -> None:
    # BM25 finds one chunk far ahead of the rest; the vectors rank forty near-equal chunks
    # (no idea). Rank fusion puts the vectors' first pick, which BM25 also lists low, above
    # BM25's answer; the blend keeps the answer first because it sees the gaps.
    vectors = [(100 + i, 0.40 - i * 0.001) for i in range(40)] + [(7, 0.30)]
    bm25 = [(7, 12.0), (100, 2.1), (101, 2.0), (102, 1.9)]
    rrf = _rrf([(vectors, 1.0), (bm25, 1.0)], k=60)
    assert max(rrf, key=rrf.__getitem__) == 100
    fused = blend([(vectors, 0.45), (bm25, 0.55)])
    assert max(fused, key=fused.__getitem__) == 7


def test_agreement_still_wins_and_weights_count() -> None:
    fused = blend([([(1, 0.9), (2, 0.8), (3, 0.1)], 1.0), ([(2, 5.0), (3, 4.0), (4, 1.0)], 1.0)])
    assert fused[2] > fused[1] > fused[4]
    lean = blend([([(1, 0.9), (2, 0.1)], 0.1), ([(2, 5.0), (1, 1.0)], 0.9)])
    assert lean[2] > lean[1]


def test_equal_scores_empty_lists_and_zero_weights() -> None:
    assert blend([([(1, 0.5), (2, 0.5)], 1.0)]) == {1: 1.0, 2: 1.0}
    assert blend([([], 0.45), ([(3, 2.0), (4, 1.0)], 0.55)]) == {3: 1.0, 4: 0.0}
    assert blend([([(1, 0.9)], 0.0), ([(2, 1.0)], 1.0)]) == {2: 1.0}
    assert blend([]) == {}


def test_bm25_skips_the_words_that_only_pose_the_question() -> None:
    assert fts_terms("What did Gina design for her store?") == ["gina", "design", "store"]
    assert fts_terms("When did he move there?") == ["move"]
    assert fts_terms("what did she do") == ["what", "did", "she", "do"]  # nothing else left


@pytest.fixture
def logs(tmp_path: Path) -> Vault:
    """Three days of a chat log saying much the same thing, among other talk."""
    root = tmp_path / "vault"
    init_vault(root)
    for day, line in (("2026-05-28", "Sam: the garden party was lovely, thank you all"),
                      ("2026-06-03", "Sam: the garden party was lovely, thank you all so much"),
                      ("2026-09-01", "Sam: the garden party was lovely, thanks")):
        write(root, f"episodic/{day}.md", f"---\ntype: episodic\ndate: {day}\n---\n"
                                          f"# {day}\n\n- {line}\n- Ana: the party playlist is "
                                          "ready\n- Ana: see you soon\n")
    v = open_vault(root, env={}, embedder=HashEmbedder(builtin_profiles(tmp_path)["hash-256"]))
    v.index()
    yield v
    v.close()


def test_a_day_the_query_names_lifts_that_days_entries(logs: Vault) -> None:
    plain = logs.search("garden party", k=3, today="2026-10-01")
    assert plain[0].path != "episodic/2026-06-03.md"
    dated = logs.search("garden party on June 3", k=3, today="2026-10-01")
    assert dated[0].path == "episodic/2026-06-03.md"
    assert logs.search("the garden party in June", k=3,
                       today="2026-10-01")[0].path == "episodic/2026-06-03.md"
    assert logs.search("the garden party last week", k=3,
                       today="2026-09-07")[0].path == "episodic/2026-09-01.md"


def test_the_query_day_is_the_requests_today(logs: Vault) -> None:
    # "last week" asked on 2026-06-08 is the week of June 1, whose Wednesday the party was
    assert logs.search("garden party last week", k=3,
                       today="2026-06-08")[0].path == "episodic/2026-06-03.md"
    assert logs.search("garden party last week", k=3,
                       today="2026-06-01")[0].path == "episodic/2026-05-28.md"


def test_dates_leave_bm25_alone(logs: Vault) -> None:
    plain = logs.search("garden party", k=3, mode="bm25", today="2026-10-01")
    dated = logs.search("garden party on June 3", k=3, mode="bm25", today="2026-10-01")
    assert [(h.path, h.score) for h in dated] == [(h.path, h.score) for h in plain]


def test_today_in_a_search_request() -> None:
    body = {"query": "what happened last week", "today": "2026-06-08"}
    request = SearchRequest.from_json(body)
    assert request.today == "2026-06-08" and request.to_json()["today"] == "2026-06-08"
    assert SearchRequest.from_json({"query": "q"}).today is None
    with pytest.raises(ValueError, match="'today' must be a date"):
        SearchRequest("q", today="June 8").check()
    assert dt.date.fromisoformat(request.to_json()["today"]) == dt.date(2026, 6, 8)
