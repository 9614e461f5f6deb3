"""Property tests (hypothesis) for the pure steps of the pipeline, filling what test_notes,
test_chunking and test_watcher do not already cover:

- decode + parse never crash on arbitrary bytes behind every BOM, nor on YAML-shaped
  frontmatter full of anchors, aliases, tags and complex keys; every warning is one line naming
  the file, and the frontmatter kept is JSON;
- chunks, measured with the real MiniLM tokenizer, fit the limit and cover the body's text in
  order;
- `coalesce` over a file tree with folders, moves in and out of the vault, temp files and
  ignored paths is equivalent to replaying the events: applying its changes to the index the
  way the daemon does gives exactly the notes on disk.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest
from chunk_checks import DOC, body_content, check_invariants, content_chars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultd.chunking import chunk_note
from vaultd.daemon.watcher import RawEvent, coalesce
from vaultd.embedder import OnnxEmbedder, builtin_profiles
from vaultd.layout import Ignore
from vaultd.notes import Skip, decode, parse, shown

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------------------- decode + parse

BOMS = st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE,
                        codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE])
NAMES = st.sampled_from(["a.md", "episodic/2026-01-02.md", "semantic/x y.md", "odd\nname.md",
                         "tab\tname/2026-02-30.md"])


def check_note(path: str, text: str) -> None:
    note = parse(path, text)
    json.dumps(note.frontmatter)  # what the store keeps must be JSON
    assert 1 <= note.body_start <= len(note.lines) + 2
    for warning in note.warnings:
        assert "\n" not in warning and warning.startswith(f"{shown(path)}:"), warning
    for entry in note.entries:
        assert note.body_start <= entry.start_line <= entry.end_line <= len(note.lines)


@FAST
@given(BOMS, st.binary(max_size=600), NAMES)
def test_decode_and_parse_never_crash_behind_any_bom(bom: bytes, raw: bytes, path: str) -> None:
    text = decode(path, bom + raw, 10_000)
    if isinstance(text, Skip):
        assert text.reason and "\n" not in text.reason
        return
    check_note(path, text)


SCALAR = st.one_of(
    st.sampled_from(["x", "null", "~", "true", "no", "2026-02-30", "2026-01-02T10:00:00",
                     "1e309", ".nan", "-.inf", "0x1F", "'quoted'", '"a\\u0000b"', "|", ">",
                     "!!binary aGk=", "!!python/object:os.system ls", "!!set {a, b}",
                     "!!timestamp 2026-13-45", "!!int nope", "&a x", "*a", "*undefined", ""]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@st.composite
def yamlish(draw: st.DrawFn) -> str:
    """Frontmatter lines that are mostly YAML: keys, flow collections, anchors, aliases,
    complex keys, block lists and deliberate breakage."""
    lines = []
    for n in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["pair", "flow", "complex", "list", "anchor", "alias",
                                     "nested", "raw"]))
        key = draw(st.sampled_from(["title", "tags", "type", "created", "7", "null", "k",
                                    "2026-01-02", "[1, 2]", "{a: 1}"]))
        value = draw(SCALAR)
        if kind == "pair":
            lines.append(f"{key}: {value}")
        elif kind == "flow":
            items = draw(st.lists(SCALAR, max_size=5))
            lines.append(f"{key}: [{', '.join(items)}]" if draw(st.booleans())
                         else f"{key}: {{{', '.join(f'k{i}: {v}' for i, v in enumerate(items))}}}")
        elif kind == "complex":
            lines += [f"? {key}", f": {value}"]
        elif kind == "list":
            lines += [f"{key}:", *(f"  - {v}" for v in draw(st.lists(SCALAR, max_size=4)))]
        elif kind == "anchor":
            lines.append(f"a{n}: &a{n} [{value}, {value}]")
        elif kind == "alias":
            lines.append(f"b{n}: [*a{draw(st.integers(0, 11))}, *a{draw(st.integers(0, 11))}]")
        elif kind == "nested":
            depth = draw(st.integers(1, 80))
            lines.append(f"{key}: " + "[" * depth + value + "]" * depth)
        else:
            lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines)


@pytest.mark.slow
@FAST
@given(yamlish(), st.text(max_size=80), NAMES, st.sampled_from(["\n", "\r\n"]))
def test_parse_never_crashes_on_yaml_shaped_frontmatter(block: str, body: str, path: str,
                                                        eol: str) -> None:
    check_note(path, f"---{eol}{block.replace(chr(10), eol)}{eol}---{eol}{body}")


# ---------------------------------------------------------------------- chunks, real tokenizer


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    """The real tokenizer (only the tokenizer loads, not the ONNX session)."""
    profile = builtin_profiles(tmp_path_factory.mktemp("cache"))["all-MiniLM-L6-v2"]
    embedder = OnnxEmbedder(profile)
    assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    return embedder


UNICODE_LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)
UNICODE_DOC = st.lists(st.one_of(UNICODE_LINE, st.sampled_from(["", "# T", "## S", "```"])),
                       max_size=25).map("\n".join)


def check_chunks(embedder: OnnxEmbedder, path: str, text: str, max_tokens: int,
                 target: int) -> None:
    count = embedder.count_tokens
    note = parse(path, text)
    chunks = chunk_note(note, count, max_tokens, target)
    check_invariants(note, chunks, count, max_tokens)  # within the limit, lines covered
    # every non-blank character of the body (headings aside) is in a chunk, in order
    assert content_chars("".join(c.text for c in chunks)) == body_content(note)


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(DOC, st.sampled_from(["semantic/a.md", "episodic/2026-01-02.md"]),
       st.integers(16, 256), st.integers(1, 256))
def test_chunks_fit_the_real_tokenizer_and_cover_markdown(minilm: OnnxEmbedder, text: str,
                                                          path: str, max_tokens: int,
                                                          target: int) -> None:
    check_chunks(minilm, path, text, max_tokens, target)


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(UNICODE_DOC, st.sampled_from(["semantic/a.md", "episodic/2026-01-02.md"]),
       st.integers(16, 64))
def test_chunks_fit_the_real_tokenizer_on_arbitrary_unicode(minilm: OnnxEmbedder, text: str,
                                                           path: str, max_tokens: int) -> None:
    check_chunks(minilm, path, text, max_tokens, max_tokens)


# ---------------------------------------------------------------------------- coalesce = replay

FILES = ["a.md", "b.md", "d/a.md", "d/b.md", "e/a.md", "d/sub/c.md", "a.md~", "d/.4913",
         "x.txt", ".obsidian/w.md", "drafts/n.md"]
DIRS = ["d", "e", "d/sub", "f"]
IGNORE = Ignore(("drafts",))


def under(folder: str, path: str) -> bool:
    return path.startswith(folder + "/")


@st.composite
def dir_histories(draw: st.DrawFn) -> tuple[set[str], list[RawEvent], set[str]]:
    """A file tree (files only; folders exist while they hold files) and the events watchdog
    would report for a run of operations on it, including moves in from and out to outside
    the vault, and folder moves (reported as the folder event, with or without the events
    for what it held)."""
    files = set(draw(st.sets(st.sampled_from(FILES))))
    start = set(files)
    events: list[RawEvent] = []

    def ev(kind: str, path: str, dest: str | None = None, is_dir: bool = False) -> None:
        events.append(RawEvent(kind, path, dest, is_dir))  # type: ignore[arg-type]

    for _ in range(draw(st.integers(0, 20))):
        op = draw(st.sampled_from(["create", "modify", "close", "delete", "move", "move-out",
                                   "move-in", "dir-move", "dir-delete", "dir-create"]))
        p = draw(st.sampled_from(FILES))
        if op == "create" and p not in files:
            files.add(p)
            ev("created", p)
            ev("modified", p) if draw(st.booleans()) else None
        elif op in ("modify", "close") and p in files:
            ev("modified" if op == "modify" else "closed", p)
        elif op == "delete" and p in files:
            files.discard(p)
            ev("deleted", p)
        elif op == "move" and p in files:
            q = draw(st.sampled_from(FILES))
            if q != p:
                files.discard(p)
                files.add(q)
                ev("moved", p, q)
        elif op == "move-out" and p in files:
            files.discard(p)
            ev("moved", p, None)
        elif op == "move-in":
            files.add(p)
            ev("moved", "", p)  # watchdog reports it as a move from outside the vault
        elif op in ("dir-move", "dir-delete", "dir-create"):
            d = draw(st.sampled_from(DIRS))
            inside = sorted(f for f in files if under(d, f))
            if op == "dir-create":
                ev("created", d, is_dir=True)
                continue
            if op == "dir-delete":
                if draw(st.booleans()):
                    for f in inside:
                        ev("deleted", f)
                files -= set(inside)
                ev("deleted", d, is_dir=True)
                continue
            e = draw(st.sampled_from(DIRS))
            if e == d or under(e, d) or under(d, e):
                continue
            moved = {f: e + f[len(d):] for f in inside}
            files = (files - set(inside) - {f for f in files if under(e, f)}) | set(moved.values())
            ev("moved", d, e, is_dir=True)
            if draw(st.booleans()):
                for f, g in moved.items():
                    ev("moved", f, g)
    return start, events, files


def replay(index: set[str], changes: Any, on_disk: set[str]) -> set[str]:
    """Apply coalesced changes as the daemon does: each named path, and everything known or
    on disk below a rescanned folder, is re-stated from the disk."""
    paths = set(changes.upserts) | set(changes.deletes)
    for folder in changes.dirs:
        paths |= {p for p in index | on_disk if under(folder, p)}
    out = set(index)
    for p in paths:
        if p in on_disk and IGNORE.is_note(p):
            out.add(p)
        else:
            out.discard(p)
    return out


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(dir_histories())
def test_coalesce_is_equivalent_to_replaying_the_events(
        history: tuple[set[str], list[RawEvent], set[str]]) -> None:
    start, events, end = history
    changes = coalesce(events, IGNORE)
    seen = set(FILES) | end | {e.path for e in events} | {e.dest or "" for e in events}
    notes = {f for f in seen if f and IGNORE.is_note(f)}
    assert set(changes.upserts) <= notes and set(changes.deletes) <= notes
    assert not set(changes.upserts) & set(changes.deletes)
    assert len(changes.upserts) == len(set(changes.upserts))
    assert replay(start & notes, changes, end) == end & notes
