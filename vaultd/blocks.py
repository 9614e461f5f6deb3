"""vaultd's managed blocks: the only part of a user's file (MEMORY.md, a routed config file)
that vaultd writes. Everything outside the markers is the user's and is kept byte for byte.

Markers are read as Markdown reads them. `<!-- vaultd:begin -->` and `<!-- vaultd:end -->`
count only as a line of their own (up to three leading spaces, trailing spaces or tabs) that
starts an HTML comment block: never inside fenced code (at any indent, list items' fences
included), indented code, an HTML block or a multi-line comment opened above, nor quoted in a
block quote or named inline in a sentence. `markers` finds them; `notes.managed_mask` (what the
indexer leaves out as vaultd's own output) uses the same function, so the index and the writer
agree on what vaultd owns.

Which code and HTML blocks hide a line is decided by our own scanner of CommonMark's block
structure (block quotes, list items with their content indent and lazy continuation lines,
fenced and indented code, HTML blocks of types 1-7, paragraphs, headings, thematic breaks) rather
than by a Markdown library: none is among vaultd's dependencies (markdown-it-py would be a new
one), only the block level is needed, line by line, and it runs inside the indexer for every
note. It was checked line for line against markdown-it-py on random documents; where the
reference parsers disagree with each other (lazy continuation lines below nested quotes) it
follows the spec. Inline structure (code spans, links) never hides a whole line, so it is not
parsed.

The shape decides what vaultd may do: no markers, a block is appended; exactly one BEGIN then
one END, the text between them is replaced; anything else (a BEGIN without END, an END first,
two blocks, nested BEGINs) is a `MarkerError` naming the marker lines, and the caller refuses
to write that file. `with_block` re-reads what it built and refuses it unless the result holds
exactly the one block it meant to write, in place.

What vaultd puts on a line inside a block goes through `inline`: no line break of any kind, no
`<!--`/`-->` (so no marker), and no leading fence or `<` that could open a code or HTML block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vaultd.errors import VaultdError

BEGIN = "<!-- vaultd:begin -->"
END = "<!-- vaultd:end -->"

# Everything that ends a line for some reader (str.splitlines, Unicode, old Macs) and every
# other control character but tab: none may reach a line vaultd writes.
_BREAKING = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


class MarkerError(VaultdError):
    """The text's markers are not zero blocks or one well-formed block; nothing may be written
    into it. The message says which lines, without the file's name (callers add it)."""


def inline(text: str) -> str:
    """`text` made safe to stand inside one line of a managed block: line breaks and control
    characters become spaces, an HTML comment's opener or closer is written as entities
    (rendered the same, never a marker), and a leading code fence or `<` gets a backslash so the
    line cannot open a code or HTML block that would swallow the END marker."""
    text = _BREAKING.sub(" ", text).replace("<!--", "&lt;!--").replace("-->", "--&gt;")
    body = text.lstrip(" \t")
    if body.startswith(("```", "~~~", "<")):
        cut = len(text) - len(body)
        text = text[:cut] + "\\" + body
    return text


# ------------------------------------------------------------------------- block structure

_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_ITEM = re.compile(r"(?:[-+*]|(\d{1,9})[.)])(?=[ ]|$)")
_THEMATIC = re.compile(r"(?:(?:\*[ ]*){3,}|(?:-[ ]*){3,}|(?:_[ ]*){3,})$")
_SETEXT = re.compile(r"(?:=+|-+)[ ]*$")
_ATX = re.compile(r"#{1,6}(?:[ ]|$)")
_HTML_1 = re.compile(r"<(script|pre|style|textarea)(?:[ >]|$)", re.I)
_HTML_1_END = re.compile(r"</(?:script|pre|style|textarea)>", re.I)  # any of them ends it
_HTML_6 = re.compile(
    r"</?(?:address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|"
    r"details|dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|"
    r"h[1-6]|head|header|hr|html|iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|"
    r"optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|thead|title|tr|"
    r"track|ul)(?:[ >]|/>|$)", re.I)
_ATTRIBUTE = r"""(?:[ ]+[A-Za-z_:][A-Za-z0-9_.:-]*(?:[ ]*=[ ]*(?:[^ "'=<>`]+|'[^']*'|"[^"]*"))?)"""
# type 7: any complete tag alone on its line (type 1's tags are caught first, as the
# reference parsers do)
_HTML_7 = re.compile(rf"(?:<[A-Za-z][A-Za-z0-9-]*{_ATTRIBUTE}*[ ]*/?>|</[A-Za-z][A-Za-z0-9-]*[ ]*>)"
                     r"[ ]*$")


def _indent(line: str, pos: int = 0) -> int:
    """Spaces from `pos` (tabs are expanded before scanning)."""
    end = pos
    while end < len(line) and line[end] == " ":
        end += 1
    return end - pos


def _html_start(s: str, in_paragraph: bool) -> tuple[int, str] | None:
    """(type, what ends it) of an HTML block starting `s` (indent removed), else None."""
    if s.startswith("<!--"):
        return 2, "-->"
    if s.startswith("<?"):
        return 3, "?>"
    if s.startswith("<![CDATA["):
        return 5, "]]>"
    if s[1:2] == "!" and s[2:3].isascii() and s[2:3].isalpha():
        return 4, ">"
    raw = _HTML_1.match(s)
    if raw:
        return 1, f"</{raw.group(1).lower()}>"  # what closes it if the text never does
    if _HTML_6.match(s):
        return 6, ""
    if not in_paragraph and _HTML_7.match(s):
        return 7, ""
    return None


def _html_ends(kind: int, closer: str, line: str) -> bool:
    return bool(_HTML_1_END.search(line)) if kind == 1 else closer in line


def marker_of(line: str) -> str | None:
    """BEGIN or END when `line` on its own spells one (up to three spaces before it, spaces or
    tabs after), else None. Whether it counts also depends on the lines above: `markers`."""
    body = line.rstrip(" \t")
    text = body.lstrip(" ")
    if len(body) - len(text) > 3 or text not in (BEGIN, END):
        return None
    return text


@dataclass
class _Item:
    width: int  # the content's column: a continuation line is indented at least this much
    empty: bool  # opened on a blank line and nothing in it yet


class _Scanner:
    """CommonMark's block structure, one line at a time, kept only as far as it decides what
    hides a line: the open containers (block quotes, list items) and the open leaf block."""

    def __init__(self) -> None:
        self.containers: list[_Item | None] = []  # None: a block quote
        # ("p",) paragraph, ("f", char, length) fence, ("c",) indented code,
        # ("h", type, closer) HTML block, or None
        self.leaf: tuple | None = None

    def feed(self, raw: str) -> bool:
        """Read one line; True when it opens an HTML block at its first column of content
        (a comment line outside code and HTML is one: what a marker must be)."""
        line = raw.expandtabs(4) if "\t" in raw else raw
        pos, matched = self._continuation(line)
        rest = line[pos:]
        if matched == len(self.containers):
            if self._leaf_goes_on(rest):
                return False
        else:
            if self.leaf == ("p",) and rest.strip(" ") and not self._interrupts(rest):
                return False  # a lazy continuation of the open paragraph
            del self.containers[matched:]
            self.leaf = None
        return self._open(rest)

    def _continuation(self, line: str) -> tuple[int, int]:
        """How far the open containers match `line`: (column after them, how many match)."""
        pos = 0
        for n, container in enumerate(self.containers):
            spaces = _indent(line, pos)
            blank = pos + spaces >= len(line)
            if container is None:
                if spaces > 3 or not line.startswith(">", pos + spaces):
                    return pos, n
                pos += spaces + 1
                pos += line.startswith(" ", pos)
            elif blank:
                if container.empty:
                    return pos, n  # an item may start with one blank line, not two
            elif spaces >= container.width:
                pos += container.width
                container.empty = False
            else:
                return pos, n
        return pos, len(self.containers)

    def _leaf_goes_on(self, rest: str) -> bool:
        """Whether `rest` belongs to the open code or HTML block (closing it, maybe)."""
        leaf = self.leaf
        if leaf is None or leaf[0] == "p":
            return False
        blank = not rest.strip(" ")
        if leaf[0] == "f":
            spaces = _indent(rest)
            body = rest[spaces:]
            run = len(body) - len(body.lstrip(leaf[1]))
            if spaces <= 3 and run >= leaf[2] and not body[run:].strip(" "):
                self.leaf = None
            return True
        if leaf[0] == "h":
            if leaf[1] >= 6:
                if blank:
                    self.leaf = None
                return True
            if _html_ends(leaf[1], leaf[2], rest):
                self.leaf = None
            return True
        if blank or _indent(rest) >= 4:  # indented code
            return True
        self.leaf = None
        return False

    def _interrupts(self, rest: str) -> bool:
        """Whether `rest`, below a paragraph in a container it does not continue, starts a
        block (else it is a lazy line of that paragraph). Any list item may start here, even
        an empty one: it is not interrupting the paragraph, its container ended; code indented
        or an HTML block of type 7 would, so they cannot."""
        spaces = _indent(rest)
        if spaces >= 4:
            return False
        s = rest[spaces:]
        fence = _FENCE.match(s)
        return bool(s.startswith(">") or _THEMATIC.match(s) or _ATX.match(s) or _ITEM.match(s)
                    or (fence and not (s[0] == "`" and "`" in fence.group(2)))
                    or (s.startswith("<") and _html_start(s, True)))

    def _open(self, rest: str) -> bool:
        """Open the containers and the leaf block `rest` starts (after the matched containers);
        True when the leaf is an HTML block that starts right here."""
        in_paragraph = self.leaf == ("p",)
        while True:
            spaces = _indent(rest)
            if spaces >= len(rest):  # blank: ends a paragraph
                self.leaf = None
                return False
            if spaces >= 4:
                if not in_paragraph:
                    self.leaf = ("c",)
                return False
            s = rest[spaces:]
            first = s[0]
            if first == ">":
                self.containers.append(None)
                rest = s[1:]
                rest = rest[1:] if rest.startswith(" ") else rest
                in_paragraph, self.leaf = False, None
                continue
            if in_paragraph and first in "=-" and _SETEXT.match(s):
                self.leaf = None  # the paragraph was a heading's text
                return False
            if first in "*-_" and _THEMATIC.match(s):
                self.leaf = None
                return False
            item = _ITEM.match(s) if first in "-+*" or first.isdigit() else None
            if item and not (in_paragraph and (not s[item.end():].strip(" ")
                                               or item.group(1) not in (None, "1"))):
                after = s[item.end():]
                if not after.strip(" "):
                    self.containers.append(_Item(spaces + item.end() + 1, True))
                    self.leaf = None
                    return False
                gap = _indent(after)
                gap = 1 if gap > 4 else gap  # content that opens with indented code
                self.containers.append(_Item(spaces + item.end() + gap, False))
                rest = after[gap:]
                in_paragraph, self.leaf = False, None
                continue
            if first in "`~":
                fence = _FENCE.match(s)
                if fence and not (first == "`" and "`" in fence.group(2)):
                    self.leaf = ("f", first, len(fence.group(1)))
                    return False
            if first == "#" and _ATX.match(s):
                self.leaf = None
                return False
            html = _html_start(s, in_paragraph) if first == "<" else None
            if html:
                kind, closer = html
                ends = kind <= 5 and _html_ends(kind, closer, s)
                self.leaf = None if ends else ("h", kind, closer)
                return True
            self.leaf = ("p",)
            return False

    def closer(self) -> str:
        """What closes the block left open at the end of the text at the top level, so that a
        line appended after it is read on its own (a blank line ends everything else)."""
        if self.containers or self.leaf is None:
            return ""
        if self.leaf[0] == "f":
            return self.leaf[1] * self.leaf[2]
        if self.leaf[0] == "h" and self.leaf[1] <= 5:
            return self.leaf[2]
        return ""


def markers(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(index, BEGIN or END) of each line that counts as a marker, in order: a marker line
    that opens an HTML block, i.e. is not hidden in code, HTML or a quote."""
    if not any(BEGIN in line or END in line for line in lines):
        return []  # the common case, without scanning
    scanner = _Scanner()
    found = []
    for n, line in enumerate(lines):
        if scanner.feed(line):
            kind = marker_of(line)
            if kind:
                found.append((n, kind))
    return found


def _problem(found: list[tuple[int, str]]) -> str:
    """What is wrong with a marker sequence that is not one BEGIN then one END."""
    where = ", ".join(f"{'begin' if kind == BEGIN else 'end'} at line {n + 1}"
                      for n, kind in found[:6]) + (", …" if len(found) > 6 else "")
    open_at: int | None = None
    blocks = 0
    for n, kind in found:
        if kind == END and open_at is None:
            reason = f"the end marker at line {n + 1} has no begin marker before it"
            break
        if kind == BEGIN and open_at is not None:
            reason = (f"the begin marker at line {open_at + 1} has no end marker before the "
                      f"next begin marker (line {n + 1})")
            break
        open_at = n if kind == BEGIN else None
        blocks += kind == END
    else:
        reason = (f"the begin marker at line {open_at + 1} has no end marker after it"
                  if open_at is not None else f"{blocks} blocks, and vaultd keeps one")
    return (f"vaultd's markers do not make one block: {reason} (markers: {where}); vaultd "
            "writes nothing here until there is one begin line and one end line, or none")


def find_block(text: str) -> tuple[int, int] | None:
    """Where the one managed block is: (offset of its BEGIN marker, offset just after its END
    marker), or None when the text has no marker. MarkerError for any other shape."""
    lines = text.split("\n")
    found = markers(lines)
    if not found:
        return None
    if [kind for _, kind in found] != [BEGIN, END]:
        raise MarkerError(_problem(found))
    (first, _), (last, _) = found
    starts = [0]
    for line in lines[:last]:
        starts.append(starts[-1] + len(line) + 1)
    return (starts[first] + lines[first].index(BEGIN),
            starts[last] + lines[last].index(END) + len(END))


def _tolerant(text: str) -> tuple[int, int] | None:
    try:
        return find_block(text)
    except MarkerError:
        return None  # no block vaultd may claim


def block_of(text: str) -> str | None:
    """The managed block's content, or None when the text has none (or markers of any shape
    but one block: then nothing in it is vaultd's)."""
    span = _tolerant(text)
    return text[span[0] + len(BEGIN):span[1] - len(END)].strip("\n") if span else None


def outside_block(text: str) -> str:
    """The text without vaultd's managed block: the user's own part."""
    span = _tolerant(text)
    return text[:span[0]] + text[span[1]:] if span else text


def with_block(text: str, lines: list[str]) -> str:
    """`text` with vaultd's managed block holding `lines`; everything outside stays byte for
    byte. A new block goes at the end, after closing a fence or HTML block the text leaves open
    (never inside it). MarkerError, and nothing to write, when the markers are of another shape
    than none or one block, or when `lines` would not read back as that block."""
    block = "\n".join([BEGIN, *lines, END])
    span = find_block(text)
    if span:
        new, at = text[:span[0]] + block + text[span[1]:], span[0]
    else:
        scanner = _Scanner()
        for line in text.split("\n"):
            scanner.feed(line)
        closer = scanner.closer() if text else ""
        if closer:  # the user's last block never closes: a block added after it is hidden
            text += ("" if text.endswith("\n") else "\n") + closer + "\n"
        sep = "" if not text or text.endswith("\n\n") else (
            "\n" if text.endswith("\n") else "\n\n")
        new, at = text + sep + block + "\n", len(text) + len(sep)
    try:
        found = find_block(new)
    except MarkerError:
        found = None
    if found != (at, at + len(block)):
        raise MarkerError("the lines vaultd would write are not read back as its one block "
                          "(a line of them opens code or HTML, or is a marker); nothing written")
    return new
