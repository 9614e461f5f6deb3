"""Transcript capture: salient lines of a Claude Code JSONL transcript, bounded, into the log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from vaultd.transcript import bounded, capture, summarize
from vaultd.vault import init_vault

FIXTURE = Path(__file__).parent / "fixtures" / "transcript.jsonl"

EXPECTED = """\
### User requests
- Fix the date parsing bug in vaultd/notes.py so created: 2024-1-5 works.
- Also add a test for 2024-12-31 and run the whole suite.
### Decisions
- We decided to avoid a new dependency and parse with a small regex instead.
- Going with one parametrized test covering both dates.
### Errors and fixes
- ValueError: Invalid isoformat string: '2024-1-5' → The parser uses date.fromisoformat, \
which rejects unpadded months; I will normalise the parts before parsing.
### Files touched
- /repo/tests/test_dates.py
- /repo/vaultd
- /repo/vaultd/notes.py"""


def test_summary_sections_on_fixture() -> None:
    assert summarize(FIXTURE) == EXPECTED


def test_summary_is_deterministic() -> None:
    assert summarize(FIXTURE) == summarize(FIXTURE)


def test_summary_bounded_with_marker() -> None:
    out = summarize(FIXTURE, max_chars=300)
    assert len(out) <= 300
    lines = out.split("\n")
    assert lines[-1] == f"… ({len(EXPECTED.splitlines()) - len(lines) + 1} more lines)"
    assert EXPECTED.startswith("\n".join(lines[:-1]))  # cut at whole lines
    for limit in range(0, 400, 7):
        assert len(summarize(FIXTURE, max_chars=limit)) <= limit


def test_bounded_keeps_short_text() -> None:
    assert bounded(["a", "b"], 10) == "a\nb"
    lines = ["a" * 10, "b" * 10, "c" * 10]
    assert bounded(lines, 27) == "aaaaaaaaaa\n… (2 more lines)"
    assert bounded(lines, 26) == "… (3 more lines)"
    assert bounded(lines, 5) == ""  # not even the marker fits


def test_malformed_and_empty_transcripts(tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text('garbage\n\n[1,2]\n{"type": "user", "message": "oops"}\n'
                 '{"type": "user", "message": {"role": "user", "content": 5}}\n'
                 '{"type": "assistant", "message": {"content": [{"type": "tool_use", '
                 '"input": {"notebook_path": "/n.ipynb"}}, 3]}}\n', encoding="utf-8")
    out = summarize(t)
    assert "- /n.ipynb" in out and out.count("- (none)") == 3


def test_long_request_trimmed(tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text('{"type": "user", "message": {"role": "user", "content": "' + "x" * 500
                 + '"}}\n', encoding="utf-8")
    line = summarize(t).split("\n")[1]
    assert line.startswith("- xxx") and line.endswith("…") and len(line) <= 2 + 160


def test_capture_appends_one_entry(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    init_vault(root)
    when = dt.datetime(2025, 3, 14, 10, 30)
    rel, heading = capture(root, FIXTURE, when=when)
    assert rel == "episodic/2025-03-14.md"
    assert heading.startswith("10:30 — Session transcript: Fix the date")
    text = (root / rel).read_text(encoding="utf-8")
    assert text.count("\n## ") == 1 and f"## {heading}" in text
    assert "Session transcript: Fix the date parsing bug" in text
    assert EXPECTED in text and text.rstrip().endswith("#session")


def test_a_nul_in_a_transcript_is_dropped_not_a_failed_hook(tmp_path: Path) -> None:
    import json

    root = tmp_path / "v"
    init_vault(root)
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(json.dumps({"type": "user", "message": {
        "role": "user", "content": "Please fix the parser\x00 crash today."}}) + "\n")
    rel, _ = capture(root, transcript, when=dt.datetime(2026, 11, 20, 9, 0))
    text = (root / rel).read_text(encoding="utf-8")
    assert "\x00" not in text and "Please fix the parser crash today." in text


def test_capture_saves_each_turn_once_and_skips_compaction_summaries(tmp_path: Path) -> None:
    import json

    def turn(role: str, text: str, **extra: object) -> str:
        return json.dumps({"type": role, **extra,
                           "message": {"role": role, "content": text}}) + "\n"

    root = tmp_path / "v"
    init_vault(root)
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(turn("user", "Rename the topicalpha module."), encoding="utf-8")
    when = dt.datetime(2026, 11, 20, 9, 0)
    rel, first = capture(root, transcript, when=when) or ("", "")
    assert capture(root, transcript, when=when) is None  # nothing new: nothing appended
    with transcript.open("a", encoding="utf-8") as fh:
        fh.write(turn("user", "This session is being continued from a previous conversation "
                      "that ran out of context: Rename the topicalpha module.",
                      isCompactSummary=True))
        fh.write('{"type": "user", "message": {"role": "user", "content": "half a li')
    assert capture(root, transcript, when=when) is None  # a summary, and a line being written
    with transcript.open("a", encoding="utf-8") as fh:
        fh.write('ne"}}\n' + turn("user", "Then update the imports."))
    saved = capture(root, transcript, when=when)
    assert saved is not None and "half a line" in saved[1]
    text = (root / rel).read_text(encoding="utf-8")
    assert text.count("topicalpha") == 3 and "being continued" not in text  # the first entry
    assert "Then update the imports." in text
    # a new transcript at the same path is read from its start
    transcript.write_text(turn("user", "A new session about topicbeta."), encoding="utf-8")
    assert capture(root, transcript, when=when) is not None
    assert "topicbeta" in (root / rel).read_text(encoding="utf-8")
