"""The daemon's files in `.vaultd/`: lock, pid/port info and API token. Stdlib only, so
clients can find the daemon without importing the heavy parts of vaultd."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from vaultd import layout
from vaultd.errors import VaultdError

LOCK_FILE = "daemon.lock"
INFO_FILE = "daemon.json"
TOKEN_FILE = "token"


def token_path(root: Path) -> Path:
    return layout.state_dir(root) / TOKEN_FILE


def info_path(root: Path) -> Path:
    return layout.state_dir(root) / INFO_FILE


def ensure_token(root: Path) -> str:
    """The API token, created once with mode 0600."""
    path = token_path(root)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token


class Lock:
    """One daemon per vault: an exclusive flock on `.vaultd/daemon.lock`. The kernel releases
    it when the holder dies, so a stale lock file from a crashed daemon is simply reused."""

    def __init__(self, root: Path) -> None:
        self.path = layout.state_dir(root) / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> None:
        import fcntl

        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise VaultdError(f"another vaultd daemon (pid {holder}) is running for this vault; "
                              "`vaultd stop` stops it") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_info(root: Path) -> dict[str, Any] | None:
    """The running daemon's pid/host/port, or None when none runs (stale files are ignored)."""
    try:
        info = json.loads(info_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not pid_alive(int(info.get("pid", 0))):
        return None
    return info


def read_token(root: Path) -> str | None:
    try:
        return token_path(root).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
