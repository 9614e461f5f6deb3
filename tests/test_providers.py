"""Embedding providers by config: Ollama and OpenAI-compatible endpoints, against a small
local HTTP server that speaks their wire formats (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vaultd.embedder import HttpEmbedder, profile_from_table
from vaultd.errors import ConfigError, ModelError
from vaultd.vault import init_vault, open_vault

DIMS = 8


def fake_vector(text: str) -> list[float]:
    """Deterministic, deliberately not unit length; shared words → similar vectors."""
    vec = [0.0] * DIMS
    for word in text.lower().split():
        vec[sum(map(ord, word)) % DIMS] += 3.0
    return vec


class Provider:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.fail = False
        self.nan_for = ""  # texts with this in them get vectors of NaN
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                provider.requests.append((self.path, body, self.headers.get("Authorization")))
                if provider.fail:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                vectors = [[float("nan")] * DIMS if provider.nan_for and provider.nan_for in t
                           else fake_vector(t)
                           for t in texts]
                if self.path == "/api/embed":
                    out = {"model": body["model"], "embeddings": vectors}
                elif self.path == "/v1/embeddings":
                    data = [{"object": "embedding", "index": i, "embedding": v}
                            for i, v in enumerate(vectors)]
                    out = {"object": "list", "data": list(reversed(data)), "model": body["model"]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                raw = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    thread = threading.Thread(target=p.httpd.serve_forever, daemon=True)
    thread.start()
    yield p
    p.httpd.shutdown()
    p.httpd.server_close()


def configure(tmp_path: Path, table: str) -> Path:
    root = tmp_path / "vault"
    init_vault(root)
    (root / ".vaultd" / "config.toml").write_text(
        f'[embedding]\nmodel = "remote"\n\n[models.remote]\n{table}', encoding="utf-8")
    (root / "semantic" / "a.md").write_text("# Alpha\n\nalpha beta gamma\n", encoding="utf-8")
    (root / "semantic" / "b.md").write_text("# Delta\n\ndelta epsilon\n", encoding="utf-8")
    return root


def test_ollama_provider_indexes_and_searches(tmp_path: Path, provider: Provider) -> None:
    root = configure(tmp_path, f'provider = "ollama"\nurl = "{provider.url}"\n'
                               f'remote_model = "mxbai-embed-large"\ndims = {DIMS}\n'
                               'query_prefix = "Represent: "\n')
    with open_vault(root, env={}, daemon="never") as vault:
        assert isinstance(vault.embedder, HttpEmbedder)
        report = vault.index()
        assert report.chunks_embedded >= 2
        assert vault.search("delta epsilon", k=1, mode="vector")[0].path == "semantic/b.md"
        vectors = vault.embed(["alpha"], kind="query")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # normalised here
    path, body, auth = provider.requests[-1]
    assert path == "/api/embed" and body == {"model": "mxbai-embed-large",
                                             "input": ["Represent: alpha"]}
    assert auth is None


def test_openai_provider_with_key_and_order(tmp_path: Path, provider: Provider,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    root = configure(tmp_path, f'provider = "openai"\nurl = "{provider.url}/v1"\n'
                               f'remote_model = "text-embedding-3-small"\ndims = {DIMS}\n'
                               'api_key_env = "MY_KEY"\n')
    with open_vault(root, env={}, daemon="never") as vault:
        vectors = vault.embed(["alpha beta", "delta"])
        vault.index()
        hits = vault.search("alpha gamma", k=1, mode="vector")
    expected = np.asarray([fake_vector("alpha beta"), fake_vector("delta")], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected, atol=1e-6)  # rows put back in `index` order
    assert hits[0].path == "semantic/a.md"
    assert provider.requests[0][0] == "/v1/embeddings"
    assert provider.requests[0][2] == "Bearer sk-test"


def test_provider_errors_are_clear(tmp_path: Path, provider: Provider,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    profile = profile_from_table("r", {"provider": "ollama", "url": provider.url,
                                       "remote_model": "m", "dims": DIMS}, tmp_path)
    provider.fail = True
    with pytest.raises(ModelError, match="answered 500"):
        HttpEmbedder(profile).embed(["x"])
    provider.fail = False
    wrong = profile_from_table("r", {"provider": "ollama", "url": provider.url,
                                     "remote_model": "m", "dims": DIMS + 1}, tmp_path)
    with pytest.raises(ModelError, match="expected"):
        HttpEmbedder(wrong).embed(["x"])
    down = profile_from_table("r", {"provider": "openai", "url": "http://127.0.0.1:9/v1",
                                    "remote_model": "m", "dims": DIMS}, tmp_path)
    with pytest.raises(ModelError, match="cannot reach"):
        HttpEmbedder(down).embed(["x"])
    keyed = profile_from_table("r", {"provider": "openai", "url": provider.url,
                                     "remote_model": "m", "dims": DIMS,
                                     "api_key_env": "VAULTD_TEST_UNSET_KEY"}, tmp_path)
    monkeypatch.delenv("VAULTD_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ModelError, match="VAULTD_TEST_UNSET_KEY"):
        HttpEmbedder(keyed).embed(["x"])


def test_a_provider_answering_nan_is_refused_and_the_chunks_stay_searchable_by_text(
        tmp_path: Path, provider: Provider) -> None:
    """A vector with NaN in it would be stored and then never found (every comparison with
    NaN is false): it is refused with the text named, nothing of its batch is stored, and
    the chunks stay pending, found by BM25."""
    root = configure(tmp_path, f'provider = "ollama"\nurl = "{provider.url}"\n'
                               f'remote_model = "m"\ndims = {DIMS}\n')
    provider.nan_for = "delta epsilon"
    with open_vault(root, env={}, daemon="never") as vault:
        with pytest.raises(ModelError, match="NaN or infinite values for .*delta epsilon"):
            vault.index()
        assert vault.store.pending_vectors() == vault.store.counts()["chunks"] >= 2
        assert vault.search("epsilon", k=1, mode="bm25")[0].path == "semantic/b.md"
        provider.nan_for = ""
        vault.index()  # the provider fixed: the same chunks get their vectors
        assert vault.store.pending_vectors() == 0
        assert vault.search("delta epsilon", k=1, mode="vector")[0].path == "semantic/b.md"


def test_provider_profile_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="provider"):
        profile_from_table("r", {"provider": "cohere", "url": "u", "remote_model": "m",
                                 "dims": 4}, tmp_path)
    with pytest.raises(ConfigError, match="'remote_model' is required"):
        profile_from_table("r", {"provider": "ollama", "url": "http://x", "dims": 4}, tmp_path)
    profile = profile_from_table("r", {"provider": "ollama", "url": "http://x",
                                       "remote_model": "m", "dims": 4}, tmp_path)
    assert profile.kind == "ollama" and profile.onnx == ""
    assert HttpEmbedder(profile).identity() == {"id": "r", "dims": 4,
                                                "file": "ollama:http://x:m"}
