"""chunking: heading-aware chunks within the model's token limit (nothing truncated), with
stable ids, content hashes and line ranges inside their entry; managed blocks are not indexed.
The property tests drive parse + chunk with random markdown-ish text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chunk_checks import DOC, body_content, check_invariants, content_chars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultd.blocks import BEGIN as MANAGED_BEGIN
from vaultd.blocks import END as MANAGED_END
from vaultd.chunking import Chunk, chunk_note
from vaultd.embedder import HashEmbedder, ModelProfile, OnnxEmbedder, builtin_profiles
from vaultd.notes import Note, parse

COUNT = HashEmbedder(ModelProfile(id="hash-test", dims=8, kind="hash")).count_tokens

NOTE = """\
---
title: Deploying ledgerly
tags: [ops]
---
# Deploying ledgerly
How we ship ledgerly.

## Rollback
Roll back with `fly releases rollback`.

### Database
Skip migrations when rolling back.

## Canary
Send ten percent of traffic to the canary first.
"""

DAILY = """\
# 2026-11-20

- 08:05 standup, moved the release
  to Thursday
- 08:40 coffee

## 09:14 Flaky refund webhook test
test_refund_webhook failed in CI.

It builds timestamps in local time.

## 11:30 Postgres pool
Raised the pool size to 20.
"""


def chunks_of(path: str, text: str, max_tokens: int = 256, target: int = 200,
              count=COUNT) -> tuple[Note, list[Chunk]]:
    note = parse(path, text)
    return note, chunk_note(note, count, max_tokens, target)


def by_heading(chunks: list[Chunk]) -> dict[str, Chunk]:
    out = {c.heading: c for c in chunks}
    assert len(out) == len(chunks)
    return out


# ---------------------------------------------------------------------------- headings


def test_heading_path_travels_with_the_chunk() -> None:
    note, chunks = chunks_of("procedural/deploy.md", NOTE)
    check_invariants(note, chunks, COUNT, 256)
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("Deploying ledgerly", 6, 6),
        ("Deploying ledgerly > Rollback", 9, 9),
        ("Deploying ledgerly > Rollback > Database", 12, 12),
        ("Deploying ledgerly > Canary", 15, 15),
    ]
    db = chunks[2]
    assert db.text == "Skip migrations when rolling back."
    assert db.embed_text == "Deploying ledgerly > Rollback > Database\n" + db.text


def test_daily_chunks_follow_entries() -> None:
    note, chunks = chunks_of("episodic/2026-11-20.md", DAILY)
    check_invariants(note, chunks, COUNT, 256)
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("2026-11-20", 3, 4),
        ("2026-11-20", 5, 5),
        ("2026-11-20 > 09:14 Flaky refund webhook test", 8, 10),
        ("2026-11-20 > 11:30 Postgres pool", 13, 13),
    ]
    assert [c.entry_id for c in chunks] == [e.id for e in note.entries]
    assert chunks[2].text == ("test_refund_webhook failed in CI.\n\n"
                              "It builds timestamps in local time.")


def test_small_blocks_are_packed_up_to_the_target() -> None:
    text = "# T\n" + "".join(f"para {i} two words\n\n" for i in range(20))
    note, chunks = chunks_of("a.md", text, max_tokens=64, target=20)
    check_invariants(note, chunks, COUNT, 64)
    assert 1 < len(chunks) < 20
    assert all(COUNT(c.embed_text) <= 20 + 4 for c in chunks)  # roughly the target


# ---------------------------------------------------------------------------- token limits


LONG_BODY = "\n\n".join([
    "word " * 300,  # one long line
    "\n".join(f"line {i} of a long paragraph without blank lines" for i in range(200)),
    "x" * 5000,  # one long word
    "      " + "indented words " * 80,  # leading blanks used to make a blank chunk
    "日本語の文章には空白がありません。" * 60,
    "```\n" + "\n".join(f"code({i}) + more(code)" for i in range(100)) + "\n```",
])


@pytest.mark.parametrize("max_tokens", [8, 16, 64, 256])
def test_no_chunk_exceeds_max_tokens_and_nothing_is_lost(max_tokens: int) -> None:
    text = f"# Title\n## Section\n{LONG_BODY}\n"
    note, chunks = chunks_of("semantic/long.md", text, max_tokens=max_tokens, target=max_tokens)
    check_invariants(note, chunks, COUNT, max_tokens)
    assert content_chars("".join(c.text for c in chunks)) == body_content(note)


def test_a_heading_longer_than_the_budget_is_shortened_not_overflowed() -> None:
    """Regression: a heading path near MAX_HEADING_CHARS exceeded a small max_tokens."""
    heading = " ".join(f"w{i}" for i in range(60))
    text = f"# {heading}\n## {heading} again\nbody text here\n\n## other\nmore text\n"
    note, chunks = chunks_of("a.md", text, max_tokens=16, target=16)
    check_invariants(note, chunks, COUNT, 16)
    assert all(c.heading.endswith("…") for c in chunks[:1])
    assert len({c.id for c in chunks}) == len(chunks) == 2
    assert content_chars("".join(c.text for c in chunks)) == body_content(note)


def test_no_blank_chunks_from_word_splits() -> None:
    """Regression: splitting a line with leading blanks made whitespace-only chunks."""
    note, chunks = chunks_of("a.md", " " * 200 + "alpha beta " * 40 + "\n", 8, 8)
    check_invariants(note, chunks, COUNT, 8)


@pytest.fixture(scope="module")
def minilm_count(tmp_path_factory: pytest.TempPathFactory):
    """The real tokenizer's counter (only the tokenizer loads, not the ONNX session)."""
    profile = builtin_profiles(tmp_path_factory.mktemp("cache"))["all-MiniLM-L6-v2"]
    embedder = OnnxEmbedder(profile)
    assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    return embedder.count_tokens, embedder.max_tokens


@pytest.mark.parametrize("max_tokens", [24, None])
def test_real_tokenizer_limit_is_respected(minilm_count, max_tokens: int | None) -> None:
    count, model_max = minilm_count
    limit = max_tokens or model_max
    text = ("# Tokenizer 🚀 stress\n## Ünïcödé, emoji 🎉🎉 and URLs\n" + LONG_BODY
            + "\n\nhttps://example.org/" + "a1b2c3/" * 200 + "\n\n" + "🎉" * 400 + "\n")
    note, chunks = chunks_of("semantic/tok.md", text, max_tokens=limit, target=200, count=count)
    check_invariants(note, chunks, count, limit)
    assert content_chars("".join(c.text for c in chunks)) == body_content(note)


# ---------------------------------------------------------------------------- stable ids, hashes


def test_editing_one_section_keeps_other_ids() -> None:
    _, before = chunks_of("procedural/deploy.md", NOTE)
    _, after = chunks_of("procedural/deploy.md",
                         NOTE.replace("ten percent", "five percent"))
    old, new = by_heading(before), by_heading(after)
    canary = "Deploying ledgerly > Canary"
    assert {h: c.id for h, c in old.items()} == {h: c.id for h, c in new.items()}
    assert {h: c.hash for h, c in old.items() if h != canary} == {
        h: c.hash for h, c in new.items() if h != canary}
    assert old[canary].hash != new[canary].hash


def test_inserting_lines_above_keeps_ids() -> None:
    _, before = chunks_of("procedural/deploy.md", NOTE)
    inserted = NOTE.replace("## Rollback", "## Preflight\nCheck the dashboards.\n\n\n## Rollback")
    _, after = chunks_of("procedural/deploy.md", inserted)
    old, new = by_heading(before), by_heading(after)
    assert set(new) - set(old) == {"Deploying ledgerly > Preflight"}
    for heading, chunk in old.items():
        moved = new[heading]
        assert (moved.id, moved.hash) == (chunk.id, chunk.hash)
        assert moved.start_line >= chunk.start_line


def test_daily_ids_survive_a_new_entry_above() -> None:
    _, before = chunks_of("episodic/2026-11-20.md", DAILY)
    _, after = chunks_of("episodic/2026-11-20.md",
                         DAILY.replace("# 2026-11-20\n", "# 2026-11-20\n- 07:00 early\n"))
    assert {c.id for c in before} < {c.id for c in after}
    assert len(after) == len(before) + 1


def test_hash_is_of_the_embedded_text() -> None:
    _, a = chunks_of("semantic/a.md", "# Same\nshared text\n")
    _, b = chunks_of("semantic/b.md", "# Same\nshared text\n")
    _, c = chunks_of("semantic/c.md", "# Other\nshared text\n")
    assert a[0].hash == b[0].hash != c[0].hash  # identical embedded text reuses a vector
    assert a[0].id != b[0].id  # ids belong to their file


# ---------------------------------------------------------------------------- managed blocks


MANAGED_NOTE = f"""\
# Memory
kept before #keep

{MANAGED_BEGIN}
## Generated
- copied fact #copied
{MANAGED_END}
kept after

```
{MANAGED_BEGIN}
code sample, indexed
{MANAGED_END}
```
"""


def test_managed_blocks_are_not_indexed() -> None:
    note, chunks = chunks_of("MEMORY.md", MANAGED_NOTE)
    check_invariants(note, chunks, COUNT, 256)
    text = "\n".join(c.text for c in chunks)
    assert "copied fact" not in text and "Generated" not in text
    assert "kept before" in text and "kept after" in text
    assert "code sample, indexed" in text  # markers inside code are text
    assert all(c.heading == "Memory" for c in chunks)
    assert note.entries[0].tags == ("keep",)


def test_managed_blocks_in_a_daily_log_are_not_indexed() -> None:
    """Regression: each bullet became its own entry, outside the block, and was indexed."""
    text = (f"- real entry\n{MANAGED_BEGIN}\n- copied #copied\n## Copied heading\n"
            f"{MANAGED_END}\n- b\n")
    note, chunks = chunks_of("episodic/2026-01-02.md", text)
    check_invariants(note, chunks, COUNT, 256)
    assert [c.text for c in chunks] == ["- real entry", "- b"]
    assert all("copied" not in e.tags for e in note.entries)


def test_an_unclosed_begin_marker_hides_only_itself() -> None:
    note, chunks = chunks_of("a.md", f"# T\nbefore\n{MANAGED_BEGIN}\nafter, still mine\n")
    check_invariants(note, chunks, COUNT, 256)
    assert [c.text for c in chunks] == ["before", "after, still mine"]


# ---------------------------------------------------------------------------- size


@pytest.mark.slow
def test_hundred_thousand_lines_chunk_in_bounded_time() -> None:
    text = "# Big\n" + "".join(f"line {i} has a few words in it\n" for i in range(100_000))
    started = time.perf_counter()
    note, chunks = chunks_of("semantic/big.md", text, max_tokens=256, target=200)
    assert time.perf_counter() - started < 20.0
    assert all(COUNT(c.embed_text) <= 256 for c in chunks)
    assert chunks[0].start_line == 2 and chunks[-1].end_line == 100_001


# ---------------------------------------------------------------------------- properties

PATHS = st.sampled_from(["semantic/a.md", "episodic/2026-01-02.md", "x.md", "archive/y z.md"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOC, PATHS, st.integers(8, 64), st.integers(1, 80))
def test_parse_and_chunk_invariants_on_markdownish_text(text: str, path: str, max_tokens: int,
                                                        target: int) -> None:
    note, chunks = chunks_of(path, text, max_tokens=max_tokens, target=target)
    check_invariants(note, chunks, COUNT, max_tokens)
    assert content_chars("".join(c.text for c in chunks)) == body_content(note)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), PATHS, st.integers(8, 64))
def test_parse_and_chunk_never_crash_on_arbitrary_text(text: str, path: str,
                                                       max_tokens: int) -> None:
    note, chunks = chunks_of(path, text, max_tokens=max_tokens, target=max_tokens)
    check_invariants(note, chunks, COUNT, max_tokens)


def test_chunk_ids_do_not_depend_on_the_tmp_path(tmp_path: Path) -> None:
    """Ids are derived from vault-relative paths only, so they survive moving the vault."""
    _, a = chunks_of("semantic/a.md", NOTE)
    assert str(tmp_path) not in "".join(c.id for c in a)
    assert [c.id for c in a] == [c.id for c in chunks_of("semantic/a.md", NOTE)[1]]


@pytest.mark.parametrize("one_line", [True, False])
def test_editing_the_end_of_a_long_paragraph_keeps_earlier_chunks(one_line: bool) -> None:
    """Oversized blocks are split greedily from the start, so appending to a paragraph changes
    only its last chunk(s) — the rest keep their hashes and are not re-embedded."""
    sentences = [f"Sentence {i} says something about topic {i % 7} in several words."
                 for i in range(120)]
    sep = " " if one_line else "\n"
    before = "# Abstract\n\n" + sep.join(sentences) + "\n"
    after = "# Abstract\n\n" + sep.join(sentences) + " And one more closing remark.\n"
    _, old = chunks_of("semantic/a.md", before, max_tokens=64, target=48)
    _, new = chunks_of("semantic/a.md", after, max_tokens=64, target=48)
    assert len(old) > 5
    old_hashes, new_hashes = [c.hash for c in old], [c.hash for c in new]
    changed = [h for h in new_hashes if h not in set(old_hashes)]
    assert len(changed) <= 2
    assert new_hashes[: len(old_hashes) - 1] == old_hashes[:-1]
