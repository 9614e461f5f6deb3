"""MCP over streamable HTTP at the daemon's `/mcp`: the official SDK's client (`ClientSession`
over `streamable_http_client`) against a real Daemon on a tmp vault (fake `hash-256` model),
with the API's token, Host and Origin checks; and the pure pieces of `daemon/mcp_http`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, Running, call, env_for, running_daemon, wait_for

from vaultd.daemon.mcp_http import call_asgi, scope_of

NOTES = {
    "procedural/rollback.md": "# Rolling back a deploy\n1. Find the last green build.\n"
                              "2. Run the rollback job with its id.\n",
    "semantic/database.md": "# Database\nWe run Postgres 16 on the primary cluster.\n",
}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    env = env_for(tmp_path_factory.mktemp("mcp-http-env"))
    config = FAST_CONFIG.replace("[server]\n", '[server]\nallow_origins = ["http://app.test"]\n')
    root = make_vault(tmp_path_factory.mktemp("mcp-http"), NOTES, config=config)
    with running_daemon(root, env) as running:
        # the first /mcp request loads the SDK (seconds on a busy machine): paid here, once
        status, _ = call(running.port, "POST", "/mcp", INIT, token=running.token,
                         headers=MCP_HEADERS, timeout=120)
        assert status == 200
        yield running


def _structured(result: Any) -> Any:
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


async def _client_session(url: str, headers: dict[str, str], work: Any,
                          statuses: list[int] | None = None) -> Any:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def seen(response: Any) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async with httpx2.AsyncClient(headers=headers, timeout=30,
                                  event_hooks={"response": [seen]}) as http, \
            streamable_http_client(url, http_client=http) as streams, \
            ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        return await work(session)


def test_the_sdk_client_lists_the_tools_and_searches_with_the_daemons_warm_index(
        daemon: Running) -> None:
    async def work(session: Any) -> dict[str, Any]:
        tools = {t.name for t in (await session.list_tools()).tools}
        hits = _structured(await session.call_tool("memory_search",
                                                   {"query": "rollback job", "k": 3}))
        note = _structured(await session.call_tool("memory_get",
                                                   {"path": "semantic/database.md"}))
        return {"tools": tools, "hits": hits, "note": note}

    url = f"http://localhost:{daemon.port}/mcp"
    out = asyncio.run(_client_session(url, {"Authorization": f"Bearer {daemon.token}"}, work))
    assert {"memory_search", "memory_get", "memory_write", "memory_flush"} <= out["tools"]
    assert out["hits"][0]["path"] == "procedural/rollback.md"
    assert "Postgres 16" in out["note"]
    # the daemon answered it: the search went through its reads (recalls are counted there)
    assert daemon.daemon.reads._searched_at > 0


def test_a_write_over_mcp_is_indexed_by_the_daemon_and_found(daemon: Running) -> None:
    async def write(session: Any) -> Any:
        return _structured(await session.call_tool(
            "memory_write", {"text": "The quokka migration finished on Tuesday."}))

    url = f"http://localhost:{daemon.port}/mcp"
    auth = {"Authorization": f"Bearer {daemon.token}"}
    written = asyncio.run(_client_session(url, auth, write))
    assert written["path"].startswith("episodic/")
    wait_for(lambda: written["path"] in daemon.paths("quokka migration"),
             "the daemon's watcher to index the MCP write")


def test_without_the_token_the_sdk_client_is_refused(daemon: Running) -> None:
    async def work(session: Any) -> Any:
        return await session.list_tools()

    url = f"http://localhost:{daemon.port}/mcp"
    statuses: list[int] = []
    with pytest.raises(BaseException) as caught:
        asyncio.run(_client_session(url, {}, work, statuses))
    assert "MCPError" in _all_text(caught.value)  # initialize failed: no session at all
    assert statuses == [401]


def _all_text(exc: BaseException) -> str:
    """An exception and every one it groups or chains, as text (anyio wraps the transport's)."""
    parts, stack = [], [exc]
    while stack:
        item = stack.pop()
        parts.append(f"{type(item).__name__}: {item}")
        stack.extend(getattr(item, "exceptions", ()))
        if item.__cause__ is not None:
            stack.append(item.__cause__)
        if item.__context__ is not None:
            stack.append(item.__context__)
    return " | ".join(parts)


@pytest.mark.parametrize("headers, status", [
    ({}, 401),  # no token
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Host": "evil.test"}, 403),  # DNS rebinding
    ({"Origin": "http://evil.test"}, 403),  # another site in the user's browser
])
def test_mcp_requests_pass_the_apis_checks(daemon: Running, headers: dict[str, str],
                                           status: int) -> None:
    token = None if "Authorization" in headers or not headers else daemon.token
    host = headers.pop("Host", "localhost")
    got, data = call(daemon.port, "POST", "/mcp", INIT, token=token, host=host,
                     headers={**MCP_HEADERS, **headers})
    assert got == status, data


def test_a_listed_origin_is_answered_with_cors_headers(daemon: Running) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    conn.request("POST", "/mcp", body=json.dumps(INIT),
                 headers={"Host": f"localhost:{daemon.port}", "Origin": "http://app.test",
                          "Authorization": f"Bearer {daemon.token}",
                          "Content-Type": "application/json", **MCP_HEADERS})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 200, body
    assert response.getheader("Access-Control-Allow-Origin") == "http://app.test"
    assert body["result"]["serverInfo"]["name"] == "vaultd"


@pytest.mark.parametrize("raw", [b"{", b'{"a": "\\ud800"}', b"[" * 100 + b"]" * 100])
def test_bad_json_to_mcp_is_the_apis_400(daemon: Running, raw: bytes) -> None:
    status, data = call(daemon.port, "POST", "/mcp", token=daemon.token, raw=raw,
                        headers=MCP_HEADERS)
    assert status == 400 and "body" in data["error"]


def test_a_body_over_the_limit_is_413_before_mcp(daemon: Running) -> None:
    limit = daemon.daemon.settings.server.max_body_bytes
    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                      "params": {"pad": "x" * (limit + 1)}}).encode()
    status, data = call(daemon.port, "POST", "/mcp", token=daemon.token, raw=raw,
                        headers=MCP_HEADERS)
    assert status == 413, data


def test_get_would_open_an_event_stream_and_is_405(daemon: Running) -> None:
    status, data = call(daemon.port, "GET", "/mcp", token=daemon.token,
                        headers={"Accept": "text/event-stream"})
    assert status == 405 and "POST" in data["error"]


# -- the pure pieces


def test_scope_of_splits_the_target_and_lowers_header_names() -> None:
    scope = scope_of("POST", "/mcp?x=1", [("Content-Type", "application/json")],
                     ("127.0.0.1", 5))
    assert (scope["path"], scope["query_string"]) == ("/mcp", b"x=1")
    assert scope["headers"] == [(b"content-type", b"application/json")]


def test_call_asgi_gives_the_whole_answer_and_the_body_once() -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        await send({"type": "http.response.body", "body": b"llo"})
        received.append(await receive())  # after the answer: the client has gone

    answer = asyncio.run(call_asgi(app, scope_of("POST", "/mcp", [], ("127.0.0.1", 1)),
                                   b"{}"))
    assert (answer.status, answer.headers, answer.body) == (201, [("x-a", "1")], b"hello")
    assert received == [{"type": "http.request", "body": b"{}", "more_body": False},
                        {"type": "http.disconnect"}]


@pytest.mark.slow
def test_the_sdk_is_not_loaded_until_the_first_mcp_request(tmp_path: Path) -> None:
    """A daemon nobody calls over MCP does not pay for the SDK (see mcp_http's docstring)."""
    import subprocess
    import sys

    code = ("import sys; from vaultd.daemon import server, process; "
            "print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- `vaultd mcp` (stdio) relayed to the daemon


def test_vaultd_mcp_relays_stdio_to_the_running_daemon(daemon: Running, tmp_path: Path) -> None:
    """The SDK's stdio client starts `vaultd mcp`; with the daemon up, the process relays to
    /mcp (it says so on stderr) and the tools answer from the daemon's index."""
    import sys

    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "vaultd", "--vault", str(daemon.root), "mcp"],
                                   env=env_for(tmp_path), cwd=str(tmp_path))

    async def session() -> dict[str, Any]:
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), \
                    ClientSession(read, write) as client:
                await client.initialize()
                tools = {t.name for t in (await client.list_tools()).tools}
                hits = _structured(await client.call_tool(
                    "memory_search", {"query": "Postgres cluster", "k": 2}))
                bad = await client.call_tool("memory_get", {"path": "../etc/passwd"})
                return {"tools": tools, "hits": hits, "bad": bad}

    searched = daemon.daemon.reads._searched_at
    out = asyncio.run(session())
    assert "memory_search" in out["tools"]
    assert out["hits"][0]["path"] == "semantic/database.md"
    assert out["bad"].is_error  # a tool's error comes back as the SDK's, through the relay
    assert daemon.daemon.reads._searched_at > searched  # the daemon ran the search
    assert "relaying to the daemon" in (tmp_path / "stderr.log").read_text()


def test_the_relay_answers_a_request_with_an_error_when_the_daemon_is_gone() -> None:
    import socket

    from vaultd.daemon.client import DaemonClient
    from vaultd.mcp_relay import exchange

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DaemonClient("127.0.0.1", port, "token")
    answer = json.loads(exchange(client, b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}',
                                 None))
    assert answer["id"] == 7 and "not answering" in answer["error"]["message"]
    assert exchange(client, b'{"jsonrpc": "2.0", "method": "notifications/x"}', None) == b""


@pytest.mark.slow
def test_a_trickling_mcp_body_is_cut_off_at_body_seconds_before_the_sdk_sees_it() -> None:
    """/mcp is served by the API's own server, so its slow-client deadlines hold for it."""
    import socket
    import time

    from vaultd.config import ServerSettings
    from vaultd.daemon.mcp_http import McpHttp
    from vaultd.daemon.server import Server

    built: list[bool] = []
    server = Server(object(), ServerSettings(port=0, head_seconds=1.0, body_seconds=1.0),  # type: ignore[arg-type]
                    token="secret", mcp=McpHttp(lambda: built.append(True)))
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                         b"secret\r\nContent-Type: application/json\r\nContent-Length: 100000"
                         b"\r\n\r\n{\"jsonrpc\": \"")
            started, answer = time.monotonic(), b""
            while time.monotonic() - started < 8 and not answer:
                try:
                    sock.sendall(b"a")  # one byte every 0.1 s never extends the deadline
                except OSError:
                    break
                sock.settimeout(0.1)
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < 4 and not built
