"""The daemon's HTTP API on two transports, side by side: vaultd's own server (`daemon/server`,
stdlib threads) and a prototype of the same API as one ASGI app on uvicorn (the server the mcp
SDK depends on) — issue 26 point 2's condition for moving the API onto uvicorn: `/search` p50
at 10k chunks within 0.3 ms of the stdlib server's.

    python bench/speed/transport_ab.py build WORKDIR [--data DIR]
    python bench/speed/transport_ab.py run WORKDIR [--rounds 3] [--k 10] [--transports ...]
    python bench/speed/transport_ab.py serve VAULT --transport NAME   (used by run)

`build` makes a vault of the SciFact notes (~10.8k chunks) and indexes it with an embedder that
has the default model's identity but gives seeded random unit vectors (no model run: the KNN
scan costs the same for any vectors; the query is still embedded by the real model), then
copies it twice. `run` starts one daemon per transport, same code otherwise, each on its own
copy, and sends every query to each in turn, the order flipped every query
(`daemon_ab.py`'s pairing), printing p50/p95 and, against the stdlib server, the median of the
per-query differences and ratios; then the same for `GET /health` (the transport alone).
Transports: `stdlib`, `uvicorn` (endpoints on a worker thread), `uvicorn-inline` (endpoints on
the event loop's thread, blocking it: only to see what the thread hop costs).

The prototype's ASGI app makes the same checks in the same order (guards), reads the same
route table (routes.lookup) and runs each endpoint on a worker thread (a search must not block
the event loop); it is not the daemon's server: it has no slow-client deadlines and no
connection cap (uvicorn has neither for a request not yet received), which is part of why it
stays a prototype here.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA  # noqa: E402

from vaultd.daemon import guards  # noqa: E402
from vaultd.daemon.guards import ApiError  # noqa: E402
from vaultd.daemon.payloads import error_body  # noqa: E402
from vaultd.daemon.routes import App, Call, lookup  # noqa: E402
from vaultd.embedder import DEFAULT_MODEL, Embedder, builtin_profiles  # noqa: E402
from vaultd.errors import VaultdError  # noqa: E402

TRANSPORTS = ("stdlib", "uvicorn", "uvicorn-inline")


class SeededEmbedder(Embedder):
    """The default model's identity, a unit vector seeded by each text's hash."""

    def __init__(self) -> None:
        from vaultd.vault import cache_dir

        profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
        super().__init__(profile, batch_size=256)
        from vaultd.embedder import OnnxEmbedder

        self.real = OnnxEmbedder(profile, threads=2, batch_size=8)

    def file_hash(self) -> str:
        return self.real.file_hash()

    def count_tokens(self, text: str) -> int:
        return self.real.count_tokens(text)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            vec = np.random.default_rng(seed).normal(0, 1, self.dims)
            out[i] = vec / np.linalg.norm(vec)
        return out


def build(work: Path, data: Path) -> None:
    from vaultd.vault import init_vault, open_vault

    base = work / "base"
    if not (base / ".vaultd" / "index.db").exists():
        shutil.rmtree(base, ignore_errors=True)
        with tarfile.open(data / "scifact-vault.tar.gz") as tar:
            tar.extractall(work, filter="data")
        (work / "vault").rename(base)
        init_vault(base)
        with open_vault(base, embedder=SeededEmbedder()) as vault:
            vault.index()
            print(f"indexed: {vault.store.counts()}", file=sys.stderr)
    for name in TRANSPORTS:
        if (work / name).exists():
            continue
        shutil.copytree(base, work / name)
    queries = [json.loads(line)["query"] for line in
               (data / "scifact-queries-train.jsonl").read_text().splitlines() if line.strip()]
    (work / "queries.json").write_text(json.dumps(queries[:200]))


# ---------------------------------------------------------------------------- the prototype

class AsgiApi:
    """The API as a raw ASGI app (no framework routing: the route table is vaultd's)."""

    def __init__(self, app: App, token: str, max_body: int, max_texts: int,
                 allow_origins: frozenset[str], inline: bool) -> None:
        self.app, self.token, self.max_body, self.max_texts = app, token, max_body, max_texts
        self.allow_origins = allow_origins
        self.inline = inline  # run the endpoint on the event loop's thread (blocking it)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        method, route = scope["method"], scope["path"].rstrip("/") or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cors: str | None = None
        try:
            guards.check_host(headers.get("host", ""))
            cors = guards.check_origin(headers.get("origin"), self.allow_origins)
            if method == "GET" and route == "/health":
                status, payload = 200, self.app.health()
            else:
                found = lookup(method, route)
                guards.check_token(headers.get("authorization", ""), self.token)
                if found is None:
                    raise ApiError(404, f"no endpoint {method} {route}")  # type: ignore[arg-type]
                guards.check_body_size(int(headers.get("content-length") or 0), self.max_body)
                raw = b""
                more = True
                while more:
                    message = await receive()
                    raw += message.get("body", b"")
                    more = message.get("more_body", False)
                body = guards.parse_body(raw) if method == "POST" else {}
                call = Call(self.app, route, self.max_texts)
                if self.inline:
                    status, payload = 200, found[0](call, body)
                else:
                    loop = asyncio.get_running_loop()
                    status, payload = 200, await loop.run_in_executor(None, found[0], call,
                                                                      body)
        except ApiError as exc:
            status, payload = int(exc.status), error_body(route, exc.status, str(exc),
                                                          exc.param, exc.code)
        except VaultdError as exc:
            status, payload = 400, error_body(route, 400, str(exc))  # type: ignore[arg-type]
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        out = [(b"content-type", b"application/json"),
               (b"content-length", str(len(data)).encode())]
        if cors is not None:
            out.append((b"access-control-allow-origin", cors.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})


class UvicornServer:
    """`daemon/server.Server`'s interface (port, start, stop) over uvicorn on a thread."""

    inline = False

    def __init__(self, app: App, settings: Any, *, token: str, mcp: Any = None) -> None:
        import uvicorn  # (`mcp`: /mcp is not part of what is measured here)

        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
        # (a socket made with proto 0 left Nagle on: ~40 ms added to every response)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((settings.host, settings.port))
        api = AsgiApi(app, token, settings.max_body_bytes, settings.max_texts,
                      frozenset(o.rstrip("/") for o in settings.allow_origins), self.inline)
        config = uvicorn.Config(api, log_level="warning", access_log=False, lifespan="on",
                                server_header=False, date_header=False, http="h11")
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="vaultd-uvicorn", daemon=True)
        self._thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def serve(vault_path: Path, transport: str) -> int:
    """A daemon in the foreground, its API on `transport`."""
    import vaultd.daemon.server as server_module
    from vaultd.daemon.process import Daemon
    from vaultd.vault import open_vault

    if transport.startswith("uvicorn"):
        UvicornServer.inline = transport == "uvicorn-inline"
        server_module.Server = UvicornServer  # type: ignore[misc,assignment]
    return Daemon(open_vault(vault_path, daemon="never"), log_to_stderr=False).run()


def run(work: Path, rounds: int, k: int, transports: list[str]) -> int:
    procs = []
    env = {**os.environ, "VAULTD_SERVER_PORT": "0"}
    try:
        for name in transports:
            info = work / name / ".vaultd" / "daemon.json"
            info.unlink(missing_ok=True)
            procs.append(subprocess.Popen([sys.executable, __file__, "serve", str(work / name),
                                           "--transport", name], env=env))
            deadline = time.monotonic() + 120
            while not info.exists():
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise SystemExit(f"the {name} daemon did not start")
                time.sleep(0.2)
        queries = json.loads((work / "queries.json").read_text())
        paired(work, transports, [("POST", "/search", {"query": q, "k": k})
                                  for q in queries] * rounds)
        paired(work, transports, [("GET", "/health", None)] * (1000 * rounds))
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def paired(work: Path, transports: list[str], requests: list[tuple[str, str, Any]]) -> None:
    """Each request to every daemon in turn, the order flipped every request; p50/p95 each,
    and against the first: the median of the per-request differences and ratios."""
    import statistics

    from benchlib import DaemonApi, wait_for_idle

    apis = [DaemonApi(work / name) for name in transports]
    for api in apis:
        api.wait_idle()
        wait_for_idle(api.pid)
        for method, path, body in requests[:5]:  # warm-up
            api.call(method, path, body)
    times: list[list[float]] = [[] for _ in apis]
    for i, (method, path, body) in enumerate(requests):
        for j in (range(len(apis)) if i % 2 == 0 else reversed(range(len(apis)))):
            started = time.perf_counter()
            apis[j].call(method, path, body)
            times[j].append((time.perf_counter() - started) * 1000)
    route = f"{requests[0][0]} {requests[0][1]}"
    for name, t in zip(transports, times):
        ranked = sorted(t)
        line = (f"{name:8} {route}: p50 {statistics.median(t):.3f} ms, "
                f"p95 {ranked[int(len(t) * 0.95)]:.3f} ms ({len(t)} requests)")
        if t is not times[0]:
            diffs = [b - a for a, b in zip(times[0], t)]
            ratios = [b / a for a, b in zip(times[0], t)]
            line += (f"; vs {transports[0]}: median difference {statistics.median(diffs):+.3f}"
                     f" ms, median ratio {statistics.median(ratios):.3f}")
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("work", type=Path)
    b.add_argument("--data", type=Path, default=DEFAULT_DATA)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS[:2]))
    s = sub.add_parser("serve")
    s.add_argument("vault", type=Path)
    s.add_argument("--transport", choices=TRANSPORTS, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.work, args.data)
        return 0
    if args.command == "serve":
        return serve(args.vault, args.transport)
    return run(args.work, args.rounds, args.k, args.transports)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
