"""Talk to the vault's daemon over its loopback API (stdlib only: no numpy, no onnxruntime).

The policy every client follows (CLI and library alike):
- no daemon running → the caller loads the model in-process (and says so once);
- daemon running but failing → retry once after a short pause, then a clear error — never a
  second copy of the model in memory behind a sick daemon; `--local` forces in-process.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd.daemon.files import read_info, read_token
from vaultd.errors import VaultdError

if TYPE_CHECKING:
    from vaultd.search_request import SearchRequest

RETRY_PAUSE = 0.5


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
        if token is None:
            return None
        return cls(str(info.get("host", "127.0.0.1")), int(info["port"]), token)

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        host = "localhost" if self.host in ("127.0.0.1", "::1", "localhost") else self.host
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Host": f"{host}:{self.port}", "Authorization": f"Bearer {self.token}"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            try:
                conn.request(method, path, body=payload, headers=headers)
            except ConnectionRefusedError as exc:
                raise DaemonDown(str(exc)) from exc
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict):
            data = None
        if response.status >= 500:  # whatever the body: a sick daemon gets its one retry
            raise _Retryable((data or {}).get("error") or f"HTTP {response.status}")
        if data is None:
            raise DaemonError(f"daemon sent a non-JSON answer ({response.status})")
        if response.status != 200:
            raise DaemonError(f"daemon refused the request ({response.status}): "
                              f"{data.get('error', '')}")
        return data

    def request(self, method: str, path: str, body: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """One call with the retry policy. Raises DaemonDown only when nothing listens."""
        last: Exception | None = None
        for attempt in range(2):
            try:
                return self._once(method, path, body)
            except DaemonDown:
                if attempt == 0:
                    raise
                break
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

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/status")

    def search(self, request: SearchRequest) -> dict[str, Any]:
        return self.request("POST", "/search", request.to_json())

    def embed(self, texts: list[str], kind: str) -> dict[str, Any]:
        return self.request("POST", "/embed", {"texts": texts, "kind": kind})


class _Retryable(Exception):
    pass
