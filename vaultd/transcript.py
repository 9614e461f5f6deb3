"""Summarise a Claude Code JSONL transcript into the lines worth keeping.

A transcript is one JSON object per line; `user` and `assistant` objects carry a `message` whose
`content` is a string or a list of blocks (`text`, `tool_use`, `tool_result`). The summary keeps
what an agent loses at compaction: the user's requests, the decisions taken, errors and the fix
that followed each, and the files touched. It is deterministic (same transcript, same bytes) and
bounded: past `max_chars` it stops at a whole line and says how many lines were left out.
Malformed lines are skipped, never fatal. Credentials in what is kept are redacted
(`vaultd.redact`) before a line is cut to length, so no cut can leave a key unrecognisable.

Claude Code's PreCompact hook fires at every compaction with the same, growing transcript, so
`capture` saves each turn once: `.vaultd/transcripts.json` remembers how far each transcript was
saved (a byte offset at a whole line, and its first line, so a new file at the same path starts
over), and the next capture reads from there. The summary a compaction inserts ("This session
is being continued from a previous conversation …", `isCompactSummary`) restates turns already
saved and is not the user's request: it is skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultd import edits
from vaultd.redact import redact_if

LINE_CHARS = 160
PATH_KEYS = ("file_path", "path", "notebook_path")
DECISION_RE = re.compile(
    r"\b(decide[ds]?|decision|we will|we'll|chose|choose|going with|opted|settled on)\b",
    re.IGNORECASE)
ERROR_RE = re.compile(r"Traceback \(most recent call last\)|\bError:|\w+(Error|Exception):")
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
PROGRESS_FILE = "transcripts.json"  # in .vaultd/: how far each transcript was saved
COMPACT_SUMMARY = "This session is being continued from a previous conversation"


@dataclass
class Salient:
    requests: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    errors: list[list[str]] = field(default_factory=list)  # [error, fix or ""]
    files: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Read:
    """The records of a transcript from a byte offset on, and the offset read to: the end of
    its last whole line (a last line without its newline counts once it is whole JSON; one
    still being written is read next time)."""

    records: list[dict[str, Any]]
    end: int


def read_from(path: Path, start: int = 0) -> Read:
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline
    end = start + len(data) - len(tail)
    records = [obj for obj in map(_record, lines) if obj is not None]
    last = _record(tail)
    if last is not None:
        records.append(last)
        end += len(tail)
    return Read(records, end)


def _record(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        obj = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def is_compact_summary(record: dict[str, Any]) -> bool:
    """Whether a record is the summary Claude Code inserts at a compaction."""
    if record.get("isCompactSummary") is True:
        return True
    msg = record.get("message")
    blocks = _blocks(msg.get("content")) if isinstance(msg, dict) else []
    first = next((str(b.get("text", "")) for b in blocks if b.get("type") == "text"), "")
    return record.get("type") == "user" and first.lstrip().startswith(COMPACT_SUMMARY)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b if isinstance(b, dict) else {"type": "text", "text": b}
                for b in content if isinstance(b, (dict, str))]
    return []


def _text_of(content: Any) -> str:
    """The text of a tool_result's content (a string or a list of text blocks)."""
    return "\n".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


def _trimmer(redact_secrets: bool) -> Callable[[str], str]:
    """One line as kept: whitespace folded, credentials redacted, then cut to LINE_CHARS."""
    def trim(line: str) -> str:
        line = redact_if(" ".join(line.split()), redact_secrets)
        return line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1].rstrip() + "…"
    return trim


def _first_line(text: str) -> str:
    return next((ln for ln in text.splitlines() if ln.strip()), "")


def _error_line(text: str) -> str:
    """The most telling line of an error: the last `XxxError: …` line, else the first line."""
    hits = [ln for ln in text.splitlines() if ERROR_RE.search(ln)
            and not ln.startswith("Traceback")]
    return hits[-1] if hits else _first_line(text)


def _add(items: list[str], line: str) -> None:
    if line and line not in items:
        items.append(line)


def collect(path: Path, redact_secrets: bool = True) -> Salient:
    """The salient lines of the transcript at `path`, in transcript order; credentials
    redacted unless `redact_secrets` is false (`[privacy] redact`)."""
    return salient_of(read_from(path).records, redact_secrets)


def salient_of(records: list[dict[str, Any]], redact_secrets: bool = True) -> Salient:
    """The salient lines of transcript records (see `collect`)."""
    trim = _trimmer(redact_secrets)
    out = Salient()
    awaiting_fix: list[str] | None = None
    for rec in records:
        kind = rec.get("type")
        msg = rec.get("message")
        if kind not in ("user", "assistant") or not isinstance(msg, dict) or rec.get("isMeta") \
                or is_compact_summary(rec):
            continue
        role = msg.get("role", kind)
        for block in _blocks(msg.get("content")):
            btype = block.get("type")
            if btype == "tool_use":
                args = block.get("input")
                if isinstance(args, dict):
                    out.files.update(redact_if(str(args[k]), redact_secrets) for k in PATH_KEYS
                                     if isinstance(args.get(k), str) and args[k].strip())
            elif btype == "tool_result":
                text = _text_of(block.get("content"))
                if block.get("is_error") is True or ERROR_RE.search(text):
                    awaiting_fix = [trim(_error_line(text)) or "(error without a message)", ""]
                    out.errors.append(awaiting_fix)
            elif btype == "text":
                text = str(block.get("text", ""))
                if not text.strip():
                    continue
                if role == "assistant":
                    if awaiting_fix is not None:
                        awaiting_fix[1] = trim(_first_line(text))
                        awaiting_fix = None
                    for sentence in SENTENCE_RE.split(" ".join(text.split())):
                        if DECISION_RE.search(sentence):
                            _add(out.decisions, trim(sentence))
                elif not text.lstrip().startswith("<"):  # skip injected <system-reminder> etc.
                    if ERROR_RE.search(text):
                        awaiting_fix = [trim(_error_line(text)), ""]
                        out.errors.append(awaiting_fix)
                    _add(out.requests, trim(_first_line(text)))
    return out


def render(salient: Salient, max_chars: int = 2000) -> str:
    """Markdown sections of bullet lines, at most `max_chars` characters."""
    sections = [
        ("User requests", salient.requests),
        ("Decisions", salient.decisions),
        ("Errors and fixes", [f"{err} → {fix or '(no fix recorded)'}"
                              for err, fix in salient.errors]),
        ("Files touched", sorted(salient.files)),
    ]
    lines: list[str] = []
    for title, items in sections:
        lines.append(f"### {title}")
        lines.extend([f"- {item}" for item in items] or ["- (none)"])
    return bounded(lines, max_chars)


def bounded(lines: list[str], max_chars: int) -> str:
    """`lines` joined, cut at a whole line with an explicit "… (N more lines)" marker so the
    result never exceeds `max_chars`."""
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    for i in range(len(lines) - 1, -1, -1):
        marker = f"… ({len(lines) - i} more lines)"
        cut = "\n".join([*lines[:i], marker])
        if len(cut) <= max_chars:
            return cut
    return ""  # not even the marker fits


def summarize(path: Path, max_chars: int = 2000) -> str:
    """A deterministic, bounded markdown summary of the transcript at `path`."""
    return render(collect(path), max_chars)


def capture(root: Path, transcript: Path, when: dt.datetime | None = None, *,
            redact_secrets: bool = True, folder: str = "episodic") -> tuple[str, str] | None:
    """Append one entry summarising what `transcript` says since it was last saved to today's
    episodic log in the vault at `root`, its credentials redacted unless `redact_secrets` is
    false (the caller passes `[privacy] redact`), and remember how far it was saved. Returns
    (vault path, heading), or None when there was nothing new worth keeping. `folder`: the
    daily logs' (`layout.daily_folder`)."""
    key = str(transcript.resolve())
    progress = _progress(root)
    seen = progress.get(key)
    head = _head(transcript)
    start = 0
    if isinstance(seen, dict) and seen.get("head") == head and isinstance(seen.get("end"), int) \
            and 0 <= seen["end"] <= transcript.stat().st_size:
        start = seen["end"]
    read = read_from(transcript, start)
    salient = salient_of(read.records, redact_secrets)
    saved = None
    if salient.requests or salient.decisions or salient.errors or salient.files:
        first = salient.requests[0] if salient.requests else "(no user request)"
        text = f"Session transcript: {first}\n\n{render(salient)}"
        # a NUL quoted from a tool's output is dropped: append_entry refuses text holding one
        saved = edits.append_entry(root, text.replace("\x00", ""), when=when, tags=["session"],
                                   folder=folder)
    if read.end != start:  # after the entry: a crash between the two saves a turn twice, never 0
        progress[key] = {"head": head, "end": read.end}
        edits.write_own(root, PROGRESS_FILE, json.dumps(progress, indent=1, sort_keys=True) + "\n")
    return saved


def _progress(root: Path) -> dict[str, Any]:
    """`.vaultd/transcripts.json`: transcript path → {"head", "end"}; {} when absent or bad."""
    from vaultd import gate

    try:
        data = json.loads(gate.own(root, PROGRESS_FILE).read_bytes())
    except (OSError, ValueError, edits.VaultdError):
        return {}
    return data if isinstance(data, dict) else {}


def _head(path: Path) -> str:
    """What tells one transcript from another written later at the same path: its first line."""
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha1(fh.readline()).hexdigest()
