"""Finishing what a crash cut short, before any phase that moves entries runs again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vaultd import edits
from vaultd.layout import ARCHIVE_DIR
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.moves import archive_entry, archived_records, interrupted
from vaultd.lifecycle.plans import Outcome


def finish_interrupted(root: Path, views: list[EntryView]) -> Outcome:
    """Finish what a crash (SIGKILL, power loss) cut short, so a re-run converges:
    - a daily-log entry whose exact copy is already in its archive file under the same key
      (the copy was written, the source not yet cut) leaves the log;
    - an entry still in its log that a merged note lists as a source, with the text it was
      merged from (`consolidated_hashes`), moves to archive/ as the consolidation meant to.
    An entry changed since keeps its place. Nothing is deleted: each one is moved."""
    out = Outcome()
    copies = {(v.path.removeprefix(f"{ARCHIVE_DIR}/"), v.key, v.hash)
              for v in views if v.archived and v.is_daily}
    records = {v.path.removeprefix(f"{ARCHIVE_DIR}/"): archived_records(v.frontmatter)
               for v in views if v.archived and v.is_daily}
    live = Counter((v.path, v.key, v.hash) for v in views if not v.archived and v.is_daily)
    # an identical twin left in the log on purpose is not an interrupted move
    copies = {c for c in copies if interrupted(records.get(c[0], []), c[1], c[2], live[c])}
    merged: dict[tuple[str, str], str] = {}  # (source, hash) → why
    for v in views:
        fm = v.frontmatter
        sources, hashes = fm.get("consolidated_from"), fm.get("consolidated_hashes")
        if v.archived or not fm.get("consolidation") or not isinstance(sources, list) \
                or not isinstance(hashes, list) or len(sources) != len(hashes):
            continue
        for source, digest in zip(sources, hashes):
            merged[(str(source), str(digest))] = \
                f"consolidated into {v.path} ({fm['consolidation']})"
    for v in sorted((v for v in views if not v.archived and v.is_daily),
                    key=lambda v: (v.path, -v.start_line)):
        why = ("finishing an interrupted move" if (v.path, v.key, v.hash) in copies
               else merged.get((f"{v.path}#{v.key}", v.hash)))
        if why is None:
            continue
        try:
            archive_entry(root, v, why, out)
        except (edits.ConflictError, OSError) as exc:  # one file never stops the run
            out.conflicts.append(edits.per_file(v.path, exc))
    return out
