"""notes: decode bytes and parse a file into a Note — type, frontmatter, entries, line ranges,
tags — tolerantly: problems become warnings or one-line skip reasons, never exceptions."""

from __future__ import annotations

import codecs
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd import notes
from vaultd.notes import Note, Skip, decode, heading_of, parse

DAILY = """\
---
tags: [daily]
---
# 2026-11-20

- 08:05 standup: moved the release to Thursday #release
  owner is sam, see the ticket
  - nested detail
- 08:40 coffee

## 09:14 Flaky refund webhook test
test_refund_webhook failed in CI. #ci

```
## not a heading, just code #nottag
```

## 11:30 Postgres pool
Raised the pool size to 20. #decision
"""


def entries_by_line(note: Note) -> list[tuple[str, int, int]]:
    return [(e.heading, e.start_line, e.end_line) for e in note.entries]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


# ---------------------------------------------------------------------------- type and metadata


@pytest.mark.parametrize(("path", "text", "expected"), [
    ("semantic/x.md", "body\n", "semantic"),
    ("procedural/deploy/x.md", "body\n", "procedural"),
    ("episodic/trip.md", "body\n", "episodic"),
    ("x.md", "body\n", "note"),
    ("projects/x.md", "body\n", "note"),
    ("projects/x.md", "---\ntype: Procedural\n---\nbody\n", "procedural"),
    ("semantic/x.md", "---\ntype: episodic\n---\nbody\n", "episodic"),
    ("journal/2026-01-02.md", "- a\n", "episodic"),
    ("semantic/2026-01-02.md", "- a\n", "semantic"),
])
def test_type_from_frontmatter_else_top_folder(path: str, text: str, expected: str) -> None:
    assert parse(path, text).type == expected


def test_frontmatter_keys_and_extra_keys_are_kept_json_safe() -> None:
    note = parse("semantic/deploy.md", """\
---
title: Deploying ledgerly
created: 2026-11-20T09:30:00
tags: [ops, "#deploy"]
owner: sam
reviewed: 2026-12-01
nested: {when: 2026-01-05, n: 3}
---
# Something else
Roll back with `fly releases rollback`.
""")
    assert note.title == "Deploying ledgerly"
    assert note.created == "2026-11-20"
    assert note.tags == ("ops", "deploy")
    assert note.frontmatter["owner"] == "sam"
    assert note.frontmatter["reviewed"] == "2026-12-01"
    assert note.frontmatter["created"] == "2026-11-20T09:30:00"
    assert note.frontmatter["nested"] == {"when": "2026-01-05", "n": 3}
    json.dumps(note.frontmatter, allow_nan=False)
    assert note.body_start == 9 and note.warnings == []


def test_title_falls_back_to_first_h1_outside_code_then_file_name() -> None:
    assert parse("a.md", "```\n# in code\n```\n# Real title\n").title == "Real title"
    assert parse("dir/my note.md", "no heading\n").title == "my note"


def test_tags_as_comma_string_and_inline_hashtags_outside_code() -> None:
    note = parse("a.md", """\
---
tags: "alpha, #beta gamma"
---
Text with #inline and #nested/tag, not `#code` nor a#b nor http://x.org/#frag.
```
#fenced
```
""")
    assert note.tags == ("alpha", "beta", "gamma")
    assert note.entries[0].tags == ("alpha", "beta", "gamma", "inline", "nested/tag")


def test_daily_log_entries_sections_and_bullet_blocks() -> None:
    note = parse("episodic/2026-11-20.md", DAILY)
    assert note.is_daily and note.type == "episodic" and note.created == "2026-11-20"
    assert entries_by_line(note) == [
        ("", 6, 8),  # the bullet with its indented continuation lines
        ("", 9, 9),
        ("09:14 Flaky refund webhook test", 11, 16),  # the fenced "##" does not split
        ("11:30 Postgres pool", 18, 19),
    ]
    first, second, flaky, pool = note.entries
    assert first.lines[0].startswith("- 08:05") and first.lines[-1] == "  - nested detail"
    assert first.tags == ("daily", "release")
    assert flaky.tags == ("daily", "ci")  # not #nottag: it is inside code
    assert pool.tags == ("daily", "decision")
    assert all(e.date == "2026-11-20" for e in note.entries)
    for entry in note.entries:  # line ranges are 1-based and inclusive, in the file
        assert list(entry.lines) == note.lines[entry.start_line - 1:entry.end_line]
    assert len({e.id for e in note.entries}) == 4


def test_daily_text_under_the_h1_and_indented_first_lines_belong_to_an_entry() -> None:
    """Regression: lines straight after `# date`, or indented ones starting a block, were lost."""
    note = parse("episodic/2026-01-01.md", "# 2026-01-01\nright after h1\n  indented\n\n- b\n")
    assert entries_by_line(note) == [("", 2, 3), ("", 5, 5)]
    note = parse("episodic/2026-01-01.md", "  indented first\n- b\n")
    assert entries_by_line(note) == [("", 1, 1), ("", 2, 2)]


def test_daily_entry_ids_are_stable() -> None:
    before = {e.heading or e.lines[0]: e.id for e in parse("episodic/2026-11-20.md", DAILY).entries}
    inserted = DAILY.replace("# 2026-11-20\n", "# 2026-11-20\n\n- 07:00 new entry above\n\n\n")
    after = {e.heading or e.lines[0]: e.id
             for e in parse("episodic/2026-11-20.md", inserted).entries}
    assert {k: after[k] for k in before} == before
    edited = DAILY.replace("Raised the pool size to 20.", "Raised the pool size to 40.")
    assert [e.id for e in parse("episodic/2026-11-20.md", edited).entries] == list(before.values())
    # ids belong to the file: the same text elsewhere gets other ids
    other = parse("episodic/2026-11-21.md", DAILY)
    assert not {e.id for e in other.entries} & set(before.values())


def test_repeated_daily_headings_get_distinct_ids() -> None:
    note = parse("episodic/2026-01-01.md", "## Note\na\n## Note\nb\n")
    assert len({e.id for e in note.entries}) == 2


def test_other_notes_are_one_entry_over_the_body() -> None:
    note = parse("semantic/x.md", "---\ntitle: X\n---\n\n# X\n\n## A\ntext\n\n")
    assert entries_by_line(note) == [("X", 4, 8)]


def test_crlf_line_endings_keep_line_numbers_right() -> None:
    text = DAILY.replace("\n", "\r\n")
    assert entries_by_line(parse("episodic/2026-11-20.md", text)) == entries_by_line(
        parse("episodic/2026-11-20.md", DAILY))
    note = parse("episodic/2026-11-20.md", text)
    assert note.entries[-1].start_line == line_of(DAILY, "11:30 Postgres pool")
    assert not any("\r" in line for line in note.lines)


# ---------------------------------------------------------------------------- headings and fences


@pytest.mark.parametrize(("line", "expected"), [
    ("# Title", (1, "Title")),
    ("###   Spaced   ", (3, "Spaced")),
    ("## Closed ##", (2, "Closed")),
    ("## C# and F#", (2, "C# and F#")),
    ("##", (2, "")),
    ("#hashtag", None),
    ("####### seven", None),
    ("    # indented code", None),
])
def test_heading_of(line: str, expected: tuple[int, str] | None) -> None:
    assert heading_of(line) == expected


def test_heading_of_is_linear_on_long_runs_of_blanks() -> None:
    """Regression: the old regex backtracked cubically (3 s for 1,000 spaces)."""
    started = time.perf_counter()
    for line in ("# a" + " " * 200_000 + "b", "# a" + " #" * 100_000 + "b", "## " + "# " * 10**5):
        heading_of(line)
    assert time.perf_counter() - started < 1.0


def test_fence_closes_only_on_a_bare_fence_at_least_as_long() -> None:
    text = "````md\n```\n# inside\n```\n````\n# After\n"
    assert notes.fence_mask(text.splitlines()) == [True, True, True, True, True, False]
    assert parse("a.md", text).title == "After"
    assert notes.fence_mask(["~~~", "```", "## x", "~~~", "## y"]) == [True] * 4 + [False]
    assert notes.fence_mask(["```js", "```js still inside", "```"]) == [True, True, True]
    assert notes.fence_mask(["```inline``` is not a fence", "# h"]) == [False, False]


# ---------------------------------------------------------------------------- tolerant frontmatter


def test_broken_yaml_is_body_text_with_a_warning_naming_file_and_line() -> None:
    text = "---\ntitle: ok\ntags: [a, b\nowner: sam\n---\nbody line\n"
    note = parse("semantic/broken.md", text)
    assert note.frontmatter == {} and note.body_start == 1
    assert note.entries[0].start_line == 1 and "body line" in note.entries[0].text
    (warning,) = note.warnings
    assert warning.startswith("semantic/broken.md:")
    assert "broken YAML" in warning and "indexed as body text" in warning
    line = int(warning.split(":")[1])
    assert 3 <= line <= 5  # the problem is around the unclosed list


def test_unclosed_frontmatter_is_body_text_with_a_warning() -> None:
    note = parse("a.md", "---\ntitle: x\nno end\n")
    assert note.warnings == ["a.md:1: frontmatter opened with '---' but never closed; "
                             "indexed as body text"]
    assert note.entries[0].start_line == 1


def test_frontmatter_with_odd_keys_dates_and_nulls() -> None:
    note = parse("a.md", """\
---
7: seven
true: yes
null: nothing
2026-01-02: a date key
created: 2026-02-30
title:
tags: [x, null, [nested], {a: 1}]
when: 12:30:00
nan: .nan
---
body
""")
    fm = note.frontmatter
    assert fm["7"] == "seven" and fm["true"] is True and fm["null"] == "nothing"
    assert fm["2026-01-02"] == "a date key"
    assert fm["created"] == "2026-02-30"  # not a real date: kept as written, no crash
    assert note.created == "2026-02-30"
    assert fm["title"] is None and note.title == "a"
    assert note.tags == ("x",)
    assert fm["nan"] == "nan"
    json.dumps(fm, allow_nan=False)
    assert note.warnings == []


@pytest.mark.parametrize("block", ["- a\n- b", "just a string", "42"])
def test_frontmatter_that_is_not_a_mapping_is_ignored_with_a_warning(block: str) -> None:
    note = parse("a.md", f"---\n{block}\n---\nbody\n")
    assert note.frontmatter == {}
    (warning,) = note.warnings
    assert warning.startswith("a.md:2: frontmatter is a ") and "not a mapping" in warning
    assert note.entries[0].text == "body"


def test_list_valued_type_and_title_are_ignored_with_a_warning() -> None:
    note = parse("semantic/a.md", "---\ntype: [x, y]\ntitle: {a: 1}\n---\nbody\n")
    assert note.type == "semantic" and note.title == "a"
    assert len(note.warnings) == 2 and all("frontmatter 't" in w for w in note.warnings)


BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")])


def test_yaml_alias_bomb_is_bounded_and_warned() -> None:
    started = time.perf_counter()
    note = parse("a.md", f"---\n{BILLION_LAUGHS}\n---\nbody\n")
    assert time.perf_counter() - started < 2.0
    assert note.frontmatter == {} and note.entries[0].text == "body"
    (warning,) = note.warnings
    assert warning.startswith("a.md:2:") and "YAML aliases" in warning


def test_self_referencing_alias_does_not_recurse_forever() -> None:
    note = parse("a.md", "---\na: &a [*a]\n---\nbody\n")
    assert note.frontmatter == {} and len(note.warnings) == 1


@pytest.mark.parametrize("nested", [
    "a: " + "[" * 5000 + "]" * 5000,
    "- " * 5000 + "x",
    "a: " + "[" * 30_000 + "]" * 30_000,  # libyaml crashed the process (SIGSEGV) at this depth
], ids=["flow-5k", "block-5k", "flow-30k"])
def test_deeply_nested_yaml_is_a_warning_not_a_crash(nested: str) -> None:
    started = time.perf_counter()
    note = parse("a.md", f"---\n{nested}\n---\nbody\n")
    assert time.perf_counter() - started < 5.0
    assert note.frontmatter == {} and note.body_start == 1
    (warning,) = note.warnings
    assert warning.startswith("a.md:") and "indexed as body text" in warning


def test_huge_frontmatter_is_body_text() -> None:
    block = "\n".join(f"k{i}: {'v' * 50}" for i in range(5000))
    note = parse("a.md", f"---\n{block}\n---\nbody\n")
    assert note.frontmatter == {} and note.body_start == 1
    assert "longer than" in note.warnings[0]


# ---------------------------------------------------------------------------- decode


def test_decode_utf8_with_and_without_bom() -> None:
    assert decode("a.md", "héllo\n".encode(), 100) == "héllo\n"
    assert decode("a.md", codecs.BOM_UTF8 + "héllo\n".encode(), 100) == "héllo\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_decode_bom_marked_utf16_and_utf32(encoding: str) -> None:
    text = "# Titre\r\nété 🌞\r\n"
    raw = text.encode(encoding)
    if encoding.endswith(("-le", "-be")):
        raw = (codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE) + raw
    assert decode("a.md", raw, 1000) == text


@pytest.mark.parametrize(("raw", "problem"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    (b"text " * 3000 + b"\x00 late NUL", "binary file"),  # past the first 8 KiB
    (b"caf\xe9 au lait\n", "not valid UTF-8 (byte 3, line 1)"),
    (b"line one\nline two \xff\xfe\n", "line 2"),
    (b"", "empty file"),
    (b" \n\t\n", "empty file"),
    (codecs.BOM_UTF16_LE + b"a", "invalid UTF-16"),
    (b"x" * 101, "too large (101 bytes > limit 100"),
])
def test_decode_skips_with_a_reason_naming_the_problem(raw: bytes, problem: str) -> None:
    result = decode("dir/bad.md", raw, 100 if problem.startswith("too large") else 10**6)
    assert isinstance(result, Skip) and result.path == "dir/bad.md"
    assert problem in result.reason and "\n" not in result.reason


# ---------------------------------------------------------------------------- size and shape


@pytest.mark.slow
def test_hundred_thousand_line_file_parses_in_bounded_time() -> None:
    text = "".join(f"- {i:06d} item with a #tag{i % 7} and some words\n" for i in range(100_000))
    started = time.perf_counter()
    note = parse("episodic/2026-03-04.md", text)
    assert time.perf_counter() - started < 10.0
    assert len(note.entries) == 100_000
    assert note.entries[-1].start_line == note.entries[-1].end_line == 100_000


def test_deeply_nested_list_is_one_entry() -> None:
    text = "".join("  " * depth + f"- level {depth}\n" for depth in range(2000))
    note = parse("episodic/2026-03-04.md", text)
    assert entries_by_line(note) == [("", 1, 2000)]


# ---------------------------------------------------------------------------- never crash


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_decode_then_parse_never_crash_on_bytes(raw: bytes) -> None:
    text = decode("x/y.md", raw, 10_000)
    if isinstance(text, Skip):
        assert text.reason and "\n" not in text.reason
        return
    parse("x/y.md", text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["a.md", "episodic/2026-01-02.md"]))
def test_parse_never_crashes_and_entries_are_well_formed(text: str, path: str) -> None:
    note = parse(path, text)
    last = 0
    for entry in note.entries:
        assert note.body_start <= entry.start_line <= entry.end_line <= len(note.lines)
        assert entry.start_line > last  # ordered, not overlapping
        last = entry.end_line
        assert list(entry.lines) == note.lines[entry.start_line - 1:entry.end_line]
