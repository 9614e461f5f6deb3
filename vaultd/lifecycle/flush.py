"""flush: what an agent reads at session start, MEMORY.md's managed block, brought up to date.

A flush indexes what changed, connects new entries, routes proven knowledge, then renders the
block. Idempotent: with nothing new, every file stays byte-identical (and keeps its mtime).

Sections (from `templates/memory_block.md`, overridable by `.vaultd/memory_block.md`): key facts
(proven knowledge), procedures, recent episodes, open threads. One line per item — a summary and
a relative link to its note — ranked by proven status, connections, recall and recency. A hard
character budget: items that do not fit are counted in an explicit closing line that says how to
find them, never cut silently. vaultd owns only the block between its markers; the rest of the
file is the user's and is kept verbatim.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd import edits, layout
from vaultd.blocks import with_block
from vaultd.layout import MEMORY_FILE
from vaultd.lifecycle.entries import EntryView, snapshot, summary
from vaultd.store import Store

if TYPE_CHECKING:
    from vaultd.vault import Vault

TEMPLATE = "memory_block.md"
OPEN_TAGS = {"todo", "open", "question", "followup", "follow-up", "wip"}
RECENT = 10


@dataclass(frozen=True)
class Item:
    section: str
    line: str
    rank: float


def _template(root: Path, templates: Path) -> str:
    override = layout.state_dir(root) / TEMPLATE
    return (override if override.is_file() else templates / TEMPLATE).read_text(encoding="utf-8")


def items(store: Store, views: list[EntryView]) -> list[Item]:
    degree = store.link_degrees()
    recalls = store.recall_counts()
    active = [v for v in views if not v.archived and v.path != MEMORY_FILE]
    newest = {v.id: i for i, v in enumerate(active)}  # larger = more recent
    out: list[Item] = []
    episodic = [v for v in active if v.type == "episodic"]
    recent_ids = {v.id for v in episodic[-RECENT:]}
    for v in active:
        rank = (3.0 * v.proven + min(degree.get(v.id, 0), 10) * 0.3
                + recalls.get((v.path, v.key), 0) * 0.5 + newest[v.id] / max(len(active), 1))
        title = v.frontmatter.get("title") if not v.is_daily else None
        text = summary(v) if not title else f"{title}: {summary(v).split(': ', 1)[-1]}"
        link = f"[{Path(v.path).stem}]({v.path})"
        line = f"- {text} — {link}"
        tags = {t.lower() for t in v.tags}
        if v.type == "procedural":
            out.append(Item("procedures", line, rank))
        elif v.proven:
            out.append(Item("key_facts", line, rank))
        elif v.type == "episodic" and (tags & OPEN_TAGS or re.search(r"\bTODO\b", v.text)):
            out.append(Item("open_threads", line, rank))
        elif v.id in recent_ids:
            out.append(Item("recent", line, rank))
    return out


def render(root: Path, templates: Path, store: Store, views: list[EntryView],
           budget: int) -> str:
    """The managed block's content, at most `budget` characters."""
    template = _template(root, templates)
    chosen: dict[str, list[str]] = {"key_facts": [], "procedures": [], "recent": [],
                                     "open_threads": []}
    ranked = sorted(items(store, views), key=lambda i: (-i.rank, i.line))
    skeleton = template.format(**{k: "" for k in chosen})
    used = len(skeleton) + 200  # room for the closing line
    left_out = 0
    for item in ranked:
        if used + len(item.line) + 1 > budget:
            left_out += 1
            continue
        chosen[item.section].append(item.line)
        used += len(item.line) + 1
    filled = {k: "\n".join(v) if v else "- (none yet)" for k, v in chosen.items()}
    body = template.format(**filled).rstrip("\n")
    if left_out:
        body += (f"\n\n_{left_out} more item(s) did not fit the {budget:,}-character budget: "
                 "`vaultd search <topic>` finds them._")
    return body


def write_memory(root: Path, block: str, *, dry_run: bool = False) -> tuple[bool, str]:
    """Put `block` into MEMORY.md's managed block, keeping the user's text. Returns (written,
    unified diff). A user edit made between our read and our write is never lost: we re-read
    and merge once; if the file keeps changing, we report a conflict instead of writing."""
    import difflib

    path = edits.inside(root, root / MEMORY_FILE)  # a symlink out is neither followed nor replaced
    for _ in range(2):
        snap = edits.read(path) if path.exists() else None
        old = snap.text if snap else ""
        new = with_block(old, block.split("\n"))
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                            f"a/{MEMORY_FILE}", f"b/{MEMORY_FILE}"))
        if dry_run or new == old:
            return False, diff
        try:
            if snap is None:
                edits.create_new(path, new, root=root)
            else:
                edits.replace_checked(snap, new, root=root)
            return True, diff
        except edits.RefusedError:
            raise  # read-only, hard-linked…: new text will not change that
        except edits.ConflictError:
            continue  # the user saved in between: merge into their new text
    raise edits.ConflictError(f"{path}: kept changing while vaultd wrote its block; nothing "
                              "written (run `vaultd flush` again)")


@dataclass
class FlushReport:
    indexed: str  # the index report's summary line
    phases: list[dict[str, Any]]  # connect's and route's PhaseReports, as JSON
    memory_written: bool
    memory_diff: str
    memory_chars: int
    # every file the flush creates or changes (its phases' and MEMORY.md): path, change, diff
    files: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flush(vault: Vault, *, dry_run: bool = False) -> FlushReport:
    """Index what changed, connect new entries, route proven knowledge, then write MEMORY.md's
    managed block."""
    from vaultd.vault import templates_dir

    report = vault.index()
    phases = vault.lifecycle(["connect", "route"], dry_run=dry_run)
    views, _ = snapshot(vault.store)
    block = render(vault.root, templates_dir(), vault.store, views,
                   vault.settings.lifecycle.memory_budget)
    written, diff = write_memory(vault.root, block, dry_run=dry_run)
    if written:
        vault.indexer().sync_paths([MEMORY_FILE])
    files = [f for p in phases for f in p.files]
    if diff:
        files.append({"path": MEMORY_FILE, "change": "change" if (
            vault.root / MEMORY_FILE).exists() else "create", "diff": diff})
    return FlushReport(report.summary(), [p.to_dict() for p in phases], written, diff,
                       len(block), sorted(files, key=lambda f: f["path"]))
