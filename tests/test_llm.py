"""The optional LLM merge: both chat wire formats against a small local HTTP server whose answer
each test sets, and every rule that makes the merge fall back to the extractive items
(loopback only, no model)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vaultd.errors import ModelError
from vaultd.llm import ChatConfig, MergeResult, chat, llm_merge, parse_items

TEXTS = [
    "09:14 — Refund webhook test is flaky because the Stripe sandbox retries after 30 seconds.",
    "11:02 — The refund webhook test flakes: the Stripe sandbox retries; we now mock the clock.",
    "16:40 — Mocked the clock in the refund webhook test; it passed 200 runs in a row on CI.",
]
EXTRACTIVE = ["Refund webhook test is flaky because the Stripe sandbox retries after 30 seconds."]
GOOD = ("- The refund webhook test was flaky because the Stripe sandbox retries after 30 s.\n"
        "- Mocking the clock in the refund webhook test fixed it: 200 passing CI runs in a row.\n")
GOOD_ITEMS = [line[2:] for line in GOOD.splitlines()]


class ChatServer:
    """Speaks OpenAI `/v1/chat/completions` and Ollama `/api/chat`; answers `self.answer`
    (or `self.status` with a body, or a raw `self.payload`) and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.answer = GOOD
        self.status = 200
        self.payload: bytes | None = None
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body, self.headers.get("Authorization")))
                time.sleep(server.delay)
                if server.status != 200:
                    raw = b"model overloaded"
                elif server.payload is not None:
                    raw = server.payload
                elif self.path == "/v1/chat/completions":
                    raw = json.dumps({"object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant",
                                                               "content": server.answer}}]
                                      }).encode()
                elif self.path == "/api/chat":
                    raw = json.dumps({"model": body["model"], "done": True,
                                      "message": {"role": "assistant",
                                                  "content": server.answer}}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def openai(self, **kwargs: Any) -> ChatConfig:
        return ChatConfig("openai", f"{self.url}/v1", "gpt-test", **kwargs)

    def ollama(self, **kwargs: Any) -> ChatConfig:
        return ChatConfig("ollama", self.url, "llama-test", **kwargs)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    s = ChatServer()
    # a short poll interval: shutdown() otherwise waits up to 0.5 s per test
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_fallback(result: MergeResult, reason: str) -> None:
    assert result.source == "extractive"
    assert result.items == EXTRACTIVE
    assert result.rejected is not None and reason in result.rejected, result.rejected


# ------------------------------------------------------------------------------- accepted


def test_openai_merge_accepted_with_key(server: ChatServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTD_TEST_CHAT_KEY", "sk-test")
    result = llm_merge(TEXTS, server.openai(api_key_env="VAULTD_TEST_CHAT_KEY"), EXTRACTIVE)
    assert result == MergeResult(GOOD_ITEMS, "llm", None)
    [(path, body, auth)] = server.requests
    assert path == "/v1/chat/completions"
    assert auth == "Bearer sk-test"
    assert set(body) == {"model", "messages", "temperature"}
    assert body["model"] == "gpt-test" and body["temperature"] == 0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user"]
    assert '"- "' in body["messages"][0]["content"]
    assert all(text in body["messages"][1]["content"] for text in TEXTS)


def test_ollama_merge_accepted_without_key(server: ChatServer) -> None:
    result = llm_merge(TEXTS, server.ollama(), EXTRACTIVE)
    assert result == MergeResult(GOOD_ITEMS, "llm", None)
    [(path, body, auth)] = server.requests
    assert path == "/api/chat"
    assert auth is None
    assert body == {"model": "llama-test", "messages": body["messages"], "stream": False,
                    "options": {"temperature": 0}}
    assert all(text in body["messages"][1]["content"] for text in TEXTS)


def test_trailing_slash_in_url(server: ChatServer) -> None:
    config = ChatConfig("openai", f"{server.url}/v1/", "gpt-test")
    assert llm_merge(TEXTS, config, EXTRACTIVE).source == "llm"
    assert server.requests[0][0] == "/v1/chat/completions"


def test_parse_items_markers_preamble_and_wrapping() -> None:
    answer = ("Here is the merged list:\n"
              "1. first fact\n"
              "2) second fact\n"
              "* third fact\n"
              "• fourth fact that wraps\n"
              "   onto the next line\n"
              "\n"
              "- fifth fact\n"
              "Let me know if you need more.\n")
    assert parse_items(answer) == ["first fact", "second fact", "third fact",
                                   "fourth fact that wraps onto the next line", "fifth fact"]
    assert parse_items("just prose, no list at all") == []
    assert parse_items("-no space after the dash\n12345 not a number marker") == []


def test_numbered_answer_and_think_block_accepted(server: ChatServer) -> None:
    server.answer = ("<think>The user wants a list. I cannot skip details.</think>\n"
                     + "\n".join(f"{i}. {item}" for i, item in enumerate(GOOD_ITEMS, 1)))
    result = llm_merge(TEXTS, server.ollama(), EXTRACTIVE)
    assert result == MergeResult(GOOD_ITEMS, "llm", None)


def test_refusal_phrase_quoted_from_the_entries_is_not_a_refusal(server: ChatServer) -> None:
    texts = ["Deploys: I can't deploy on Fridays because the on-call rota is empty then.",
             "Reminder to self — I can't deploy on Fridays; the rota has nobody on call."]
    server.answer = "- I can't deploy on Fridays because nobody is on the on-call rota then.\n"
    result = llm_merge(texts, server.openai(), EXTRACTIVE)
    assert result.source == "llm" and result.rejected is None


def test_item_of_exactly_fifty_chars_is_accepted(server: ChatServer) -> None:
    item = "x" * 50
    server.answer = f"- {item}\n"
    assert llm_merge(TEXTS, server.ollama(), EXTRACTIVE) == MergeResult([item], "llm", None)


# ------------------------------------------------------------------------------- rejected


@pytest.mark.parametrize("provider", ["openai", "ollama"])
@pytest.mark.parametrize(("answer", "reason"), [
    (GOOD + "- Mocked the clock.\n", "item under 50 chars"),
    ("I'm sorry, but I can't help with merging these notes.", "refusal"),
    ("- As an AI language model, I do not keep notes, but the refund test was flaky.\n",
     "refusal"),
    ("- I CANNOT merge these entries because they seem to describe different events.\n",
     "refusal"),
    ("- I\u2019m unable to find a common fact between the refund webhook entries here.\n",
     "refusal"),
    ("- " + "The refund webhook test was flaky because of sandbox retries. " * 10, "too long"),
    ("The refund webhook test was flaky; mocking the clock fixed it.", "no list items"),
    ("", "no list items"),
])
def test_bad_answer_falls_back(server: ChatServer, provider: str, answer: str,
                               reason: str) -> None:
    server.answer = answer
    config = server.openai() if provider == "openai" else server.ollama()
    assert_fallback(llm_merge(TEXTS, config, EXTRACTIVE), reason)
    assert len(server.requests) == 1


def test_length_limit_is_one_and_a_half_times_the_input(server: ChatServer) -> None:
    texts = ["a" * 60, "b" * 40]  # 100 input chars → at most 150 answer chars
    server.answer = "- " + "c" * 148
    assert llm_merge(texts, server.openai(), EXTRACTIVE).source == "llm"
    server.answer = "- " + "c" * 149
    assert_fallback(llm_merge(texts, server.openai(), EXTRACTIVE), "151 chars > 1.5 x 100")


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_http_500_falls_back(server: ChatServer, provider: str) -> None:
    server.status = 500
    config = server.openai() if provider == "openai" else server.ollama()
    result = llm_merge(TEXTS, config, EXTRACTIVE)
    assert_fallback(result, "answered 500")
    assert "model overloaded" in (result.rejected or "")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"<html>not json</html>", "not JSON"),
    (b'{"choices": []}', "unexpected answer shape"),
    (b'{"message": {"content": null}}', "unexpected answer shape"),
    (b'{"error": "model not found"}', "unexpected answer shape"),
])
@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_malformed_response_falls_back(server: ChatServer, provider: str, payload: bytes,
                                       reason: str) -> None:
    server.payload = payload
    config = server.openai() if provider == "openai" else server.ollama()
    assert_fallback(llm_merge(TEXTS, config, EXTRACTIVE), reason)


def test_wrong_path_404_falls_back(server: ChatServer) -> None:
    config = ChatConfig("openai", server.url, "gpt-test")  # base URL without /v1
    assert_fallback(llm_merge(TEXTS, config, EXTRACTIVE), "answered 404")


def test_connection_refused_falls_back() -> None:
    config = ChatConfig("ollama", f"http://127.0.0.1:{closed_port()}", "llama-test")
    assert_fallback(llm_merge(TEXTS, config, EXTRACTIVE), "cannot reach the chat model")


def test_timeout_falls_back(server: ChatServer) -> None:
    server.delay = 0.5
    started = time.monotonic()
    result = llm_merge(TEXTS, server.ollama(timeout=0.1), EXTRACTIVE)
    assert_fallback(result, "cannot reach the chat model")
    assert time.monotonic() - started < 0.45


def test_missing_api_key_falls_back_without_calling(server: ChatServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTD_TEST_UNSET_CHAT_KEY", raising=False)
    config = server.openai(api_key_env="VAULTD_TEST_UNSET_CHAT_KEY")
    assert_fallback(llm_merge(TEXTS, config, EXTRACTIVE), "VAULTD_TEST_UNSET_CHAT_KEY")
    assert server.requests == []
    with pytest.raises(ModelError, match="VAULTD_TEST_UNSET_CHAT_KEY.*is not set"):
        chat([{"role": "user", "content": "hi"}], config)


def test_no_texts_makes_no_call(server: ChatServer) -> None:
    assert llm_merge([], server.ollama(), []) == MergeResult([], "extractive", "nothing to merge")
    assert server.requests == []


def test_fallback_items_are_a_copy() -> None:
    extractive = list(EXTRACTIVE)
    config = ChatConfig("ollama", f"http://127.0.0.1:{closed_port()}", "llama-test")
    result = llm_merge(TEXTS, config, extractive)
    result.items.append("changed")
    assert extractive == EXTRACTIVE


def test_llm_classify_accepts_one_kind_only() -> None:
    import vaultd.llm as llm_mod
    from vaultd.llm import llm_classify

    config = llm_mod.ChatConfig(provider="openai", url="http://127.0.0.1:9/v1", model="m")
    original = llm_mod.chat
    try:
        for answer, expected in (("procedural", "procedural"), (" Semantic.\n", "semantic"),
                                 ("I think it is semantic", None), ("banana", None)):
            llm_mod.chat = lambda messages, cfg, a=answer: a  # the model's answer
            assert llm_classify("how to deploy", config) == expected
    finally:
        llm_mod.chat = original
    assert llm_classify("x", config) is None  # unreachable model: the caller's class stays
