"""The HTTP API's endpoints: one function per route, each reading its body's values
(`payloads`), asking the daemon (`App`) and returning the JSON answer. `ROUTES` is the one
table of them; `server` finds a request's endpoint there and sends what it returns.

Open endpoints expose compute, never the vault, and need no token when `[server]
open_embeddings` is on. Everything else always needs it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Protocol

from vaultd import __version__
from vaultd.daemon import payloads, tiktoken_ids
from vaultd.daemon.guards import ApiError
from vaultd.errors import IndexUnavailableError, VaultMismatchError
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
    # "id", "dims", "max_tokens", "pooling", "kind", "size", "digest", "quantized", "aliases"
    def served_model(self) -> Json: ...
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

    def served(self, asked: Any, openai_shape: bool = True) -> Json:
        """The served model, when `asked` names it or one of its `[server] model_aliases`
        (Ollama's `:latest` tag aside); else 404, in OpenAI's shape or Ollama's."""
        model = self.app.served_model()
        names = {model["id"], *model["aliases"]}
        if isinstance(asked, str) and (asked in names or asked.removesuffix(":latest") in names):
            return model
        if not openai_shape:
            raise ApiError(HTTPStatus.NOT_FOUND, f"model '{asked}' not found")
        if not isinstance(asked, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "'model' must be a string", param="model",
                           code="invalid_model")
        raise ApiError(HTTPStatus.NOT_FOUND,
                       f"model '{asked}' is not served here; this daemon serves '{model['id']}' "
                       f"(name it, or map '{asked}' to it in [server] model_aliases)",
                       param="model", code="model_not_found")


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
    served = call.served(body["model"]) if "model" in body else call.app.served_model()
    asked = str(body.get("model", served["id"]))
    if "input" not in body:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'input' is required", param="input",
                       code="missing_required_parameter")
    # token ids are the tokenizer's of the model the client named: the served model's own for
    # its name; for an alias (an OpenAI name), tiktoken's, as OpenAI clients tokenise
    decode: Callable[[list[int]], str] = (
        call.app.decode_tokens if asked == served["id"]
        else functools.partial(tiktoken_ids.decode, asked))
    texts = payloads.openai_inputs(body["input"], call.max_texts, decode)
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
    call.served(wanted)
    return {**_model_entry(call), "id": wanted}


def _model_entry(call: Call) -> Json:
    model, _dims = call.model()
    return {"id": model, "object": "model", "created": int(time.time() - call.uptime()),
            "owned_by": "vaultd"}


def ollama(call: Call, body: Json) -> Json:
    started = time.perf_counter_ns()
    texts = payloads.texts(body.get("input"), call.max_texts, "input")
    model_id, dims = call.model()
    payloads.check_dimensions(body, dims, model_id)
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'truncate' must be true or false")
    if not truncate:  # as Ollama: an error, not a vector of the input's first part
        limit = int(call.app.served_model()["max_tokens"])
        for i, text in enumerate(texts):
            tokens = call.app.count_tokens([text])
            if tokens > limit:
                raise ApiError(HTTPStatus.BAD_REQUEST,
                               f"the input length exceeds the context length: input {i} has "
                               f"{tokens} tokens, model '{model_id}' reads {limit}")
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
    model = call.app.served_model()
    return {"models": [{"name": model["id"], "model": model["id"],
                        "modified_at": _started(call), "size": model["size"],
                        "digest": model["digest"],
                        "details": {**_ollama_details(model),
                                    "embedding_length": model["dims"]}}]}


def ollama_show(call: Call, body: Json) -> Json:
    """Ollama's model card (Open WebUI and Continue read it to see what a model can do): an
    embedding model, its vector length and context length."""
    model = call.served(body.get("model", body.get("name")), openai_shape=False)
    arch = "bert" if model["kind"] == "onnx" else model["kind"]
    parameters = f"num_ctx                        {model['max_tokens']}"
    return {"modelfile": f"# served by vaultd\nFROM {model['id']}\nPARAMETER {parameters}\n",
            "parameters": parameters, "template": "", "license": "",
            "details": _ollama_details(model),
            "model_info": {"general.architecture": arch, "general.basename": model["id"],
                           f"{arch}.embedding_length": model["dims"],
                           f"{arch}.context_length": model["max_tokens"],
                           f"{arch}.pooling_type": model["pooling"]},
            "capabilities": ["embedding"], "modified_at": _started(call)}


def ollama_ps(call: Call, _body: Json) -> Json:
    """Ollama's loaded models: the served one, loaded for as long as the daemon runs."""
    model = call.app.served_model()
    return {"models": [{"name": model["id"], "model": model["id"], "size": model["size"],
                        "digest": model["digest"], "details": _ollama_details(model),
                        "expires_at": "0001-01-01T00:00:00Z",  # Ollama's "never unloaded"
                        "size_vram": 0, "context_length": model["max_tokens"]}]}


def _ollama_details(model: Json) -> Json:
    family = "bert" if model["kind"] == "onnx" else model["kind"]
    return {"parent_model": "", "format": model["kind"], "family": family,
            "families": [family], "parameter_size": "",
            "quantization_level": "" if model["kind"] != "onnx" else
            "Q8_0" if model["quantized"] else "F32"}


def _started(call: Call) -> str:
    return datetime.fromtimestamp(time.time() - call.uptime(), tz=timezone.utc).isoformat()


def ollama_version(_call: Call, _body: Json) -> Json:
    return {"version": __version__}


def search(call: Call, body: Json) -> Json:
    try:
        request = SearchRequest.from_json(body)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
    try:
        return call.app.search(request)
    except (IndexUnavailableError, VaultMismatchError) as exc:  # the database is down, or
        # holds another vault: this vault's search cannot be answered now (not a bug, a 503)
        raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from exc


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
    ("POST", "/api/show"): (ollama_show, True),
    ("GET", "/api/ps"): (ollama_ps, True),
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
