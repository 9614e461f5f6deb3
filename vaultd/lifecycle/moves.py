"""Moving entries without losing a word: to `archive/` (fade, merge, prune) and back
(`restore`, `undo`), and the check every move makes first — the entry must still hold the text
the plan was made on (`as_planned`).

Nothing is deleted: a whole note moves as a file; a daily-log entry moves into the same-named
file under `archive/`. A move copies first and removes the source only once the copy is in
place and the source is unchanged, so a crash leaves at worst two copies (which
`recovery.finish_interrupted` resolves), never none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from vaultd import edits
from vaultd.layout import ARCHIVE_DIR, is_archived
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.plans import CHANGE, CREATE, REMOVE, Drafts, Outcome, Plan
from vaultd.notes import entry_hash, parse
from vaultd.store import Store


def _now() -> str:
    return dt.datetime.now().astimezone().replace(microsecond=0).isoformat()


def as_planned(text: str, view: EntryView) -> Any:
    """The entry of `text` that a plan was made on: same key and same content hash as when it
    was indexed. ConflictError when the user changed it since (the plan is stale)."""
    note = parse(view.path, text)
    found = [e for e in note.entries if e.key == view.key]
    current = next((e for e in found
                    if entry_hash(e.text) == view.hash), None)
    if current is None:
        raise edits.ConflictError(f"{view.path}: entry {view.key[:60]!r} changed or moved "
                                  "since it was indexed; left in place")
    return current


def cut_entry(text: str, view: EntryView) -> tuple[str, str]:
    """(file text without the entry, the entry's lines). The entry is found in the current
    text by its key, not by indexed line numbers (earlier writes may have shifted them), and
    must still hold the text it was planned on."""
    current = as_planned(text, view)
    lines = text.split("\n")
    start, end = current.start_line - 1, current.end_line
    taken = "\n".join(lines[start:end])
    rest = lines[:start] + lines[end:]
    if 0 < start <= len(rest) and not rest[start - 1].strip() and (
            start == len(rest) or not rest[start].strip()):
        del rest[start - 1]  # no double blank line where the entry was
    return "\n".join(rest), taken


def archive_entry(root: Path, view: EntryView, reason: str, out: Outcome) -> None:
    """Move an entry to archive/ (never delete): a whole note moves as a file; a daily-log
    entry moves into the same-named file under archive/."""
    src = edits.inside(root, root / view.path)
    snap = edits.read(src)
    stamp = {"archived_at": _now(), "archived_reason": reason, "archived_from": view.path}
    dest = edits.inside(root, root / ARCHIVE_DIR / view.path)
    if not view.is_daily:
        if view.hash:  # a planned fade or merge: only of the text it was planned on
            as_planned(snap.text, view)
        text = edits.set_frontmatter(snap.text, stamp)
        unstamp: dict[str, Any] = dict.fromkeys(stamp)
        if dest.exists() and edits.set_frontmatter(
                dest.read_text(encoding="utf-8"), unstamp) == snap.text:
            # a move a crash cut short (copy made, source not yet removed): finish it
            with edits.locked(src):
                if src.read_bytes() != snap.data:
                    raise edits.ConflictError(f"{src}: changed while archiving; left in place")
                src.unlink()
            out.written.append(view.path)
            return
        dest = root / archive_dest(root, view)
        edits.create_new(dest, text)
        # the source is removed only after its copy is safely in place, and only if unchanged
        with edits.locked(src):
            if src.read_bytes() != snap.data:
                dest.unlink()
                raise edits.ConflictError(f"{src}: changed while archiving; left in place")
            src.unlink()
        out.written.append(view.path)
        out.created.append(dest.relative_to(root).as_posix())
        return
    rest, taken = without_entry(snap.text, view)
    moved: str | None = None
    with edits.locked(dest):
        before = dest.read_bytes() if dest.exists() else None
        current = before.decode("utf-8") if before is not None else \
            edits.daily_header(view.date or dest.stem)
        state = edits.get_frontmatter(view.path, current)
        archived = dict(state.get("archived") or {}) if isinstance(state.get("archived"),
                                                                    dict) else {}
        # a move a crash cut short (copy written, source not yet cut) is finished, not
        # copied a second time
        if not (view.key in archived and _holds(f"{ARCHIVE_DIR}/{view.path}", current, view)):
            archived[view.key] = {"at": stamp["archived_at"], "reason": reason,
                                  "from": view.path}
            current = edits.set_frontmatter(current, {"archived": archived})
            moved = current.rstrip("\n") + "\n\n" + taken.strip("\n") + "\n"
            edits.atomic_write(dest, moved)
    try:
        edits.replace_checked(snap, rest)
    except edits.ConflictError:
        # the source changed after our read, so the entry stays there: take back its copy
        with edits.locked(dest):
            if moved is not None and dest.read_bytes() == moved.encode("utf-8"):
                if before is None:
                    dest.unlink()  # the archive file we just created, holding only this copy
                else:
                    edits.atomic_write(dest, before.decode("utf-8"))
        raise
    out.written.append(view.path)
    out.created.append(dest.relative_to(root).as_posix())


def without_entry(text: str, view: EntryView) -> tuple[str, str]:
    """(a daily log's text without the entry `view`, the entry's lines): the entry's
    bookkeeping under `vaultd:` leaves with it. ConflictError when the entry changed."""
    rest, taken = cut_entry(text, view)
    state = edits.get_frontmatter(view.path, rest).get("vaultd")
    if isinstance(state, dict):
        state = {k: ({kk: vv for kk, vv in v.items() if kk != view.key} if isinstance(v, dict)
                     else [x for x in v if x != view.key] if isinstance(v, list) else v)
                 for k, v in state.items()}
        rest = edits.set_frontmatter(rest, {"vaultd": {k: v for k, v in state.items() if v}
                                            or None})
    return rest, taken


def archive_dest(root: Path, view: EntryView) -> str:
    """Where archiving `view` puts it (vault path): the same path under archive/; a whole note
    whose name is taken there gets a suffix from its content hash (the plan and the move agree
    on it)."""
    dest = f"{ARCHIVE_DIR}/{view.path}"
    if view.is_daily or not (root / dest).exists():
        return dest
    tag = (view.hash or hashlib.sha1(_now().encode()).hexdigest())[:6]
    stem, dot, suffix = dest.rpartition(".")
    return f"{stem}-{tag}{dot}{suffix}" if dot else f"{dest}-{tag}"


def plan_archive(plan: Plan, drafts: Drafts, view: EntryView) -> None:
    """Record in `plan` the files that archiving `view` touches, with the diff of its source."""
    root = drafts.root
    if not view.is_daily:
        plan.touch(view.path, REMOVE)
        plan.touch(archive_dest(root, view), CREATE)
        return
    try:
        rest, _ = without_entry(drafts.text(view.path), view)
    except (edits.ConflictError, OSError, UnicodeDecodeError):
        return  # applying it will report why it was left in place
    drafts.change(plan, view.path, rest)
    dest = archive_dest(root, view)
    plan.touch(dest, CHANGE if (root / dest).exists() or dest in plan.files else CREATE)


def _holds(rel: str, text: str, view: EntryView) -> bool:
    """Whether `text` (of the archive file `rel`) has the entry `view` word for word."""
    return any(e.key == view.key and entry_hash(e.text) == view.hash
               for e in parse(rel, text).entries)


def _append_entry_text(path: Path, day: str, entry: str) -> tuple[bytes | None, str]:
    """Append `entry` to the daily log at `path`; returns (its bytes before, the text written)
    so that a restore that cannot finish can take the entry back."""
    with edits.locked(path):
        before = path.read_bytes() if path.exists() else None
        current = before.decode("utf-8") if before is not None else edits.daily_header(day)
        text = current.rstrip("\n") + "\n\n" + entry.strip("\n") + "\n"
        edits.atomic_write(path, text)
    return before, text


def take_back(path: Path, before: bytes | None, ours: str) -> None:
    """Undo our own write to `path` if nobody changed the file since."""
    with edits.locked(path):
        if path.exists() and path.read_bytes() == ours.encode("utf-8"):
            if before is None:
                path.unlink()  # the file we just created, holding only our copy
            else:
                edits.atomic_write(path, before.decode("utf-8"))


def restore(root: Path, rel: str, keys: list[str] | None = None) -> list[str]:
    """Bring archived material back where it came from. A whole note moves back (its archive
    keys removed); for an archived daily log, the named entries (default: all) go back into
    their daily log. Returns the vault paths written."""
    if not is_archived(rel):
        raise edits.VaultdError(f"{rel}: not under {ARCHIVE_DIR}/; nothing to restore")
    _check_inside(root, rel)  # `archive/../..` or a symlink must not reach (and unlink) a file
    src = root / rel
    if not src.is_file():
        raise edits.VaultdError(f"{rel}: no such file")
    snap = edits.read(src)
    fm = edits.get_frontmatter(rel, snap.text)
    archived = fm.get("archived")
    if not isinstance(archived, dict):  # a whole note
        origin = str(fm.get("archived_from") or rel.split("/", 1)[1])
        _check_inside(root, origin)
        text = edits.set_frontmatter(snap.text, {"archived_at": None, "archived_reason": None,
                                                 "archived_from": None})
        edits.create_new(root / origin, text)
        with edits.locked(src):
            unchanged = src.read_bytes() == snap.data
            if unchanged:
                src.unlink()
        if not unchanged:  # the user edited the archived copy meanwhile: theirs stays
            take_back(root / origin, None, text)
            raise edits.ConflictError(f"{rel}: changed while restoring; left in place")
        return [origin, rel]
    note = parse(rel, snap.text)
    wanted = set(keys) if keys else set(archived)
    text, written = snap.text, []
    appended: list[tuple[Path, bytes | None, str]] = []
    for entry in sorted(note.entries, key=lambda e: -e.start_line):
        if entry.key not in wanted or entry.key not in archived:
            continue
        info = archived[entry.key] if isinstance(archived[entry.key], dict) else {}
        origin = str(info.get("from") or rel.split("/", 1)[1])
        _check_inside(root, origin)
        lines = text.split("\n")
        appended.append((root / origin, *_append_entry_text(
            root / origin, note.created or Path(origin).stem,
            "\n".join(lines[entry.start_line - 1:entry.end_line]))))
        text = "\n".join(lines[:entry.start_line - 1] + lines[entry.end_line:])
        del archived[entry.key]
        written.append(origin)
    try:
        if not archived:
            with edits.locked(src):
                if src.read_bytes() != snap.data:
                    raise edits.ConflictError(f"{rel}: changed while restoring; left in place")
                src.unlink()  # every entry is back where it came from
        else:
            edits.replace_checked(snap, edits.set_frontmatter(text, {"archived": archived}))
    except edits.ConflictError:
        for path, before, ours in reversed(appended):  # no entry may end up in both places
            take_back(path, before, ours)
        raise
    return sorted(set(written)) + [rel]


def _check_inside(root: Path, rel: str) -> None:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()) or rel.startswith("/"):
        raise edits.VaultdError(f"{rel}: outside the vault; refused")


def undo(root: Path, store: Store, merge_id: str) -> list[str]:
    """Undo a consolidation: its originals come back, the merged note goes to archive/."""
    row = next(((p, fm) for p, (fm, _) in store.file_frontmatters().items()
                if merge_id and str(fm.get("consolidation", "")).startswith(merge_id)), None)
    if row is None:
        raise edits.VaultdError(f"no consolidated note with id {merge_id} (see `consolidation:` "
                                "in a proven note's frontmatter)")
    path, fm = row
    sources = fm.get("consolidated_from") or []
    by_file: dict[str, list[str]] = {}
    for source in sources:
        file_part, _, key = str(source).partition("#")
        by_file.setdefault(file_part, []).append(key)
    written: list[str] = []
    for file_part, keys in by_file.items():
        archived = f"{ARCHIVE_DIR}/{file_part}"
        if (root / archived).is_file():
            written += restore(root, archived, [k for k in keys if k] or None)
    view = EntryView(id="", path=path, key="", heading="", type="semantic", date=None, tags=(),
                     start_line=1, end_line=1, text="", hash="", is_daily=False,
                     frontmatter={})
    out = Outcome()
    archive_entry(root, view, f"undo of consolidation {merge_id}", out)
    return written + out.written + out.created
