"""Note → chunks: heading-aware, within the model's token limit, with stable ids and hashes. Pure.

Each chunk lies inside one entry and one heading section. What gets embedded is the chunk's
heading path (`Title > Section > Sub`) on the first line, then its text, so a paragraph under
"Rollback" still knows it is about rollbacks. Sections are split at blank-line blocks (a fenced
code block stays whole), then at lines, then at blanks, until every chunk's embedded text fits in
`max_tokens` as counted by the model's own tokenizer — nothing is silently truncated.

A note vaultd writes as a list of facts — a merged note (`consolidation:`) or one the
heartbeat extracted (`extracted_from:`): `# Topic`, then one bullet per fact — is chunked one
fact per chunk, each as its daily log had it (`_as_fact`): a question about one fact finds that
fact at a fact's length, not the whole note (bench/RESULTS.md, issue 28 point 2). Which notes
are fact lists is read from the frontmatter unverified: a note that claims it only changes how
finely it is cut, never what it is trusted with.

A short chunk — a chat turn, a one-line log entry ("Yeah, that was amazing!") — means little
alone, so with a `Context` it is embedded with its neighbours too: the chunks before (and after)
it under the same heading path of the same note, cut to a few dozen tokens each. Only the text
the model is given (and so the content hash) gains them: a hit still shows and points at the
chunk's own text and lines. A neighbour's edit changes that text, so it re-embeds the chunk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from vaultd.errors import ConfigError
from vaultd.notes import PROVENANCE_RE, Entry, Note, fence_mask, heading_of, managed_mask

CountTokens = Callable[[str], int]
MAX_HEADING_CHARS = 160  # heading context is a hint; keep it from crowding out the text
SHORT_TOKENS = 64  # a chunk this short (its own text, in tokens) gets its neighbours
NEIGHBOUR_TOKENS = 64  # each neighbour is cut to this: context, not content


@dataclass(frozen=True)
class Context:
    """How many neighbouring chunks a short chunk's embedded text takes, before and after it.
    `key` names the policy: the index records it, and a change re-reads every file (a vector
    made under another policy is never kept beside the new ones)."""
    before: int = 0
    after: int = 0
    short_tokens: int = SHORT_TOKENS
    neighbour_tokens: int = NEIGHBOUR_TOKENS

    @property
    def key(self) -> str:
        if not (self.before or self.after):
            return "none"
        return (f"neighbours {self.before}/{self.after}, short {self.short_tokens}, "
                f"cut {self.neighbour_tokens}")


# The policies `[index] context` offers: the ones that paid on locomo-dev (bench/RESULTS.md,
# "Context for short chunks"); the turn after, or both sides, did not.
CONTEXTS = {"none": Context(), "previous": Context(before=1)}
FACT_LIST_KEYS = ("consolidation", "extracted_from")  # frontmatter of the notes in that format
BULLET_RE = re.compile(r"^[-*+]\s")  # a top-level bullet starts a fact; indented lines continue it


# The cutting rules, named: recorded in the index beside the context policy, so an index whose
# chunks were cut by older rules is re-read once (vectors of unchanged chunks are reused).
RULES = "fact lists by fact"


def chunking_key(context: Context) -> str:
    """What the index records of how its chunks were made: the context policy and the rules."""
    return f"{context.key}; {RULES}"


def context_named(name: str) -> Context:
    """The policy the setting `[index] context` names."""
    try:
        return CONTEXTS[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"[index] context: {name!r} is not one of "
                          f"{', '.join(CONTEXTS)}") from None


@dataclass(frozen=True)
class Chunk:
    id: str
    entry_id: str
    heading: str  # heading path, " > "-joined
    start_line: int  # 1-based, inclusive, in the file
    end_line: int
    text: str
    hash: str  # of embed_text: equal hashes embed to equal vectors
    context: str = ""  # the whole embedded text when it is not heading + text, else ""
    date: str | None = None  # the fact's own date, in a fact list; else its entry's

    @property
    def embed_text(self) -> str:
        return self.context or embed_text(self.heading, self.text)


def embed_text(heading: str, text: str) -> str:
    """What the model embeds for a chunk, and what its content hash is of: the heading path as
    context, then the text (the indexer rebuilds it from the stored chunk to embed it later)."""
    return f"{heading}\n{text}" if heading else text


@dataclass
class _Piece:
    start: int
    end: int
    lines: list[str]
    tokens: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def chunk_note(note: Note, count_tokens: CountTokens, max_tokens: int,
               target_tokens: int, context: Context = CONTEXTS["none"]) -> list[Chunk]:
    target = min(target_tokens, max_tokens)
    chunks: list[Chunk] = []
    seen: dict[tuple[str, str], int] = {}
    managed = [False] * (note.body_start - 1) + managed_mask(note.lines, note.body_start - 1)
    facts = is_fact_list(note)
    for entry in note.entries:
        for full_heading, pieces in _sections(note, entry, managed):
            # The heading is context, not content: shorten it rather than crowd out the text.
            heading = _fit_heading(full_heading, count_tokens, max_tokens)
            context_tokens = count_tokens(heading) if heading else 0
            if facts:
                packed = [part for piece in pieces for item in _facts(piece)
                          for part in _fit(item, heading, count_tokens, max_tokens)]
            else:
                packed = _pack(pieces, heading, count_tokens, target, max_tokens,
                               context_tokens)
            for piece in packed:
                key = (entry.id, full_heading)
                occurrence = seen.get(key, 0)
                seen[key] = occurrence + 1
                cid = hashlib.sha1(
                    f"{note.path}\0{entry.id}\0{full_heading}\0{occurrence}".encode()
                ).hexdigest()[:16]
                chunk = Chunk(id=cid, entry_id=entry.id, heading=heading,
                              start_line=piece.start, end_line=piece.end, text=piece.text,
                              hash="")
                if facts:
                    chunk = _as_fact(chunk)
                chunks.append(replace(chunk, hash=_digest(chunk.embed_text)))
    if context.before or context.after:
        chunks = _with_context(chunks, context, count_tokens, max_tokens)
    return chunks


def is_fact_list(note: Note) -> bool:
    """A note in the fact-list format vaultd writes (see the module's docstring)."""
    return any(note.frontmatter.get(key) for key in FACT_LIST_KEYS)


def _as_fact(chunk: Chunk) -> Chunk:
    """A fact of a fact list as its daily log had it: its own words, without the
    ` — [date](link)` that says where it came from (a link costs a reader ~50 characters and
    adds words no question has), under its date as its heading, embedded so — the very text,
    hash and vector of a daily-log bullet. The note's topic is not repeated in each fact:
    in the heading (which BM25 reads too) it lifted every fact of a topic for the topic's
    words, crowding a list with one theme (bench/RESULTS.md, issue 28); a hit's path names it."""
    found = PROVENANCE_RE.search(chunk.text)
    text = PROVENANCE_RE.sub("", chunk.text)
    date = found.group(1) if found else None
    return replace(chunk, heading=date or chunk.heading, text=text, date=date)


def _facts(piece: _Piece) -> list[_Piece]:
    """A block cut at its top-level bullets: each fact with its continuation lines. Lines
    before the first bullet (a paragraph) stay one piece."""
    out: list[_Piece] = []
    for offset, line in enumerate(piece.lines):
        n = piece.start + offset
        if out and not BULLET_RE.match(line):
            last = out[-1]
            out[-1] = _Piece(last.start, n, last.lines + [line], 0)
        else:
            out.append(_Piece(n, n, [line], 0))
    return out


def _digest(embedded: str) -> str:
    """A chunk's content hash: of the text the model is given, so equal hashes embed alike."""
    return hashlib.sha256(embedded.encode()).hexdigest()[:32]


def _with_context(chunks: list[Chunk], context: Context, count: CountTokens,
                  max_tokens: int) -> list[Chunk]:
    """Short chunks with their neighbours under the same heading path (a neighbour is the
    chunk's next in file order, so never across a section or a managed block's gap)."""
    out: list[Chunk] = []
    for i, chunk in enumerate(chunks):
        # every word is at least one token: most long chunks are known long without counting
        if (len(chunk.text.split()) > context.short_tokens
                or count(chunk.text) > context.short_tokens):
            out.append(chunk)
            continue
        before = _run(chunks, i, -1, context.before)
        after = _run(chunks, i, +1, context.after)
        parts_before = [p for c in reversed(before)
                        if (p := _cut(c.text, context.neighbour_tokens, count, keep_end=True))]
        parts_after = [p for c in after
                       if (p := _cut(c.text, context.neighbour_tokens, count, keep_end=False))]
        text = _joined(chunk, parts_before, parts_after)
        # the farthest neighbour goes first, until the whole fits the model (never the text)
        while (parts_before or parts_after) and count(text) > max_tokens:
            if len(parts_after) >= len(parts_before):
                parts_after.pop()
            else:
                parts_before.pop(0)
            text = _joined(chunk, parts_before, parts_after)
        if not (parts_before or parts_after):
            out.append(chunk)
            continue
        out.append(replace(chunk, context=text, hash=_digest(text)))
    return out


def _joined(chunk: Chunk, before: list[str], after: list[str]) -> str:
    return "\n".join(([chunk.heading] if chunk.heading else []) + before + [chunk.text] + after)


def _run(chunks: list[Chunk], i: int, step: int, n: int) -> list[Chunk]:
    """Up to `n` chunks next to `chunks[i]` going `step`, nearest first, under its heading."""
    found: list[Chunk] = []
    j = i + step
    while len(found) < n and 0 <= j < len(chunks) and chunks[j].heading == chunks[i].heading:
        found.append(chunks[j])
        j += step
    return found


def _cut(text: str, budget: int, count: CountTokens, *, keep_end: bool) -> str:
    """`text`, or as many of its words at the end (`keep_end`) or the start as fit `budget`
    tokens: the words nearest the chunk it is context for."""
    words = text.split()
    if len(words) > budget:  # every word is at least one token: the rest cannot fit
        words = words[-budget:] if keep_end else words[:budget]
    if count(" ".join(words)) <= budget:
        return " ".join(words)
    lo, hi = 0, len(words)  # the most words that fit lies in [lo, hi)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        part = words[-mid:] if keep_end else words[:mid]
        if count(" ".join(part)) <= budget:
            lo = mid
        else:
            hi = mid
    part = words[-lo:] if keep_end and lo else words[:lo]
    return " ".join(part)


def _fit_heading(heading: str, count: CountTokens, hard: int) -> str:
    """`heading`, or its longest prefix (marked "…") that takes at most half of `hard`."""
    budget = hard // 2
    if not heading or count(heading) <= budget:
        return heading
    lo, hi = 0, len(heading) - 1  # the longest prefix length that fits lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(heading[:mid].rstrip() + "…") <= budget:
            lo = mid
        else:
            hi = mid - 1
    short = heading[:lo].rstrip()
    return short + "…" if short and count(short + "…") <= budget else ""


def _sections(note: Note, entry: Entry, managed: list[bool]) -> list[tuple[str, list[_Piece]]]:
    """Split an entry into (heading path, blank-line blocks) per heading section. `managed`
    marks vaultd's own output by file line (index n - 1); it is skipped."""
    root = [note.title] if note.title else []
    stack: list[tuple[int, str]] = []
    sections: list[tuple[str, list[_Piece]]] = []
    blocks: list[_Piece] = []
    block: list[tuple[int, str]] = []

    def path() -> str:
        names = root + [name for _, name in stack]
        if entry.heading and entry.heading not in names:
            names.append(entry.heading)
        joined = " > ".join(dict.fromkeys(n for n in names if n))
        return joined if len(joined) <= MAX_HEADING_CHARS else joined[: MAX_HEADING_CHARS - 1] + "…"

    def end_block() -> None:
        if block:
            blocks.append(_Piece(block[0][0], block[-1][0], [t for _, t in block], 0))
            block.clear()

    def end_section() -> None:
        end_block()
        if blocks:
            sections.append((path(), list(blocks)))
            blocks.clear()

    mask = fence_mask(list(entry.lines))
    for offset, (line, fenced) in enumerate(zip(entry.lines, mask)):
        n = entry.start_line + offset
        if managed[n - 1]:
            end_section()  # no chunk spans a managed block
            continue  # vaultd's own output: its sources are indexed, not the copy
        heading = None if fenced else heading_of(line)
        if heading:
            end_section()
            level, name = heading
            if name == note.title and level == 1:
                stack.clear()
                continue
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, name))
            continue
        if not line.strip() and not fenced:
            end_block()
            continue
        block.append((n, line))
    end_section()
    return sections


def _pack(pieces: list[_Piece], heading: str, count: CountTokens, target: int, hard: int,
          context: int) -> list[_Piece]:
    """Greedily join blocks up to `target` tokens; split any that exceed `hard`."""
    for piece in pieces:
        piece.tokens = count(piece.text)
    out: list[_Piece] = []
    current: _Piece | None = None
    for piece in pieces:
        if current and current.tokens + piece.tokens + context <= target:
            current = _Piece(current.start, piece.end, current.lines + [""] + piece.lines,
                             current.tokens + piece.tokens)
            continue
        if current:
            out.append(current)
        current = piece
    if current:
        out.append(current)
    fitted: list[_Piece] = []
    for piece in out:
        fitted.extend(_fit(piece, heading, count, hard))
    return fitted


def _embed_tokens(piece: _Piece, heading: str, count: CountTokens) -> int:
    return count(f"{heading}\n{piece.text}" if heading else piece.text)


def _fits(lines: list[str], heading: str, count: CountTokens, hard: int) -> bool:
    return _embed_tokens(_Piece(0, 0, lines, 0), heading, count) <= hard


def _greedy_groups(parts: list[str], heading: str, count: CountTokens, hard: int) -> list[int]:
    """Start indexes of groups packed greedily from the start by estimated token counts (the
    parts' own counts summed, special tokens once). Each part is counted once, so this stays
    linear however long the input; the caller checks every group exactly."""
    base = count("")
    used0 = base + (max(count(heading) - base, 0) if heading else 0)
    starts, used = [0], used0
    for i, part in enumerate(parts):
        t = max(count(part) - base, 0)
        if i > starts[-1] and used + t > hard:
            starts.append(i)
            used = used0
        used += t
    return starts


def _fit(piece: _Piece, heading: str, count: CountTokens, hard: int) -> list[_Piece]:
    """Split a piece until each part's embedded text fits `hard` tokens: lines packed greedily
    from the start, then words, then characters. Greedy from the start means an edit near the
    end of a long paragraph leaves the earlier parts (and their vectors) as they were. Blank
    parts are dropped, not made into chunks."""
    if not piece.text.strip():
        return []
    if len(piece.lines) == 1:
        return _fit_line(piece, heading, count, hard)
    if len(piece.lines) <= 4 * hard and _fits(piece.lines, heading, count, hard):
        return [piece]
    starts = _greedy_groups(piece.lines, heading, count, hard) + [len(piece.lines)]
    out: list[_Piece] = []
    for a, b in zip(starts, starts[1:]):
        out.extend(_fit_group(_Piece(piece.start + a, piece.start + b - 1, piece.lines[a:b], 0),
                              heading, count, hard))
    return out


def _fit_group(piece: _Piece, heading: str, count: CountTokens, hard: int) -> list[_Piece]:
    if not piece.text.strip():
        return []
    if _fits(piece.lines, heading, count, hard):
        return [piece]
    if len(piece.lines) == 1:
        return _fit_line(piece, heading, count, hard)
    mid = len(piece.lines) // 2  # the estimate was off (rare): halve
    return (_fit_group(_Piece(piece.start, piece.start + mid - 1, piece.lines[:mid], 0),
                       heading, count, hard)
            + _fit_group(_Piece(piece.start + mid, piece.end, piece.lines[mid:], 0),
                         heading, count, hard))


def _fit_line(piece: _Piece, heading: str, count: CountTokens, hard: int) -> list[_Piece]:
    text = piece.lines[0].strip()
    if not text:
        return []
    if len(text) <= 32 * hard and _fits([text], heading, count, hard):
        return [_Piece(piece.start, piece.end, [text], 0)]
    words = text.split(" ")
    if len(words) == 1:
        return [_Piece(piece.start, piece.end, [part], 0)
                for part in _cut_chars(text, heading, count, hard)]
    starts = _greedy_groups(words, heading, count, hard) + [len(words)]
    out: list[_Piece] = []
    for a, b in zip(starts, starts[1:]):
        group = " ".join(words[a:b]).strip()
        if not group:
            continue
        if _fits([group], heading, count, hard) or b - a == 1:
            if b - a == 1 and not _fits([group], heading, count, hard):
                out.extend(_Piece(piece.start, piece.end, [part], 0)
                           for part in _cut_chars(group, heading, count, hard))
            else:
                out.append(_Piece(piece.start, piece.end, [group], 0))
        else:
            out.extend(_fit_line(_Piece(piece.start, piece.end, [group], 0), heading, count,
                                 hard))
    return out


def _cut_chars(text: str, heading: str, count: CountTokens, hard: int) -> list[str]:
    """A single overlong "word": the longest fitting prefixes, one after another."""
    parts: list[str] = []
    rest = text
    while rest:
        if len(rest) <= 32 * hard and _fits([rest], heading, count, hard):
            parts.append(rest)
            break
        lo, hi = 0, min(len(rest) - 1, 32 * hard)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _fits([rest[:mid]], heading, count, hard):
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            parts.append(rest[0])  # one character that alone exceeds the limit
            lo = 1
        else:
            parts.append(rest[:lo])
        rest = rest[lo:]
    return [p for p in parts if p.strip()]
