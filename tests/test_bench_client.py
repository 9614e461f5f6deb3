"""The benchmarks' HTTP client (`bench/benchlib.py`, `DaemonApi`) against a loopback server
that closes a kept-alive connection after answering, without saying so — as the daemon does
with a connection left idle while a benchmark waited for a quiet machine. A 10k latency run
once died there with a broken pipe."""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHLIB = Path(__file__).resolve().parents[1] / "bench" / "benchlib.py"


def load_benchlib() -> ModuleType:
    """bench/ is scripts, not a package: load its shared module by path, leaving sys.path be."""
    spec = importlib.util.spec_from_file_location("benchlib", BENCHLIB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchlib = load_benchlib()


class DroppingServer(ThreadingHTTPServer):
    """Answers requests in the order of `answers` (True: 200 and a JSON body; False: nothing)
    and closes each connection afterwards; `closed` is released once a connection is gone."""

    daemon_threads = True

    def __init__(self, answers: list[bool]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = iter(answers)
        self.requests = 0
        self.closed = threading.Semaphore(0)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.release()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the daemon speaks
    server: DroppingServer

    def do_GET(self) -> None:
        self.server.requests += 1
        self.close_connection = True  # closed after this request, and the client is not told
        if next(self.server.answers):
            body = json.dumps({"request": self.server.requests}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(answers: list[bool], root: Path) -> Iterator[DroppingServer]:
    server = DroppingServer(answers)
    state = root / ".vaultd"
    state.mkdir(parents=True)
    (state / "daemon.json").write_text(json.dumps({"port": server.server_address[1], "pid": 1}))
    (state / "token").write_text("t0ken\n")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def answer_twice(tmp_path: Path) -> Iterator[DroppingServer]:
    yield from serve([True, True], tmp_path)


@pytest.fixture
def answer_once_then_drop(tmp_path: Path) -> Iterator[DroppingServer]:
    yield from serve([True, False], tmp_path)


@pytest.fixture
def drop_at_once(tmp_path: Path) -> Iterator[DroppingServer]:
    yield from serve([False], tmp_path)


def test_a_request_on_a_connection_the_daemon_closed_is_sent_again_on_a_new_one(
        tmp_path: Path, answer_twice: DroppingServer) -> None:
    api = benchlib.DaemonApi(tmp_path, timeout=5)
    assert api.call("GET", "/status") == {"request": 1}
    assert answer_twice.closed.acquire(timeout=5)  # the daemon has closed the idle connection
    assert api.call("GET", "/status") == {"request": 2}
    assert api.reconnects == 1


def test_a_connection_dropped_again_after_reconnecting_is_the_daemons_failure(
        tmp_path: Path, answer_once_then_drop: DroppingServer) -> None:
    api = benchlib.DaemonApi(tmp_path, timeout=5)
    api.call("GET", "/status")
    assert answer_once_then_drop.closed.acquire(timeout=5)
    with pytest.raises(benchlib.DROPPED):
        api.call("GET", "/status")
    assert api.reconnects == 1  # one new connection, not a loop
    assert answer_once_then_drop.requests == 2


def test_a_new_connection_that_fails_is_not_retried(
        tmp_path: Path, drop_at_once: DroppingServer) -> None:
    api = benchlib.DaemonApi(tmp_path, timeout=5)
    with pytest.raises(http.client.RemoteDisconnected):
        api.call("GET", "/status")
    assert api.reconnects == 0
    assert drop_at_once.requests == 1
