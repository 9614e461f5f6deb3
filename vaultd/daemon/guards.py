"""The HTTP API's security checks and request limits, as pure functions: each takes the
header's or body's value and the setting, and raises `ApiError` with the status and the fix.
Testable without a socket; the handler (`server`) only calls them in order.

The threat model is docs/api.md's: a DNS-rebinding page (Host), another site in the user's
browser (Origin), another local user or process without the token (Authorization), and any
client sending more, deeper or stranger JSON than the API needs. A team server (bound to a
non-loopback host) adds the network: every client there has a token of its own
(`check_client`), and the Host rule follows `[server] allowed_hosts` (`check_team_host`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from vaultd.daemon.client_tokens import digest

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_HOST_NAME_RE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")  # a DNS name, `_` too (Docker)
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


def is_loopback(host: str) -> bool:
    """Whether `[server] host` keeps the daemon on this machine (anything else: a team server)."""
    return host.strip().lower() in LOOPBACK_HOSTS


def host_name(host: str) -> str | None:
    """A Host header's name without its port, lower-case (`[::1]:80` → `::1`); None when the
    header is not a host name, an IP address or a bracketed IPv6 address (with a port or not)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not re.fullmatch(r":\d{1,5}", rest):
            return None
        return name if _is_ip(name) and ":" in name else None
    name, _, port = host.partition(":")
    if ":" in port or (port and not port.isdigit()) or len(port) > 5:
        return None
    name = name.rstrip(".")
    return name if _is_ip(name) or _HOST_NAME_RE.match(name) else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_team_host(host: str, allowed: frozenset[str]) -> None:
    """A team server's Host rule. DNS rebinding needs a name the attacker's DNS resolves, so a
    Host that is an IP address (a client that dialled the address) or `localhost` passes; any
    other name must be listed in `[server] allowed_hosts` (lower-case, without a port), so a
    page on a foreign name that resolves to the server is still refused. The client token is
    what guards the data; this keeps a foreign page off `/health` and the preflight too."""
    name = host_name(host)
    if name is None:
        raise ApiError(HTTPStatus.FORBIDDEN, f"Host {host!r} refused: not a host name")
    if name == "localhost" or _is_ip(name) or name in allowed:
        return
    raise ApiError(HTTPStatus.FORBIDDEN, f"Host {host!r} refused: list {name!r} in [server] "
                   "allowed_hosts to serve requests sent to that name")


def is_local_peer(peer: str, local: str) -> bool:
    """Whether a connection comes from this machine: from a loopback address, or from the very
    address it reached (a process here that dialled the host's own LAN address). A remote
    peer cannot take either address: TCP's handshake answers to the address it claims."""
    def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
        return addr

    peer_ip = ip(peer)
    return peer_ip is not None and (peer_ip.is_loopback or peer_ip == ip(local))


def check_client(authorization: str, *, digests: Mapping[str, str], local_token: str,
                 local_peer: bool) -> str:
    """A team server's token check: the bearer token of a client in `.vaultd/clients.json`
    (`digests`: name → SHA-256), or, from this machine only (`local_peer`), the daemon's own
    `.vaultd/token`, so the CLI, hooks and MCP relay beside the daemon keep working. Returns
    the client's name ("local" for the daemon's own token). The presented token's digest is
    compared with every stored one by `hmac.compare_digest` (constant time, no early exit), so
    timing tells nothing of which one, if any, nearly matched. Messages never hold a token."""
    scheme = "Bearer "
    if not authorization.startswith(scheme) or not authorization[len(scheme):]:
        raise ApiError(HTTPStatus.UNAUTHORIZED, "missing bearer token: a team server needs "
                       "`Authorization: Bearer <client token>` (`vaultd token add NAME` on the "
                       "server makes one)")
    presented = digest(authorization[len(scheme):])
    who = None
    for name, stored in digests.items():
        if hmac.compare_digest(presented, stored):
            who = name
    is_local = hmac.compare_digest(presented, digest(local_token))
    if who is not None:
        return who
    if is_local and local_peer:
        return "local"
    if is_local:
        raise ApiError(HTTPStatus.UNAUTHORIZED, "the daemon's own token (.vaultd/token) is "
                       "accepted from its own machine only; send a client token "
                       "(`vaultd token add NAME` on the server)")
    raise ApiError(HTTPStatus.UNAUTHORIZED, "unknown or revoked client token")


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
