"""vaultd's managed blocks: the only part of a user's file (MEMORY.md, a routed config file)
that vaultd writes. Everything outside the markers is the user's and is kept verbatim."""

from __future__ import annotations

BEGIN = "<!-- vaultd:begin -->"
END = "<!-- vaultd:end -->"


def _split(text: str) -> tuple[str, str, str] | None:
    """(before, inside, after) of the first complete block, or None."""
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        inside, tail = rest.split(END, 1)
        return head, inside, tail
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
    """`text` with vaultd's managed block holding `lines`; everything outside stays as is."""
    block = "\n".join([BEGIN, *lines, END])
    parts = _split(text)
    if parts:
        return parts[0] + block + parts[2]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"
