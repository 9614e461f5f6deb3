"""Talk to the vault's daemon over its loopback API (stdlib only: no numpy, no onnxruntime).

The policy every client follows (CLI, library and MCP alike), `DaemonOrLocal` below:
- no daemon running → the caller loads the model in-process (and says so once);
- daemon running but failing → retry once after a short pause, then a clear error — never a
  second copy of the model in memory behind a sick daemon; `--local` forces in-process.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from vaultd.daemon.discovery import read_info, read_token
from vaultd.errors import VaultdError

if TYPE_CHECKING:
    from vaultd.daemon.stats import Status
    from vaultd.search_request import SearchAnswer, SearchRequest

RETRY_PAUSE = 0.5
FLUSH_TIMEOUT = 300.0  # seconds: flush and the lifecycle run phases that may take a while
LIFECYCLE_TIMEOUT = 600.0
LOCAL_NOTE = "no daemon running; loading the model in-process (`vaultd start` keeps it warm)"

T = TypeVar("T")
Route = Literal["daemon", "local"]


class DaemonDown(Exception):
    """Nothing answers: the caller may fall back to in-process work."""


class DaemonError(VaultdError):
    """The daemon answered, or was there, but failed."""


class DaemonClient:
    def __init__(self, host: str, port: int, token: str, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_vault(cls, root: Path) -> DaemonClient | None:
        """A client for the vault's running daemon, or None when none runs."""
        info = read_info(root)
        if info is None:
            return None
        token = read_token(root)
        if token is None:  # a live daemon without its token: working beside it would make a
            # second writer of the index and the vault, so say so instead of falling back
            raise DaemonError(f"the vaultd daemon (pid {info['pid']}) runs but its token file "
                              ".vaultd/token is missing or unreadable; it restores the file "
                              "within seconds, or restart it: `vaultd stop && vaultd start`")
        return cls(str(info.get("host", "127.0.0.1")), int(info["port"]), token)

    def send(self, method: str, path: str, payload: bytes | None, timeout: float,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One HTTP exchange with the daemon, its Host and token set: (status, body). The
        calls below and the MCP relay (`vaultd.mcp_relay`) go through it. DaemonDown when
        nothing listens."""
        host = "localhost" if self.host in ("127.0.0.1", "::1", "localhost") else self.host
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            sent = {"Host": f"{host}:{self.port}", "Authorization": f"Bearer {self.token}",
                    **(headers or {})}
            try:
                conn.request(method, path, body=payload, headers=sent)
            except ConnectionRefusedError as exc:
                raise DaemonDown(str(exc)) from exc
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _once(self, method: str, path: str, body: dict[str, Any] | None,
              timeout: float) -> dict[str, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        status, raw = self.send(method, path, payload, timeout,
                                {"Content-Type": "application/json"} if payload else None)
        try:
            parsed = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        data: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
        if status >= 500:  # whatever the body: a sick daemon gets its one retry
            raise _Retryable((data or {}).get("error") or f"HTTP {status}")
        if data is None:
            raise DaemonError(f"daemon sent a non-JSON answer ({status})")
        if status != 200:
            raise DaemonError(f"daemon refused the request ({status}): "
                              f"{data.get('error', '')}")
        return data

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> dict[str, Any]:
        """One call with the retry policy. Raises DaemonDown only when nothing listens.
        `timeout` lengthens (never shortens) the client's for a call known to be slow."""
        wait = self.timeout if timeout is None else max(self.timeout, timeout)
        last: Exception | None = None
        for attempt in range(2):
            try:
                return self._once(method, path, body, wait)
            except DaemonDown:
                if attempt == 0:
                    raise
                # it was there for the first try and nothing listens now: it died mid-request
                raise DaemonError(
                    f"the vaultd daemon on {self.host}:{self.port} stopped answering during "
                    f"the request ({last}) and is no longer running; see .vaultd/daemon.log "
                    "for why, start it again with `vaultd start`, or pass --local to work "
                    "in-process") from None
            except (_Retryable, OSError, http.client.HTTPException) as exc:
                last = exc
                if attempt == 0:
                    time.sleep(RETRY_PAUSE)
        raise DaemonError(
            f"the vaultd daemon on {self.host}:{self.port} is running but failing ({last}); "
            "see .vaultd/daemon.log, restart it with `vaultd stop && vaultd start`, or pass "
            "--local to work in-process")

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def status(self) -> Status:
        from vaultd.daemon.stats import Status

        return Status.from_dict(self.request("GET", "/status"))

    def search(self, request: SearchRequest) -> SearchAnswer:
        from vaultd.search_request import SearchAnswer

        return SearchAnswer.from_dict(self.request("POST", "/search", request.to_json()))

    def embed(self, texts: list[str], kind: str) -> dict[str, Any]:
        return self.request("POST", "/embed", {"texts": texts, "kind": kind})

    def flush(self) -> dict[str, Any]:
        return self.request("POST", "/flush", {}, timeout=FLUSH_TIMEOUT)

    def lifecycle(self, phases: list[str], dry_run: bool = False) -> dict[str, Any]:
        return self.request("POST", "/lifecycle", {"phases": phases, "dry_run": dry_run},
                            timeout=LIFECYCLE_TIMEOUT)


class DaemonOrLocal:
    """Work through the vault's daemon when one runs, else in-process: the one place that
    decides, for the CLI and the library.

    `run(remote, local)` calls `remote(client)` when a daemon answers and `local()` when none
    runs (nothing listens: DaemonDown); a daemon that runs but fails raises DaemonError
    after its one retry. With `use_daemon=False` (`--local`, `daemon="never"`, an explicit
    embedder) it is always `local()`, silently; otherwise the first fallback is announced
    through `on_local` (the CLI prints it; the library says nothing). `route` tells where the
    last call ran.
    """

    def __init__(self, root: Path, *, use_daemon: bool = True,
                 on_local: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.use_daemon = use_daemon
        self.on_local = on_local
        self.route: Route = "local"

    def run(self, remote: Callable[[DaemonClient], T], local: Callable[[], T]) -> T:
        client = DaemonClient.for_vault(self.root) if self.use_daemon else None
        if client is not None:
            try:
                answer = remote(client)
            except DaemonDown:
                pass
            else:
                self.route = "daemon"
                return answer
        self.route = "local"
        if self.use_daemon and self.on_local is not None:
            self.on_local(LOCAL_NOTE)
            self.on_local = None  # once
        return local()


class _Retryable(Exception):
    pass
