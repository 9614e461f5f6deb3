"""vaultd's managed blocks: the only part of a user's file (MEMORY.md, a routed config file)
that vaultd writes. Everything outside the markers is the user's and is kept verbatim.

A marker counts only as a line of its own outside fenced code — the rule `notes.managed_mask`
applies when indexing: a sentence that names `<!-- vaultd:begin -->` inline, or a fenced
example of a block, is the user's text.
"""

from __future__ import annotations

BEGIN = "<!-- vaultd:begin -->"
END = "<!-- vaultd:end -->"


def _split(text: str) -> tuple[str, str, str] | None:
    """(before, inside, after) of the first complete block — a BEGIN line, then an END line,
    both outside fences — or None. `before` ends where the BEGIN marker starts, `after` starts
    right after the END marker."""
    from vaultd.notes import fence_mask

    lines = text.split("\n")
    fenced = fence_mask(lines)
    offset, begin = 0, None
    for line, in_fence in zip(lines, fenced):
        if not in_fence:
            if begin is None and line.strip() == BEGIN:
                begin = offset + line.index(BEGIN)
            elif begin is not None and line.strip() == END:
                end = offset + line.index(END)
                inner = text[begin + len(BEGIN):end]
                return text[:begin], inner, text[end + len(END):]
        offset += len(line) + 1
    return None


def block_of(text: str) -> str | None:
    """The managed block's content, or None when the text has none."""
    parts = _split(text)
    return parts[1].strip("\n") if parts else None


def outside_block(text: str) -> str:
    """The text without vaultd's managed block: the user's own part."""
    parts = _split(text)
    return parts[0] + parts[2] if parts else text


def with_block(text: str, lines: list[str]) -> str:
    """`text` with vaultd's managed block holding `lines`; everything outside stays as is. A
    new block goes at the end, after closing a fence the text leaves open (never inside it)."""
    from vaultd.notes import fence_mask

    block = "\n".join([BEGIN, *lines, END])
    parts = _split(text)
    if parts:
        return parts[0] + block + parts[2]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    if text and fence_mask((text + sep + BEGIN).split("\n"))[-1]:
        # the user's last fence never closes: a block added after it would be read as code
        return text + ("" if text.endswith("\n") else "\n") + "```\n\n" + block + "\n"
    return text + sep + block + "\n"
