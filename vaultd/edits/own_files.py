"""Writing vaultd's own files in `.vaultd/`, and removing what an interrupted write left behind.

`.vaultd/NAME`, NAME from vaultd's code: each path is checked by `gate.own` (no link on the way,
a regular file with one link), never by the vault-path rules that refuse `.vaultd/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from vaultd import gate
from vaultd.edits.atomic import TEMP_SUFFIX, replace_with
from vaultd.edits.lock import LOCK_SUFFIX
from vaultd.errors import ConflictError, RefusedError

_OPEN_FLAGS = {"a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
               "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}


def write_own(root: Path, name: str, text: str | bytes, *, mode: int | None = None) -> Path:
    """Write vaultd's own file `.vaultd/NAME` atomically (`mode`: its permission, e.g. 0600
    for the token; default: the file's own, or the umask's). Returns its path."""
    path = gate.own(root, name)
    replace_with(path, text, mode)
    return path


def create_own(root: Path, name: str, text: str, *, mode: int = 0o666) -> Path:
    """Create vaultd's own file `.vaultd/NAME` holding `text` (UTF-8), with permission `mode`
    from its first byte (0600 for a secret; the umask applies); ConflictError when it exists
    already (never clobbers, not even a file made in the same instant)."""
    path = gate.own(root, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except FileExistsError as exc:
        raise ConflictError(f"{path}: already exists; not overwritten") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def open_own(root: Path, name: str, mode: str) -> IO[Any]:
    """Open vaultd's own file `.vaultd/NAME` for writing (`mode` "a+": kept and appended to,
    text; "wb": emptied, binary), never through a link."""
    path = gate.own(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _OPEN_FLAGS[mode] | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8")


def remove_own(root: Path, name: str) -> bool:
    """Delete vaultd's own file `.vaultd/NAME`; False when it was not there."""
    try:
        os.unlink(gate.own(root, name))
    except FileNotFoundError:
        return False
    return True


def replace_own(root: Path, name: str, new_name: str) -> bool:
    """Rename vaultd's own file `.vaultd/NAME` to `.vaultd/NEW_NAME` (replacing it); False
    when NAME was not there. NAME may be anything but a link: a broken index that is a folder
    is moved aside too."""
    try:
        os.replace(gate.own(root, name, any_kind=True), gate.own(root, new_name))
    except FileNotFoundError:
        return False
    return True


def remove_leftover(root: Path, rel: str) -> bool:
    """Delete a temp file of an interrupted write (`*.vaultd-tmp`) or an old lock file beside
    a note (`*.vaultd-lock`) at the vault path `rel`: only such a name, inside the vault,
    reached through no link, a regular file. False when it was gone."""
    if not rel.endswith((TEMP_SUFFIX, LOCK_SUFFIX)):
        raise RefusedError(f"{rel}: not a temporary or lock file of vaultd's; not removed")
    path = root / rel
    st = gate.contained(root, path)
    if st is None:
        return False
    gate.regular(path, st)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
