"""Check a vault against its index, and repair what is off (`vaultd doctor [--fix]`).

The vault is the truth and the index a disposable cache, so every repair is "index again" or,
when the index itself cannot be trusted (garbage, another schema, another model), "build a
fresh one beside it and swap it in"; the old file is moved aside, never deleted.

Checks are read-only (the index is opened in SQLite's read-only mode and never migrated), so
they run safely next to a working daemon. `fix` refuses while a daemon runs: the daemon is the
index's single writer; stop it, fix, start it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vaultd import edits, layout
from vaultd.daemon.discovery import (
    INFO_FILE,
    LOCK_FILE,
    ensure_token,
    info_path,
    pid_alive,
    token_path,
)
from vaultd.edits import LOCK_SUFFIX, TEMP_SUFFIX
from vaultd.errors import DiskFullError, IndexAccessError, VaultdError
from vaultd.provenance import KEY_FILE, Seals, key_problem, unverified
from vaultd.store import IndexStore, Store, unusable
from vaultd.store.backend import index_location

if TYPE_CHECKING:
    from vaultd.config import Settings
    from vaultd.embedder import Embedder
    from vaultd.indexer import Indexer


class Vault(Protocol):
    """What doctor needs of an open vault (`vaultd.vault.Vault` is one): passed in, so doctor
    never imports the library API that calls it."""

    root: Path
    ignore: layout.Ignore
    settings: Settings

    @property
    def store(self) -> Store: ...
    @property
    def embedder(self) -> Embedder: ...
    def index(self) -> Any: ...
    def indexer(self) -> Indexer: ...
    def embed_pending(self) -> int: ...
    def close(self) -> None: ...

# Findings that mean the index as a whole cannot be trusted: --fix rebuilds it.
REBUILD = ("corrupt", "schema", "model")
# Findings about single files: --fix indexes those files again.
REINDEX = ("missing", "stale", "extra", "embeddings")
# Findings no repair of the index can fix (the message says what will): --fix leaves them.
UNFIXABLE = ("permission", "seal-key", "disk-full")
SHOW_PER_KIND = 20


@dataclass(frozen=True)
class Finding:
    kind: str  # missing, stale, extra, orphan, embeddings, vectors, fts, model, schema,
    #            corrupt, permission, no-index, token, lock, temp, litter, sync-conflict,
    #            seal-key, disk-full
    message: str
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "message": self.message}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    # Chunks written without a vector yet (the index's vectors phase, or one a crash cut
    # short): work to do, not damage. Keyword search finds them already; the daemon or the
    # next `vaultd index` embeds them. Not a finding: a clean index may have some.
    pending_vectors: int = 0
    daemon_running: bool = False
    # Claims of vaultd's authority (proven, merged, extracted, archived from) that a note makes
    # but vaultd cannot verify it wrote (`provenance`): ignored for every write, so news rather
    # than damage — a user's own `status: proven` is one, a forged or copied claim another.
    unverified: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def paths(self, *kinds: str) -> list[str]:
        return sorted({f.path for f in self.findings if f.kind in kinds and f.path})

    def add(self, kind: str, message: str, path: str | None = None) -> None:
        self.findings.append(Finding(kind, message, path))

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "checked": self.checked, "fixed": self.fixed,
                "pending_vectors": self.pending_vectors, "unverified": self.unverified,
                "findings": [f.to_dict() for f in self.findings]}

    def pending_line(self) -> str | None:
        if not self.pending_vectors:
            return None
        who = ("the running daemon is embedding them" if self.daemon_running
               else "`vaultd index` (or `vaultd doctor --fix`) embeds them")
        return (f"pending: {self.pending_vectors} chunk(s) wait for their vectors ({who}); "
                "keyword search finds them already, hybrid search ranks them by BM25 alone")

    def lines(self) -> list[str]:
        """A readable report: what was fixed, then each finding (at most 20 of a kind)."""
        out = [f"fixed: {what}" for what in self.fixed]
        shown: dict[str, int] = {}
        for f in self.findings:
            shown[f.kind] = shown.get(f.kind, 0) + 1
            if shown[f.kind] <= SHOW_PER_KIND:
                out.append(f"{f.kind}: {f.message}")
        for kind, n in shown.items():
            if n > SHOW_PER_KIND:
                out.append(f"{kind}: ... and {n - SHOW_PER_KIND} more (--json lists them all)")
        files = self.checked.get("files", 0)
        pending = self.pending_line()
        if pending:
            out.append(pending)
        out += [f"unverified: {line}" for line in self.unverified[:SHOW_PER_KIND]]
        if len(self.unverified) > SHOW_PER_KIND:
            out.append(f"unverified: ... and {len(self.unverified) - SHOW_PER_KIND} more "
                       "(--json lists them all)")
        if self.clean:
            out.append(f"ok: {files} files, {self.checked.get('chunks', 0)} chunks; "
                       "the index matches the vault")
        else:
            fixable = self.kinds() - set(UNFIXABLE)
            out.append(f"{len(self.findings)} problem(s)"
                       + ("; `vaultd doctor --fix` repairs them" if fixable and not self.fixed
                          else ""))
        return out


# ---------------------------------------------------------------------------- checks


def check(vault: Vault) -> Report:
    """Every check; changes nothing (not even creates the index when there is none)."""
    report = Report()
    _check_state_files(vault.root, report)
    _check_temp_files(vault.root, report)
    scan = layout.scan(vault.root, vault.ignore)
    for rel, reason in sorted(scan.skipped.items()):
        if layout.sync_conflict(rel.rsplit("/", 1)[-1]):
            report.add("sync-conflict", f"{rel}: {reason}", rel)
    index = layout.index_path(vault.root)
    on_disk = scan.files
    report.checked["files"] = len(on_disk)
    if vault.settings.index.url:  # the index is a database: no file of ours to look at
        return _check_database(vault, index, on_disk, report)
    denied = _access_problem(index)
    if denied is not None:  # not "corrupt": a rebuild would fail the same way
        report.add("permission", denied, _rel(vault.root, index))
        return report
    if not index.exists():
        report.add("no-index", f"{_rel(vault.root, index)} does not exist: nothing is indexed "
                   "(`vaultd index` builds it)")
        return report
    try:
        store = Store.open_as_is(index)
    except Exception as exc:  # the sqlite module's own error types
        problem = unusable(index, exc)
        kind = ("permission" if isinstance(problem, IndexAccessError)
                else "disk-full" if isinstance(problem, DiskFullError) else "corrupt")
        report.add(kind, f"{_rel(vault.root, index)} cannot be opened: {problem}")
        return report
    return _check_opened(vault, store, on_disk, report, (
        "corrupt", f"{_rel(vault.root, index)} is not a usable SQLite index"))


def _check_database(vault: Vault, index: Path, on_disk: dict[str, layout.FileStat],
                    report: Report) -> Report:
    """The checks of an index in PostgreSQL: the same ones, on the database."""
    from vaultd.store.backend import open_index_as_is

    where = index_location(index, vault.settings.index.url)
    try:
        store = open_index_as_is(index, vault.settings.index.url)
    except VaultdError as exc:  # unreachable, or its client not installed: one line says so
        report.add("unreachable", f"the index at {where} cannot be opened: {exc}")
        return report
    return _check_opened(vault, store, on_disk, report,
                         ("database", f"the index at {where} is not usable"))


def _check_opened(vault: Vault, store: Store, on_disk: dict[str, layout.FileStat],
                  report: Report, unusable_as: tuple[str, str]) -> Report:
    """The index's checks and the claims', in one snapshot; the store closed after. A database
    error on the way is one finding: `unusable_as` (its kind, and what it says before why)."""
    try:
        with store.read_snapshot():
            _check_index(vault, store, on_disk, report)
            _check_claims(vault.root, store, report)
    except store.module.DatabaseError as exc:
        kind, said = unusable_as
        report.add(kind, f"{said}: {exc}")
    finally:
        store.close()
    return report


def _check_claims(root: Path, store: IndexStore, report: Report) -> None:
    """The claims notes make that vaultd cannot verify (see `Report.unverified`), and a key
    that cannot verify anything (a finding: every claim vaultd made is ignored until fixed)."""
    problem = key_problem(root)
    if problem is not None:
        report.add("seal-key", problem, _rel(root, layout.state_dir(root) / KEY_FILE))
    seals = Seals.of_vault(root, create=False)
    entries: dict[str, list[tuple[str, str]]] = {}
    for row in store.entry_rows():
        entries.setdefault(row.path, []).append((row.key, row.hash))
    for path, (fm, daily) in sorted(store.file_frontmatters().items()):
        mine = entries.get(path, [])
        claims = unverified(fm, mine[0][1] if mine else None, daily, seals, mine)
        if claims:
            report.unverified.append(
                f"{path}: {', '.join(claims)} — not written by this vault's vaultd (written "
                "by hand, copied, forged, edited since, or by an older vaultd): vaultd does not "
                "act on it")


def _check_index(vault: Vault, store: IndexStore, on_disk: dict[str, layout.FileStat],
                 report: Report) -> None:
    url = vault.settings.index.url
    name = index_location(store.path, url) if url else _rel(vault.root, store.path)
    problems = store.integrity_problems()
    if problems:
        report.add("corrupt", f"{name} fails SQLite's integrity check: {problems[0]}"
                   + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        return
    version, latest = store.schema_version, store.latest_schema_version
    if version != latest:
        report.add("schema", f"{name} has schema version {version}; this vaultd uses {latest}")
        return
    want = vault.embedder.identity()
    have = store.model_identity()
    if have is None or not store.has_vector_table():
        report.add("model", f"{name} records no embedding model: it was never fully built")
        return
    if have != want:
        report.add("model", f"{name} was built with model {have.get('id')} "
                   f"({have.get('dims')} dims, file {str(have.get('file'))[:12]}) but the vault "
                   f"is configured for {want['id']} ({want['dims']} dims, file "
                   f"{str(want['file'])[:12]})")
    counts = store.counts()
    report.checked.update(chunks=counts["chunks"], vectors=counts["vectors"],
                          entries=counts["entries"])
    lost = store.chunks_without_embeddings()  # "embeddings" below: damage, not pending
    report.pending_vectors = pending = store.pending_vectors() - lost
    report.daemon_running = _lock_holder(vault.root) is not None
    _check_files(vault.root, store, on_disk, report)
    for path in store.orphan_paths():
        report.add("orphan", f"{path}: entries or chunks indexed but no file record", path)
    for path in store.paths_without_embeddings():
        report.add("embeddings", f"{path}: a chunk's vector is missing from the cache", path)
    no_vector = store.paths_without_vectors()
    extra_vectors = store.vectors_without_chunks()
    if no_vector or extra_vectors or counts["vectors"] != counts["chunks"] - pending:
        report.add("vectors", f"{counts['vectors']} vectors for {counts['chunks']} chunks "
                   f"({pending} pending): "
                   f"{len(no_vector)} file(s) with chunks lacking a vector"
                   + (f" (first: {no_vector[0]})" if no_vector else "")
                   + f", {extra_vectors} vector(s) of no chunk")
    out_of_fts = store.paths_out_of_fts()
    extra_fts = store.fts_without_chunks()
    if out_of_fts or extra_fts:
        report.add("fts", f"full-text index out of sync: {len(out_of_fts)} file(s) whose "
                   "chunks are missing or differ"
                   + (f" (first: {out_of_fts[0]})" if out_of_fts else "")
                   + f", {extra_fts} row(s) of no chunk")


def _access_problem(index: Path) -> str | None:
    """Why this user may not write the index or its folder, or None. Doctor reads the index
    read-only, so a permission problem would otherwise pass as healthy (or as "corrupt")."""
    folder = index.parent
    for path, mode, what in ((folder, os.W_OK | os.X_OK, "write in"),
                             (index, os.R_OK | os.W_OK, "read and write")):
        if path.exists() and not os.access(path, mode):
            return (f"{path}: permission denied: vaultd must {what} it, and `--fix` cannot "
                    f"change that; give it back to this user (e.g. `chown -R $(id -un) "
                    f"{folder}` and `chmod -R u+rwX {folder}`)")
    return None


def _check_files(root: Path, store: IndexStore, on_disk: dict[str, layout.FileStat],
                 report: Report) -> None:
    indexed = store.files_only()
    skipped = store.skipped_states()
    for rel, st in sorted(on_disk.items()):
        if rel in skipped:
            if skipped[rel] != (st.size, st.mtime_ns):
                report.add("stale", f"{rel}: changed on disk since it was skipped", rel)
            continue
        if rel not in indexed:
            report.add("missing", f"{rel}: in the vault but not indexed", rel)
            continue
        size, mtime_ns, digest = indexed[rel]
        try:
            actual = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            continue  # deleted or unreadable since the scan: the next index decides
        if actual != digest:
            report.add("stale", f"{rel}: content differs from the indexed version", rel)
        elif (size, mtime_ns) != (st.size, st.mtime_ns):
            report.add("stale", f"{rel}: same content, but size/mtime differ from the index",
                       rel)
    for rel in sorted(set(indexed) | set(skipped)):
        if rel not in on_disk:
            why = "ignored now" if (root / rel).is_file() else "no longer in the vault"
            report.add("extra", f"{rel}: indexed but {why}", rel)


def _check_state_files(root: Path, report: Report) -> None:
    token = token_path(root)
    if token.exists():
        mode = stat.S_IMODE(token.stat().st_mode)
        if mode & 0o077:
            report.add("token", f"{_rel(root, token)} has mode {mode:04o}; it must be 0600 "
                       "(others could call the API)", _rel(root, token))
        if not token.read_text(encoding="utf-8").strip():
            report.add("token", f"{_rel(root, token)} is empty", _rel(root, token))
    holder = _lock_holder(root)
    info = info_path(root)
    if holder is None and info.exists():
        pid = _pid_in(info)
        if pid is None or not pid_alive(pid):
            report.add("lock", f"{_rel(root, info)} names daemon pid {pid}, which is not "
                       "running and holds no lock (a crash left it)", _rel(root, info))


def _lock_holder(root: Path) -> int | None:
    """The pid in the lock file when a live process holds the lock, else None."""
    import fcntl

    path = layout.state_dir(root) / LOCK_FILE
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def _pid_in(path: Path) -> int | None:
    import json

    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def temp_files(root: Path) -> list[str]:
    """Temporary files of interrupted atomic writes whose writer is gone (their name carries
    the writer's pid). They never replaced anything: the real file is whole."""
    return [rel for rel in _own_files(root, TEMP_SUFFIX)
            if not _writer_alive(rel.rsplit("/", 1)[-1])]


def litter(root: Path) -> list[str]:
    """Empty lock files an older vaultd left beside notes (`.NAME.md.vaultd-lock`; locks now
    live in .vaultd/locks/): they hold nothing."""
    return [rel for rel in _own_files(root, LOCK_SUFFIX)
            if not rel.startswith(layout.STATE_DIR + "/") and _empty(root / rel)]


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _own_files(root: Path, suffix: str) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(root):
        rel_dir = Path(folder).relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if d not in layout.IGNORED_DIRS or d == layout.STATE_DIR]
        for name in files:
            if name.endswith(suffix):
                out.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return sorted(out)


def remove_temp_files(root: Path) -> list[str]:
    """Delete the temporary files of interrupted writes (the daemon does at start)."""
    removed = []
    for rel in temp_files(root):
        if edits.remove_leftover(root, rel):
            removed.append(rel)
    return removed


def _writer_alive(name: str) -> bool:
    """`.NAME.PID.RANDOM.vaultd-tmp`: is writer PID still running?"""
    parts = name[:-len(TEMP_SUFFIX)].rsplit(".", 2)
    return len(parts) == 3 and parts[1].isdigit() and pid_alive(int(parts[1]))


def _check_temp_files(root: Path, report: Report) -> None:
    for rel in temp_files(root):
        report.add("temp", f"{rel}: left by an interrupted write (the note itself is whole)",
                   rel)
    for rel in litter(root):
        report.add("litter", f"{rel}: an empty lock file an older vaultd left beside a note",
                   rel)


def _rel(root: Path, path: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.relative_to(root).as_posix()
    return str(path)


# ---------------------------------------------------------------------------- repairs


def fix(vault: Vault) -> Report:
    """Repair what `check` finds, then check again: the returned report lists what was fixed
    and whatever is still wrong (clean when the repair worked)."""
    holder = _lock_holder(vault.root)
    if holder is not None:
        raise VaultdError(f"a vaultd daemon (pid {holder}) is running for this vault and is "
                          "the index's only writer: `vaultd stop`, then `vaultd doctor --fix`, "
                          "then `vaultd start`")
    before = check(vault)
    fixed: list[str] = []
    kinds = before.kinds()
    if kinds & {"permission", "disk-full"}:  # every repair writes .vaultd/: none can succeed
        return before
    if "token" in kinds:
        path = token_path(vault.root)
        ensure_token(vault.root)  # made private (never through a link), a new one if empty
        fixed.append(f"{_rel(vault.root, path)} is private (0600) and not empty")
    if "lock" in kinds:
        edits.remove_own(vault.root, INFO_FILE)
        fixed.append("removed the stale daemon.json of a dead daemon")
    if "temp" in kinds:
        fixed.extend(f"removed {rel}" for rel in remove_temp_files(vault.root))
    if "litter" in kinds:
        for rel in litter(vault.root):
            if edits.remove_leftover(vault.root, rel):
                fixed.append(f"removed {rel}")
    if kinds & set(REBUILD):
        fixed.append(rebuild(vault))
    elif "no-index" in kinds:
        vault.index()
        fixed.append("built the index")
    elif kinds & {*REINDEX, "orphan", "vectors", "fts"}:
        fixed.extend(_repair_index(vault, before))
    if vault.store.pending_vectors():  # after the repairs: they may leave some pending too
        fixed.append(f"embedded {vault.embed_pending()} pending chunk(s)")
    after = check(vault)
    after.fixed = fixed
    return after


def _repair_index(vault: Vault, before: Report) -> list[str]:
    store = vault.store
    done = []
    orphans = before.paths("orphan")
    kinds = before.kinds()
    with store.transaction():
        for rel in orphans:
            store.delete_file(rel)
        if "fts" in kinds:
            store.rebuild_fts()
        if "vectors" in kinds:
            store.rebuild_vectors()
        for rel in before.paths("stale", "embeddings"):
            store.delete_file(rel)  # indexed again below, from the file (vectors are reused)
    if orphans:
        done.append(f"dropped the index rows of {len(orphans)} file record(s) gone half-way")
    if "fts" in kinds:
        done.append("rebuilt the full-text index from the chunks")
    if "vectors" in kinds:
        done.append("rebuilt the vector table from the embedding cache")
    paths = before.paths(*REINDEX)
    if paths:
        report = vault.indexer().sync_paths(paths)
        done.append(f"indexed {len(paths)} file(s) again: {report.summary()}")
    return done


def rebuild(vault: Vault) -> str:
    """Build a fresh index beside the old one, then swap it in: the old file (and its WAL) is
    moved aside as `index.db.broken-<time>`, never deleted, and at no moment is there a
    half-built `index.db`."""
    vault.close()
    index = layout.index_path(vault.root)
    fresh = index.with_name(index.name + ".rebuild")
    for leftover in (fresh, *_sidecars(fresh)):
        edits.remove_own(vault.root, leftover.name)  # our own unfinished rebuild
    from vaultd.chunking import context_named
    from vaultd.indexer import Indexer

    store = Store(fresh)
    try:
        Indexer(vault.root, store, vault.embedder, ignore=vault.ignore,
                max_file_bytes=vault.settings.index.max_file_bytes,
                chunk_tokens=vault.settings.index.chunk_tokens,
                context=context_named(vault.settings.index.context)).reconcile()
        store.checkpoint()
    finally:
        store.close()
    aside = index.with_name(f"{index.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    for old, new in ((index, aside), *zip(_sidecars(index), _sidecars(aside))):
        edits.replace_own(vault.root, old.name, new.name)
    edits.replace_own(vault.root, fresh.name, index.name)
    return f"rebuilt the index; the old one is kept as {_rel(vault.root, aside)}"


def _sidecars(db: Path) -> tuple[Path, Path]:
    return db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
