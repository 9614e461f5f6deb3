"""MCP over streamable HTTP at `/mcp`: the mcp SDK's transport (an ASGI app) served from the
daemon's own HTTP server, so an agent's MCP client reaches the warm model and index with the
API's token, Host and Origin checks and limits instead of starting a process of its own.

The server checks a request as it checks every other (`guards`, in `server`), reads its body
within `[server] max_body_bytes` and hands it here whole; the SDK's app runs on an event loop
thread of this module's and its answer goes back whole. Stateless and JSON-only: each POST is
one JSON-RPC exchange answered with one JSON body (no session to lose when the daemon
restarts, no stream holding a connection and a thread), and a GET, which would open a
server-to-client event stream, is a 405 (the transport's spec lets a server refuse it).

The SDK (with pydantic and starlette) loads on the first `/mcp` request, not at start-up: a
daemon that no MCP client calls does not pay its memory (bench/RESULTS.md, issue 26).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from vaultd.daemon.guards import ApiError

log = logging.getLogger("vaultd.daemon.mcp")

MCP_ROUTE = "/mcp"
# A tool call may run a flush or wait for the index's writer: longer than any of the daemon's
# own waits (process.FLUSH_TIMEOUT), so those answer first with their own error.
ANSWER_SECONDS = 660.0
START_SECONDS = 60.0  # loading the SDK and building the server, once

Scope = dict[str, Any]
Message = dict[str, Any]
AsgiApp = Callable[[Scope, Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass
class McpAnswer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def scope_of(method: str, target: str, headers: list[tuple[str, str]],
             client: tuple[str, int]) -> Scope:
    """The ASGI scope of a request the server has read (`target`: path and query)."""
    path, _, query = target.partition("?")
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": method, "scheme": "http", "path": path,
            "raw_path": path.encode("latin-1"), "query_string": query.encode("latin-1"),
            "root_path": "", "client": client, "server": ("127.0.0.1", 0),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers]}


async def call_asgi(app: AsgiApp, scope: Scope, body: bytes) -> McpAnswer:
    """Run one request through an ASGI app with its whole body; its whole answer."""
    answer = McpAnswer(HTTPStatus.INTERNAL_SERVER_ERROR)
    chunks: list[bytes] = []
    sent = asyncio.Event()
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await sent.wait()  # the client "disconnects" once it has its answer
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = int(message["status"])
            answer.headers = [(k.decode("latin-1"), v.decode("latin-1"))
                              for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                sent.set()

    try:
        await app(scope, receive, send)
    finally:
        sent.set()
    answer.body = b"".join(chunks)
    return answer


class McpHttp:
    """The SDK's streamable HTTP app on an event loop thread, started on first use.
    `build` makes the MCP server (`mcp_server.daemon_server`)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._app: AsgiApp | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
               client: tuple[str, int]) -> McpAnswer:
        """Answer a request the server has checked (Host, Origin, token, body size)."""
        if method != "POST":
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {MCP_ROUTE}: this server "
                           "answers MCP over POST only (no event stream); send POST")
        loop, app = self._started()
        future = asyncio.run_coroutine_threadsafe(
            call_asgi(app, scope_of(method, target, headers, client), body), loop)
        try:
            return future.result(ANSWER_SECONDS)
        except TimeoutError as exc:
            future.cancel()
            raise ApiError(HTTPStatus.GATEWAY_TIMEOUT, "the MCP request took longer than "
                           f"{ANSWER_SECONDS:g} s") from exc

    def _started(self) -> tuple[asyncio.AbstractEventLoop, AsgiApp]:
        with self._lock:
            if self._thread is None:
                ready = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(ready,),
                                                name="vaultd-mcp", daemon=True)
                self._thread.start()
                ready.wait(START_SECONDS)
            if self._failed is not None:
                raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR,
                               f"the MCP server did not start: {self._failed}")
            if self._loop is None or self._app is None:
                raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the MCP server is starting; "
                               "try again")
            return self._loop, self._app

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # said to every request from now on (see `_started`)
            log.exception("the MCP server stopped")
            self._failed = exc
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        from mcp.server.transport_security import TransportSecuritySettings

        server = self._build()
        # Host and Origin were checked by the daemon's server (`guards`), the one place
        # those rules live; the SDK's own copy of them is turned off, not configured twice.
        server.streamable_http_app(
            stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        manager = server.session_manager
        self._stop = asyncio.Event()
        async with manager.run():
            self._app = manager.handle_request
            self._loop = asyncio.get_running_loop()
            log.info("MCP over streamable HTTP ready at %s", MCP_ROUTE)
            ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(10)
