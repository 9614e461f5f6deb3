"""Hybrid fusion: the score blend, the stopwords BM25 skips, and the lift for the days a query
names — over real SQLite with the fake embedder where a vault is needed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import write

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.search import (
    Searcher,
    SearchOptions,
    _rrf,
    blend,
    fts_query,
    fts_terms,
    spread,
)
from vaultd.search_request import SearchRequest
from vaultd.store import Filters
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


def test_a_file_already_shown_yields_a_near_tie_to_another_file() -> None:
    places = {1: ("a.md", 1), 2: ("a.md", 2), 3: ("a.md", 3), 4: ("b.md", 1)}
    scores = {1: 0.90, 2: 0.89, 3: 0.88, 4: 0.86}
    # a's second hit loses one step (0.87), its third two (0.84): b's first (0.86) comes between
    assert spread([1, 2, 3, 4], scores, places, 0.02) == [1, 2, 4, 3]
    assert scores == pytest.approx({1: 0.90, 2: 0.87, 3: 0.84, 4: 0.86})
    # a search needs only its top k placed so: the rest follow as they were
    scores = {1: 0.90, 2: 0.89, 3: 0.88, 4: 0.86}
    assert spread([1, 2, 3, 4], scores, places, 0.02, limit=2) == [1, 2, 3, 4]
    assert scores == pytest.approx({1: 0.90, 2: 0.87, 3: 0.88, 4: 0.86})


def test_a_clear_lead_is_kept_and_the_scores_fall_along_the_result() -> None:
    places = {1: ("a.md", 1), 2: ("a.md", 5), 3: ("b.md", 1), 4: ("c.md", 1)}
    scores = {1: 0.9, 2: 0.8, 3: 0.5, 4: 0.5}
    ranked = spread([1, 2, 3, 4], scores, places, 0.02)
    assert ranked == [1, 2, 3, 4]  # equal scores stay in path and line order
    assert [scores[r] for r in ranked] == sorted((scores[r] for r in ranked), reverse=True)
    assert spread([1, 2], {1: 0.5, 2: 0.5}, places, 0.0) == [1, 2]


@pytest.fixture(params=["none"])
def chat(tmp_path: Path, request: pytest.FixtureRequest) -> Vault:
    """A day's chat where the answer shares no word with the question asked of it later, and
    another day with a line that shares a word with that question; indexed with the context
    policy the test asks for (`[index] context`, "none" unless parametrised)."""
    root = tmp_path / "vault"
    init_vault(root)
    write(root, "episodic/2026-06-03.md",
          "---\ntype: episodic\ndate: 2026-06-03\n---\n# 2026-06-03\n\n"
          "- Ana: what name did you give the new puppy?\n"
          "- Sam: we called him Biscuit, after the cookies\n"
          "- Ana: see you at the park tomorrow\n")
    write(root, "episodic/2026-06-04.md",
          "---\ntype: episodic\ndate: 2026-06-04\n---\n# 2026-06-04\n\n"
          "- Ana: my name tag fell off at work today\n"
          "- Sam: the class is on Mondays\n"
          "- Ana: what was the name of that bakery again\n"
          "- Sam: no idea, ask Kim\n")
    v = open_vault(root, env={"VAULTD_INDEX_CONTEXT": request.param},
                   embedder=HashEmbedder(builtin_profiles(tmp_path)["hash-256"]))
    v.index()
    yield v
    v.close()


def test_an_answer_rises_with_the_question_before_it(chat: Vault) -> None:
    query = "the puppy's name"
    hits = chat.search(query, k=3, today="2026-06-05")
    assert "Biscuit" in hits[1].text and hits[1].lines[0] == hits[0].lines[0] + 1
    # without the lift from the line before, lines that share a word with the query win
    searcher = Searcher(chat.store, lambda q: chat.embedder.embed([q], kind="query")[0])
    plain = searcher.search(query, SearchOptions(k=3, neighbour_share=0.0,
                                                 filters=Filters(include_archive=True)))
    assert not any("Biscuit" in h.text for h in plain)


def test_single_modes_rank_by_their_retriever_alone(chat: Vault) -> None:
    # the lift and the spread are parts of the blend: a BM25 search gives BM25's own scores
    # and order, a day's later lines included
    query = "name class bakery puppy"
    hits = chat.search(query, k=10, mode="bm25", today="2026-06-05")
    raw = chat.store.fts(fts_query(query), 10, Filters(include_archive=True))
    assert len({h.path for h in hits}) < len(hits)  # a file holds several of them
    assert [h.score for h in hits] == pytest.approx([score for _, score in raw], rel=1e-9)


@pytest.mark.parametrize("chat", ["previous"], indirect=True)
def test_with_the_line_before_in_each_vector_the_log_is_not_read_twice(chat: Vault) -> None:
    # a short chunk's vector holds the chunk before it: no lift from that chunk again, and
    # no repeat step (measured together: both off)
    query = "the puppy's name"
    hits = chat.search(query, k=5, today="2026-06-05")
    searcher = Searcher(chat.store, lambda q: chat.embedder.embed([q], kind="query")[0])
    plain = searcher.search(query, SearchOptions(k=5, neighbour_share=0.0, repeat_step=0.0,
                                                 today=dt.date(2026, 6, 5),
                                                 filters=Filters(include_archive=True)))
    assert [(h.chunk_id, h.score) for h in hits] == [(h.chunk_id, h.score) for h in plain]
