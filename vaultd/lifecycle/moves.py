"""Moving entries without losing a word: to `archive/` (fade, merge, prune) and back
(`restore`, `undo`), and the check every move makes first — the entry must still hold the text
the plan was made on (`as_planned`).

Nothing is deleted: a whole note moves as a file; a daily-log entry moves into the same-named
file under `archive/`. A move copies first and removes the source only once the copy is in
place and the source is unchanged, so a crash leaves at worst two copies (which
`recovery.finish_interrupted` resolves), never none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaultd import edits
from vaultd.layout import ARCHIVE_DIR, archive_path, is_archived, unarchived
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.plans import CHANGE, CREATE, REMOVE, Drafts, Outcome, Plan
from vaultd.notes import entry_hash, parse
from vaultd.provenance import SEAL as SEAL_KEY
from vaultd.provenance import Seals, seal_note_text
from vaultd.store import Store

ARCHIVE_STAMP = ("archived_at", "archived_reason", "archived_from")


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


def archived_records(frontmatter: dict[str, Any],
                     seals: Seals | None = None) -> list[dict[str, Any]]:
    """An archived daily log's `archived:` records, one per entry moved in: `{key, hash, at,
    reason, from, left, seal}`. The hash tells apart entries that share a heading (three `##
    Nightly failure` sections, three `remember`s in one minute). Files written before records
    had a hash hold a mapping keyed by heading: it is read as records without a hash, each
    matching every entry under its heading (so none is left behind). With `seals`, only the
    records vaultd verifiably wrote (a forged record must not say where `restore` writes, nor
    make crash recovery cut an entry out of a log)."""
    records = _records(frontmatter)
    return records if seals is None else [r for r in records if seals.record_ok(r)]


def _records(frontmatter: dict[str, Any]) -> list[dict[str, Any]]:
    raw = frontmatter.get("archived")
    if isinstance(raw, dict):
        return [{"key": str(k), **(v if isinstance(v, dict) else {})} for k, v in raw.items()]
    if isinstance(raw, list):
        return [dict(r, key=str(r["key"])) for r in raw if isinstance(r, dict) and "key" in r]
    return []


def _matches(record: dict[str, Any], key: str, digest: str) -> bool:
    return record.get("key") == key and record.get("hash") in (None, "", digest)


def same_entries(entries: list[Any], key: str, digest: str) -> int:
    """How many of `entries` have this key and this exact text (identical twins: an agent that
    wrote the same `remember` twice in one minute)."""
    return sum(1 for e in entries if e.key == key and entry_hash(e.text) == digest)


def interrupted(records: list[dict[str, Any]], key: str, digest: str, live: int) -> bool:
    """Whether the last move of this entry into the archive was cut short: its record says how
    many identical entries were to stay in the log (`left`), and the log still holds more."""
    mine = [r for r in records if _matches(r, key, digest)]
    if not mine:
        return False
    try:
        left = int(mine[-1].get("left") or 0)
    except (TypeError, ValueError):
        left = 0
    return live > left


def archive_entry(root: Path, view: EntryView, reason: str, out: Outcome, *,
                  seals: Seals) -> None:
    """Move an entry to archive/ (never delete): a whole note moves as a file; a daily-log
    entry moves into the same-named file under archive/. A source vaultd may not rewrite or
    remove (read-only, hard-linked, in a read-only folder) is refused before anything is
    copied. What the move records (where it came from, when, why) is sealed with `seals`,
    together with the claims of the note vaultd had verified (`view.claims`): a claim the note
    made about itself is not laundered into a sealed one."""
    src = edits.inside(root, root / view.path)
    snap = edits.read(src)
    edits.check_writable(src, root=root)
    stamp = {"archived_at": _now(), "archived_reason": reason, "archived_from": view.path}
    dest = edits.inside(root, root / archive_path(view.path))
    if not view.is_daily:
        if view.hash:  # a planned fade or merge: only of the text it was planned on
            as_planned(snap.text, view)
        text = seal_note_text(seals, view.path, edits.set_frontmatter(snap.text, stamp),
                              [*stamp, *view.claims])
        unstamp: dict[str, Any] = dict.fromkeys([*stamp, SEAL_KEY])
        if dest.exists() and edits.set_frontmatter(edits.read(dest).text, unstamp) == \
                edits.set_frontmatter(snap.text, {SEAL_KEY: None}):
            # a move a crash cut short (copy made, source not yet removed): finish it
            edits.remove_checked(snap, root=root)
            out.written.append(view.path)
            return
        dest = root / archive_dest(root, view)
        edits.create_new(dest, text, root=root, form=snap.form)
        # the source is removed only after its copy is safely in place, and only if unchanged
        try:
            edits.remove_checked(snap, root=root)
        except edits.ConflictError:
            remove_ours(root, dest, snap.form.encode(text))
            raise
        out.written.append(view.path)
        out.created.append(dest.relative_to(root).as_posix())
        return
    rest, taken = without_entry(snap.text, view)
    moved: bytes | None = None
    before: edits.Snapshot | None = None
    with edits.locked(dest, root):
        before = edits.read(dest) if dest.exists() else None
        current = before.text if before is not None else \
            edits.daily_header(view.date or dest.stem)
        fm = edits.get_frontmatter(view.path, current)
        records = _records(fm)  # all kept as they are; only verified ones are acted on
        verified = archived_records(fm, seals)
        # a move a crash cut short (copy written, source not yet cut) is finished, not
        # copied a second time; `left` tells it from an identical twin still in the log
        live = same_entries(parse(view.path, snap.text).entries, view.key, view.hash)
        if not (interrupted(verified, view.key, view.hash, live)
                and _holds(archive_path(view.path), current, view)):
            records.append(seals.sealed_record(
                {"key": view.key, "hash": view.hash, "at": stamp["archived_at"],
                 "reason": reason, "from": view.path, "left": live - 1}))
            current = edits.set_frontmatter(current, {"archived": records})
            text = current.rstrip("\n") + "\n\n" + taken.strip("\n") + "\n"
            if before is None:
                edits.create_new(dest, text, root=root, form=snap.form)
                moved = snap.form.encode(text)
            else:
                edits.replace_checked(before, text, root=root)
                moved = before.encode(text)
    try:
        edits.replace_checked(snap, rest, root=root)
    except edits.ConflictError:
        # the source changed after our read, so the entry stays there: take back its copy
        if moved is not None:
            with edits.locked(dest, root):
                if dest.exists() and dest.read_bytes() == moved:
                    if before is None:
                        remove_ours(root, dest, moved)  # the archive file we just created
                    else:
                        edits.replace_checked(edits.Snapshot(dest, moved), before.text,
                                              root=root)
        raise
    out.written.append(view.path)
    out.created.append(dest.relative_to(root).as_posix())


def remove_ours(root: Path, path: Path, ours: bytes) -> None:
    """Remove a file we just created, if it still holds exactly what we wrote."""
    with contextlib.suppress(edits.ConflictError, FileNotFoundError):
        snap = edits.read(path)
        if snap.data == ours:
            edits.remove_checked(snap, root=root)


def without_entry(text: str, view: EntryView) -> tuple[str, str]:
    """(a daily log's text without the entry `view`, the entry's lines): the entry's
    bookkeeping under `vaultd:` leaves with it. ConflictError when the entry changed."""
    rest, taken = cut_entry(text, view)
    state = edits.get_frontmatter(view.path, rest).get("vaultd")
    if any(e.key == view.key for e in parse(view.path, rest).entries):
        state = None  # another entry keeps this heading (and the state kept under it)
    if isinstance(state, dict):
        state = {k: ({kk: vv for kk, vv in v.items() if kk != view.key} if isinstance(v, dict)
                     else [x for x in v if x != view.key] if isinstance(v, list) else v)
                 for k, v in state.items()}
        rest = edits.set_frontmatter(rest, {"vaultd": {k: v for k, v in state.items() if v}
                                            or None})
    return rest, taken


def archive_dest(root: Path, view: EntryView) -> str:
    """Where archiving `view` puts it (vault path): the same path under its home's archive/
    (`layout.archive_path`); a whole note
    whose name is taken there gets a suffix from its content hash (the plan and the move agree
    on it)."""
    dest = archive_path(view.path)
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


def restore(root: Path, rel: str,
            wanted: Sequence[tuple[str, str | None] | str] | None = None, *,
            seals: Seals) -> list[str]:
    """Bring archived material back where it came from. A whole note moves back (its archive
    keys removed); for an archived daily log, the wanted entries — (key, hash) pairs, a None
    hash or a bare key meaning any entry under that key; default: every archived entry — go
    back into their daily log, each found by key and content. The archive file is removed only
    once no entry is left in it. Where an entry goes back is where its sealed record (or the
    note's sealed `archived_from`) says; an unverified one is ignored and the entry goes to the
    path the archive mirrors (`archive/X` → `X`), which the write gate still checks. Returns
    the vault paths written."""
    if not is_archived(rel):
        raise edits.VaultdError(f"{rel}: not under {ARCHIVE_DIR}/; nothing to restore")
    _check_inside(root, rel)  # `archive/../..` or a symlink must not reach (and unlink) a file
    src = root / rel
    if not src.is_file():
        raise edits.VaultdError(f"{rel}: no such file")
    snap = edits.read(src)
    edits.check_writable(src, root=root)
    note = parse(rel, snap.text)
    fm = note.frontmatter
    mirrored = unarchived(rel)
    if not isinstance(fm.get("archived"), (dict, list)):  # a whole note
        claims = seals.claims_of(note)
        origin = str(fm.get("archived_from") or mirrored) if "archived_from" in claims \
            else mirrored
        _check_inside(root, origin)
        text = seal_note_text(seals, origin, edits.set_frontmatter(
            snap.text, dict.fromkeys(ARCHIVE_STAMP)), claims - set(ARCHIVE_STAMP))
        edits.create_new(root / origin, text, root=root, form=snap.form)
        try:
            edits.remove_checked(snap, root=root)
        except edits.ConflictError:  # the user edited the archived copy meanwhile: theirs stays
            remove_ours(root, root / origin, snap.form.encode(text))
            raise edits.ConflictError(f"{rel}: changed while restoring; left in place") \
                from None
        return [origin, rel]
    records = _records(fm)
    trusted = archived_records(fm, seals)
    pairs = None if wanted is None else [(w, None) if isinstance(w, str) else w for w in wanted]
    chosen = [e for e in note.entries
              if any(_matches(r, e.key, e.hash) for r in records)
              and (pairs is None or any(k == e.key and h in (None, e.hash)
                                        for k, h in pairs))]
    text, written = snap.text, []
    appended: list[tuple[Path, int, bytes]] = []
    try:
        for entry in sorted(chosen, key=lambda e: -e.start_line):
            record = next(r for r in records if _matches(r, entry.key, entry.hash))
            origin = str(record.get("from") or mirrored) if any(
                r is record for r in trusted) else mirrored
            _check_inside(root, origin)
            lines = text.split("\n")
            taken = "\n".join(lines[entry.start_line - 1:entry.end_line])
            appended.append((root / origin, *edits.append_text(
                root / origin, "\n" + taken.strip("\n") + "\n", root=root,
                header=edits.daily_header(note.created or Path(origin).stem))))
            text = "\n".join(lines[:entry.start_line - 1] + lines[entry.end_line:])
            if record.get("hash"):
                records.remove(record)
            written.append(origin)
        left = parse(rel, text).entries
        records = [r for r in records if any(_matches(r, e.key, e.hash) for e in left)]
        if not left:
            edits.remove_checked(snap, root=root)  # every entry is back where it came from
        else:
            edits.replace_checked(snap, edits.set_frontmatter(text, {"archived": records or None}),
                                  root=root)
    except edits.ConflictError:
        for path, size, ours in reversed(appended):  # no entry may end up in both places
            edits.take_back(path, size, ours, root=root)
        raise
    return sorted(set(written)) + [rel]


def _check_inside(root: Path, rel: str) -> None:
    """RefusedError naming `rel` (an archive record's `from:`, a file's own path) unless the
    write gate allows it: a crafted record must not reach `.git/config`, `.vaultd/`, a plugin,
    a nested vault or anything outside, nor go through a link."""
    from vaultd import gate

    gate.vault_path(root, rel)


def consolidations(root: Path, store: Store, merge_id: str,
                   seals: Seals) -> list[tuple[str, dict[str, Any], frozenset[str]]]:
    """(path, frontmatter, verified claims) of each merged note whose `consolidation:` id
    starts with `merge_id` and that vaultd verifiably wrote (a note that only says it is a
    consolidation must not make `undo` move anything)."""
    found = []
    for path, (fm, _) in sorted(store.file_frontmatters().items()):
        if not merge_id or not str(fm.get("consolidation", "")).startswith(merge_id):
            continue
        try:
            note = parse(path, edits.read(root / path).text)
        except (OSError, edits.ConflictError):
            continue
        claims = seals.claims_of(note)
        if {"consolidation", "consolidated_from"} <= claims:
            found.append((path, note.frontmatter, claims))
    return found


def undo(root: Path, store: Store, merge_id: str, seals: Seals) -> list[str]:
    """Undo a consolidation: the merged note goes to archive/, and originals an older vaultd
    moved to archive/ when it merged them come back (a merge now leaves them where they are).
    An id prefix that several consolidations share is refused, listing them."""
    found = consolidations(root, store, merge_id, seals)
    if not found:
        raise edits.VaultdError(f"no consolidated note with id {merge_id} that vaultd made "
                                "(see `consolidation:` in a merged note's frontmatter; "
                                "`vaultd doctor` lists claims it cannot verify)")
    if len(found) > 1:
        listed = ", ".join(f"{fm['consolidation']} ({p})" for p, fm, _ in found)
        raise edits.VaultdError(f"{merge_id} matches {len(found)} consolidations: {listed}; "
                                "give more of the id")
    path, fm, claims = found[0]
    sources = fm.get("consolidated_from") or []
    hashes = fm.get("consolidated_hashes")
    hashes = hashes if isinstance(hashes, list) and len(hashes) == len(sources) else \
        [None] * len(sources)
    by_file: dict[str, list[tuple[str, str | None]]] = {}
    for source, digest in zip(sources, hashes):
        file_part, _, key = str(source).partition("#")
        by_file.setdefault(file_part, [])
        if key:
            by_file[file_part].append((key, str(digest) if digest else None))
    written: list[str] = []
    for file_part, keys in by_file.items():
        archived = archive_path(file_part)
        live = root / file_part
        if keys and live.is_file():  # entries still in their log stay as they are
            here = parse(file_part, edits.read(live).text).entries
            keys = [(k, h) for k, h in keys
                    if not any(e.key == k and h in (None, e.hash) for e in here)]
            if not keys:
                continue
        elif not keys and live.exists():  # a merged note that never left its place
            continue
        if (root / archived).is_file():
            written += restore(root, archived, keys or None, seals=seals)
    view = EntryView(id="", path=path, key="", heading="", type="semantic", date=None, tags=(),
                     start_line=1, end_line=1, text="", hash="", is_daily=False,
                     frontmatter=fm, claims=claims)
    out = Outcome()
    archive_entry(root, view, f"undo of consolidation {fm['consolidation']}", out, seals=seals)
    return written + out.written + out.created
