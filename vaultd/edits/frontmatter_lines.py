"""Frontmatter edited line by line: the user's other keys, comments and formatting stay as they
were. Text in, text out: this module writes no file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from vaultd.notes import parse

_KEY_RE = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def _dump_value(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=True,
                            width=10**9)
    return str(dumped).strip().removesuffix("...").strip()


def split_frontmatter(text: str) -> tuple[list[str] | None, list[str]]:
    """(frontmatter lines without fences or None, body lines)."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return lines[1:i], lines[i + 1:]
    return None, lines


def set_frontmatter(text: str, updates: dict[str, Any]) -> str:
    """Set (value) or remove (None) top-level frontmatter keys, touching no other line."""
    fm, body = split_frontmatter(text)
    fm = list(fm) if fm is not None else []
    for key, value in updates.items():
        start = next((i for i, line in enumerate(fm)
                      if (m := _KEY_RE.match(line)) and m.group(1) == key), None)
        new = [] if value is None else [f"{key}: {_dump_value(value)}"]
        if start is None:
            fm.extend(new)
            continue
        end = start + 1
        while end < len(fm) and (fm[end].startswith((" ", "\t", "- ")) or not fm[end].strip()):
            end += 1
        fm[start:end] = new
    if not fm and split_frontmatter(text)[0] is None:
        return text
    return "\n".join(["---", *fm, "---", *body])


def get_frontmatter(path: str, text: str) -> dict[str, Any]:
    """The frontmatter as vaultd reads it everywhere (tolerant, JSON-safe)."""
    return parse(path, text).frontmatter
