"""How long a shared index goes without a leader: two daemons on one PostgreSQL database,
the leader killed with -9 or paused (SIGSTOP), timed until the other reports itself leader.

    python bench/speed/leader_takeover.py [--rounds 3] [--lease 15] [--renew 5]

Starts a pgserver (pip install pgserver) under bench/out/leader_takeover, makes two copies of
a small vault there (two "machines", the fake hash-256 model), and runs both daemons as
processes with the given lease and renewal intervals (the defaults are vaultd's). Each round
kills or pauses whichever leads, times the takeover as the other's /status shows it, then
brings the old leader back: a paused one is resumed and timed until it says it is a reader
(it must step down before writing anything), a killed one is started again. The target
(issue 27): a takeover within 30 s. Writes bench/out/leader_takeover.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import OUT, machine, pg_database, summary, write_json  # noqa: E402

from vaultd.daemon.discovery import read_info, read_token  # noqa: E402
from vaultd.vault import init_vault  # noqa: E402

CONFIG = '[embedding]\nmodel = "hash-256"\n\n[server]\nport = 0\n'
NOTES = {
    "semantic/deploy.md": "# Deploy\n\n## Rollback\nfly releases rollback v41\n",
    "episodic/2026-01-05.md": "# 2026-01-05\n\n## 09:00 — rollback\nrollback rehearsed\n",
}


class Node:
    """One machine: a checkout of the vault and its daemon process."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.root.parent / f"{self.root.name}.out", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vaultd", "--vault", str(self.root), "run", "--quiet"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def status(self) -> dict[str, Any] | None:
        assert self.proc is not None
        info = read_info(self.root)
        if self.proc.poll() is not None or not info or int(info["pid"]) != self.proc.pid:
            return None
        conn = http.client.HTTPConnection("127.0.0.1", int(info["port"]), timeout=10)
        try:
            conn.request("GET", "/status", headers={
                "Host": f"localhost:{info['port']}",
                "Authorization": f"Bearer {read_token(self.root)}"})
            response = conn.getresponse()
            return json.loads(response.read()) if response.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def role(self) -> str | None:
        status = self.status()
        if status is None:
            return None
        return "leader" if status["writer"]["leads"] else "reader"

    def signal(self, number: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, number)
        if number == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def wait_role(node: Node, role: str, limit: float) -> float:
    """Seconds until `node` reports `role` (polled every 50 ms)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if node.role() == role:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"{node.root.name} did not become {role} within {limit:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0)
    parser.add_argument("--renew", type=float, default=5.0)
    args = parser.parse_args(argv)

    folder = OUT / "leader_takeover"
    shutil.rmtree(folder / "a", ignore_errors=True)
    shutil.rmtree(folder / "b", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    server, url, _ = pg_database(folder / "pg", "leader_takeover")

    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update({"VAULTD_INDEX_URL": url, "VAULTD_DAEMON_LEASE_SECONDS": str(args.lease),
                "VAULTD_DAEMON_LEASE_RENEW_SECONDS": str(args.renew),
                "VAULTD_CACHE_DIR": str(folder / "cache"), "OMP_NUM_THREADS": "1"})
    nodes = []
    for name in ("a", "b"):
        root = folder / name
        init_vault(root)
        (root / ".vaultd" / "config.toml").write_text(CONFIG, encoding="utf-8")
        for rel, text in NOTES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        nodes.append(Node(root, env))

    results: dict[str, list[float]] = {"kill": [], "pause": [], "paused_steps_down": []}
    try:
        nodes[0].start()
        wait_role(nodes[0], "leader", 120)
        nodes[1].start()
        wait_role(nodes[1], "reader", 120)
        for mode in ("kill", "pause"):
            for _ in range(args.rounds):
                leader, reader = (nodes if nodes[0].role() == "leader" else nodes[::-1])
                if mode == "kill":
                    leader.signal(signal.SIGKILL)
                    results["kill"].append(wait_role(reader, "leader", 120))
                    leader.start()
                    wait_role(leader, "reader", 120)
                else:
                    leader.signal(signal.SIGSTOP)
                    results["pause"].append(wait_role(reader, "leader", 120))
                    leader.signal(signal.SIGCONT)
                    results["paused_steps_down"].append(wait_role(leader, "reader", 120))
                print(f"{mode}: {results[mode][-1]:.2f} s", file=sys.stderr)
    finally:
        for node in nodes:
            node.stop()
        server.cleanup()

    write_json(OUT / "leader_takeover.json", {
        "machine": machine(), "lease_seconds": args.lease, "renew_seconds": args.renew,
        "rounds": args.rounds, **{k: summary(v, 2) for k, v in results.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
