"""`vaultd mcp` when the vault's daemon runs: the MCP client's stdio relayed to the daemon's
`/mcp` (streamable HTTP), so a client that can only start a command still gets the warm model
and index, and its process loads neither the MCP SDK nor the vault. Stdlib only.

Each JSON-RPC message read from stdin (one a line: MCP's stdio framing) is POSTed to `/mcp`
with the vault's token; the daemon's JSON answer is written to stdout as one line, and a
notification's empty `202` writes nothing. After `initialize`, the negotiated protocol version
goes with every request as the HTTP transport asks (`Mcp-Protocol-Version`). `/mcp` is
stateless, so a daemon restarted mid-session answers the next request; while it is down,
every request gets a JSON-RPC error saying so. With no daemon at start, `vaultd mcp` serves
in-process instead (`mcp_server.run`).
"""

from __future__ import annotations

import http.client
import json
from typing import Any, BinaryIO

from vaultd.daemon.client import DaemonClient, DaemonDown

MCP_ROUTE = "/mcp"  # daemon/mcp_http.MCP_ROUTE; not imported, so this module stays stdlib-only
ANSWER_SECONDS = 700.0  # longer than the daemon's own wait for a tool (mcp_http)
INTERNAL_ERROR = -32603  # JSON-RPC's code for an error of the server's


def relay(client: DaemonClient, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Relay messages until stdin closes."""
    version: str | None = None
    for line in stdin:
        if not line.strip():
            continue
        answer = exchange(client, line, version)
        version = negotiated(answer) or version
        if answer:
            stdout.write(answer.rstrip(b"\r\n") + b"\n")
            stdout.flush()


def exchange(client: DaemonClient, message: bytes, version: str | None) -> bytes:
    """The daemon's answer to one message (empty for a notification), or a JSON-RPC error."""
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    if version:
        headers["Mcp-Protocol-Version"] = version
    try:
        status, raw = client.send("POST", MCP_ROUTE, message, ANSWER_SECONDS, headers)
    except (DaemonDown, OSError, http.client.HTTPException) as exc:
        return error_reply(message, f"the vaultd daemon on {client.host}:{client.port} is not "
                           f"answering ({exc}); start it again with `vaultd start`")
    if status == 202 or not raw.strip():
        return b""
    parsed = _json(raw)
    if isinstance(parsed, dict) and parsed.get("jsonrpc"):
        return raw  # the SDK's answer, an error of its own included
    said = parsed.get("error") if isinstance(parsed, dict) else None
    return error_reply(message, f"the vaultd daemon refused the request ({status}): "
                       f"{said or raw[:200].decode('utf-8', 'replace')}")


def negotiated(answer: bytes) -> str | None:
    """The protocol version an `initialize` answer settles on, else None."""
    if b"protocolVersion" not in answer:
        return None
    parsed = _json(answer)
    result = parsed.get("result") if isinstance(parsed, dict) else None
    version = result.get("protocolVersion") if isinstance(result, dict) else None
    return version if isinstance(version, str) else None


def error_reply(message: bytes, text: str) -> bytes:
    """A JSON-RPC error answering `message` (nothing for a notification, which has no id)."""
    parsed = _json(message)
    if not isinstance(parsed, dict) or "id" not in parsed:
        return b""
    return json.dumps({"jsonrpc": "2.0", "id": parsed["id"],
                       "error": {"code": INTERNAL_ERROR, "message": text}}).encode()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
