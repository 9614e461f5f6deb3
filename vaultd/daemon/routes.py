"""The HTTP API's endpoints: one function per route, each reading its body's values
(`payloads`), asking the daemon (`App`) and returning the JSON answer. `ROUTES` is the one
table of them; `server` finds a request's endpoint there and sends what it returns.

Open endpoints expose compute, never the vault, and need no token when `[server]
open_embeddings` is on. Everything else always needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Protocol

from vaultd import __version__
from vaultd.daemon import payloads
from vaultd.daemon.guards import ApiError
from vaultd.lifecycle import PHASE_NAMES
from vaultd.search_request import SearchRequest

Json = dict[str, Any]
MODEL_ROUTE = "/v1/models/"  # + a model's id


class App(Protocol):
    """What the server needs from the daemon."""

    def health(self) -> Json: ...  # has "model" (id), "dims" and "uptime"
    def status(self) -> Json: ...
    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]: ...
    def count_tokens(self, texts: list[str]) -> int: ...
    def decode_tokens(self, ids: list[int]) -> str: ...
    def search(self, request: SearchRequest) -> Json: ...
    def flush_now(self) -> Json: ...
    def lifecycle_now(self, phases: list[str], dry_run: bool = False) -> Json: ...


@dataclass(frozen=True)
class Call:
    """One request as an endpoint sees it: the daemon, the route asked and the text limit."""

    app: App
    route: str
    max_texts: int

    def model(self) -> tuple[str, int]:
        health = self.app.health()
        return str(health["model"]), int(health["dims"])

    def uptime(self) -> float:
        return float(self.app.health().get("uptime", 0.0))


Endpoint = Callable[[Call, Json], Json]


def status(call: Call, _body: Json) -> Json:
    return call.app.status()


def embed(call: Call, body: Json) -> Json:
    texts = payloads.texts(body.get("texts"), call.max_texts, "texts")
    kind = body.get("kind", "document")
    if kind not in ("query", "document"):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'kind' must be 'query' or 'document'")
    model, dims, vectors = call.app.embed(texts, kind)
    return {"model": model, "dims": dims, "vectors": vectors}


def openai(call: Call, body: Json) -> Json:
    if "input" not in body:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'input' is required", param="input",
                       code="missing_required_parameter")
    texts = payloads.openai_inputs(body["input"], call.max_texts, call.app.decode_tokens)
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'encoding_format' must be 'float' or "
                       "'base64'", param="encoding_format", code="invalid_encoding_format")
    model_id, dims = call.model()
    payloads.check_dimensions(body, dims, model_id)
    model, _dims, vectors = call.app.embed(texts, "document")
    tokens = call.app.count_tokens(texts)
    encode: Callable[[list[float]], Any] = (
        payloads.base64_vector if fmt == "base64" else (lambda v: v))
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def openai_models(call: Call, _body: Json) -> Json:
    return {"object": "list", "data": [_model_entry(call)]}


def openai_model(call: Call, _body: Json) -> Json:
    wanted = call.route[len(MODEL_ROUTE):]
    entry = _model_entry(call)
    if wanted != entry["id"]:
        raise ApiError(HTTPStatus.NOT_FOUND, f"model '{wanted}' not served here; this "
                       f"daemon serves '{entry['id']}'", param="model", code="model_not_found")
    return entry


def _model_entry(call: Call) -> Json:
    model, _dims = call.model()
    return {"id": model, "object": "model", "created": int(time.time() - call.uptime()),
            "owned_by": "vaultd"}


def ollama(call: Call, body: Json) -> Json:
    started = time.perf_counter_ns()
    texts = payloads.texts(body.get("input"), call.max_texts, "input")
    model_id, dims = call.model()
    payloads.check_dimensions(body, dims, model_id)
    model, _dims, vectors = call.app.embed(texts, "document")
    return {"model": model, "embeddings": vectors,
            "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
            "prompt_eval_count": call.app.count_tokens(texts)}


def ollama_legacy(call: Call, body: Json) -> Json:
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string")
    _model, _dims, vectors = call.app.embed([prompt], "document")
    return {"embedding": vectors[0]}


def ollama_tags(call: Call, _body: Json) -> Json:
    model, dims = call.model()
    started = datetime.fromtimestamp(time.time() - call.uptime(), tz=timezone.utc)
    return {"models": [{"name": model, "model": model, "modified_at": started.isoformat(),
                        "size": 0, "digest": "",
                        "details": {"format": "onnx", "family": "vaultd", "families": None,
                                    "parameter_size": "", "quantization_level": "",
                                    "embedding_length": dims}}]}


def ollama_version(_call: Call, _body: Json) -> Json:
    return {"version": __version__}


def search(call: Call, body: Json) -> Json:
    try:
        request = SearchRequest.from_json(body)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
    return call.app.search(request)


def flush(call: Call, _body: Json) -> Json:
    return call.app.flush_now()


def lifecycle(call: Call, body: Json) -> Json:
    return call.app.lifecycle_now(_phases(body.get("phases", "all")),
                                  _dry_run(body.get("dry_run", False)))


def _phases(value: Any) -> list[str]:
    phases = list(PHASE_NAMES) if value == "all" else value
    if not isinstance(phases, list) or not phases or not all(
            isinstance(p, str) for p in phases):
        raise ApiError(HTTPStatus.BAD_REQUEST,
                       "'phases' must be \"all\" or a non-empty list of phase names")
    unknown = [p for p in phases if p not in PHASE_NAMES]
    if unknown:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown lifecycle phase {unknown[0]!r}; "
                       "the phases are " + ", ".join(PHASE_NAMES))
    return phases


def _dry_run(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'dry_run' must be true or false")
    return value


# (method, route) → (endpoint, open): `open` endpoints need no token with open_embeddings.
ROUTES: dict[tuple[str, str], tuple[Endpoint, bool]] = {
    ("GET", "/status"): (status, False),
    ("POST", "/embed"): (embed, True),
    ("POST", "/v1/embeddings"): (openai, True),
    ("GET", "/v1/models"): (openai_models, True),
    ("POST", "/api/embed"): (ollama, True),
    ("POST", "/api/embeddings"): (ollama_legacy, True),
    ("GET", "/api/tags"): (ollama_tags, True),
    ("GET", "/api/version"): (ollama_version, True),
    ("POST", "/search"): (search, False),
    ("POST", "/flush"): (flush, False),
    ("POST", "/lifecycle"): (lifecycle, False),
}


def lookup(method: str, route: str) -> tuple[Endpoint, bool] | None:
    """The endpoint of a request and whether it is open; None when there is none."""
    if method == "GET" and route.startswith(MODEL_ROUTE):
        return openai_model, True
    return ROUTES.get((method, route))
