"""Note → chunks: heading-aware, within the model's token limit, with stable ids and hashes. Pure.

Each chunk lies inside one entry and one heading section. What gets embedded is the chunk's
heading path (`Title > Section > Sub`) on the first line, then its text, so a paragraph under
"Rollback" still knows it is about rollbacks. Sections are split at blank-line blocks (a fenced
code block stays whole), then at lines, then at words, until every chunk's embedded text fits in
`max_tokens` as counted by the model's own tokenizer — nothing is silently truncated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from vaultd.notes import Entry, Note, fence_mask, heading_of

CountTokens = Callable[[str], int]
MANAGED_BEGIN = "<!-- vaultd:begin -->"
MANAGED_END = "<!-- vaultd:end -->"
MAX_HEADING_CHARS = 160  # heading context is a hint; keep it from crowding out the text


@dataclass(frozen=True)
class Chunk:
    id: str
    entry_id: str
    heading: str  # heading path, " > "-joined
    start_line: int  # 1-based, inclusive, in the file
    end_line: int
    text: str
    hash: str  # of embed_text: equal hashes embed to equal vectors

    @property
    def embed_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


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
               target_tokens: int) -> list[Chunk]:
    target = min(target_tokens, max_tokens)
    chunks: list[Chunk] = []
    seen: dict[tuple[str, str], int] = {}
    for entry in note.entries:
        for heading, pieces in _sections(note, entry):
            context_tokens = count_tokens(heading) if heading else 0
            for piece in _pack(pieces, heading, count_tokens, target, max_tokens, context_tokens):
                key = (entry.id, heading)
                occurrence = seen.get(key, 0)
                seen[key] = occurrence + 1
                cid = hashlib.sha1(
                    f"{note.path}\0{entry.id}\0{heading}\0{occurrence}".encode()
                ).hexdigest()[:16]
                chunk = Chunk(id=cid, entry_id=entry.id, heading=heading,
                              start_line=piece.start, end_line=piece.end, text=piece.text,
                              hash="")
                digest = hashlib.sha256(chunk.embed_text.encode()).hexdigest()[:32]
                chunks.append(replace(chunk, hash=digest))
    return chunks


def _sections(note: Note, entry: Entry) -> list[tuple[str, list[_Piece]]]:
    """Split an entry into (heading path, blank-line blocks) per heading section."""
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
    managed = False
    for offset, (line, fenced) in enumerate(zip(entry.lines, mask)):
        n = entry.start_line + offset
        if not fenced and line.strip() in (MANAGED_BEGIN, MANAGED_END):
            end_block()
            managed = line.strip() == MANAGED_BEGIN
            continue
        if managed:
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


def _fit(piece: _Piece, heading: str, count: CountTokens, hard: int) -> list[_Piece]:
    """Split a piece until its embedded text fits `hard` tokens: by lines, then by words."""
    if _embed_tokens(piece, heading, count) <= hard:
        return [piece]
    if len(piece.lines) > 1:
        mid = len(piece.lines) // 2
        left = _Piece(piece.start, piece.start + mid - 1, piece.lines[:mid], 0)
        right = _Piece(piece.start + mid, piece.end, piece.lines[mid:], 0)
        return _fit(left, heading, count, hard) + _fit(right, heading, count, hard)
    words = piece.lines[0].split(" ")
    if len(words) > 1:
        mid = len(words) // 2
        left = _Piece(piece.start, piece.end, [" ".join(words[:mid])], 0)
        right = _Piece(piece.start, piece.end, [" ".join(words[mid:])], 0)
        return _fit(left, heading, count, hard) + _fit(right, heading, count, hard)
    text = piece.lines[0]
    if len(text) <= 1:
        return [piece]  # a single character cannot be split further
    mid = len(text) // 2
    return (_fit(_Piece(piece.start, piece.end, [text[:mid]], 0), heading, count, hard)
            + _fit(_Piece(piece.start, piece.end, [text[mid:]], 0), heading, count, hard))
