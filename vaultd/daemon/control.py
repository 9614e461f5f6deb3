"""Start and stop a vault's daemon from another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaultd import layout
from vaultd.daemon.client import DaemonClient, DaemonDown, DaemonError
from vaultd.daemon.discovery import pid_alive, read_info
from vaultd.errors import VaultdError

OUT_FILE = "daemon.out"
LOG_FILE = "daemon.log"  # the daemon's own log (`daemon.process.setup_logging` writes it)
BUILD_LOGGER = "vaultd.model_build"  # whose lines a waiting `vaultd start` shows


class BuildLines:
    """The model build's lines the daemon logs from now on (its one-time int8 build: seconds
    during which a waiting `vaultd start` would otherwise sit silent), read as they come."""

    def __init__(self, root: Path) -> None:
        self.path = layout.state_dir(root) / LOG_FILE
        try:
            self.offset = os.lstat(self.path).st_size
        except FileNotFoundError:
            self.offset = 0

    def new(self) -> list[str]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return []
        with os.fdopen(fd, "rb") as log:
            if os.fstat(log.fileno()).st_size < self.offset:
                self.offset = 0  # rotated: the new file holds what came since
            log.seek(self.offset)
            data = log.read()
        whole = data[:data.rfind(b"\n") + 1]  # a half-written line waits for its end
        self.offset += len(whole)
        marker = f" {BUILD_LOGGER}: "
        return [line.split(marker, 1)[1]
                for line in whole.decode("utf-8", "replace").splitlines() if marker in line]


def start_daemon(root: Path, timeout: float = 120.0,
                 show: Callable[[str], object] = lambda line: None,
                 build: BuildLines | None = None) -> dict[str, Any]:
    """Spawn `vaultd run` detached and wait until it answers /health; `show` gets the lines of
    a model build it runs meanwhile (read by `build`, made here unless given)."""
    info = read_info(root)
    if info is not None:
        return info
    from vaultd import edits

    build = build or BuildLines(root)

    out_path = layout.state_dir(root) / OUT_FILE
    with edits.open_own(root, OUT_FILE, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vaultd", "--vault", str(root), "run", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(root))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in build.new():
            show(line)
        code = proc.poll()
        if code is not None:
            tail = out_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = " / ".join(tail[-3:]) or f"exit code {code}"
            raise VaultdError(f"the daemon exited at start: {reason}")
        try:
            client = DaemonClient.for_vault(root)
        except DaemonError:  # its token file not written yet
            client = None
        if client is not None:
            try:
                client.health()
                return read_info(root) or {"pid": proc.pid, "port": client.port}
            except (DaemonDown, OSError):
                pass
        time.sleep(0.1)
    raise VaultdError(f"the daemon (pid {proc.pid}) did not answer within {timeout:.0f}s; "
                      f"see {out_path} and .vaultd/daemon.log")


def stop_daemon(root: Path, timeout: float = 30.0) -> int | None:
    """SIGTERM the running daemon and wait for it to exit. Returns its pid, None if none ran."""
    info = read_info(root)
    if info is None:
        return None
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return pid
        time.sleep(0.05)
    raise VaultdError(f"the daemon (pid {pid}) did not stop within {timeout:.0f}s; "
                      f"`kill -9 {pid}` ends it (the index survives: it is rebuilt from files)")
