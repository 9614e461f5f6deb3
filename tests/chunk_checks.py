"""Checks and generators shared by the chunking tests and the property tests: what must hold
for every chunked note, and random markdown-ish documents to check it on."""

from __future__ import annotations

import hashlib
import re

from hypothesis import strategies as st

from vaultd.blocks import BEGIN as MANAGED_BEGIN
from vaultd.blocks import END as MANAGED_END
from vaultd.chunking import Chunk
from vaultd.notes import Note, fence_mask, heading_of, managed_mask


def content_chars(text: str) -> str:
    return re.sub(r"\s", "", text)


def body_content(note: Note) -> str:
    """Every non-blank body line that is not a heading or vaultd's own output, squeezed."""
    fenced = fence_mask(note.lines, note.body_start - 1)
    managed = managed_mask(note.lines, note.body_start - 1)
    kept = [line for line, f, m in zip(note.lines[note.body_start - 1:], fenced, managed)
            if not m and (f or not heading_of(line))]
    return content_chars("".join(kept))


def check_invariants(note: Note, chunks: list[Chunk], count, max_tokens: int) -> None:
    """What must hold for every note: limits, ranges, ids, hashes, coverage."""
    entries = {e.id: e for e in note.entries}
    assert len({c.id for c in chunks}) == len(chunks)
    for c in chunks:
        assert count(c.embed_text) <= max_tokens, c
        assert c.text.strip(), "a blank chunk"
        entry = entries[c.entry_id]
        assert entry.start_line <= c.start_line <= c.end_line <= entry.end_line
        assert c.hash == hashlib.sha256(c.embed_text.encode()).hexdigest()[:32]
        assert c.embed_text == (f"{c.heading}\n{c.text}" if c.heading else c.text)
    fenced = fence_mask(note.lines, note.body_start - 1)
    managed = managed_mask(note.lines, note.body_start - 1)
    for n in range(note.body_start, len(note.lines) + 1):
        line, i = note.lines[n - 1], n - note.body_start
        if not line.strip() or managed[i] or (not fenced[i] and heading_of(line)):
            continue  # blank, heading and managed lines need not be covered
        assert any(c.start_line <= n <= c.end_line for c in chunks), f"line {n} lost: {line!r}"
    for c in chunks:  # no chunk's range spans vaultd's own output
        assert not any(managed[n - note.body_start] for n in range(c.start_line, c.end_line + 1))


# random markdown-ish documents
WORDS = st.sampled_from(["alpha", "beta", "#tag", "`code`", "日本", "x" * 40, "🎉", "", "a-b"])
TEXT = st.lists(WORDS, max_size=12).map(" ".join)
LINE = st.one_of(
    TEXT,
    st.tuples(st.integers(1, 7), TEXT).map(lambda t: "#" * t[0] + " " + t[1]),
    st.tuples(st.sampled_from(["- ", "* ", "1. ", "  - ", "    ", "\t"]), TEXT).map("".join),
    st.sampled_from(["```", "~~~", "````", "```python", "", "", "---", "...", MANAGED_BEGIN,
                     MANAGED_END, "title: x", "tags: [a, #b", "type: semantic",
                     "created: 2026-02-30", "a: &a [*a]", "? [x]", "<!-- note -->"]),
    st.text(max_size=30),
)
DOC = st.tuples(st.lists(LINE, max_size=40), st.sampled_from(["\n", "\r\n"])).map(
    lambda t: t[1].join(t[0]))
