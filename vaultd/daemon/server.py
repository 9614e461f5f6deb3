"""The loopback HTTP API: an adapter from requests to the daemon's methods, nothing more.

Security (docs/api.md has the threat model): binds loopback only; every endpoint but `/health`
needs `Authorization: Bearer <token>` (compared in constant time) — unless `[server]
open_embeddings` opens the embedding endpoints alone; a request whose Host is not localhost,
127.0.0.1 or [::1] is refused (DNS rebinding), and so is one whose Origin is not listed in
`[server] allow_origins` (browsers; listed origins get CORS headers); bodies and text lists have
size limits (413); malformed JSON, lone surrogates and deep nesting are a 400.

Errors are JSON in the shape each family of clients expects: `{"error": {"message", "type",
"param", "code"}}` under `/v1/` (OpenAI's SDKs show those fields), `{"error": "..."}` elsewhere
(vaultd's own and Ollama's shape).

Denial of service: connections are limited and slow senders cut off (`connections`).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import socket
import struct
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from vaultd import __version__
from vaultd.config import ServerSettings
from vaultd.daemon.connections import LimitedHTTPServer, fd_limit
from vaultd.errors import ModelError, VaultdError
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
MAX_JSON_DEPTH = 32  # no request of this API nests deeper than 4
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
# What a socket raises when the client hung up mid-request or mid-answer: one debug line, never
# an error with a traceback (a closed browser tab or a killed script is not a fault of ours)
HANGUPS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class App(Protocol):
    """What the server needs from the daemon."""

    def health(self) -> dict[str, Any]: ...  # has "model" (id) and "dims"
    def status(self) -> dict[str, Any]: ...
    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]: ...
    def count_tokens(self, texts: list[str]) -> int: ...
    def decode_tokens(self, ids: list[int]) -> str: ...
    def search(self, request: SearchRequest) -> dict[str, Any]: ...
    def flush_now(self) -> dict[str, Any]: ...
    def lifecycle_now(self, phases: list[str], dry_run: bool = False) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str, *, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


class Server:
    def __init__(self, app: App, settings: ServerSettings, *, token: str) -> None:
        host, port = settings.host, settings.port
        if host not in LOOPBACK_HOSTS:
            raise VaultdError(f"[server] host = {host!r}: vaultd binds loopback only "
                              "(127.0.0.1, ::1 or localhost)")
        self.app = app
        self.token = token
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
        if host == "::1":
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


# -- request values


def _check_json(value: Any) -> None:
    """Refuse what json.loads accepts but nothing downstream can use: strings holding a lone
    UTF-16 surrogate (`"\\ud800"`: valid JSON, not encodable text) and deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item):
                raise ApiError(HTTPStatus.BAD_REQUEST, "body has a string with a lone UTF-16 "
                               "surrogate (\\ud800-\\udfff); send valid Unicode text")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ApiError(HTTPStatus.BAD_REQUEST,
                           f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels")
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (str, dict, list)))


def _texts(value: Any, limit: int, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"'{field}' must be a string or a list of strings",
                       param=field)
    _check_count(len(value), limit, field)
    return value


def _check_count(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"{count} inputs in one request; the limit is {limit} "
                       "([server] max_texts)", param=field, code="too_many_inputs")


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value)


_TOKEN_HINT = ("token ids are read with the served model's own tokenizer; a client that "
               "tokenises for OpenAI's models (tiktoken) must send text instead — "
               "langchain-openai: OpenAIEmbeddings(..., check_embedding_ctx_length=False)")


def _openai_inputs(value: Any, limit: int, decode: Any) -> list[str]:
    """OpenAI's `input`: a string, a list of strings, one token-id array or a list of them.
    Token ids are decoded with the model's tokenizer into the text they stand for."""
    if isinstance(value, str):
        return [value]
    if _is_ids(value):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) or _is_ids(v) for v in value):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'input' must be a string, a list of strings, "
                       "an array of token ids or a list of such arrays", param="input",
                       code="invalid_input")
    _check_count(len(value), limit, "input")
    texts = []
    for item in value:
        if isinstance(item, str):
            texts.append(item)
            continue
        try:
            texts.append(decode(item))
        except (ModelError, ValueError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"{exc}; {_TOKEN_HINT}", param="input",
                           code="invalid_token_ids") from exc
    return texts


def _dimensions(body: dict[str, Any], dims: int, model: str) -> None:
    """Models trained for shorter vectors (Matryoshka) may honour `dimensions`; vaultd's
    profiles declare none, so anything but the model's own size is refused, never ignored."""
    wanted = body.get("dimensions")
    if wanted is None:
        return
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'dimensions' must be a positive integer",
                       param="dimensions", code="invalid_dimensions")
    if wanted != dims:
        raise ApiError(HTTPStatus.BAD_REQUEST,
                       f"model '{model}' gives {dims}-dimensional vectors and is not trained "
                       f"for shorter ones; omit 'dimensions' or ask for {dims}",
                       param="dimensions", code="unsupported_dimensions")


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# -- error shapes


def _is_openai(route: str) -> bool:
    return route == "/v1" or route.startswith("/v1/")


_OPENAI_CODES = {HTTPStatus.UNAUTHORIZED: "invalid_api_key", HTTPStatus.NOT_FOUND: "unknown_url",
                 HTTPStatus.FORBIDDEN: "forbidden",
                 HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request_too_large"}


def _error_body(route: str, status: HTTPStatus, message: str, param: str | None = None,
                code: str | None = None) -> dict[str, Any]:
    if not _is_openai(route):
        return {"error": message}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code or _OPENAI_CODES.get(status)}}


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
        self._send(status, _error_body(self._route, status, message, param, code))

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

    def _check_origin(self) -> None:
        """Browsers name the page's origin; only listed origins may call (and then read)."""
        origin = self.headers.get("Origin")
        if origin is None:
            return
        if origin.rstrip("/") not in self.server_ref.allow_origins:
            raise ApiError(HTTPStatus.FORBIDDEN,
                           f"cross-origin request from {origin!r} refused; list the origin in "
                           "[server] allow_origins to allow it", code="origin_not_allowed")
        self._cors = origin

    def _check(self, auth: bool) -> None:
        host = self.headers.get("Host", "")
        if not _HOST_RE.match(host.strip()):
            raise ApiError(HTTPStatus.FORBIDDEN, f"Host {host!r} refused: use localhost")
        self._check_origin()
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
                           f"{self.server_ref.max_body_bytes:,} ([server] max_body_bytes)")
        self._unread = 0
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
        try:
            data = json.loads(raw or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST,
                           f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
        if not isinstance(data, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        _check_json(data)
        return data

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

    def _lookup(self, method: str, route: str) -> tuple[Any, bool] | None:
        """(handler, open): `open` endpoints need no token when open_embeddings is on."""
        if method == "GET" and route.startswith("/v1/models/"):
            return _Handler.openai_model, True
        return _ROUTES.get((method, route))

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
            found = self._lookup(method, route)
            self._check(auth=not (found and found[1] and self.server_ref.open_embeddings))
            if found is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no endpoint {method} {route}")
            body = self._json_body() if method == "POST" else {}
            self._send(HTTPStatus.OK, found[0](self, body))
        except ApiError as exc:
            self._send_error(exc.status, str(exc), exc.param, exc.code)
        except VaultdError as exc:
            self._send_error(HTTPStatus.BAD_REQUEST, str(exc))
        except HANGUPS:
            raise  # the client is gone: nothing to answer and no fault of ours (see `_handle`)
        except Exception as exc:  # the daemon must stay up; the log has the traceback
            log.exception("error serving %s %s", method, route)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {exc}")

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

    # -- endpoints
    def _model(self) -> tuple[str, int]:
        health = self.server_ref.app.health()
        return str(health["model"]), int(health["dims"])

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
        app = self.server_ref.app
        if "input" not in body:
            raise ApiError(HTTPStatus.BAD_REQUEST, "'input' is required", param="input",
                           code="missing_required_parameter")
        texts = _openai_inputs(body["input"], self.server_ref.max_texts, app.decode_tokens)
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "'encoding_format' must be 'float' or "
                           "'base64'", param="encoding_format", code="invalid_encoding_format")
        _dimensions(body, *reversed(self._model()))
        model, _dims, vectors = app.embed(texts, "document")
        tokens = app.count_tokens(texts)
        encode = _base64 if fmt == "base64" else (lambda v: v)
        return {"object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def openai_models(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"object": "list", "data": [self._openai_model_entry()]}

    def openai_model(self, _body: dict[str, Any]) -> dict[str, Any]:
        wanted = self._route[len("/v1/models/"):]
        entry = self._openai_model_entry()
        if wanted != entry["id"]:
            raise ApiError(HTTPStatus.NOT_FOUND, f"model '{wanted}' not served here; this "
                           f"daemon serves '{entry['id']}'", param="model",
                           code="model_not_found")
        return entry

    def _openai_model_entry(self) -> dict[str, Any]:
        model, _dims = self._model()
        started = self.server_ref.app.health().get("uptime", 0.0)
        return {"id": model, "object": "model", "created": int(time.time() - float(started)),
                "owned_by": "vaultd"}

    def ollama(self, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter_ns()
        texts = _texts(body.get("input"), self.server_ref.max_texts, "input")
        _dimensions(body, *reversed(self._model()))
        model, _dims, vectors = self.server_ref.app.embed(texts, "document")
        return {"model": model, "embeddings": vectors,
                "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
                "prompt_eval_count": self.server_ref.app.count_tokens(texts)}

    def ollama_legacy(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string")
        _model, _dims, vectors = self.server_ref.app.embed([prompt], "document")
        return {"embedding": vectors[0]}

    def ollama_tags(self, _body: dict[str, Any]) -> dict[str, Any]:
        model, dims = self._model()
        uptime = float(self.server_ref.app.health().get("uptime", 0.0))
        started = datetime.fromtimestamp(time.time() - uptime, tz=timezone.utc)
        return {"models": [{"name": model, "model": model, "modified_at": started.isoformat(),
                            "size": 0, "digest": "",
                            "details": {"format": "onnx", "family": "vaultd", "families": None,
                                        "parameter_size": "", "quantization_level": "",
                                        "embedding_length": dims}}]}

    def ollama_version(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"version": __version__}

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


# (method, route) → (handler, open): open endpoints expose compute, never the vault, and need no
# token when [server] open_embeddings is on. Everything else always needs it.
_ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "/status"): (_Handler.status, False),
    ("POST", "/embed"): (_Handler.embed, True),
    ("POST", "/v1/embeddings"): (_Handler.openai, True),
    ("GET", "/v1/models"): (_Handler.openai_models, True),
    ("POST", "/api/embed"): (_Handler.ollama, True),
    ("POST", "/api/embeddings"): (_Handler.ollama_legacy, True),
    ("GET", "/api/tags"): (_Handler.ollama_tags, True),
    ("GET", "/api/version"): (_Handler.ollama_version, True),
    ("POST", "/search"): (_Handler.search, False),
    ("POST", "/flush"): (_Handler.flush, False),
    ("POST", "/lifecycle"): (_Handler.lifecycle, False),
}
