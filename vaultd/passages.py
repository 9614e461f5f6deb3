"""A hit's passage: the part of a chunk that answers the query, bounded in characters.

An agent pays for every character it reads. A chunk of a daily log is one entry, short; a chunk
of a long or merged note holds many facts, and only one or two answer a given question. So a
hit's text is its chunk's best-matching whole lines (bullets; the sentences of a paragraph
line that alone is over the bound), in their order, with "…" where lines were left out, within
`limit` characters. The hit's path and line range still point at the whole chunk, and a search
can ask for it (`full`).

Lines are scored by the query's terms as BM25 sees them (the caller passes `fts_terms`), each
weighted by how few of the chunk's lines hold it, so the line with the rare word wins. Matching
is on a light stem (lowercase, accents removed, common English endings cut) standing in for the
index's porter stemmer: a query's "hiking" finds a line's "hike". No vectors: scoring a chunk's
lines against the query vector would embed every line of every hit per query.

Pure and deterministic: text in, text out.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# A hit text's bound by default (`[search] passage_chars`): about a long daily-log entry, so
# an entry comes back whole and a merged note gives its best few facts (bench/RESULTS.md).
PASSAGE_CHARS = 400
ELLIPSIS = "…"
_WORD_RE = re.compile(r"\w+", re.UNICODE)
# a sentence ends at . ! ? followed by space, or at a CJK full stop, ! or ? (its end kept)
_SENTENCE_END = re.compile(r"[.!?]\s+|[。！？]")
# endings cut for matching, longest first; a stem keeps at least three characters
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


@dataclass(frozen=True)
class _Unit:
    """A line of the chunk, or a sentence of a line over the bound."""

    line: int  # the chunk's line it is on
    text: str
    first: bool  # starts its line (else it follows a sentence of the same line)


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """`word` lowercased, accents removed, one common ending cut and a final "e" dropped
    ("hiking", "hikes", "hike" → "hik"). Cached: a search stems every word of its hits, and
    words repeat (uncached it was most of a search's time, bench/RESULTS.md)."""
    word = word.lower()
    if not word.isascii():
        word = "".join(c for c in unicodedata.normalize("NFKD", word)
                       if not unicodedata.combining(c))
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _stems(text: str) -> set[str]:
    return {stem(w) for w in _WORD_RE.findall(text)}


def _matcher(wanted: set[str]) -> Callable[[str], set[str]]:
    """The wanted stems a text holds. In ASCII text a word's stem is a prefix of the word in
    lower case, so only words starting with a wanted stem are stemmed (stemming every word of
    every hit was most of a search's time); other text is stemmed whole."""
    if not wanted:
        return lambda text: set()
    starts = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, wanted), key=len,
                                                     reverse=True)) + r")\w*")

    def held(text: str) -> set[str]:
        if not text.isascii():
            return _stems(text) & wanted
        return {s for w in starts.findall(text.lower()) if (s := stem(w)) in wanted}
    return held


def _sentences(line: str) -> list[str]:
    out, start = [], 0
    for m in _SENTENCE_END.finditer(line):
        out.append(line[start:m.start() + 1])
        start = m.end()
    out.append(line[start:])
    return out


def passage(text: str, terms: Iterable[str], limit: int) -> str:
    """The lines of `text` that best match `terms`, in order, within `limit` characters.

    `text` within the bound comes back as it is. Otherwise lines are taken best first (the
    sum of their matching terms' weights; ties: the earlier line) while they fit, and joined
    in the chunk's order, "…" standing for what was left out (before, between, after). A line
    alone over the bound is split into its sentences; a sentence alone over it is cut around
    its first matching word, "…" at the cut ends. With no term in any line, the chunk's first
    lines (its heading context). CRLF line ends are read as LF; nothing is cut inside a
    character (a combining mark or joiner stays with what it joins)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if limit <= 0 or len(text) <= limit:
        return text
    units = _units(text, limit)
    if not units:
        return _cut(text.strip(), set(), limit)
    wanted = {stem(t) for t in terms if t.strip()}
    held = _matcher(wanted)
    stems = [held(u.text) for u in units]
    weights = {t: math.log(1 + len(units) / df) for t in wanted
               if (df := sum(t in s for s in stems))}
    scores = [sum(weights.get(t, 0.0) for t in s & wanted) for s in stems]
    order = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
    if not order:  # a vector hit with no query word in it: the chunk's opening
        order = list(range(len(units)))
        chosen = _fill(units, order, limit, contiguous=True)
    else:
        chosen = _fill(units, order, limit, contiguous=False)
    if not chosen:  # the best unit alone is over the bound
        return _cut(units[order[0]].text, wanted, limit)
    return _join(units, chosen)


def _units(text: str, limit: int) -> list[_Unit]:
    out: list[_Unit] = []
    for number, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        if len(line) <= limit:
            out.append(_Unit(number, line, True))
            continue
        indent = line[:len(line) - len(line.lstrip())]
        parts = [p for p in _sentences(line.strip()) if p.strip()]
        out.extend(_Unit(number, (indent if k == 0 else "") + p, k == 0)
                   for k, p in enumerate(parts))
    return out


def _fill(units: Sequence[_Unit], order: Sequence[int], limit: int, *,
          contiguous: bool) -> list[int]:
    """Units taken in `order` while the joined passage stays within `limit` (a unit that
    does not fit is passed over, unless `contiguous`: then taking stops)."""
    chosen: list[int] = []
    taken = 0  # the chosen units' own characters: the joined passage is never shorter
    for i in order:
        fits = taken + len(units[i].text) <= limit  # else it cannot fit: no join to know it
        trial = sorted([*chosen, i]) if fits else chosen
        if fits and len(_join(units, trial)) <= limit:
            chosen = trial
            taken += len(units[i].text)
        elif contiguous:
            break
    return chosen


def _join(units: Sequence[_Unit], chosen: Sequence[int]) -> str:
    parts: list[str] = []
    if chosen[0] > 0:
        parts.append(ELLIPSIS + ("\n" if units[chosen[0]].first else " "))
    for n, i in enumerate(chosen):
        if n:
            prev = chosen[n - 1]
            if i == prev + 1:
                parts.append("\n" if units[i].first else " ")
            elif units[i].line == units[prev].line:
                parts.append(" " + ELLIPSIS + " ")
            else:
                parts.append("\n" + ELLIPSIS + "\n" if units[i].first else
                             "\n" + ELLIPSIS + " ")
        parts.append(units[i].text)
    if chosen[-1] < len(units) - 1:
        parts.append((" " if units[chosen[-1] + 1].line == units[chosen[-1]].line else "\n")
                     + ELLIPSIS)
    return "".join(parts)


def _cut(text: str, wanted: set[str], limit: int) -> str:
    """A window of `text` within `limit` characters, "…" at each cut end, around the first
    word that matches `wanted` (else from the start), cut at spaces where there are any."""
    if len(text) <= limit:
        return text
    if limit < 3:
        return ELLIPSIS[:limit]
    at = next((m.start() for m in _WORD_RE.finditer(text) if stem(m.group()) in wanted), 0)
    room = limit - 2  # an ellipsis at each end, at most
    start = max(0, min(at - room // 4, len(text) - room))
    if start > 0:
        space = text.find(" ", start, at) if at > start else -1
        start = space + 1 if space >= 0 else start
        start = _safe(text, start)
    end = min(len(text), start + room + (0 if start else 1))
    if end < len(text):
        space = text.rfind(" ", start + 1, end + 1)
        end = space if space > start else _safe(text, end)
    head = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(text) else ""
    return head + text[start:end].strip() + tail


def _safe(text: str, i: int) -> int:
    """`i` moved back so it does not split a character from a combining mark, a variation
    selector or a zero-width joiner that belongs to it (emoji sequences, accents)."""
    while 0 < i < len(text) and (unicodedata.combining(text[i]) or text[i] in "\u200d\ufe0f\ufe0e"
                                 or text[i - 1] == "\u200d"):
        i -= 1
    return i
