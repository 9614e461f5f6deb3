"""Where things are in a vault: discovery, state paths, ignore rules and the file scan."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vaultd.errors import VaultNotFoundError

STATE_DIR = ".vaultd"  # vaultd's own folder in a vault: index, config, token, daemon files
# Faded and merged material moves here (never deleted); indexed, but searched only on request.
ARCHIVE_DIR = "archive"
MEMORY_FILE = "MEMORY.md"  # what an agent reads at session start; vaultd owns only its block
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
    """Whether a vault-relative path lies under `archive/`."""
    return rel == ARCHIVE_DIR or rel.startswith(ARCHIVE_DIR + "/")


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


def scan(root: Path, ignore: Ignore) -> Scan:
    """Every note file below `root` (posix relative paths). Symbolic links are never followed.
    Files and folders whose names are not valid UTF-8 are reported, not indexed; so is a folder
    that is a vault of its own (its notes are its own vault's, never moved by this one), and so
    are sync-conflict copies (`sync_conflict`)."""
    result = Scan()
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
                    else:
                        stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    conflict = sync_conflict(entry.name)
                    if conflict is not None:
                        result.skipped[rel] = conflict
                    elif rel.lower().endswith(NOTE_SUFFIXES):
                        st = entry.stat(follow_symlinks=False)
                        result.files[rel] = FileStat(st.st_size, st.st_mtime_ns)
            except OSError as exc:
                result.skipped[rel] = f"cannot stat: {exc.strerror or exc}"
    return result


def stat_paths(root: Path, rels: Iterable[str], ignore: Ignore) -> Scan:
    """Like `scan`, for named paths only (the watcher's batch). Missing paths are left out.
    Paths leaving the vault (absolute, `..`) or passing through a symbolic link are refused."""
    result = Scan()
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
        path = root / rel
        try:
            link = next((root.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)
                         if root.joinpath(*parts[:i]).is_symlink()), None)
            if link is not None:
                result.skipped[rel] = _link_reason(link)
                continue
            nested = next(("/".join(parts[:i]) for i in range(1, len(parts))
                           if root.joinpath(*parts[:i], STATE_DIR).is_dir()), None)
            if nested is not None:
                result.skipped[nested + "/"] = NESTED_VAULT
                continue
            st = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.skipped[rel] = f"cannot stat: {exc.strerror or exc}"
            continue
        if path.is_file() and conflict is not None:
            result.skipped[rel] = conflict
        elif path.is_file():
            result.files[rel] = FileStat(st.st_size, st.st_mtime_ns)
    return result
