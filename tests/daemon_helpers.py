"""Shared fixtures for the daemon tests: a tmp vault on the fake embedder, a Daemon running in a
background thread, small HTTP helpers and a deadline poller (no fixed sleeps)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from vaultd.daemon.discovery import info_path, read_token
from vaultd.daemon.process import Daemon
from vaultd.vault import open_vault

T = TypeVar("T")

# Generous: a loaded 2-core machine can stall for seconds; polling returns as soon as it is true.
DEADLINE = 20.0

FAST_CONFIG = """\
[embedding]
model = "hash-256"

[server]
port = 0

[daemon]
debounce_ms = 50
poll_seconds = 0.2
"""


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE,
             interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a vaultd process in these tests: fake model, any free port, tmp cache,
    and no vault or setting leaking in from the outer environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update({"VAULTD_EMBEDDING_MODEL": "hash-256", "VAULTD_SERVER_PORT": "0",
                "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    env.update(extra)
    return env


class Running:
    """A Daemon running `run()` in a background thread."""

    def __init__(self, daemon: Daemon, thread: threading.Thread, outcome: dict[str, Any]):
        self.daemon = daemon
        self.thread = thread
        self.outcome = outcome

    @property
    def root(self) -> Path:
        return self.daemon.root

    @property
    def port(self) -> int:
        return int(self.daemon.server.port)

    @property
    def token(self) -> str:
        token = read_token(self.root)
        assert token
        return token

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        kw.setdefault("token", self.token)
        return call(self.port, method, path, body, **kw)

    def search(self, query: str, k: int = 50, mode: str = "bm25") -> dict[str, Any]:
        status, data = self.call("POST", "/search", {"query": query, "k": k, "mode": mode})
        assert status == 200, data
        return data

    def paths(self, query: str, k: int = 50) -> set[str]:
        return {hit["path"] for hit in self.search(query, k)["hits"]}

    def stop(self, timeout: float = DEADLINE) -> int:
        self.daemon.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon thread did not stop"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return int(self.outcome["code"])


def start_daemon_thread(root: Path, env: dict[str, str] | None = None) -> Running:
    vault = open_vault(root, env=env or {}, daemon="never")
    daemon = Daemon(vault, log_to_stderr=False)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["code"] = daemon.run()
        except BaseException as exc:  # handed to the test thread by stop()/the wait below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test-daemon", daemon=True)
    thread.start()
    running = Running(daemon, thread, outcome)

    def ready() -> bool:
        if "error" in outcome:
            raise outcome["error"]
        # daemon.json is written once the server listens; the first batch is the reconcile at
        # start, queued after the watcher started
        return info_path(root).exists() and daemon.stats.batches >= 1

    try:
        wait_for(ready, "the daemon to start and reconcile")
    except BaseException:
        daemon.request_stop()
        thread.join(DEADLINE)
        raise
    return running


@contextmanager
def running_daemon(root: Path, env: dict[str, str] | None = None) -> Iterator[Running]:
    running = start_daemon_thread(root, env)
    try:
        yield running
    finally:
        if running.thread.is_alive():
            running.stop()


def call(port: int, method: str, path: str, body: Any = None, *, token: str | None = None,
         host: str = "localhost", raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = DEADLINE) -> tuple[int, Any]:
    """One HTTP request on a fresh connection; returns (status, parsed JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Host": f"{host}:{port}" if host == "localhost" else host}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        if payload is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn.request(method, path, body=payload, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Type") == "application/json", data[:200]
        return response.status, json.loads(data)
    finally:
        conn.close()


def vaultd(root: Path | None, *args: str, env: dict[str, str],
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m vaultd [--vault ROOT] ARGS...` in a subprocess."""
    cmd = [sys.executable, "-m", "vaultd"]
    if root is not None:
        cmd += ["--vault", str(root)]
    return subprocess.run(cmd + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(root or Path.cwd()))
