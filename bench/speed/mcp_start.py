"""What an agent waits for before its first MCP search answers: `vaultd mcp` (stdio) started
fresh, in-process (no daemon) and relayed to a running daemon, and the daemon's `/mcp` over
HTTP (no process to start). Issue 26 point 2.

    python bench/speed/mcp_start.py VAULT [--runs 5]

VAULT must be indexed with the default model. For each run: spawn, `initialize`, one
`memory_search`; the time from spawn (or from the first HTTP request) to the search's answer.
The daemon is started for the relayed and HTTP runs (`vaultd start`) and stopped after; the
in-process runs go first, with no daemon.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DaemonApi, vaultd_cli, wait_for_idle  # noqa: E402

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
SEARCH = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
          "params": {"name": "memory_search", "arguments": {"query": "vitamin D and bone "
                                                                     "density", "k": 5}}}


def stdio_run(vault: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(vault), "mcp"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    for message in (INIT, INITIALIZED, SEARCH):
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("vaultd mcp ended before answering the search")
        answer = json.loads(line)
        if answer.get("id") == 2:
            break
    elapsed = time.perf_counter() - started
    if "error" in answer or answer["result"].get("isError"):
        raise RuntimeError(f"search failed: {answer}")
    proc.stdin.close()
    proc.wait(30)
    return elapsed


def http_run(api: DaemonApi) -> float:
    headers = {"Host": f"localhost:{api.port}", "Authorization": f"Bearer {api.token}",
               "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    started = time.perf_counter()
    for message in (INIT, INITIALIZED, SEARCH):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=120)
        conn.request("POST", "/mcp", body=json.dumps(message), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        if response.status not in (200, 202):
            raise RuntimeError(f"/mcp: {response.status} {raw[:200]!r}")
    return time.perf_counter() - started


def summary(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    print(f"{name}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f} "
          f"({len(ms)} runs)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vault", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    vaultd_cli("--vault", str(args.vault), "stop")
    summary("vaultd mcp, in-process (no daemon)", [stdio_run(args.vault)
                                                   for _ in range(args.runs)])
    proc = vaultd_cli("--vault", str(args.vault), "start", env={"VAULTD_SERVER_PORT": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"the daemon did not start: {proc.stderr}")
    try:
        api = DaemonApi(args.vault)
        api.wait_idle()
        wait_for_idle(api.pid)
        first = http_run(api)  # loads the SDK in the daemon, once
        print(f"daemon /mcp, first request after start (loads the SDK): {first * 1000:.0f} ms")
        summary("daemon /mcp over HTTP (initialize + search)",
                [http_run(api) for _ in range(args.runs)])
        summary("vaultd mcp, relayed to the daemon", [stdio_run(args.vault)
                                                      for _ in range(args.runs)])
    finally:
        vaultd_cli("--vault", str(args.vault), "stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
