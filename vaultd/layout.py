"""Where things are in a vault: discovery, state paths, ignore rules and the file scan."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vaultd.errors import VaultNotFoundError

STATE_DIR = ".vaultd"  # vaultd's own folder in a vault: index, config, token, daemon files
# Faded and merged material moves here (never deleted); indexed, but searched only on request.
ARCHIVE_DIR = "archive"
# An agent memory folder (OpenClaw's `memory/`: daily logs `YYYY-MM-DD.md`). OpenClaw's memory
# search reads MEMORY.md and `memory/**/*.md` and nothing else of its workspace, so what vaultd
# makes from an entry there (merged and extracted notes) and its archive stay inside it.
AGENT_MEMORY_DIR = "memory"
ARCHIVE_ROOTS = (ARCHIVE_DIR, f"{AGENT_MEMORY_DIR}/{ARCHIVE_DIR}")
MEMORY_FILE = "MEMORY.md"  # what an agent reads at session start; vaultd owns only its block
# Files at a vault's top that agents load themselves at session start, beside MEMORY.md
# (OpenClaw's bootstrap files, Claude Code's CLAUDE.md): MEMORY.md never repeats them.
AGENT_LOADED = ("AGENTS.md", "SOUL.md", "USER.md", "IDENTITY.md", "TOOLS.md", "HEARTBEAT.md",
                "BOOTSTRAP.md", "CLAUDE.md")
NOTE_SUFFIXES = (".md", ".markdown")
# Never indexed.
IGNORED_DIRS = (".git", ".obsidian", STATE_DIR, ".trash", "node_modules")


def find_vault(explicit: str | os.PathLike[str] | None, env: dict[str, str],
               cwd: Path) -> Path:
    """`--vault PATH`, else `VAULTD_VAULT`, else the nearest parent holding `.vaultd/`."""
    if explicit:
        return _existing(Path(explicit), "--vault")
    if env.get("VAULTD_VAULT"):
        return _existing(Path(env["VAULTD_VAULT"]), "VAULTD_VAULT")
    here = cwd.resolve()
    for candidate in (here, *here.parents):
        if (candidate / STATE_DIR).is_dir():
            return candidate
    raise VaultNotFoundError(
        f"no vault found: {here} and its parents hold no {STATE_DIR}/ folder. "
        "Pass --vault PATH, set VAULTD_VAULT, or create one with `vaultd init PATH`.")


def _existing(path: Path, source: str) -> Path:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise VaultNotFoundError(f"{source}: {path} is not a directory")
    return path


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def index_path(root: Path) -> Path:
    return root / STATE_DIR / "index.db"


def in_scope(rel: str, scope: Iterable[str]) -> bool:
    """Whether a vault-relative path lies in one of the `scope` folders ("." is the whole
    vault): the agent's memory, which the lifecycle may change."""
    for folder in scope:
        folder = folder.strip("/")
        if folder in ("", ".") or rel.startswith(folder + "/"):
            return True
    return False


def is_archived(rel: str) -> bool:
    """Whether a vault-relative path lies under `archive/` (or `memory/archive/`)."""
    return any(rel == a or rel.startswith(a + "/") for a in ARCHIVE_ROOTS)


def daily_folder(scope: Iterable[str]) -> str:
    """Where vaultd appends to today's log (`remember`, MCP writes, transcripts): an agent
    `memory/` folder in the scope (OpenClaw's daily logs, which it reads), else `episodic/`."""
    return AGENT_MEMORY_DIR if any(f.strip("/") == AGENT_MEMORY_DIR for f in scope) \
        else "episodic"


def home_of(rel: str) -> str:
    """Where vaultd puts what it makes from the entry at `rel` ("" = the vault's top, else a
    folder ending in "/"): inside an agent `memory/` folder for its entries, where OpenClaw
    reads them; else the vault's top (`semantic/`, `archive/`)."""
    prefix = AGENT_MEMORY_DIR + "/"
    return prefix if rel.startswith(prefix) else ""


def archive_path(rel: str) -> str:
    """Where archiving the file `rel` puts it: the same path under its home's `archive/`
    (`episodic/X` → `archive/episodic/X`, `memory/X` → `memory/archive/X`)."""
    home = home_of(rel)
    return f"{home}{ARCHIVE_DIR}/{rel[len(home):]}"


def unarchived(rel: str) -> str:
    """The path an archive file mirrors (the inverse of `archive_path`); `rel` itself when it
    is not under an archive."""
    for root in sorted(ARCHIVE_ROOTS, key=len, reverse=True):
        if rel.startswith(root + "/"):
            return root[:-len(ARCHIVE_DIR)] + rel[len(root) + 1:]
    return rel


@dataclass(frozen=True)
class Ignore:
    """Ignore rules: fixed directory names plus user globs matched against the relative path
    and against each of its parts (so `drafts` ignores every `drafts/` folder)."""

    globs: tuple[str, ...] = ()

    def ignored(self, rel: str) -> bool:
        parts = rel.split("/")
        if any(p in IGNORED_DIRS for p in parts):
            return True
        for glob in self.globs:
            pattern = glob.rstrip("/")
            if fnmatch.fnmatchcase(rel, pattern) or any(
                    fnmatch.fnmatchcase(p, pattern) for p in parts):
                return True
        return False

    def is_note(self, rel: str) -> bool:
        return rel.lower().endswith(NOTE_SUFFIXES) and not self.ignored(rel)


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


@dataclass
class Scan:
    files: dict[str, FileStat] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path → reason (links, unreadable)


def _printable(rel: str) -> str:
    """A path as text that can be printed and stored: undecodable bytes become `\\xff`."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os gave us undecodable bytes as surrogate escapes
        return False
    return True


def _link_reason(path: str | os.PathLike[str]) -> str:
    try:
        target = _printable(os.readlink(path))
    except OSError:
        return "symbolic link, not followed"
    return f"symbolic link to {target}, not followed"


def lstat_parts(root: Path, parts: Iterable[str]) -> tuple[Path | None, os.stat_result | None]:
    """lstat each component of `parts` below `root`, following none: `(link, None)` at the
    first symbolic link met, else `(None, the last component's stat)`, or `(None, None)` when
    the path does not exist. The one walk the scan and `vaultd.gate` both judge links by."""
    here, st = root, None
    for part in parts:
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return None, None
        if stat.S_ISLNK(st.st_mode):
            return here, None
    return None, st


def enclosing_vault(root: Path, parts: Iterable[str]) -> str | None:
    """The folder above the last of `parts` that holds a `.vaultd/` of its own (a vault nested
    in this one), vault-relative; None when there is none."""
    parts = list(parts)
    return next(("/".join(parts[:i]) for i in range(1, len(parts))
                 if os.path.isdir(root.joinpath(*parts[:i], STATE_DIR))), None)


NESTED_VAULT = f"another vault (it has its own {STATE_DIR}/); not indexed as part of this one"

# Copies a sync tool or a merge leaves when two machines changed one note: Syncthing's
# `note.sync-conflict-20260105-101500-ABCDEF1.md`, Dropbox's (and Nextcloud's) `note (Ann's
# conflicted copy 2026-01-05).md`, a merge tool's `note.md.orig`. Indexed, each would be found as
# a second copy of the note, and the lifecycle would act on it as if it were the note.
_SYNC_CONFLICTS = (
    (re.compile(r"\.sync-conflict-\d{8}-\d{6}(-[A-Za-z0-9]+)?\.[^./]+$"), "Syncthing"),
    (re.compile(r" \([^()/]*conflicted copy[^()/]*\)\.[^./]+$", re.IGNORECASE),
     "Dropbox or Nextcloud"),
    (re.compile(r"\.(md|markdown)\.orig$", re.IGNORECASE), "a merge tool's backup"),
)


def sync_conflict(name: str) -> str | None:
    """Why a file named `name` is a sync-conflict copy of a note (not a note of its own), or
    None."""
    if not name.lower().endswith((*NOTE_SUFFIXES, ".orig")):
        return None
    for pattern, tool in _SYNC_CONFLICTS:
        if pattern.search(name):
            return (f"sync conflict copy ({tool}), not indexed as a note: keep what you need "
                    "from it in the note, then delete it")
    return None


STATE_LINK = (f"hard link to a file in a {STATE_DIR}/ folder (vaultd's index, token or "
              "daemon files); not indexed")


def _state_inodes(root: Path, nested: Iterable[str]) -> set[tuple[int, int]]:
    """(device, inode) of every multiply-linked file in the vault's `.vaultd/` and in any
    `.vaultd/` below the nested vaults `nested` (vault-relative folders). Links are not
    followed."""
    found: set[tuple[int, int]] = set()
    tops = [(state_dir(root), True), *((root / rel, False) for rel in nested)]
    for top, in_state in tops:
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            inside = in_state or STATE_DIR in here.relative_to(top).parts
            dirs[:] = [d for d in dirs if d not in IGNORED_DIRS or d == STATE_DIR]
            for name in files if inside else ():
                try:
                    st = os.lstat(here / name)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    found.add((st.st_dev, st.st_ino))
    return found


def nested_vaults(root: Path) -> list[str]:
    """The vault-relative folders below `root` that are vaults of their own (a full walk, not
    entering ignored folders or links: only asked for when a note has several hard links)."""
    out = []
    for folder, dirs, _ in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        if rel != "." and os.path.isdir(os.path.join(folder, STATE_DIR)):
            out.append(rel)
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
    return out


def links_to_state(root: Path, st: os.stat_result) -> bool:
    """Whether the file of stat `st` is also a file in a `.vaultd/` folder of this vault or of
    a vault nested in it (a hard link named `x.md` to `.vaultd/token` would otherwise be read
    and indexed as a note). Only a file with several links can be: anything else costs
    nothing."""
    if st.st_nlink < 2:
        return False
    return (st.st_dev, st.st_ino) in _state_inodes(root, nested_vaults(root))


def _drop_state_links(root: Path, result: Scan, linked: dict[str, tuple[int, int]],
                      nested: Iterable[str]) -> None:
    """Move the notes of `linked` (rel → device, inode) that share a file with a `.vaultd/`
    folder from `result.files` to `result.skipped`."""
    if not linked:
        return
    state = _state_inodes(root, nested)
    for rel, key in linked.items():
        if key in state:
            del result.files[rel]
            result.skipped[rel] = STATE_LINK


def scan(root: Path, ignore: Ignore) -> Scan:
    """Every note file below `root` (posix relative paths). Symbolic links are never followed.
    Files and folders whose names are not valid UTF-8 are reported, not indexed; so is a folder
    that is a vault of its own (its notes are its own vault's, never moved by this one), so
    are sync-conflict copies (`sync_conflict`), and so is a note that is a hard link to a file
    in a `.vaultd/` folder (`STATE_LINK`: checked only for notes with several links)."""
    result = Scan()
    linked: dict[str, tuple[int, int]] = {}  # notes with several links: rel → device, inode
    nested: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = list(it)
        except OSError as exc:
            if rel_dir:
                result.skipped[rel_dir + "/"] = f"cannot list folder: {exc.strerror or exc}"
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if ignore.ignored(rel):
                continue
            try:
                if entry.is_symlink():
                    try:
                        to_dir = entry.is_dir()
                    except OSError:  # a link loop, or a target we may not look at
                        to_dir = True
                    if rel.lower().endswith(NOTE_SUFFIXES) or to_dir:
                        result.skipped[_printable(rel)] = _link_reason(entry.path)
                    continue
                if not _is_utf8(entry.name):
                    if entry.is_dir(follow_symlinks=False):
                        result.skipped[_printable(rel) + "/"] = (
                            "folder name is not valid UTF-8; rename it to index its notes")
                    elif rel.lower().endswith(NOTE_SUFFIXES):
                        result.skipped[_printable(rel)] = (
                            "file name is not valid UTF-8; rename it to index it")
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if os.path.isdir(os.path.join(entry.path, STATE_DIR)):
                        result.skipped[rel + "/"] = NESTED_VAULT
                        nested.append(rel)
                    else:
                        stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    conflict = sync_conflict(entry.name)
                    if conflict is not None:
                        result.skipped[rel] = conflict
                    elif rel.lower().endswith(NOTE_SUFFIXES):
                        st = entry.stat(follow_symlinks=False)
                        result.files[rel] = FileStat(st.st_size, st.st_mtime_ns)
                        if st.st_nlink > 1:
                            linked[rel] = (st.st_dev, st.st_ino)
            except OSError as exc:
                result.skipped[rel] = f"cannot stat: {exc.strerror or exc}"
    _drop_state_links(root, result, linked, nested)
    return result


def stat_paths(root: Path, rels: Iterable[str], ignore: Ignore) -> Scan:
    """Like `scan`, for named paths only (the watcher's batch). Missing paths are left out.
    Paths leaving the vault (absolute, `..`) or passing through a symbolic link are refused;
    so is a hard link to a file in a `.vaultd/` folder (as in `scan`)."""
    result = Scan()
    linked: dict[str, tuple[int, int]] = {}
    for rel in rels:
        conflict = sync_conflict(rel.rsplit("/", 1)[-1])
        if not ignore.is_note(rel) and (conflict is None or ignore.ignored(rel)):
            continue
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            result.skipped[_printable(rel)] = "not a plain path inside the vault"
            continue
        if not _is_utf8(rel):
            result.skipped[_printable(rel)] = "file name is not valid UTF-8; rename it to index it"
            continue
        try:
            link, st = lstat_parts(root, parts)
        except OSError as exc:
            result.skipped[rel] = f"cannot stat: {exc.strerror or exc}"
            continue
        if link is not None:
            result.skipped[rel] = _link_reason(link)
            continue
        if st is None:
            continue
        nested = enclosing_vault(root, parts)
        if nested is not None:
            result.skipped[nested + "/"] = NESTED_VAULT
            continue
        if stat.S_ISREG(st.st_mode) and conflict is not None:
            result.skipped[rel] = conflict
        elif stat.S_ISREG(st.st_mode):
            result.files[rel] = FileStat(st.st_size, st.st_mtime_ns)
            if st.st_nlink > 1:
                linked[rel] = (st.st_dev, st.st_ino)
    if linked:  # rare: only then is the vault walked for the nested vaults' `.vaultd/`
        _drop_state_links(root, result, linked, nested_vaults(root))
    return result
