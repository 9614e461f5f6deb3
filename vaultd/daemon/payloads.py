"""The values in the HTTP API's requests and answers, in each family of clients' shape:
vaultd's own, OpenAI's (`/v1/`) and Ollama's (`/api/`). Pure: a value in, a value (or an
`ApiError` naming the field) out.

Errors are `{"error": {"message", "type", "param", "code"}}` under `/v1/` (OpenAI's SDKs show
those fields) and `{"error": "..."}` elsewhere (vaultd's own and Ollama's shape).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from vaultd.daemon.guards import ApiError, check_count
from vaultd.errors import ModelError

_TOKEN_HINT = ("token ids are read with the tokenizer of the model the request names: the "
               "served model's own, or tiktoken's for another name (an alias in [server] "
               "model_aliases); a client that tokenises for OpenAI's models can send text "
               "instead — langchain-openai: OpenAIEmbeddings(..., "
               "check_embedding_ctx_length=False)")
_OPENAI_CODES = {HTTPStatus.UNAUTHORIZED: "invalid_api_key", HTTPStatus.NOT_FOUND: "unknown_url",
                 HTTPStatus.FORBIDDEN: "forbidden",
                 HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request_too_large"}


def texts(value: Any, limit: int, field: str) -> list[str]:
    """A string or a list of strings, at most `limit` of them."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"'{field}' must be a string or a list of strings",
                       param=field)
    check_count(len(value), limit, field)
    return value


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value)


def openai_inputs(value: Any, limit: int, decode: Callable[[list[int]], str]) -> list[str]:
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
    if not value:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'input' must not be empty: give a string, a "
                       "list of strings or token-id arrays", param="input", code="invalid_input")
    check_count(len(value), limit, "input")
    return [item if isinstance(item, str) else _decoded(item, decode) for item in value]


def _decoded(ids: list[int], decode: Callable[[list[int]], str]) -> str:
    try:
        return decode(ids)
    except (ModelError, ValueError) as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{exc}; {_TOKEN_HINT}", param="input",
                       code="invalid_token_ids") from exc


def check_dimensions(body: dict[str, Any], dims: int, model: str) -> None:
    """Models trained for shorter vectors (Matryoshka) may honour `dimensions`; vaultd's
    profiles declare none, so anything but the model's own size is refused, never ignored."""
    wanted = body.get("dimensions")
    if wanted is None:
        return
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'dimensions' must be a positive integer",
                       param="dimensions", code="invalid_dimensions")
    if wanted != dims:
        what = ("is not trained for shorter ones" if wanted < dims else
                f"cannot give longer ones ({wanted} asked; a vector is never padded)")
        raise ApiError(HTTPStatus.BAD_REQUEST,
                       f"model '{model}' gives {dims}-dimensional vectors and {what}; omit "
                       f"'dimensions' or ask for {dims}",
                       param="dimensions", code="unsupported_dimensions")


def base64_vector(vector: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def is_openai(route: str) -> bool:
    return route == "/v1" or route.startswith("/v1/")


def error_body(route: str, status: HTTPStatus, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    if not is_openai(route):
        return {"error": message}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code or _OPENAI_CODES.get(status)}}
