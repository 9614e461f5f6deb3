"""What an agent's edit of a note means, as text in → text out (pure): a new semantic or
procedural note, or an edit of an existing one — append, prepend, find and replace, replace a
section (the operations basic-memory's `edit_note` offers). Writing the result to disk is
`vaultd.edits`' job (checked, atomic); this module only computes it and refuses ambiguity.
"""

from __future__ import annotations

import re
from typing import Literal

from vaultd.blocks import block_of
from vaultd.edits import set_frontmatter, split_frontmatter
from vaultd.errors import VaultdError
from vaultd.notes import fence_mask, heading_of

Operation = Literal["append", "prepend", "find_replace", "replace_section"]
OPERATIONS: tuple[str, ...] = ("append", "prepend", "find_replace", "replace_section")
NEW_NOTE_TYPES: tuple[str, ...] = ("semantic", "procedural")  # an agent's own notes
MAX_SLUG = 80


class EditError(VaultdError):
    """An edit that cannot be applied as asked (nothing written)."""


def slug(title: str) -> str:
    """A file name for a title: lower case words joined by '-', at most 80 characters."""
    words = re.findall(r"\w+", title.lower())
    name = "-".join(words)[:MAX_SLUG].strip("-")
    if not name:
        raise EditError("the title needs at least one letter or digit (it names the file)")
    return name


def new_note(title: str, content: str, note_type: str, tags: list[str], day: str) -> str:
    """The markdown of a new note: frontmatter (type, created, tags), `# title`, content."""
    if note_type not in NEW_NOTE_TYPES:
        raise EditError(f"type must be one of {', '.join(NEW_NOTE_TYPES)}, not {note_type!r}")
    meta: dict[str, object] = {"type": note_type, "created": day}
    if tags:
        meta["tags"] = [t.lstrip("#") for t in tags if t.strip("# ")]
    head = set_frontmatter("---\n---\n", meta)
    return f"{head.rstrip()}\n# {' '.join(title.split())}\n\n{content.strip()}\n"


def apply_edit(text: str, operation: str, content: str, *, find_text: str | None = None,
               section: str | None = None, expected_replacements: int = 1) -> str:
    """`text` with the edit applied; EditError when the edit is ambiguous or impossible.
    vaultd's managed block (MEMORY.md) is never changed by an agent's edit."""
    if operation == "append":
        new = text + ("" if not text or text.endswith("\n") else "\n") + _line(content)
    elif operation == "prepend":
        new = _prepend(text, content)
    elif operation == "find_replace":
        if not find_text:
            raise EditError("find_replace needs find_text: the exact text to replace")
        found = text.count(find_text)
        if found != expected_replacements:
            raise EditError(f"find_text occurs {found} time(s), expected "
                            f"{expected_replacements}; give more context or set "
                            "expected_replacements")
        new = text.replace(find_text, content)
    elif operation == "replace_section":
        if not section or not section.strip("# "):
            raise EditError("replace_section needs section: the heading of the section")
        new = _replace_section(text, section, content)
    else:
        raise EditError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
    if block_of(new) != block_of(text):
        raise EditError("the edit would change vaultd's managed block (between the "
                        "vaultd:begin and vaultd:end markers), which vaultd rewrites; edit "
                        "outside it")
    return new


def _line(content: str) -> str:
    return content if content.endswith("\n") else content + "\n"


def _prepend(text: str, content: str) -> str:
    """Before the body, after the frontmatter (which must stay the file's first lines)."""
    fm, body = split_frontmatter(text)
    if fm is None:
        return _line(content) + text
    head = "\n".join(["---", *fm, "---"]) + "\n"
    return head + _line(content) + "\n".join(body)


def _replace_section(text: str, section: str, content: str) -> str:
    """The section under the heading `section` (its lines up to the next heading of the same
    or a higher level) replaced by `content`; a new `## section` at the end when there is none.
    Two sections with that heading are ambiguous: refused."""
    want = section.strip().lstrip("#").strip()
    lines = text.split("\n")
    fenced = fence_mask(lines)
    headings = [(i, h) for i, line in enumerate(lines)
                if not fenced[i] and (h := heading_of(line)) is not None]
    found = [(i, level) for i, (level, title) in headings if title == want]
    if not found:
        return text + ("" if not text or text.endswith("\n") else "\n") + \
            f"\n## {want}\n{_line(content)}"
    if len(found) > 1:
        raise EditError(f"{len(found)} sections are headed {want!r}; use find_replace")
    start, level = found[0]
    end = next((i for i, (lvl, _) in headings if i > start and lvl <= level), len(lines))
    tail = lines[end:]
    body = content.strip("\n").split("\n") + ([""] if tail else [])
    out = "\n".join([*lines[:start + 1], *body, *tail])
    return out + "\n" if text.endswith("\n") and not out.endswith("\n") else out
