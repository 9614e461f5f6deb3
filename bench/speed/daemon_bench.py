"""The daemon, measured: edit→searchable latency, a one-line edit in a 5,000-note vault, a
2,000-file copy-in, idle CPU, RSS, /search latency and `vaultd search` CLI wall time.

    python bench/speed/daemon_bench.py [--data DIR] [--idle-seconds 60]

Needs the SciFact vault indexed once by `bench/quality/eval_scifact.py`
(bench/out/scifact/vault); it is copied with its index to bench/out/daemon/, so the daemon starts
on a current index. The 2,000 copied-in files come from the tldr-pages corpus. Prints a report
and writes bench/out/daemon.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, DaemonApi  # noqa: E402


def vaultd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaultd", *args], capture_output=True,
                          text=True, env=env, check=False)


class Api(DaemonApi):
    """The shared client, plus the wait this bench needs (nothing queued, running or pending)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, timeout=60)

    def idle(self, timeout: float = 600) -> float:
        """Wait until the daemon has nothing queued or running; return the seconds waited."""
        start = time.perf_counter()
        quiet = 0
        while time.perf_counter() - start < timeout:
            status = self.call("GET", "/status")
            if (status["queue"] == 0 and not status["indexing"] and status["index_lag"] == 0
                    and not status.get("connect_pending")):
                quiet += 1
                if quiet >= 3:
                    return time.perf_counter() - start
            else:
                quiet = 0
            time.sleep(0.1)
        raise TimeoutError("daemon never went idle")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_mem_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--edits", type=int, default=40)
    args = parser.parse_args()

    source = OUT / "scifact" / "vault"
    if not (source / ".vaultd" / "index.db").exists():
        sys.exit("index the SciFact vault first: python bench/quality/eval_scifact.py")
    work = OUT / "daemon"
    root = work / "vault"
    if work.exists():
        vaultd("--vault", str(root), "stop")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(source, root, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("daemon.*", "token", "*.log"))
    env = {**os.environ, "VAULTD_SERVER_PORT": "0"}
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}

    t0 = time.perf_counter()
    started = vaultd("--vault", str(root), "start", env=env)
    if started.returncode != 0:
        sys.exit(started.stderr)
    results["start_seconds"] = round(time.perf_counter() - t0, 2)
    api = Api(root)
    api.idle()
    status = api.call("GET", "/status")
    results["start_reconcile"] = status["last_batch"]
    print("daemon up:", status["last_batch"], flush=True)

    # /search latency at this corpus size
    from vaultd.store import Store

    store = Store(root / ".vaultd" / "index.db")
    chunks = store.counts()["chunks"]
    store.close()
    queries = [json.loads(line)["query"] for line in
               (args.data / "scifact-queries-train.jsonl").read_text().splitlines()[:200]]
    for q in queries[:10]:
        api.call("POST", "/search", {"query": q, "k": 10})
    lat = []
    for q in queries:
        t = time.perf_counter()
        api.call("POST", "/search", {"query": q, "k": 10})
        lat.append((time.perf_counter() - t) * 1000)
    results["search_ms"] = {"chunks": chunks, "p50": round(pct(lat, 0.5), 2),
                            "p95": round(pct(lat, 0.95), 2), "n": len(lat)}
    print("search:", results["search_ms"], flush=True)

    # CLI wall time with the daemon up
    wall = []
    for q in queries[:15]:
        t = time.perf_counter()
        out = vaultd("--vault", str(root), "search", q, "--json", env=env)
        wall.append((time.perf_counter() - t) * 1000)
        assert out.returncode == 0 and "no daemon running" not in out.stderr, out.stderr
    bare = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t) * 1000)
    results["cli_search_ms"] = {"p50": round(statistics.median(wall), 1),
                                "min": round(min(wall), 1),
                                "python_startup_p50": round(statistics.median(bare), 1)}
    print("cli:", results["cli_search_ms"], flush=True)

    # edit → searchable latency (new entries appended to a daily log, found via /search)
    debounce = 0.3
    daily = root / "episodic" / "2026-11-22.md"
    daily.parent.mkdir(exist_ok=True)
    daily.write_text("# 2026-11-22\n", encoding="utf-8")
    api.idle()
    latencies = []
    for i in range(args.edits):
        word = f"zqxmarker{i}w{random.randrange(10**6)}"
        with open(daily, "a", encoding="utf-8") as fh:
            fh.write(f"\n## 10:{i:02d} — note {i}\nDeployed build {word} to staging.\n")
        t = time.perf_counter()
        while True:
            hits = api.call("POST", "/search", {"query": word, "k": 1, "mode": "bm25"})["hits"]
            if hits and word in hits[0]["text"]:
                break
            if time.perf_counter() - t > 10:
                raise TimeoutError(word)
            time.sleep(0.005)
        latencies.append((time.perf_counter() - t) * 1000)
        time.sleep(0.05)
    results["edit_to_searchable_ms"] = {"p50": round(pct(latencies, 0.5), 1),
                                        "p95": round(pct(latencies, 0.95), 1),
                                        "n": len(latencies), "debounce_ms": debounce * 1000}
    print("edit->searchable:", results["edit_to_searchable_ms"], flush=True)

    # a one-line edit in a 5,000-note vault. The first edit of a note also re-chunks it with
    # the current chunker (the SciFact index may predate it); the second shows the steady state.
    note = sorted(root.glob("*.md"))[100]
    edits = []
    for label in ("first edit", "second edit"):
        api.idle()
        lines = note.read_text(encoding="utf-8").splitlines()
        lines[-1] = lines[-1] + f" ({label})"
        note.write_text("\n".join(lines) + "\n", encoding="utf-8")
        time.sleep(debounce + 0.2)
        api.idle()
        edits.append(f"{label}: " + api.call("GET", "/status")["last_batch"])
    results["one_line_edit"] = edits
    print("one-line edit:", edits, flush=True)

    # 2,000 files copied in at once
    pages = work / "tldr"
    with tarfile.open(args.data / "tldr-pages-en.tar.gz") as tar:
        tar.extractall(pages, filter="data")
    files = sorted(p for p in pages.rglob("*.md"))[:2000]
    target = root / "copied"
    target.mkdir()
    t = time.perf_counter()
    for i, src in enumerate(files):
        shutil.copyfile(src, target / f"{i:04d}-{src.name}")
    copy_s = time.perf_counter() - t
    time.sleep(debounce + 0.2)
    waited = api.idle(timeout=1800)
    store = Store(root / ".vaultd" / "index.db")
    indexed = store.conn.execute(
        "SELECT count(*) FROM files WHERE path GLOB 'copied/*'").fetchone()[0]
    skipped = store.conn.execute(
        "SELECT count(*) FROM skipped WHERE path GLOB 'copied/*'").fetchone()[0]
    store.close()
    results["copy_in"] = {"files": len(files), "indexed": indexed, "skipped": skipped,
                          "missed": len(files) - indexed - skipped,
                          "copy_seconds": round(copy_s, 2),
                          "seconds_until_idle": round(copy_s + waited, 1),
                          "last_batch": api.call("GET", "/status")["last_batch"]}
    print("copy-in:", results["copy_in"], flush=True)

    # idle CPU
    api.idle()
    cpu0, t = proc_cpu_seconds(api.pid), time.perf_counter()
    time.sleep(args.idle_seconds)
    cpu1, elapsed = proc_cpu_seconds(api.pid), time.perf_counter() - t
    results["idle_cpu_percent"] = round(100 * (cpu1 - cpu0) / elapsed, 3)
    results["memory_mb"] = {k: round(v, 1) for k, v in proc_mem_mb(api.pid).items()}
    print("idle cpu %:", results["idle_cpu_percent"], "memory:", results["memory_mb"], flush=True)

    vaultd("--vault", str(root), "stop")
    (OUT / "daemon.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
