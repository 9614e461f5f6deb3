"""Writing to vault files without ever losing a user's words.

Every write is atomic (a temp file in the same folder, fsync, `os.replace`) and checked: a
rewrite happens only if the file still holds exactly the bytes it was computed from, so an
edit the user made in between is never overwritten (`ConflictError` instead). Appends to a
shared file (today's daily log) take an exclusive lock so concurrent writers never interleave.
Frontmatter keys are changed line by line: the user's other keys, comments and formatting stay
as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vaultd.errors import VaultdError

TEMP_SUFFIX = ".vaultd-tmp"  # atomic_write's temporary files: `.NAME.PID.RANDOM.vaultd-tmp`
LOCK_SUFFIX = ".vaultd-lock"


class ConflictError(VaultdError):
    """The file changed since it was read; nothing was written."""


class OutsideError(ConflictError):
    """A path leads outside the vault (`..`, an absolute path, a symlink); nothing written."""


def inside(root: Path, path: Path) -> Path:
    """`path` if, with every symlink resolved, it stays inside the vault `root`; OutsideError
    otherwise (a symlinked folder or file must not carry a vaultd write out of the vault)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise OutsideError(f"{path}: leads outside the vault (through '..', an absolute path "
                           "or a symlink); not written")
    return path


@dataclass(frozen=True)
class Snapshot:
    path: Path
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8-sig")

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read(path: Path) -> Snapshot:
    return Snapshot(path, path.read_bytes())


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (readers see the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name tells a write in progress from one a crash interrupted (doctor)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                               dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path, lock_dir: Path | None = None) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of `path` among vaultd writers. The lock
    file sits beside `path`, or in `lock_dir` when given (a file outside the vault must not get
    a lock file beside it)."""
    import fcntl

    if lock_dir is None:
        lock_path = path.with_name(f".{path.name}{LOCK_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        digest = hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:24]
        lock_path = lock_dir / f"{digest}{LOCK_SUFFIX}"
        lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def replace_checked(snapshot: Snapshot, text: str, *, lock_dir: Path | None = None) -> bool:
    """Write `text` over the file if it still holds the snapshot's bytes. False when the new
    text equals the old (nothing written, mtime unchanged); ConflictError when it changed."""
    if text == snapshot.text:
        return False
    with locked(snapshot.path, lock_dir):
        if snapshot.path.is_symlink():  # replacing it would turn the user's link into a copy
            raise ConflictError(f"{snapshot.path}: is a symbolic link; vaultd does not replace "
                                "links")
        try:
            current = snapshot.path.read_bytes()
        except FileNotFoundError as exc:
            raise ConflictError(f"{snapshot.path}: deleted since it was read; not written") \
                from exc
        if current != snapshot.data:
            raise ConflictError(f"{snapshot.path}: changed since it was read; not overwritten "
                                "(vaultd will try again with the new text)")
        atomic_write(snapshot.path, text)
    return True


def create_new(path: Path, text: str, *, lock_dir: Path | None = None) -> None:
    """Create a file that must not exist yet (never clobbers)."""
    with locked(path, lock_dir):
        if path.exists():
            raise ConflictError(f"{path}: already exists; not overwritten")
        atomic_write(path, text)


# ---------------------------------------------------------------------------- frontmatter

_KEY_RE = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def _dump_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=True,
                          width=10**9).strip().removesuffix("...").strip()


def split_frontmatter(text: str) -> tuple[list[str] | None, list[str]]:
    """(frontmatter lines without fences or None, body lines)."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return lines[1:i], lines[i + 1:]
    return None, lines


def set_frontmatter(text: str, updates: dict[str, Any]) -> str:
    """Set (value) or remove (None) top-level frontmatter keys, touching no other line."""
    fm, body = split_frontmatter(text)
    fm = list(fm) if fm is not None else []
    for key, value in updates.items():
        start = next((i for i, line in enumerate(fm)
                      if (m := _KEY_RE.match(line)) and m.group(1) == key), None)
        new = [] if value is None else [f"{key}: {_dump_value(value)}"]
        if start is None:
            fm.extend(new)
            continue
        end = start + 1
        while end < len(fm) and (fm[end].startswith((" ", "\t", "- ")) or not fm[end].strip()):
            end += 1
        fm[start:end] = new
    if not fm and split_frontmatter(text)[0] is None:
        return text
    return "\n".join(["---", *fm, "---", *body])


def get_frontmatter(path: str, text: str) -> dict[str, Any]:
    """The frontmatter as vaultd reads it everywhere (tolerant, JSON-safe)."""
    from vaultd.notes import parse

    return parse(path, text).frontmatter


# ---------------------------------------------------------------------------- daily log

def daily_header(day: str) -> str:
    return f"---\ntype: episodic\ncreated: {day}\ntags: [daily]\n---\n# {day}\n"


def entry_text(text: str, when: dt.datetime, tags: list[str]) -> tuple[str, str]:
    """(heading, markdown) of a new daily-log entry."""
    words = " ".join(text.split()).split(" ")
    title = " ".join(words[:8]) + ("…" if len(words) > 8 else "")
    heading = f"{when:%H:%M} — {title}"
    body = text.strip()
    tag_line = " ".join("#" + t.lstrip("#") for t in tags if t.strip("# "))
    return heading, f"\n## {heading}\n{body}\n" + (f"{tag_line}\n" if tag_line else "")


def append_entry(root: Path, text: str, *, when: dt.datetime | None = None,
                 tags: list[str] | None = None) -> tuple[str, str]:
    """Append a timestamped entry to today's `episodic/YYYY-MM-DD.md`, creating it if needed.
    Safe against concurrent writers (lock + atomic replace). Returns (vault path, heading)."""
    if not text.strip():
        raise VaultdError("nothing to remember: the text is empty")
    when = when or dt.datetime.now()
    rel = f"episodic/{when:%Y-%m-%d}.md"
    path = inside(root, root / rel)
    heading, markdown = entry_text(text, when, tags or [])
    with locked(path):
        current = path.read_text(encoding="utf-8") if path.exists() else \
            daily_header(f"{when:%Y-%m-%d}")
        if current and not current.endswith("\n"):
            current += "\n"
        atomic_write(path, current + markdown)
    return rel, heading
