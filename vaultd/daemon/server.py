"""The loopback HTTP API's server: connections, the request's plumbing and the order of the
checks, nothing more. What each check decides is in `guards` (pure functions), what each
endpoint answers in `routes`, the shapes of values and errors in `payloads`.

Security (docs/api.md has the threat model): binds loopback by default; every endpoint but
`/health` needs `Authorization: Bearer <token>` (compared in constant time) — unless `[server]
open_embeddings` opens the embedding endpoints alone; a request whose Host is not localhost,
127.0.0.1 or [::1] is refused (DNS rebinding), and so is one whose Origin is not listed in
`[server] allow_origins` (browsers; listed origins get CORS headers); bodies and text lists have
size limits (413); malformed JSON, lone surrogates and deep nesting are a 400. MCP at `/mcp`
(`mcp_http`) passes the same checks, then goes to the mcp SDK's streamable HTTP app.

A team server (`[server] host` not loopback) starts only with client tokens (`client_tokens`);
then every endpoint but `/health` needs one (the daemon's own token only from this machine),
the Host follows `[server] allowed_hosts`, open embeddings are refused, and each refused
request is logged with its reason (never its token).

Denial of service: connections are limited and slow senders cut off (`connections`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from vaultd.config import ServerSettings
from vaultd.daemon import guards
from vaultd.daemon.client_tokens import ClientTokens
from vaultd.daemon.connections import LimitedHTTPServer, fd_limit
from vaultd.daemon.guards import ApiError
from vaultd.daemon.mcp_http import MCP_ROUTE, McpHttp
from vaultd.daemon.payloads import error_body
from vaultd.daemon.routes import App, Call, lookup
from vaultd.errors import VaultdError

log = logging.getLogger("vaultd.daemon.server")

# A request's unread body is read and thrown away (so the client, still sending, can read our
# answer, and a kept-alive connection does not parse it as the next request) up to this much
# for this long; beyond, the connection is closed.
DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Mcp-Protocol-Version, Mcp-Session-Id"
# What a socket raises when the client hung up mid-request or mid-answer: one debug line, never
# an error with a traceback (a closed browser tab or a killed script is not a fault of ours)
HANGUPS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class Server:
    def __init__(self, app: App, settings: ServerSettings, *, token: str,
                 mcp: McpHttp | None = None, clients: ClientTokens | None = None) -> None:
        host, port = settings.host, settings.port
        self.team = not guards.is_loopback(host)  # bound wide: a team server
        if self.team:
            _check_team_settings(settings, clients)
        self.clients = clients
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".")
                                       for h in settings.allowed_hosts)
        self.app = app
        self.token = token
        self.mcp = mcp
        self.settings = settings
        self.max_body_bytes = settings.max_body_bytes
        self.max_texts = settings.max_texts
        self.open_embeddings = settings.open_embeddings
        self.allow_origins = frozenset(o.rstrip("/") for o in settings.allow_origins)
        # Half the descriptors at most: the index, the watcher and the vault's files need theirs.
        limit = fd_limit()
        max_connections = settings.max_connections
        if limit is not None:
            max_connections = min(max_connections, max(8, limit // 2))
        handler = type("BoundHandler", (_Handler,), {"server_ref": self})
        server_class: type[LimitedHTTPServer] = LimitedHTTPServer
        if ":" in host:  # an IPv6 address: ::1, or :: for every address
            server_class = type("V6Server", (LimitedHTTPServer,),
                                {"address_family": socket.AF_INET6})
        try:
            self.httpd = server_class((host, port), handler, max_connections=max_connections,
                                      head_seconds=settings.head_seconds,
                                      body_seconds=settings.body_seconds)
        except OSError as exc:
            raise VaultdError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; another "
                              "process uses the port (another vault's daemon?) — set [server] "
                              "port in .vaultd/config.toml") from exc
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vaultd-http",
                                        kwargs={"poll_interval": 0.5}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits forever for a loop that never ran
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()
        if self.mcp is not None:
            self.mcp.stop()


def _check_team_settings(settings: ServerSettings, clients: ClientTokens | None) -> None:
    """A team server starts only when it can ask every client for a token of its own."""
    where = f"[server] host = {settings.host!r} is not loopback"
    if settings.open_embeddings:
        raise VaultdError(f"{where}, and [server] open_embeddings would serve the network "
                          "without a token: turn it off for a team server")
    if clients is None or not clients.digests():
        raise VaultdError(f"{where}: a team server needs client tokens and has none; add one "
                          "with `vaultd token add NAME` (or bind loopback: host = "
                          "\"127.0.0.1\")")


class _Handler(BaseHTTPRequestHandler):
    server_ref: Server
    server: LimitedHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a response's last write must not wait for an ACK
    # headers and body buffered, then sent with one write (the stdlib's default, 0, writes the
    # headers and the body apart: two system calls per response); every response flushes
    wbufsize = 1 << 16
    server_version = "vaultd"
    timeout = 30.0  # seconds a stalled client may hold its connection (and thread)
    _unread = 0  # bytes of the request body not read yet
    _route = "/"
    _cors: str | None = None  # the listed Origin to echo, if the request has one
    _hung_up = False  # the client went away mid-request; logged once, by `_handle`

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if log.isEnabledFor(logging.DEBUG):  # called for every request: format only if kept
            log.debug("%s %s", self.address_string(), format % args)

    # -- plumbing
    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # "100 Continue" must go out now: the client waits for it
        return ok

    def handle_one_request(self) -> None:
        self.server.mark(self.connection, "head")
        self._cors = None
        self._route = "/"
        try:
            super().handle_one_request()
        except HANGUPS:  # its last flush, of an answer a client that hung up will never read
            if not self._hung_up:
                raise

    def _cors_headers(self) -> None:
        headers = getattr(self, "headers", None)  # not there when the request line was bad
        if headers is not None and headers.get("Origin") is not None:
            self.send_header("Vary", "Origin")
        if self._cors is not None:
            self.send_header("Access-Control-Allow-Origin", self._cors)

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self._cors_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error(self, status: HTTPStatus, message: str, param: str | None = None,
                    code: str | None = None) -> None:
        self._send(status, error_body(self._route, status, message, param, code))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, unsupported method, timeouts) as JSON."""
        self.close_connection = True
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        path = getattr(self, "path", "") or "/"
        self._route = path.split("?", 1)[0].rstrip("/") or "/"
        self._send_error(status, message or status.phrase)

    def _discard_body(self) -> None:
        """Read and drop what is left of the request body, within limits (see DISCARD_*)."""
        left, self._unread = self._unread, 0
        if left <= 0:
            return
        if left > DISCARD_BYTES:
            self.close_connection = True
        left = min(left, DISCARD_BYTES)
        deadline = time.monotonic() + DISCARD_SECONDS
        self.server.mark(self.connection, "body")
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self.server.mark(self.connection, "work")
        if left > 0:
            self.close_connection = True

    def _check(self, auth: bool) -> None:
        """The request's headers through the guards, in order: Host, Origin, then the token."""
        if self.server_ref.team:
            try:
                self._check_team(auth)
            except ApiError as exc:  # the reason, who asked and for what; never the token
                log.warning("refused %s %s from %s: %s", self.command, self._route,
                            self.client_address[0], exc)
                raise
            return
        guards.check_host(self.headers.get("Host", ""))
        self._cors = guards.check_origin(self.headers.get("Origin"),
                                         self.server_ref.allow_origins)
        if auth:
            guards.check_token(self.headers.get("Authorization", ""), self.server_ref.token)

    def _check_team(self, auth: bool) -> None:
        """A team server's checks: Host by `[server] allowed_hosts`, Origin as always, then a
        client token (or the daemon's own, from this machine)."""
        ref = self.server_ref
        guards.check_team_host(self.headers.get("Host", ""), ref.allowed_hosts)
        self._cors = guards.check_origin(self.headers.get("Origin"), ref.allow_origins)
        if not auth:
            return
        assert ref.clients is not None  # a team server starts only with them
        unreadable: VaultdError | None = None
        try:
            digests = ref.clients.digests()
        except VaultdError as exc:  # fail closed: a list it cannot read lets no client in
            log.error("client tokens unreadable, refusing clients: %s", exc)
            digests, unreadable = {}, exc  # (the daemon's own token, from here, still works)
        local_peer = guards.is_local_peer(self.client_address[0],
                                          self.connection.getsockname()[0])
        try:
            guards.check_client(self.headers.get("Authorization", ""), digests=digests,
                                local_token=ref.token, local_peer=local_peer)
        except ApiError as exc:
            if unreadable is None:
                raise
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the server cannot read its client "
                           "tokens; its log says why") from exc

    def _json_body(self) -> dict[str, Any]:
        return guards.parse_body(self._checked_body())

    def _checked_body(self) -> bytes:
        """The body, within `[server] max_body_bytes` (413 before a byte of it is read)."""
        length = self._unread
        if length > self.server_ref.max_body_bytes:
            self.close_connection = True  # answer, drain what is sent, then hang up
            guards.check_body_size(length, self.server_ref.max_body_bytes)
        self._unread = 0
        return self._read_body(length)

    def _read_body(self, length: int) -> bytes:
        """The body's `length` bytes, within the connection's body deadline."""
        self.server.mark(self.connection, "body")
        try:
            raw = self.rfile.read(length) if length > 0 else b""
        except OSError as exc:  # the socket timeout: a client that stalls mid-body
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_TIMEOUT, "request body not received in time") \
                from exc
        finally:
            self.server.mark(self.connection, "work")
        if len(raw) < length:
            self.close_connection = True
            if self.server.timed_out(self.connection):
                raise ApiError(HTTPStatus.REQUEST_TIMEOUT, "request body not received within "
                               f"{self.server.body_seconds:g} s ([server] body_seconds)")
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length")
        return raw

    def _handle(self, method: str) -> None:
        self.server.mark(self.connection, "work")
        self._route = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._unread = max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self.close_connection = True  # where this request ends is unknown
            self._send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked "
                                                         "body")
            return
        try:
            self._respond(method, self._route)
            self._discard_body()
        except HANGUPS:  # the client hung up: nobody to answer
            self.close_connection = True
            self._hung_up = True
            log.debug("client %s hung up during %s %s", self.address_string(), method,
                      self._route)

    def finish(self) -> None:
        """The stdlib's clean-up, quiet about a hang-up `_handle` has logged already: closing
        the buffered writer tries once more to send the answer nobody reads. A hang-up not seen
        before goes on to `handle_error`, which logs it as one debug line too."""
        try:
            super().finish()
        except HANGUPS:
            if not self._hung_up:
                raise
            self.rfile.close()

    def _respond(self, method: str, route: str) -> None:
        try:
            if method == "OPTIONS":  # a CORS preflight: browsers send it without the token
                self._check(auth=False)
                self._preflight()
                return
            if method == "GET" and route == "/health":
                self._check(auth=False)
                self._send(HTTPStatus.OK, self.server_ref.app.health())
                return
            if route == MCP_ROUTE and self.server_ref.mcp is not None:
                self._check(auth=True)
                self._mcp(method, self.server_ref.mcp)
                return
            found = lookup(method, route)
            self._check(auth=not (found and found[1] and self.server_ref.open_embeddings))
            if found is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no endpoint {method} {route}")
            body = self._json_body() if method == "POST" else {}
            call = Call(self.server_ref.app, route, self.server_ref.max_texts)
            self._send(HTTPStatus.OK, found[0](call, body))
        except ApiError as exc:
            self._send_error(exc.status, str(exc), exc.param, exc.code)
        except VaultdError as exc:
            self._send_error(HTTPStatus.BAD_REQUEST, str(exc))
        except HANGUPS:
            raise  # the client is gone: nothing to answer and no fault of ours (see `_handle`)
        except Exception as exc:  # the daemon must stay up; the log has the traceback
            log.exception("error serving %s %s", method, route)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {exc}")

    def _mcp(self, method: str, mcp: McpHttp) -> None:
        """A checked request to /mcp: its body within the same limits, to the SDK's app."""
        raw = b""
        if method == "POST":
            raw = self._checked_body()
            guards.parse_body(raw)  # bad, deep or surrogate JSON is refused here as anywhere
        answer = mcp.handle(method, self.path, list(self.headers.items()), raw,
                            self.client_address[:2])
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self._cors_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()

    def _preflight(self) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Allow", CORS_METHODS)
        self._cors_headers()
        if self._cors is not None:
            self.send_header("Access-Control-Allow-Methods", CORS_METHODS)
            self.send_header("Access-Control-Allow-Headers", CORS_HEADERS)
            self.send_header("Access-Control-Max-Age", "600")
            if self.headers.get("Access-Control-Request-Private-Network", "") == "true":
                self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("POST")

    def do_OPTIONS(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("OPTIONS")
