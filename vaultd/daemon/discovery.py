"""The daemon's files in `.vaultd/`: lock, pid/port info and API token. Reading them needs the
stdlib only, so clients can find the daemon without importing the heavy parts of vaultd;
writing them (the daemon's side) goes through `vaultd.edits`' own-file entry points, which
never follow a link planted in a cloned vault's `.vaultd/`."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

from vaultd import layout
from vaultd.errors import ConfigError, VaultdError

LOCK_FILE = "daemon.lock"
INFO_FILE = "daemon.json"
TOKEN_FILE = "token"


def token_path(root: Path) -> Path:
    return layout.state_dir(root) / TOKEN_FILE


def info_path(root: Path) -> Path:
    return layout.state_dir(root) / INFO_FILE


def ensure_token(root: Path) -> str:
    """The API token, created once with mode 0600. A token file others can read is made
    private again; an empty one (a crash while it was written) gets a new token — an empty
    token would let any `Bearer ` header in."""
    from vaultd import gate

    path = gate.own(root, TOKEN_FILE)  # a planted link must not choose (or expose) the token
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    # imported here: it loads hashlib and OpenSSL, which a client that only looks for the
    # daemon (every `vaultd search`) never needs
    import secrets

    token = secrets.token_urlsafe(32)
    write_token(root, token)
    return token


def write_token(root: Path, token: str) -> None:
    """Write the token file (mode 0600); readers never see a half-written token."""
    from vaultd import edits

    edits.write_own(root, TOKEN_FILE, token + "\n", mode=0o600)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, or None when it is gone: tells a file deleted or replaced
    under an open handle."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Lock:
    """One daemon per vault: an exclusive flock on `.vaultd/daemon.lock`. The kernel releases
    it when the holder dies, so a stale lock file from a crashed daemon is simply reused.

    A lock file deleted under a running daemon would let a second one lock a new file: so a
    daemon also refuses to start while `daemon.json` names another live daemon, and the running
    one puts its lock file back (`check`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = layout.state_dir(root) / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a folder never `vaultd init`-ed
        holder = self._take()
        if holder is not None:
            raise VaultdError(f"another vaultd daemon (pid {holder}) is running for this vault; "
                              "`vaultd stop` stops it")
        info = read_info(self.root)
        if info is not None and int(info["pid"]) != os.getpid():
            self.release()
            raise VaultdError(f"another vaultd daemon (pid {info['pid']}) is running for this "
                              f"vault (its {LOCK_FILE} was removed); `vaultd stop` stops it")

    def _take(self) -> str | None:
        """Lock the file at `path` (None), or the pid of the daemon that holds it."""
        import fcntl

        from vaultd import edits

        fh = edits.open_own(self.root, LOCK_FILE, "a+")  # held for the daemon's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            return holder
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        if self._fh is not None:
            self._fh.close()
        self._fh = fh
        return None

    def check(self) -> bool:
        """Put a deleted or replaced lock file back. False when another daemon holds the one
        now at `path`."""
        if self._fh is None:
            return True
        st = os.fstat(self._fh.fileno())
        if file_identity(self.path) == (st.st_dev, st.st_ino):
            return True
        return self._take() is None

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs. A zombie does not: a daemon killed with SIGKILL stays one
    for as long as nobody reaps it (a detached daemon's parent is init, which in containers
    often never reaps), and its stale files must not pass for a running daemon."""
    if pid <= 0:  # kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):  # no /proc (macOS): kill() has answered
        return False


def read_info(root: Path) -> dict[str, Any] | None:
    """The running daemon's pid/host/port, or None when none runs (stale files are ignored)."""
    try:
        info = json.loads(info_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    try:
        pid, port = int(info.get("pid", 0)), int(info.get("port", 0))
    except (TypeError, ValueError):
        return None
    if port <= 0 or not pid_alive(pid):
        return None
    return info


def read_token(root: Path) -> str | None:
    try:
        return token_path(root).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


# Where `vaultd init` picks a vault's port: at random, so two vaults made while neither daemon
# runs rarely pick the same one; the port is written to the config, so it stays put across
# restarts (clients configured with http://127.0.0.1:PORT keep working) and can be pinned.
INIT_PORTS = range(52525, 54525)


def choose_port(host: str = "127.0.0.1", ports: range = INIT_PORTS) -> int:
    """A port of `ports` that nothing listens on now (`vaultd init` writes it to the config):
    tried in random order, taken when a socket can bind it."""
    candidates = list(ports)
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise ConfigError(f"no free port on {host} between {ports.start} and {ports.stop - 1}: "
                      "set [server] port in .vaultd/config.toml")
