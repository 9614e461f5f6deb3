"""A hit's passage (vaultd.passages): bounded, best lines first, in order; and end to end, a
long merged note's hit is its matching bullet while `full` gives the whole chunk."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.passages import ELLIPSIS, passage, stem
from vaultd.search import fts_terms
from vaultd.search_request import SearchRequest
from vaultd.vault import init_vault, open_vault

FACTS = [f"- Caroline mentioned topic number {n} at some length, with details." for n in range(12)]
MERGED = "# Caroline — many things\n" + "\n".join(FACTS) + "\n"


def test_short_chunk_comes_back_unchanged() -> None:
    entry = "- 09:30 Fixed the redis failover.\n  Details on a second line.\n"
    assert passage(entry, ["redis"], 400) == entry


def test_best_line_chosen_and_bound_respected() -> None:
    text = MERGED.replace("topic number 7 at", "the zebra sanctuary at")
    got = passage(text, fts_terms("Where is the zebra sanctuary?"), 120)
    assert len(got) <= 120
    assert "zebra sanctuary" in got
    assert got.startswith(ELLIPSIS + "\n") and got.endswith("\n" + ELLIPSIS)


def test_rare_term_outweighs_common_one() -> None:
    # "caroline" is on every line; "zebra" on one: that line wins even though it is later
    text = MERGED.replace("topic number 9 at", "zebra at")
    got = passage(text, ["caroline", "zebra"], 80)
    assert "zebra" in got and "number 0" not in got


def test_chosen_lines_keep_their_order_with_gaps_marked() -> None:
    text = MERGED.replace("number 2 at", "alpha at").replace("number 8 at", "beta at")
    got = passage(text, ["beta", "alpha"], 200)
    assert got.index("alpha") < got.index("beta")
    assert f"\n{ELLIPSIS}\n" in got  # lines 3-7 were left out between them
    assert all(line in text.splitlines() or ELLIPSIS in line for line in got.splitlines())


def test_no_matching_term_gives_the_opening_lines() -> None:
    got = passage(MERGED, ["unrelated"], 150)
    assert got.startswith("# Caroline — many things\n- Caroline mentioned topic number 0")
    assert got.endswith(ELLIPSIS) and len(got) <= 150


def test_a_line_over_the_bound_is_cut_around_its_match() -> None:
    words = " ".join(f"w{n}" for n in range(200))
    text = words.replace("w150", "needle")
    got = passage(text, ["needle"], 60)
    assert len(got) <= 60 and "needle" in got
    assert got.startswith(ELLIPSIS) and got.endswith(ELLIPSIS)
    assert set(got.replace(ELLIPSIS, " ").split()) <= set(text.split())  # whole words only


def test_sentences_of_a_long_paragraph_line_are_units() -> None:
    line = " ".join(f"Sentence {n} says filler things here." for n in range(20))
    text = line.replace("Sentence 12 says filler", "Sentence 12 says kangaroo")
    got = passage(text, ["kangaroo"], 100)
    assert "Sentence 12 says kangaroo things here." in got and len(got) <= 100


def test_stemming_matches_word_forms() -> None:
    assert stem("hiking") == stem("hike") == stem("hikes")
    assert stem("Café") == stem("cafe")
    text = MERGED.replace("topic number 4 at", "hiking trips at")
    assert "hiking" in passage(text, ["hike"], 90)


def test_crlf_is_read_as_lf() -> None:
    text = MERGED.replace("topic number 5 at", "otters at").replace("\n", "\r\n")
    got = passage(text, ["otters"], 100)
    assert "\r" not in got and "otters" in got


@pytest.mark.parametrize("body", ["日本語のテキスト。" * 40, "🧑‍🤝‍🧑 family time! " * 40,
                                  "e\u0301" * 200])
def test_cjk_emoji_and_combining_marks_are_not_split(body: str) -> None:
    got = passage(body, ["family"], 50)
    assert len(got) <= 50
    got.encode("utf-8")  # no lone surrogates
    core = got.replace(ELLIPSIS, "")
    assert not core.startswith(("\u0301", "\u200d", "\ufe0f"))
    assert not core.rstrip().endswith("\u200d")


def test_zero_limit_means_whole_text() -> None:
    assert passage(MERGED, ["caroline"], 0) == MERGED


def test_search_returns_the_matching_bullet_and_full_the_whole(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    init_vault(root)
    (root / "semantic").mkdir(parents=True, exist_ok=True)
    note = MERGED.replace("topic number 6 at some length", "adopting a rescue greyhound")
    (root / "semantic" / "caroline.md").write_text(note, encoding="utf-8")
    embedder = HashEmbedder(builtin_profiles(tmp_path)["hash-256"])
    with open_vault(root, env={}, embedder=embedder, daemon="never") as vault:
        vault.index()
        hit = vault.search("greyhound adoption", k=1, mode="bm25")[0]
        assert "adopting a rescue greyhound" in hit.text
        assert len(hit.text) <= vault.settings.search.passage_chars
        assert "topic number 0" not in hit.text
        whole = vault.search(SearchRequest("greyhound adoption", 1, mode="bm25", full=True))[0]
        assert whole.text.strip() in note and "topic number 0" in whole.text
        assert (whole.path, whole.lines) == (hit.path, hit.lines)


def test_full_in_the_search_json() -> None:
    assert SearchRequest.from_json({"query": "q", "full": True}).full
    assert not SearchRequest.from_json({"query": "q"}).full
    assert SearchRequest("q", full=True).to_json()["full"] is True
    with pytest.raises(ValueError, match="'full' must be true or false"):
        SearchRequest.from_json({"query": "q", "full": "yes"})


def test_the_fast_match_finds_exactly_the_stems_a_full_stemming_finds() -> None:
    """Only words starting with a wanted stem are stemmed in ASCII text (speed); it must
    agree with stemming every word, in any case, and in text that is not ASCII."""
    from vaultd.passages import _matcher, _stems, stem

    texts = ["Hiking HIKES and a hike; hikers' hiked tents (Tent-poles), tenting.",
             "The deploy's DEPLOYED deployments: re-deploy x2, deploy_v2 and deployer.",
             "Café naïve résumé: cafés and RÉSUMÉS, naively", "", "...!!!", "a b c e es ing"]
    for words in (["hiking", "tents"], ["deploy", "v2", "redeploy"], ["cafe", "resume", "naive"],
                  ["es", "ing", "e"], []):
        wanted = {stem(w) for w in words}
        held = _matcher(wanted)
        for text in texts:
            assert held(text) == _stems(text) & wanted, (words, text)
