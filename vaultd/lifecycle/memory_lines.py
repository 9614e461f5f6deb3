"""How MEMORY.md's block says its facts: a fact as a line, a group of them under its source's
link, a shared subject said once. Pure text in → text out; which facts are chosen is
`flush`'s."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from vaultd.blocks import inline
from vaultd.lifecycle.entries import EntryView
from vaultd.notes import entry_title

LABEL_MAX = 48


@dataclass(frozen=True)
class Fact:
    """A candidate line: a fact of one entry, for one section."""
    section: str
    entry: int  # index into the views
    unit: int  # its position in the entry
    prefix: str  # a daily log's entry title, said before the fact ("Fly bill: …"), or ""
    body: str  # the fact itself, whole and verbatim
    value: float
    joins: bool = False  # a daily log's entry: its facts share one line
    # from a note outside the agent's memory (the lifecycle's scope): the user's or a
    # clipping's words, quoted as a note so an agent does not read them as an instruction
    quoted: bool = False

    @property
    def text(self) -> str:
        return f"{self.prefix}: {self.body}" if self.prefix else self.body


def label(view: EntryView) -> str:
    if view.is_daily:
        label = Path(view.path).stem
    else:
        title = view.frontmatter.get("title")
        label = str(title).strip() if title else entry_title(view.key) or Path(view.path).stem
    label = " ".join(label.replace("[", "(").replace("]", ")").split()).lstrip("-*+ ")
    return inline(label if len(label) <= LABEL_MAX else label[:LABEL_MAX - 1] + "…")


# What a link's target may not hold as is: a line break or control character (a file name
# may hold any), `<` and `>` (markers, HTML, the end of an <…> target), a backslash (it would
# escape that end) and `%` itself, so the encoding reads back unambiguously.
_TARGET_UNSAFE = re.compile(r"[%<>\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def target(path: str) -> str:
    """A note's path as a Markdown link target: unsafe characters percent-encoded, in <…>
    when it holds spaces or parentheses."""
    from urllib.parse import quote

    path = _TARGET_UNSAFE.sub(lambda m: quote(m.group(), safe=""), path)
    return f"<{path}>" if re.search(r"[\s()]", path) else path


# A line's subject, said first: one or more capitalised words, then a word in lower case
# ("Caroline went…", "Sam Lee asked…"); a subject only if it is a name (see `names_of`).
SUBJECT_RE = re.compile(r"([A-Z][\w'-]*(?: [A-Z][\w'-]*)*) (?=[a-z])")
MID_NAME_RE = re.compile(r"(?<=[^.!?:\s]) ([A-Z][\w'-]+)")
JOINED = "; "  # between the lines of one subject, once it is said in front


def names_of(texts: list[str]) -> frozenset[str]:
    """Capitalised words the facts use inside a sentence, at least twice: names (a sentence's
    first word is capitalised whatever it is, so "The" and "Yesterday" are not taken)."""
    seen = Counter(m.group(1) for text in texts for m in MID_NAME_RE.finditer(text))
    return frozenset(word for word, n in seen.items() if n >= 2)


def _subject(line: str, names: frozenset[str]) -> str:
    m = SUBJECT_RE.match(line)
    return m.group(1) if m and m.group(1).split()[0] in names and JOINED not in line else ""


def factored(lines: list[tuple[str, bool]], names: frozenset[str]) -> list[str]:
    """Lines that start with the same subject said once: "Caroline: went to X; plans Y."
    for "Caroline went to X." and "Caroline plans Y." — the group's header says where and
    when, this says who, and each line drops it. Only the agent's own lines (`True`): a quote
    stays the note's words, verbatim."""
    subjects = [_subject(line, names) if own else "" for line, own in lines]
    counts = Counter(s for s in subjects if s)
    out: list[str] = []
    placed: dict[str, int] = {}  # subject → its line
    for (line, _), subject in zip(lines, subjects):
        if counts[subject] < 2:
            out.append(line)
            continue
        rest = line[len(subject) + 1:].rstrip(".")
        if subject in placed:
            out[placed[subject]] += f"{JOINED}{rest}"
        else:
            placed[subject] = len(out)
            out.append(f"{subject}: {rest}")
    for at in placed.values():
        out[at] += "."
    return out


def lines_of(facts: list[Fact], names: frozenset[str] = frozenset()) -> list[str]:
    """A group's lines, in the source's reading order; the facts of one entry of a daily log
    share one line (under its title, if it has one: "Fly bill: … …"); lines that start with
    the same name say it once (`factored`)."""
    out: list[tuple[str, bool]] = []  # (line, the agent's own words, without a title)
    last: Fact | None = None
    for fact in sorted(facts, key=lambda f: (f.entry, f.unit)):
        if last is not None and fact.joins and fact.entry == last.entry:
            closing = "”" if fact.quoted else ""
            line, own = out[-1]
            out[-1] = (line.removesuffix(closing) + f" {inline(fact.body)}{closing}", own)
        else:
            said = (f"{inline(fact.prefix)}: {inline(fact.body)}" if fact.prefix
                    else inline(fact.body))
            out.append((f"“{said}”" if fact.quoted else said,
                        not fact.quoted and not fact.prefix))
        last = fact
    return factored(out, names) if names else [line for line, _ in out]


def group_text(link: str, facts: list[Fact], names: frozenset[str] = frozenset()) -> str:
    """A group: one line inline after its source's link, several as bullets under it."""
    lines = lines_of(facts, names)
    if len(lines) == 1:
        return f"- {link}: {lines[0]}"
    return f"{link}:\n" + "\n".join(f"- {line}" for line in lines)
