"""The HTTP API's security checks and request limits, as pure functions: each takes the
header's or body's value and the setting, and raises `ApiError` with the status and the fix.
Testable without a socket; the handler (`server`) only calls them in order.

The threat model is docs/api.md's: a DNS-rebinding page (Host), another site in the user's
browser (Origin), another local user or process without the token (Authorization), and any
client sending more, deeper or stranger JSON than the API needs.
"""

from __future__ import annotations

import hmac
import json
import re
from http import HTTPStatus
from typing import Any

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_HOST_RE = re.compile(r"^(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$", re.IGNORECASE)
MAX_JSON_DEPTH = 32  # no request of this API nests deeper than 4
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class ApiError(Exception):
    """A request refused: its HTTP status, and for OpenAI's clients the `param` and `code`."""

    def __init__(self, status: HTTPStatus, message: str, *, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def check_host(host: str) -> None:
    """A page on another name that resolves to 127.0.0.1 (DNS rebinding) sends its own Host."""
    if not _HOST_RE.match(host.strip()):
        raise ApiError(HTTPStatus.FORBIDDEN, f"Host {host!r} refused: use localhost")


def check_origin(origin: str | None, allowed: frozenset[str]) -> str | None:
    """Browsers name the page's origin; only listed origins may call (and then read). Returns
    the origin to echo in CORS headers, None when the request has none."""
    if origin is None:
        return None
    if origin.rstrip("/") not in allowed:
        raise ApiError(HTTPStatus.FORBIDDEN,
                       f"cross-origin request from {origin!r} refused; list the origin in "
                       "[server] allow_origins to allow it", code="origin_not_allowed")
    return origin


def check_token(authorization: str, token: str) -> None:
    """The bearer token, compared in constant time."""
    if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        raise ApiError(HTTPStatus.UNAUTHORIZED,
                       "missing or wrong bearer token (see .vaultd/token)")


def check_body_size(length: int, limit: int) -> None:
    if length > limit:
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"body of {length:,} bytes; the limit is {limit:,} "
                       "([server] max_body_bytes)")


def check_count(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"{count} inputs in one request; the limit is {limit} "
                       "([server] max_texts)", param=field, code="too_many_inputs")


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body: a JSON object, with no lone surrogate and no deep nesting."""
    try:
        data = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST,
                       f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    if not isinstance(data, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    check_json(data)
    return data


def check_json(value: Any) -> None:
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
