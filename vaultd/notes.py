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

import yaml

from vaultd.blocks import BEGIN, markers

NOTE_TYPES = ("episodic", "semantic", "procedural")
DAILY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.md$")
HEADING_RE = re.compile(r"^(#{1,6})(?:[ \t]+|$)")
FENCE_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$")
BULLET_RE = re.compile(r"^([-*+]|\d{1,9}[.)])[ \t]+\S")
HASHTAG_RE = re.compile(r"(?<![\w/#&])#([A-Za-z][\w/-]*)")
FRONTMATTER_NODE_LIMIT = 10_000
FRONTMATTER_DEPTH_LIMIT = 50
FRONTMATTER_MAX_CHARS = 64_000  # bounds YAML parse time; longer blocks are read as body text
# A daily-log entry's heading starts with its time ("09:14 — Flaky test", "- 09:14 …"): what
# the entry is about is the rest.
# The provenance closing a fact in a note vaultd writes (`vaultd.lifecycle.entries.provenance`):
# ` — [2026-11-18](../archive/episodic/2026-11-18.md)`, or several sources for a fact said twice
# (` — [2026-11-18](…), [2026-11-25](…)`); group 1 is the first date.
PROVENANCE_RE = re.compile(r"[ \t]+[—–-][ \t]+\[(\d{4}-\d{2}-\d{2})\]\([^)]*\)"
                           r"(?:,[ \t]*\[\d{4}-\d{2}-\d{2}\]\([^)]*\))*[ \t]*$", re.M)
TIME_PREFIX_RE = re.compile(r"^(?:[-*+]\s+)?\d{1,2}:\d{2}\s*[—-]?\s*")


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
    key: str = ""  # heading, else first line: what durable per-entry state is keyed by

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def hash(self) -> str:
        return entry_hash(self.text)


def entry_hash(text: str) -> str:
    """An entry's content hash: what the index stores and what a lifecycle plan and crash
    recovery check an entry against before they move it (both must compute it alike)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_title(key: str) -> str:
    """An entry key without its leading time: "09:14 — Flaky test" → "Flaky test"."""
    return TIME_PREFIX_RE.sub("", key).strip()


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


# UTF-32 first: its little-endian BOM starts with UTF-16's.
# Byte-order marks and the codec each stands for (UTF-32's before UTF-16's: they share a
# prefix). The indexer reads by them, and vaultd's writes write back by them.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF8, "utf-8"))


def decode(path: str, raw: bytes, max_bytes: int) -> str | Skip:
    """Bytes to text, or a Skip naming the problem. UTF-8 (BOM optional), BOM-marked UTF-16/32."""
    if len(raw) > max_bytes:
        return Skip(path, f"too large ({len(raw):,} bytes > limit {max_bytes:,}; "
                          "raise [index] max_file_bytes to include it)")
    mark, bom = next(((m, c) for m, c in BOMS if raw.startswith(m) and c != "utf-8"),
                     (b"", None))
    if bom is not None:
        try:
            text = raw[len(mark):].decode(bom)
        except UnicodeDecodeError as exc:
            return Skip(path, f"invalid {bom.upper()} at byte {exc.start + len(mark)}")
        if "\x00" in text:
            return Skip(path, "binary file (NUL characters), not markdown text")
    else:
        nul = raw.find(b"\x00")
        if nul >= 0:
            return Skip(path, f"binary file (NUL byte at offset {nul:,}), not markdown text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return Skip(path, f"not valid UTF-8 (byte {exc.start}, line {line}); "
                              "re-save the file as UTF-8")
    if not text.strip():
        return Skip(path, "empty file")
    return text


def shown(path: str) -> str:
    """A path as it appears in a one-line message: control characters (a newline in a file
    name) are escaped, e.g. `a\\nb.md`."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in path)


def parse(path: str, text: str) -> Note:
    """Parse decoded text into a Note. Never raises on content: problems become warnings."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    warnings: list[str] = []
    label = shown(path)  # warnings are one line even when the name holds a newline
    meta, body_start = _frontmatter(label, lines, warnings)

    rel = PurePosixPath(path)
    daily = DAILY_RE.match(rel.name)
    is_daily = daily is not None
    top = rel.parts[0] if len(rel.parts) > 1 else ""
    note_type = _scalar(label, meta, "type", warnings).lower()
    if not note_type:
        note_type = top if top in NOTE_TYPES else ("episodic" if is_daily else "note")

    title = (_scalar(label, meta, "title", warnings) or _first_h1(lines, body_start)
             or rel.stem)
    created = _as_date(_scalar(label, meta, "created", warnings))
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
    """Return (json-safe metadata, 1-based first body line). Never raises: a block that cannot
    be read leaves the file to be indexed as body text, with a warning naming file and line.
    Split here and loaded with `_Loader` rather than python-frontmatter, which strips the text
    (line numbers) and raises on broken YAML: docs/architecture.md, "Frontmatter"."""
    if not lines or lines[0].strip() != "---":
        return {}, 1
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        warnings.append(f"{path}:1: frontmatter opened with '---' but never closed; "
                        "indexed as body text")
        return {}, 1
    block = "\n".join(lines[1:end])
    if len(block) > FRONTMATTER_MAX_CHARS:
        warnings.append(f"{path}:1: frontmatter is longer than {FRONTMATTER_MAX_CHARS:,} "
                        "characters; indexed as body text")
        return {}, 1
    try:
        loaded = yaml.load(block, Loader=_Loader) if block.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        warnings.append(f"{path}:{line}: broken YAML frontmatter ({problem}); "
                        "indexed as body text")
        return {}, 1
    except Exception as exc:  # any other YAML surprise must not stop the run either
        warnings.append(f"{path}:2: unreadable YAML frontmatter ({type(exc).__name__}: "
                        f"{exc}); indexed as body text")
        return {}, 1
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        warnings.append(f"{path}:2: frontmatter is a {type(loaded).__name__}, not a mapping; "
                        "its keys are ignored")
        return {}, end + 2
    budget = [FRONTMATTER_NODE_LIMIT]
    try:
        meta = {_key(k): _json_safe(v, budget, 1) for k, v in loaded.items()}
    except _TooBig:
        warnings.append(f"{path}:2: frontmatter expands to more than {FRONTMATTER_NODE_LIMIT:,} "
                        f"values or {FRONTMATTER_DEPTH_LIMIT} levels (YAML aliases?); "
                        "its keys are ignored")
        return {}, end + 2
    return meta, end + 2


class _Loader(yaml.SafeLoader):
    """SafeLoader in pure Python (libyaml's composer recurses in C and crashes the process on
    deeply nested input), with a nesting limit and invalid timestamps kept as text."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > FRONTMATTER_DEPTH_LIMIT:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {FRONTMATTER_DEPTH_LIMIT} levels",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # A list or mapping as a key (`[1, 2]: x`) is valid YAML but unhashable in Python:
        # keep it as the text the user wrote instead of dropping the whole frontmatter.
        if isinstance(node, yaml.MappingNode):
            node.value = [(k if isinstance(k, yaml.ScalarNode) else yaml.ScalarNode(
                "tag:yaml.org,2002:str", _source(k), k.start_mark, k.end_mark), v)
                for k, v in node.value]
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):  # e.g. 2026-02-30: keep what the user wrote
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


class _TooBig(Exception):
    pass


def _source(node: Any) -> str:
    """The YAML text a node was read from (bounded: frontmatter is at most 64,000 chars)."""
    start, end = node.start_mark, node.end_mark
    if start is None or end is None or start.buffer is None:
        return str(node.tag)
    return " ".join(start.buffer[start.pointer:end.pointer].split())


def _key(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (dt.date, dt.datetime, dt.time)):
        return key.isoformat()
    return str(key)


def _json_safe(value: Any, budget: list[int], depth: int) -> Any:
    """A JSON-safe copy; raises _TooBig past the node budget or depth (alias bombs and
    self-referencing aliases are shared or cyclic objects, so both limits are needed)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > FRONTMATTER_DEPTH_LIMIT:
        raise _TooBig
    if isinstance(value, dict):
        return {_key(k): _json_safe(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v, budget, depth + 1) for v in value]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # NaN and infinities are not JSON
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _scalar(path: str, meta: dict[str, Any], key: str, warnings: list[str]) -> str:
    """A frontmatter value that must be text (type, title, created): '' when absent or when
    it is a list or mapping (with a warning)."""
    value = meta.get(key)
    if value is None or value == "":
        return ""
    if isinstance(value, (dict, list)):
        kind = "mapping" if isinstance(value, dict) else "list"
        warnings.append(f"{path}:2: frontmatter '{key}' is a {kind}, not text; ignored")
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _as_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = re.match(r"^\d{4}-\d{2}-\d{2}", text)
    return match.group(0) if match else None


def _frontmatter_tags(value: Any) -> tuple[str, ...]:
    if value is None or isinstance(value, dict):
        return ()
    items = value if isinstance(value, list) else [value]
    words: list[str] = []
    for item in items:
        if item is None or isinstance(item, (dict, list)):
            continue  # nested structures are not tags
        words.extend(re.split(r"[,\s]+", str(item)))
    tags = (w.strip().lstrip("#") for w in words)
    return tuple(dict.fromkeys(t for t in tags if t))


# ---------------------------------------------------------------------------- body structure


def heading_of(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line, else None. Linear time: no backtracking regex."""
    match = HEADING_RE.match(line)
    if not match:
        return None
    text = line[match.end():].strip(" \t")
    closed = text.rstrip("#")
    if closed != text and (not closed or closed[-1] in " \t"):
        text = closed.rstrip(" \t")  # an optional closing sequence: `## Title ##`
    return len(match.group(1)), text


def fence_mask(lines: list[str], start: int = 0) -> list[bool]:
    """For each line from `start`: True when it lies inside (or opens/closes) a fenced block.
    A fence closes on a bare run of the same character at least as long as the one opening it."""
    mask: list[bool] = []
    fence: str | None = None
    for line in lines[start:]:
        match = FENCE_RE.match(line)
        if fence is None:
            opens = match is not None and not (match.group(1)[0] == "`" and "`" in match.group(2))
            if opens and match is not None:
                fence = match.group(1)
            mask.append(opens)
        else:
            mask.append(True)
            if (match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
                    and not match.group(2).strip()):
                fence = None
    return mask


def managed_mask(lines: list[str] | tuple[str, ...], start: int = 0) -> list[bool]:
    """For each line from `start`: True when it is vaultd's own output — a line from
    `<!-- vaultd:begin -->` to its `<!-- vaultd:end -->`, or a stray marker line. Which lines
    are markers is `blocks.markers`' rule, the one vaultd writes by: markers in code, in HTML
    blocks or comments, or named inline are text. An END closes the nearest BEGIN above it, so
    a begin marker that is never closed (or a lone one above a block) hides only itself."""
    lines = list(lines[start:])
    mask = [False] * len(lines)
    begin: int | None = None
    for n, kind in markers(lines):
        mask[n] = True
        if kind == BEGIN:
            begin = n
        elif begin is not None:
            mask[begin:n + 1] = [True] * (n + 1 - begin)
            begin = None
    return mask


def _first_h1(lines: list[str], body_start: int) -> str | None:
    for line, fenced in zip(lines[body_start - 1:], fence_mask(lines, body_start - 1)):
        heading = None if fenced else heading_of(line)
        if heading and heading[0] == 1:
            return heading[1]
    return None


def hashtags(lines: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Inline `#tags`, except in fenced or inline code, headings and vaultd's managed blocks."""
    found: dict[str, None] = {}
    for line, fenced, managed in zip(lines, fence_mask(list(lines)), managed_mask(lines)):
        if fenced or managed or heading_of(line):
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
                 lines=lines, tags=tags, date=note.created, key=key)


def _whole_note_entry(note: Note) -> list[Entry]:
    entry = _entry(note, 0, note.title, note.body_start, len(note.lines), {})
    return [entry] if entry else []


def _daily_entries(note: Note) -> list[Entry]:
    """`##` sections are entries; outside them, each top-level bullet or paragraph block is."""
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    start0 = note.body_start
    # Managed blocks are opaque like code: no entry boundaries inside them.
    fenced = [f or m for f, m in zip(fence_mask(note.lines, start0 - 1),
                                     managed_mask(note.lines, start0 - 1))]
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
            elif block is None and not blank:
                block = n  # text straight under a `#` heading, or an indented first line
            prev_blank = blank
        elif section is None:
            if block is None:
                block = n
            prev_blank = False
    end = len(note.lines)
    close_block(end)
    if section:
        spans.append((section[0], section[1], end))
    for title, start, stop in sorted(spans, key=lambda s: s[1]):
        entry = _entry(note, len(entries), title, start, stop, seen)
        if entry:
            entries.append(entry)
    return entries
