"""Parse a vault file into a Note: type, frontmatter, body, entries with line ranges. Pure.

A note's entries are the unit the lifecycle works on. A daily log (`YYYY-MM-DD.md`) holds many:
each `##` section is one, and so is each top-level bullet block (OpenClaw style) outside
sections. Any other note is a single entry.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import frontmatter
import yaml

NOTE_TYPES = ("episodic", "semantic", "procedural")
DAILY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.md$")
HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
FENCE_RE = re.compile(r"^[ \t]{0,3}(```|~~~)")
BULLET_RE = re.compile(r"^([-*+]|\d{1,9}[.)])[ \t]+\S")
HASHTAG_RE = re.compile(r"(?<![\w/#&])#([A-Za-z][\w/-]*)")
FRONTMATTER_NODE_LIMIT = 10_000


@dataclass(frozen=True)
class Skip:
    """A file that is not indexed, and the one-line reason why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Entry:
    id: str
    ordinal: int
    heading: str
    start_line: int  # 1-based, inclusive, in the file
    end_line: int
    lines: tuple[str, ...]
    tags: tuple[str, ...]
    date: str | None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Note:
    path: str  # vault-relative, posix
    type: str
    title: str
    tags: tuple[str, ...]
    created: str | None
    frontmatter: dict[str, Any]
    lines: list[str]  # the whole file, line by line (line n is lines[n - 1])
    body_start: int  # 1-based line of the first body line
    is_daily: bool
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def decode(path: str, raw: bytes, max_bytes: int) -> str | Skip:
    """Bytes to text, or a Skip naming the problem. UTF-8 (BOM optional) and BOM-marked UTF-16."""
    if len(raw) > max_bytes:
        return Skip(path, f"too large ({len(raw):,} bytes > limit {max_bytes:,}; "
                          "raise [index] max_file_bytes to include it)")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            return Skip(path, f"invalid UTF-16 at byte {exc.start}")
    else:
        if b"\x00" in raw[:8192]:
            return Skip(path, "binary file (NUL bytes), not markdown text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return Skip(path, f"not valid UTF-8 (byte {exc.start}, line {line}); "
                              "re-save the file as UTF-8")
    if not text.strip():
        return Skip(path, "empty file")
    return text


def parse(path: str, text: str) -> Note:
    """Parse decoded text into a Note. Never raises on content: problems become warnings."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    warnings: list[str] = []
    meta, body_start = _frontmatter(path, lines, warnings)

    rel = PurePosixPath(path)
    daily = DAILY_RE.match(rel.name)
    is_daily = daily is not None
    top = rel.parts[0] if len(rel.parts) > 1 else ""
    note_type = str(meta.get("type") or "").strip().lower()
    if not note_type:
        note_type = top if top in NOTE_TYPES else ("episodic" if is_daily else "note")

    title = str(meta.get("title") or "").strip() or _first_h1(lines, body_start) or rel.stem
    created = _as_date(meta.get("created"))
    if created is None and daily:
        created = f"{daily.group(1)}-{daily.group(2)}-{daily.group(3)}"
    tags = _frontmatter_tags(meta.get("tags"))

    note = Note(path=path, type=note_type, title=title, tags=tags, created=created,
                frontmatter=meta, lines=lines, body_start=body_start, is_daily=is_daily,
                warnings=warnings)
    note.entries = _daily_entries(note) if is_daily else _whole_note_entry(note)
    return note


# ---------------------------------------------------------------------------- frontmatter


def _frontmatter(path: str, lines: list[str], warnings: list[str]) -> tuple[dict[str, Any], int]:
    """Return (json-safe metadata, 1-based first body line)."""
    if not lines or lines[0].strip() != "---":
        return {}, 1
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        warnings.append(f"{path}:1: frontmatter opened with '---' but never closed; "
                        "indexed as body text")
        return {}, 1
    block = "\n".join(lines[1:end])
    try:
        loaded = frontmatter.YAMLHandler().load(block) if block.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        warnings.append(f"{path}:{line}: broken YAML frontmatter ({problem}); "
                        "indexed as body text")
        return {}, 1
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        warnings.append(f"{path}:2: frontmatter is a {type(loaded).__name__}, not a mapping; "
                        "its keys are ignored")
        return {}, end + 2
    budget = [FRONTMATTER_NODE_LIMIT]
    try:
        meta = {str(k): _json_safe(v, budget) for k, v in loaded.items()}
    except _TooBig:
        warnings.append(f"{path}:2: frontmatter expands to more than {FRONTMATTER_NODE_LIMIT:,} "
                        "values (YAML aliases?); its keys are ignored")
        return {}, end + 2
    return meta, end + 2


class _TooBig(Exception):
    pass


def _json_safe(value: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(value, dict):
        return {str(k): _json_safe(v, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v, budget) for v in value]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _as_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = re.match(r"^\d{4}-\d{2}-\d{2}", text)
    return match.group(0) if match else None


def _frontmatter_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    tags = (str(t).strip().lstrip("#") for t in items if t is not None)
    return tuple(dict.fromkeys(t for t in tags if t))


# ---------------------------------------------------------------------------- body structure


def heading_of(line: str) -> tuple[int, str] | None:
    match = HEADING_RE.match(line)
    return (len(match.group(1)), match.group(2)) if match else None


def fence_mask(lines: list[str], start: int = 0) -> list[bool]:
    """For each line from `start`: True when it lies inside (or opens/closes) a fenced block."""
    mask, fence = [], None
    for line in lines[start:]:
        match = FENCE_RE.match(line)
        if fence is None and match:
            fence = match.group(1)
            mask.append(True)
        elif fence is not None:
            mask.append(True)
            if match and match.group(1) == fence:
                fence = None
        else:
            mask.append(False)
    return mask


def _first_h1(lines: list[str], body_start: int) -> str | None:
    for line, fenced in zip(lines[body_start - 1:], fence_mask(lines, body_start - 1)):
        heading = None if fenced else heading_of(line)
        if heading and heading[0] == 1:
            return heading[1]
    return None


def hashtags(lines: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for line, fenced in zip(lines, fence_mask(list(lines))):
        if fenced or heading_of(line):
            continue
        for tag in HASHTAG_RE.findall(re.sub(r"`[^`]*`", "", line)):
            found[tag] = None
    return tuple(found)


def _entry(note: Note, ordinal: int, heading: str, start: int, end: int,
           seen: dict[str, int]) -> Entry | None:
    """Build an entry over file lines start..end (1-based, inclusive), trailing blanks trimmed."""
    while end >= start and not note.lines[end - 1].strip():
        end -= 1
    if end < start:
        return None
    lines = tuple(note.lines[start - 1:end])
    key = heading or lines[0].strip()
    occurrence = seen.get(key, 0)
    seen[key] = occurrence + 1
    digest = hashlib.sha1(f"{note.path}\0{key}\0{occurrence}".encode()).hexdigest()[:12]
    tags = tuple(dict.fromkeys(note.tags + hashtags(lines)))
    return Entry(id=digest, ordinal=ordinal, heading=heading, start_line=start, end_line=end,
                 lines=lines, tags=tags, date=note.created)


def _whole_note_entry(note: Note) -> list[Entry]:
    entry = _entry(note, 0, note.title, note.body_start, len(note.lines), {})
    return [entry] if entry else []


def _daily_entries(note: Note) -> list[Entry]:
    """`##` sections are entries; outside them, each top-level bullet or paragraph block is."""
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    start0 = note.body_start
    fenced = fence_mask(note.lines, start0 - 1)
    spans: list[tuple[str, int, int]] = []  # heading, start, end (1-based)
    section: tuple[str, int] | None = None
    block: int | None = None
    prev_blank = True

    def close_block(end: int) -> None:
        nonlocal block
        if block is not None:
            spans.append(("", block, end))
            block = None

    for offset, line in enumerate(note.lines[start0 - 1:]):
        n = start0 + offset
        heading = None if fenced[offset] else heading_of(line)
        if heading and heading[0] <= 2:
            close_block(n - 1)
            if section:
                spans.append((section[0], section[1], n - 1))
            section = (heading[1], n) if heading[0] == 2 else None
            prev_blank = False
            continue
        if section is None and not fenced[offset]:
            blank = not line.strip()
            indented = line[:1] in (" ", "\t")
            if BULLET_RE.match(line) or (not blank and not indented and prev_blank) or heading:
                close_block(n - 1)
                block = n
            prev_blank = blank
        elif section is None:
            if block is None:
                block = n
            prev_blank = False
    end = len(note.lines)
    close_block(end)
    if section:
        spans.append((section[0], section[1], end))
    for heading, start, stop in sorted(spans, key=lambda s: s[1]):
        entry = _entry(note, len(entries), heading, start, stop, seen)
        if entry:
            entries.append(entry)
    return entries
