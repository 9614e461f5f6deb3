"""The one write gate: which paths vaultd may create, replace, append to, move or delete.

A vault is untrusted input (synced, cloned, shared, filled with clippings), and paths reach
vaultd's writers from it: an archive record's `from:`, a route target, an MCP argument. So
every write entry point of `vaultd.edits` asks this module first, and every refusal is a
`RefusedError` whose message names the path and the reason. A vault path may be written only if

- it lies inside the vault, judged lexically on its vault-relative parts (no `..`, not
  absolute) — never by resolving links, which would let a link decide;
- no component from the vault root down is a symbolic link (each is `lstat`-ed, none followed);
- it is not in a folder the vault's tools own — `.git/`, `.obsidian/`, `.trash/`,
  `node_modules/`, `.vaultd/` (`layout.IGNORED_DIRS`) — nor inside a nested vault (a folder
  between the root and the file that holds `.vaultd/`: its files are its own vault's);
- the index does not ignore it (`[index] ignore`): what vaultd does not index, it does not write;
- if it exists, it is a regular file (a FIFO, socket or device would block or misbehave) with
  exactly one hard link (a replace would split the links; an append would write elsewhere too).

vaultd's own state files under `.vaultd/` have their own entry point, `own`: the name comes
from vaultd's code, never from a file, and the path must still follow no link and be a regular
file with one link. A route target the config explicitly declares outside the vault
(`[lifecycle] route_outside`) is let through once route has matched it against that setting
(`allow_outside`), and even then only with no link from `/` down and as a regular file.

The user's ignore globs are settings, and settings are read once by a composition root
(`vault.Vault`, which the daemon builds too). Rather than thread an `Ignore` through every
writer — every lifecycle phase and helper that calls `edits` — the composition root registers
it here per vault (`register`), keyed by the vault's real path; a vault nobody registered (a
library caller using `edits` alone) gets the built-in folders only, never less protection.
Declared outside targets are registered the same way, by the one module that reads that
setting (`lifecycle.route`), at the moment it matches a target against it. The checks are
pure but for `lstat`, so each is tested without a daemon or a socket.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from vaultd import layout
from vaultd.errors import OutsideError, RefusedError

NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4095  # bytes in a whole path, without the final NUL

_ignores: dict[str, layout.Ignore] = {}
_outside: dict[str, set[Path]] = {}  # vault real path → route targets declared outside it


def register(root: Path, ignore: layout.Ignore) -> None:
    """Make `ignore` (the vault's `[index] ignore`) part of the gate for the vault `root`."""
    _ignores[os.path.realpath(root)] = ignore


def ignore_of(root: Path) -> layout.Ignore:
    """The ignore rules registered for `root`; the built-in folders only when none were."""
    return _ignores.get(os.path.realpath(root)) or layout.Ignore()


def allow_outside(root: Path, path: Path) -> None:
    """Let writes for the vault `root` reach `path` outside it: a route target the config
    declares (`[lifecycle] route_outside`), matched by the caller. Still checked by `place`:
    no link from `/` down."""
    _outside.setdefault(os.path.realpath(root), set()).add(Path(os.path.abspath(path)))


def within(root: Path, path: Path) -> bool:
    """Whether `path` lies lexically below the vault `root` (as given or its real path)."""
    try:
        _parts(root, path)
    except OutsideError:
        return False
    return True


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def regular(path: Path | str, st: os.stat_result,
            error: type[RefusedError] = RefusedError) -> None:
    """`error` (RefusedError) unless `st` (of `path`, not followed) is a regular file."""
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {_kind(st.st_mode)}; vaultd reads and writes only "
                    "regular files")


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    """`path`'s components below `root`, judged lexically (the root as given or as its real
    path: only the root itself may be reached through a link). OutsideError otherwise."""
    for base in (root, Path(os.path.realpath(root))):
        try:
            parts = path.relative_to(base).parts
        except ValueError:
            continue
        if ".." in parts:
            break
        if parts:
            return parts
    raise OutsideError(f"{path}: leads outside the vault (through '..' or an absolute path); "
                       "not written")


def _no_links(start: Path, parts: tuple[str, ...], shown: Path) -> os.stat_result | None:
    """lstat each component below `start`; OutsideError at the first symbolic link. The last
    component's stat, or None when the path does not exist (yet)."""
    link, st = layout.lstat_parts(start, parts)
    if link is not None:
        where = "is" if link == shown else f"goes through {link}, which is"
        raise OutsideError(f"{shown}: {where} a symbolic link; vaultd follows no link "
                           "(one could lead outside the vault)")
    return st


def _one_link(path: Path, st: os.stat_result) -> None:
    if st.st_nlink > 1:
        # Replacing swaps in a new inode at this name only: the other links keep the old
        # text and the copies diverge; an append or a delete would reach the other names too.
        raise RefusedError(f"{path}: is hard-linked ({st.st_nlink} links); vaultd does not "
                           "write it (a write would change or split the other names too)")


def contained(root: Path, path: Path) -> os.stat_result | None:
    """OutsideError unless `path` lies inside the vault `root` (lexically) and no component of
    it below the root is a symbolic link. Its stat, or None when it does not exist."""
    return _no_links(root, _parts(root, path), path)


def place(root: Path, path: Path) -> os.stat_result | None:
    """RefusedError naming `path` unless it is a place vaultd may write in the vault `root`:
    inside it, through no link, not in a protected folder or a nested vault, not ignored —
    or a declared outside target reached through no link. The existing file's kind and links
    are `check`'s. Its stat (not followed), or None when it does not exist."""
    if not within(root, path) and \
            Path(os.path.abspath(path)) in _outside.get(os.path.realpath(root), ()):
        path = Path(os.path.abspath(path))
        return _no_links(Path(path.anchor), path.parts[1:], path)
    parts = _parts(root, path)
    rel = "/".join(parts)
    protected = next((p for p in parts if p in layout.IGNORED_DIRS), None)
    if protected is not None:
        raise RefusedError(f"{path}: is in {protected}/, a folder vaultd never writes (git's, "
                           "Obsidian's, a package manager's or vaultd's own folder)")
    st = _no_links(root, parts, path)
    nested = layout.enclosing_vault(root, parts)
    if nested is not None:
        raise RefusedError(f"{path}: is inside {nested}/, a vault of its own "
                           f"(it holds {layout.STATE_DIR}/); this vault does not write it")
    if ignore_of(root).ignored(rel):
        raise RefusedError(f"{path}: the index ignores it ([index] ignore); vaultd does not "
                           "write what it does not index")
    return st


def check(root: Path, path: Path, *, reading: bool = False) -> os.stat_result | None:
    """RefusedError naming `path` unless vaultd may write it (the rules in the module
    docstring); with `reading`, unless an agent may read it (a hard link is then refused only
    when it shares its file with a `.vaultd/` folder). The file's stat, or None when it does
    not exist."""
    st = place(root, path)
    if st is not None:
        regular(path, st)
        if not reading:
            _one_link(path, st)
        elif layout.links_to_state(root, st):
            raise RefusedError(f"{path}: is a hard link to a file in a {layout.STATE_DIR}/ "
                               "folder; refused")
    return st


def vault_path(root: Path, rel: str, *, reading: bool = False) -> Path:
    """The path a vault-relative `rel` (from a file, a record or an agent) names, once `check`
    allows it; OutsideError for an empty, absolute or `..` path, RefusedError for a name too
    long for the file system or any refusal of `check`."""
    clean = rel.replace("\\", "/")
    if not clean.strip() or "\x00" in clean:
        raise OutsideError(f"{rel!r}: not a vault-relative path")
    if (PurePosixPath(clean).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive):
        raise OutsideError(f"{rel}: an absolute path; vaultd writes only inside the vault")
    parts = PurePosixPath(clean).parts
    if ".." in parts:
        raise OutsideError(f"{rel}: '..' leads outside the vault; refused")
    long = next((p for p in parts if len(os.fsencode(p)) > NAME_MAX), None)
    if long is not None:
        raise RefusedError(f"{rel[:60]}…: a name of {len(os.fsencode(long))} bytes; file "
                           f"systems allow {NAME_MAX}")
    path = root.joinpath(*parts)
    if len(os.fsencode(path)) > PATH_MAX:
        raise RefusedError(f"{rel[:60]}…: the path is over {PATH_MAX} bytes; refused")
    check(root, path, reading=reading)
    return path


def own(root: Path, name: str, *, any_kind: bool = False) -> Path:
    """`.vaultd/NAME` for one of vaultd's own state files (`name` comes from vaultd's code:
    `token`, `daemon.json`, `locks/HASH.lock`, …). RefusedError when the path goes through a
    link (`.vaultd/` itself included) or exists as anything but a regular file with one link:
    a cloned vault's `.vaultd/daemon.json -> ~/.bashrc` must not be written through. With
    `any_kind`, whatever is there (a folder where the index should be) may be moved aside by
    name — still never through a link."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise OutsideError(f"{name}: not a file name inside {layout.STATE_DIR}/")
    path = layout.state_dir(root).joinpath(*parts)
    st = _no_links(root, (layout.STATE_DIR, *parts), path)
    if st is not None and not any_kind:
        regular(path, st)
        _one_link(path, st)
    return path


