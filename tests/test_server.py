"""The daemon's loopback HTTP API: auth, Host check, limits, malformed input, the embedding
shapes (native, OpenAI, Ollama), /search parity with `vaultd search --json`, concurrency.

Most tests share one real Daemon running in a background thread on a tmp vault (fake model,
any free port); a few use `Server` with a small fake App where that is cleaner.
"""

from __future__ import annotations

import http.client
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, Running, call, env_for, running_daemon, wait_for

from vaultd.cli import main
from vaultd.config import ServerSettings
from vaultd.daemon.server import Server
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.errors import VaultdError

NOTES = {
    "semantic/deploy.md": "---\ntags: [ops]\n---\n# Deploy\n\n## Rollback\n"
                          "fly releases rollback v41 when the deploy breaks\n",
    "procedural/backup.md": "# Backup\n\nRun restic every night; verify the deploy snapshot.\n",
    "episodic/2026-11-20.md": "# 2026-11-20\n\n## 09:00 — pool\n"
                              "postgres pool exhausted during deploy #incident\n",
}
AUTH_ENDPOINTS = [("GET", "/status", None), ("POST", "/embed", {"texts": ["x"]}),
                  ("POST", "/v1/embeddings", {"input": "x"}),
                  ("POST", "/api/embed", {"model": "m", "input": "x"}),
                  ("POST", "/api/embeddings", {"model": "m", "prompt": "x"}),
                  ("GET", "/v1/models", None), ("GET", "/v1/models/hash-256", None),
                  ("GET", "/api/tags", None), ("GET", "/api/version", None),
                  ("POST", "/search", {"query": "deploy"})]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return env_for(tmp_path_factory.mktemp("server-env"))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Running]:
    root = make_vault(tmp_path_factory.mktemp("server"), NOTES, config=FAST_CONFIG)
    with running_daemon(root, env) as running:
        yield running


@pytest.fixture
def up(daemon: Running) -> Iterator[Running]:
    """The shared daemon; after the test it must still be up and answering."""
    yield daemon
    assert daemon.thread.is_alive()
    status, data = daemon.call("GET", "/health", token=None)
    assert status == 200 and data["status"] == "ok"


def message(data: dict[str, Any]) -> str:
    """The error message in either shape: OpenAI's `{"error": {"message": ...}}` under /v1/,
    `{"error": "..."}` elsewhere."""
    error = data["error"]
    return str(error["message"] if isinstance(error, dict) else error)


def expected_vectors(texts: list[str], kind: str = "document") -> list[list[float]]:
    fake = HashEmbedder(builtin_profiles(Path("unused"))["hash-256"])
    return fake.embed(texts, kind=kind).tolist()  # type: ignore[arg-type]


# -- health, auth, Host


def test_health_needs_no_token_and_describes_the_model(up: Running) -> None:
    status, data = up.call("GET", "/health", token=None)
    assert status == 200
    assert data["model"] == "hash-256" and data["dims"] == 256
    for key in ("pooling", "uptime", "queue", "index_lag"):
        assert key in data
    assert data["uptime"] >= 0 and data["queue"] >= 0 and data["index_lag"] >= 0


@pytest.mark.parametrize(("method", "path", "body"), AUTH_ENDPOINTS)
def test_every_other_endpoint_needs_the_token(up: Running, method: str, path: str,
                                              body: Any) -> None:
    for token in (None, "wrong", "", up.token + "x"):
        status, data = up.call(method, path, body, token=token)
        assert status == 401, (token, data)
        assert "token" in message(data)
    status, data = up.call(method, path, body,
                           headers={"Authorization": f"Basic {up.token}"}, token=None)
    assert status == 401
    status, _ = up.call(method, path, body)
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "localhost.evil.example",
                                  "127.0.0.1.nip.io", ""])
def test_foreign_host_is_refused_everywhere(up: Running, host: str) -> None:
    status, data = up.call("GET", "/health", token=None, host=host)
    assert status == 403 and "Host" in data["error"]
    for method, path, body in AUTH_ENDPOINTS:
        status, _ = up.call(method, path, body, host=host)
        assert status == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_host_spellings_are_accepted(up: Running, host: str) -> None:
    status, _ = up.call("GET", "/health", token=None, host=f"{host}:{up.port}")
    assert status == 200


def test_token_file_is_private(up: Running) -> None:
    mode = stat.S_IMODE((up.root / ".vaultd" / "token").stat().st_mode)
    assert mode == 0o600


def test_unknown_endpoint_and_method_are_json_errors(up: Running) -> None:
    status, data = up.call("GET", "/nope")
    assert status == 404 and "error" in data
    status, data = up.call("PUT", "/embed", {"texts": ["x"]})
    assert status in (405, 501) and "error" in data


# -- malformed input and limits


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b""])
def test_malformed_body_is_a_400_json_error(up: Running, raw: bytes) -> None:
    status, data = up.call("POST", "/embed", raw=raw)
    assert status == 400 and data["error"]


@pytest.mark.parametrize(("path", "body"), [
    ("/embed", {"texts": "x", "kind": "sideways"}),
    ("/embed", {"texts": [1, 2]}),
    ("/embed", {}),
    ("/v1/embeddings", {"input": {"a": 1}}),
    ("/api/embed", {"input": None}),
    ("/search", {"k": 3}),
    ("/search", {"query": "deploy", "k": -1}),
    ("/search", {"query": "deploy", "mode": "telepathy"}),
    ("/search", {"query": "deploy", "tags": 7}),
])
def test_invalid_fields_are_400(up: Running, path: str, body: dict[str, Any]) -> None:
    status, data = up.call("POST", path, body)
    assert status == 400 and message(data)


def test_body_over_the_limit_is_413_and_the_server_stays_up(up: Running) -> None:
    big = b'{"texts": ["' + b"a" * 10_000_000 + b'"]}'
    status, data = up.call("POST", "/embed", raw=big)
    assert status == 413 and "limit" in data["error"]


def test_oversized_declared_length_is_refused_before_the_body_is_sent(up: Running) -> None:
    with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
        sock.sendall(f"POST /embed HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                     f"{up.token}\r\nContent-Length: 10000000\r\n\r\n".encode())
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413")
    assert "application/json" in head


@pytest.mark.parametrize(("header", "code"), [("Content-Length: lots", 400),
                                               ("Transfer-Encoding: chunked", 411)])
def test_a_body_of_unknown_length_is_refused(up: Running, header: str, code: int) -> None:
    with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
        sock.sendall(f"POST /embed HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                     f"{up.token}\r\n{header}\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server answers, then hangs up
            answer += chunk
    head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code}") and "Connection: close" in head
    assert json.loads(body)["error"]


def test_too_many_texts_is_413(up: Running) -> None:
    for path, field in (("/embed", "texts"), ("/v1/embeddings", "input"),
                        ("/api/embed", "input")):
        status, data = up.call("POST", path, {field: ["x"] * 10_000})
        assert status == 413 and "limit" in message(data)


def test_an_error_does_not_desync_a_kept_alive_connection(up: Running) -> None:
    # The refused request's body must not be read as the next request on the same connection.
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        headers = {"Host": "localhost", "Content-Type": "application/json"}
        conn.request("POST", "/embed", body=json.dumps({"texts": ["a"] * 50}),
                     headers={**headers, "Authorization": "Bearer wrong"})
        first = conn.getresponse()
        assert first.status == 401 and json.loads(first.read())["error"]
        conn.request("POST", "/embed", body=json.dumps({"texts": ["b"]}),
                     headers={**headers, "Authorization": f"Bearer {up.token}"})
        second = conn.getresponse()
        assert second.status == 200, second.read()[:200]
        assert json.loads(second.read())["vectors"] == expected_vectors(["b"])
    finally:
        conn.close()


# -- the embedding shapes


def test_embed_shape(up: Running) -> None:
    texts = ["postgres pool exhausted", "fly releases rollback"]
    status, data = up.call("POST", "/embed", {"texts": texts, "kind": "query"})
    assert status == 200
    assert set(data) == {"model", "dims", "vectors"}
    assert data["model"] == "hash-256" and data["dims"] == 256
    assert data["vectors"] == expected_vectors(texts, "query")
    status, data = up.call("POST", "/embed", {"texts": []})
    assert status == 200 and data["vectors"] == []


@pytest.mark.parametrize("value", ["one text", ["one text", "and another"]])
def test_openai_embeddings_shape(up: Running, value: Any) -> None:
    status, data = up.call("POST", "/v1/embeddings", {"model": "hash-256", "input": value})
    assert status == 200
    texts = [value] if isinstance(value, str) else value
    assert data["object"] == "list" and data["model"] == "hash-256"
    assert [d["index"] for d in data["data"]] == list(range(len(texts)))
    assert all(d["object"] == "embedding" for d in data["data"])
    assert [d["embedding"] for d in data["data"]] == expected_vectors(texts)
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"]


@pytest.mark.parametrize("value", ["one text", ["one text", "and another"]])
def test_ollama_embed_shape(up: Running, value: Any) -> None:
    status, data = up.call("POST", "/api/embed", {"model": "mxbai-embed-large", "input": value})
    assert status == 200
    texts = [value] if isinstance(value, str) else value
    assert data["model"] == "hash-256"
    assert data["embeddings"] == expected_vectors(texts)


def test_status_endpoint(up: Running) -> None:
    status, data = up.call("GET", "/status")
    assert status == 200
    assert data["pid"] > 0 and data["port"] == up.port
    assert data["watcher"]["mode"] == "native"


# -- /search


@pytest.mark.parametrize("options", [[], ["--mode", "bm25"], ["--type", "semantic", "-k", "1"],
                                     ["--tag", "incident"]])
def test_search_answers_the_json_of_vaultd_search(up: Running, env: dict[str, str],
                                                  options: list[str]) -> None:
    query = "deploy rollback pool"
    result = CliRunner(env=env).invoke(
        main, ["--vault", str(up.root), "search", "--local", "--json", *options, query])
    assert result.exit_code == 0, result.output
    local = json.loads(result.stdout)
    body: dict[str, Any] = {"query": query}
    for flag, value in zip(options[::2], options[1::2]):
        key = {"--mode": "mode", "--type": "type", "-k": "k", "--tag": "tags"}[flag]
        body[key] = int(value) if key == "k" else value
    status, remote = up.call("POST", "/search", body)
    assert status == 200
    assert set(remote) == set(local)
    assert remote["hits"] and remote["hits"] == local["hits"]
    assert remote == local


# -- concurrency


def test_fifty_parallel_clients_are_all_answered(up: Running) -> None:
    start = threading.Barrier(50)

    def client(i: int) -> tuple[int, int, Any, Any]:
        start.wait(timeout=30)
        text = f"client {i} asks about word{i}"
        status, data = up.call("POST", "/embed", {"texts": [text]})
        sstatus, found = up.call("POST", "/search", {"query": "restic", "k": 3})
        return status, sstatus, (data["vectors"], text), found["hits"][0]["path"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert len(results) == 50
    for status, sstatus, (vectors, text), top in results:
        assert status == 200 and sstatus == 200
        assert vectors == expected_vectors([text])
        assert top == "procedural/backup.md"


def test_a_slow_client_does_not_block_others(up: Running) -> None:
    stalled = []
    try:
        for partial in (b"POST /search HTTP/1.1\r\nHost: localhost\r\n",
                        b"POST /search HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                        + up.token.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"query",
                        b"GE"):
            sock = socket.create_connection(("127.0.0.1", up.port), timeout=10)
            sock.sendall(partial)
            stalled.append(sock)
        started = time.monotonic()
        for _ in range(5):
            status, data = up.call("POST", "/search", {"query": "restic"}, timeout=10)
            assert status == 200 and data["hits"]
        assert time.monotonic() - started < 10
    finally:
        for sock in stalled:
            sock.close()


def test_a_response_is_one_write_and_expect_100_is_answered_at_once(up: Running) -> None:
    """Responses are buffered and sent whole (headers and body in one write); a client that
    sends `Expect: 100-continue` still gets its "100 Continue" before it sends the body."""
    body = json.dumps({"query": "restic", "k": 1}).encode()
    with socket.create_connection(("127.0.0.1", up.port), timeout=10) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                     + up.token.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n")
        sock.settimeout(5)
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head, _, rest = reply.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(rest)["hits"][0]["path"] == "procedural/backup.md"


# -- Server with a fake App


class FakeApp:
    def __init__(self) -> None:
        self.calls = 0

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": "fake", "dims": 1, "uptime": 1.0}

    def status(self) -> dict[str, Any]:
        return {"status": "ok"}

    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]:
        self.calls += 1
        if texts == ["boom"]:
            raise RuntimeError("the model fell over")
        if texts == ["user error"]:
            raise VaultdError("a typed error for a person")
        return "fake", 1, [[float(len(t))] for t in texts]

    def count_tokens(self, texts: list[str]) -> int:
        return len(texts)

    def decode_tokens(self, ids: list[int]) -> str:
        raise VaultdError("no tokenizer")

    def served_model(self) -> dict[str, Any]:
        return {"id": "fake", "dims": 1, "max_tokens": 8, "pooling": "mean", "kind": "hash",
                "size": 0, "digest": "", "quantized": False, "aliases": {}}

    def search(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"hits": []}


@pytest.fixture
def fake_server() -> Iterator[Server]:
    server = Server(FakeApp(), ServerSettings(port=0, max_body_bytes=1000, max_texts=3),
                    token="secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_app_errors_are_json_and_the_server_stays_up(fake_server: Server) -> None:
    port = fake_server.port
    status, data = call(port, "POST", "/embed", {"texts": ["boom"]}, token="secret")
    assert status == 500 and "internal error" in data["error"]
    status, data = call(port, "POST", "/embed", {"texts": ["user error"]}, token="secret")
    assert status == 400 and data["error"] == "a typed error for a person"
    status, data = call(port, "POST", "/embed", {"texts": ["ab", "c"]}, token="secret")
    assert status == 200 and data["vectors"] == [[2.0], [1.0]]


def test_configured_limits_apply(fake_server: Server) -> None:
    port = fake_server.port
    status, _ = call(port, "POST", "/embed", {"texts": ["a"] * 4}, token="secret")
    assert status == 413
    status, _ = call(port, "POST", "/embed", {"texts": ["a" * 2000]}, token="secret")
    assert status == 413
    status, _ = call(port, "POST", "/embed", {"texts": ["a"] * 3}, token="secret")
    assert status == 200


def test_stalled_body_does_not_hold_a_thread_forever(fake_server: Server) -> None:
    fake_server.httpd.RequestHandlerClass.timeout = 0.5  # type: ignore[attr-defined]
    with socket.create_connection(("127.0.0.1", fake_server.port), timeout=10) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer secret"
                     b"\r\nContent-Length: 100\r\n\r\n{\"texts")
        head = wait_for(lambda: sock.recv(65536), "an answer to the stalled request")
    assert head.startswith(b"HTTP/1.1 408")


def test_server_binds_loopback_only() -> None:
    with pytest.raises(VaultdError, match="loopback"):
        Server(FakeApp(), ServerSettings(host="0.0.0.0", port=0), token="t")


def test_port_in_use_is_a_clear_error(fake_server: Server) -> None:
    with pytest.raises(VaultdError, match="port"):
        Server(FakeApp(), ServerSettings(port=fake_server.port), token="t")


def test_stop_without_start_returns() -> None:
    server = Server(FakeApp(), ServerSettings(port=0), token="t")
    done = threading.Event()
    threading.Thread(target=lambda: (server.stop(), done.set()), daemon=True).start()
    assert done.wait(5), "Server.stop() hung on a server that never started"


# -- issue #7: each hostile request exactly as listed, then proof the daemon still works


def _hostile(up: Running, case: str) -> tuple[int, Any]:
    if case == "no token":
        return up.call("POST", "/embed", {"texts": ["x"]}, token=None)
    if case == "wrong token":
        return up.call("POST", "/embed", {"texts": ["x"]}, token="not-the-token")
    if case == "Host evil.example":
        return up.call("POST", "/embed", {"texts": ["x"]}, host="evil.example")
    if case == "non-JSON":
        return up.call("POST", "/embed", raw=b"texts=hello&kind=query")
    if case == "10 MB body":
        body = json.dumps({"texts": ["a" * (10 * 1024 * 1024)]}).encode()
        assert len(body) > 10 * 1024 * 1024
        return up.call("POST", "/embed", raw=body)
    assert case == "10,000 texts"
    return up.call("POST", "/embed", {"texts": [f"text {i}" for i in range(10_000)]})


@pytest.mark.parametrize(("case", "code"), [
    ("no token", 401), ("wrong token", 401), ("Host evil.example", 403), ("non-JSON", 400),
    ("10 MB body", 413), ("10,000 texts", 413)])
def test_each_hostile_request_is_refused_and_the_daemon_still_answers(
        up: Running, case: str, code: int) -> None:
    before = up.search("restic", k=3)["hits"]
    status, data = _hostile(up, case)
    assert status == code, data
    assert isinstance(data["error"], str) and data["error"]
    assert up.thread.is_alive()
    # the follow-up is authenticated and its answers are the right ones, not just a 200
    texts = [f"after {case}", "fly releases rollback"]
    status, data = up.call("POST", "/embed", {"texts": texts, "kind": "query"})
    assert status == 200 and data["vectors"] == expected_vectors(texts, "query")
    assert up.search("restic", k=3)["hits"] == before
    assert before[0]["path"] == "procedural/backup.md"


@pytest.mark.parametrize("glob", ["../*", "/etc/*", "~/*", "../../**/*.md", "*/../../*"])
def test_a_search_path_outside_the_vault_matches_nothing(up: Running, glob: str) -> None:
    # `path` is a filter over indexed vault paths, never a filesystem path
    status, data = up.call("POST", "/search", {"query": "deploy", "path": glob, "mode": "bm25"})
    assert status == 200 and data["hits"] == []
    status, data = up.call("POST", "/search", {"query": "deploy", "path": "*", "mode": "bm25"})
    assert status == 200 and {h["path"] for h in data["hits"]} <= set(NOTES)
    assert data["hits"]


# -- browsers (CORS); the real-browser test is tests/test_browser.py


@pytest.fixture
def cors_server() -> Iterator[Server]:
    server = Server(FakeApp(), ServerSettings(port=0, allow_origins=("app://obsidian.md",)),
                    token="secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _raw(port: int, method: str, path: str, headers: dict[str, str],
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": f"localhost:{port}", **headers})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, \
            response.read()
    finally:
        conn.close()


def test_preflight_of_a_listed_origin_gets_the_cors_headers(cors_server: Server) -> None:
    status, headers, body = _raw(cors_server.port, "OPTIONS", "/embed", {
        "Origin": "app://obsidian.md", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == "app://obsidian.md"
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["vary"] == "Origin"
    # and the request itself: answered, with the origin echoed
    status, headers, body = _raw(cors_server.port, "POST", "/embed", {
        "Origin": "app://obsidian.md", "Authorization": "Bearer secret",
        "Content-Type": "application/json"}, json.dumps({"texts": ["ab"]}).encode())
    assert status == 200 and json.loads(body)["vectors"] == [[2.0]]
    assert headers["access-control-allow-origin"] == "app://obsidian.md"
    assert headers["vary"] == "Origin"


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "app://obsidian.md.evil",
                                    "http://localhost:3000"])
def test_an_unlisted_origin_is_refused_even_with_the_token(cors_server: Server,
                                                           origin: str) -> None:
    for method, body in (("OPTIONS", None), ("POST", json.dumps({"texts": ["x"]}).encode())):
        status, headers, raw = _raw(cors_server.port, method, "/embed", {
            "Origin": origin, "Authorization": "Bearer secret"}, body)
        assert status == 403, (method, raw)
        assert "access-control-allow-origin" not in headers
        assert "allow_origins" in json.loads(raw)["error"]
    assert cors_server.app.calls == 0  # type: ignore[attr-defined]


def test_options_without_an_origin_is_answered(cors_server: Server) -> None:
    status, headers, _ = _raw(cors_server.port, "OPTIONS", "/search", {})
    assert status == 204 and "POST" in headers["allow"]
    assert "access-control-allow-origin" not in headers


# -- issue #12, point 14: valid JSON that nothing downstream can use is a 400, not a 500


@pytest.mark.parametrize(("path", "raw"), [
    ("/search", b'{"query": "\\ud800"}'),
    ("/search", b'{"query": "deploy", "tags": ["\\udfff"]}'),
    ("/embed", b'{"texts": ["ok", "a\\ud800b"]}'),
    ("/v1/embeddings", b'{"input": "\\ud83d"}'),
    ("/api/embed", b'{"input": ["\\ud800"]}'),
    ("/lifecycle", b'{"phases": ["\\ud800"]}'),
])
def test_a_lone_surrogate_is_a_400(up: Running, path: str, raw: bytes) -> None:
    status, data = up.call("POST", path, raw=raw)
    assert status == 400, data
    assert "surrogate" in message(data)


@pytest.mark.parametrize("path", ["/search", "/embed", "/v1/embeddings", "/flush"])
@pytest.mark.parametrize("depth", [100_000, 40])
def test_json_nested_deep_is_a_400(up: Running, path: str, depth: int) -> None:
    raw = b'{"query": ' + b"[" * depth + b"]" * depth + b"}"
    status, data = up.call("POST", path, raw=raw)
    assert status == 400, data
    assert "nested deeper" in message(data)
    # a surrogate pair (a real character, escaped) is fine
    status, data = up.call("POST", "/embed", raw=b'{"texts": ["\\ud83d\\ude00 ok"]}')
    assert status == 200 and data["vectors"] == expected_vectors(["\U0001F600 ok"])


# -- the docs say what the server does


def test_every_endpoint_and_server_setting_is_documented() -> None:
    from dataclasses import fields

    from vaultd.daemon.routes import ROUTES

    repo = Path(__file__).resolve().parent.parent
    api = (repo / "docs" / "api.md").read_text(encoding="utf-8")
    for method, route in ROUTES:
        assert f"`{method} {route}`" in api, (method, route)
    template = (repo / "templates" / "config.toml").read_text(encoding="utf-8")
    server_section = template.split("[server]", 1)[1].split("\n\n", 1)[0]
    for f in fields(ServerSettings):
        assert f"# {f.name} = " in server_section, f.name


# -- issue #12, point 13: a trickle does not extend the deadlines (the flood is test_flood.py)


@pytest.mark.parametrize(("opening", "deadline"), [
    (b"GET /health HTTP/1.1\r\nHost: localhost\r\n", "head_seconds"),
    (b"POST /embed HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer secret\r\n"
     b"Content-Length: 100000\r\n\r\n{\"texts\": [\"", "body_seconds")])
@pytest.mark.slow
def test_a_trickling_sender_is_cut_off_at_its_deadline(opening: bytes, deadline: str) -> None:
    # one byte every 0.1 s: the socket timeout (30 s between bytes) alone never fires
    server = Server(FakeApp(), ServerSettings(port=0, head_seconds=1.0, body_seconds=1.0),
                    token="secret")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(opening)
            started = time.monotonic()
            answer = b""
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"a")
                except OSError:
                    break
                sock.settimeout(0.1)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert elapsed < 4, f"still connected after {elapsed:.1f} s ({deadline} = 1)"
    if deadline == "body_seconds":  # a body that is late is told so
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
