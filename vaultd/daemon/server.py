"""The loopback HTTP API: an adapter from requests to the daemon's methods, nothing more.

Security: binds loopback only; every endpoint but `/health` needs `Authorization: Bearer
<token>` (compared in constant time); a request whose Host is not localhost, 127.0.0.1 or [::1]
is refused (DNS rebinding); bodies and text lists have size limits (413); malformed JSON is a
400. Every error is JSON: `{"error": "..."}`. Threaded: a slow client does not block others.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from vaultd.errors import VaultdError
from vaultd.lifecycle import PHASE_NAMES
from vaultd.search_request import SearchRequest

log = logging.getLogger("vaultd.daemon.server")


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_HOST_RE = re.compile(r"^(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$", re.IGNORECASE)
# A request's unread body is read and thrown away (so the client, still sending, can read our
# answer, and a kept-alive connection does not parse it as the next request) up to this much
# for this long; beyond, the connection is closed.
DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 10.0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets bursts of parallel clients


class App(Protocol):
    """What the server needs from the daemon."""

    def health(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]: ...
    def count_tokens(self, texts: list[str]) -> int: ...
    def search(self, request: SearchRequest) -> dict[str, Any]: ...
    def flush_now(self) -> dict[str, Any]: ...
    def lifecycle_now(self, phases: list[str], dry_run: bool = False) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Server:
    def __init__(self, app: App, *, host: str, port: int, token: str, max_body_bytes: int,
                 max_texts: int) -> None:
        if host not in LOOPBACK_HOSTS:
            raise VaultdError(f"[server] host = {host!r}: vaultd binds loopback only "
                              "(127.0.0.1, ::1 or localhost)")
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.max_texts = max_texts
        handler = type("BoundHandler", (_Handler,), {"server_ref": self})
        server_class: type[ThreadingHTTPServer] = _HTTPServer
        if host == "::1":
            import socket

            server_class = type("V6Server", (_HTTPServer,),
                                {"address_family": socket.AF_INET6})
        try:
            self.httpd = server_class((host, port), handler)
        except OSError as exc:
            raise VaultdError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; another "
                              "process uses the port (another vault's daemon?) — set [server] "
                              "port in .vaultd/config.toml") from exc
        self.httpd.daemon_threads = True
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


def _texts(value: Any, limit: int, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"'{field}' must be a string or a list of strings")
    if len(value) > limit:
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"{len(value)} texts in one request; the limit is {limit}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server_ref: Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server_version = "vaultd"
    timeout = 30.0  # seconds a stalled client may hold its connection (and thread)
    _unread = 0  # bytes of the request body not read yet

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    # -- plumbing
    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, unsupported method, timeouts) as JSON."""
        self.close_connection = True
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        self._send(status, {"error": message or status.phrase})

    def _discard_body(self) -> None:
        """Read and drop what is left of the request body, within limits (see DISCARD_*)."""
        left, self._unread = self._unread, 0
        if left <= 0:
            return
        if left > DISCARD_BYTES:
            self.close_connection = True
        left = min(left, DISCARD_BYTES)
        deadline = time.monotonic() + DISCARD_SECONDS
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        if left > 0:
            self.close_connection = True

    def _check(self, auth: bool) -> None:
        host = self.headers.get("Host", "")
        if not _HOST_RE.match(host.strip()):
            raise ApiError(HTTPStatus.FORBIDDEN, f"Host {host!r} refused: use localhost")
        if auth:
            given = self.headers.get("Authorization", "")
            expected = f"Bearer {self.server_ref.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise ApiError(HTTPStatus.UNAUTHORIZED,
                               "missing or wrong bearer token (see .vaultd/token)")

    def _json_body(self) -> dict[str, Any]:
        length = self._unread
        if length > self.server_ref.max_body_bytes:
            self.close_connection = True  # answer, drain what is sent, then hang up
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"body of {length:,} bytes; the limit is "
                           f"{self.server_ref.max_body_bytes:,}")
        self._unread = 0
        try:
            raw = self.rfile.read(length) if length > 0 else b""
        except OSError as exc:  # the socket timeout: a client that stalls mid-body
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_TIMEOUT, "request body not received in time") \
                from exc
        if len(raw) < length:
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length")
        try:
            data = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return data

    def _handle(self, method: str) -> None:
        route = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._unread = max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self.close_connection = True  # where this request ends is unknown
            self._send(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length, not a "
                                                             "chunked body"})
            return
        try:
            self._respond(method, route)
            self._discard_body()
        except ConnectionError:  # the client hung up: nobody to answer
            self.close_connection = True
            log.debug("client %s hung up during %s %s", self.address_string(), method, route)

    def _respond(self, method: str, route: str) -> None:
        try:
            if method == "GET" and route == "/health":
                self._check(auth=False)
                self._send(HTTPStatus.OK, self.server_ref.app.health())
                return
            self._check(auth=True)
            handler = _ROUTES.get((method, route))
            if handler is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no endpoint {method} {route}")
            body = self._json_body() if method == "POST" else {}
            self._send(HTTPStatus.OK, handler(self, body))
        except ApiError as exc:
            self._send(exc.status, {"error": str(exc)})
        except VaultdError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception as exc:  # the daemon must stay up; the log has the traceback
            log.exception("error serving %s %s", method, route)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {exc}"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("POST")

    # -- endpoints
    def status(self, _body: dict[str, Any]) -> dict[str, Any]:
        return self.server_ref.app.status()

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = _texts(body.get("texts"), self.server_ref.max_texts, "texts")
        kind = body.get("kind", "document")
        if kind not in ("query", "document"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "'kind' must be 'query' or 'document'")
        model, dims, vectors = self.server_ref.app.embed(texts, kind)
        return {"model": model, "dims": dims, "vectors": vectors}

    def openai(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = _texts(body.get("input"), self.server_ref.max_texts, "input")
        model, _dims, vectors = self.server_ref.app.embed(texts, "document")
        tokens = self.server_ref.app.count_tokens(texts)
        return {"object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": v}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def ollama(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = _texts(body.get("input"), self.server_ref.max_texts, "input")
        model, _dims, vectors = self.server_ref.app.embed(texts, "document")
        return {"model": model, "embeddings": vectors}

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            request = SearchRequest.from_json(body)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        return self.server_ref.app.search(request)

    def flush(self, _body: dict[str, Any]) -> dict[str, Any]:
        return self.server_ref.app.flush_now()

    def lifecycle(self, body: dict[str, Any]) -> dict[str, Any]:
        phases = body.get("phases", "all")
        if phases == "all":
            phases = list(PHASE_NAMES)
        if not isinstance(phases, list) or not phases or not all(
                isinstance(p, str) for p in phases):
            raise ApiError(HTTPStatus.BAD_REQUEST,
                           "'phases' must be \"all\" or a non-empty list of phase names")
        unknown = [p for p in phases if p not in PHASE_NAMES]
        if unknown:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown lifecycle phase {unknown[0]!r}; "
                           "the phases are " + ", ".join(PHASE_NAMES))
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ApiError(HTTPStatus.BAD_REQUEST, "'dry_run' must be true or false")
        return self.server_ref.app.lifecycle_now(phases, dry_run)


_ROUTES = {
    ("GET", "/status"): _Handler.status,
    ("POST", "/embed"): _Handler.embed,
    ("POST", "/v1/embeddings"): _Handler.openai,
    ("POST", "/api/embed"): _Handler.ollama,
    ("POST", "/search"): _Handler.search,
    ("POST", "/flush"): _Handler.flush,
    ("POST", "/lifecycle"): _Handler.lifecycle,
}
