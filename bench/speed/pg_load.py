"""Three daemons on one PostgreSQL index under load, and /search at 10k chunks on both backends.

    python bench/speed/pg_load.py load [--seconds 300] [--searchers 20] [--daemons 3]
                                       [--write-every 2] [--out bench/out/pg_load.json]
    python bench/speed/pg_load.py scale [--queries 100] [--reps 2] [--source VAULT]

Both use the SciFact vault (`python bench/quality/eval_scifact.py` extracts and indexes it
under bench/out/scifact; 5,184 notes) and a pgserver (pip install pgserver: PostgreSQL 16 with
pgvector) under bench/out/pg_load. The database is created once and seeded with the vectors of
SciFact's SQLite index, by content hash, as a machine joining a shared index finds them
(eval_scifact.py --reuse-vectors does the same); the first leader then builds the rest of the
index (files, chunks, full text, entries), embedding only what has no vector yet.

load: `--daemons` copies of the vault (one per "machine", each with its own port, token and
`VAULTD_INDEX_URL` naming the one database), the real default model with `[embedding]
threads = 1` per daemon. The first copy's daemon starts alone and leads; the others join as
readers and must embed nothing. Then for `--seconds`: `--searchers` threads, spread round-robin
over the daemons, each on one keep-alive connection with that daemon's token, ask SciFact train
queries back to back (POST /search, hybrid, k = 10); one writer appends an entry with a unique
marker word to the leader's daily log every `--write-every` s through the leader's API (MCP
`memory_write` at POST /mcp, which goes through vaultd's edit gate and indexes the file), and a
prober asks every daemon for each new marker every 0.25 s until it is found (time from the
write's answer to searchable, per daemon). At the end every marker is searched on every daemon
(waiting up to 60 s): one not found is a lost write. Per daemon: requests, p50/p95/p99, errors.
Writes bench/out/pg_load.json.

scale: /search p50/p95 of the daemon over `--queries` SciFact queries (after 5 warm-up ones),
alternating `--reps` runs on a SQLite copy of the vault (SciFact's index.db copied beside it)
and on the PostgreSQL one (the database above, its leader alone), threads = 1 for both; and both
index sizes (`pg_database_size` and per table, the SQLite file with its WAL). `--source`: another
vault with a SQLite index, e.g. bench/out/scale/v100000 (scale_latency.py --build-only), in a
database of its own. Writes bench/out/pg_scale.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quality"))  # eval_scifact

from benchlib import (  # noqa: E402
    DEFAULT_DATA,
    OUT,
    Contention,
    DaemonApi,
    latency,
    machine,
    mem_mb,
    pct,
    pg_database,
    pids_cpu_seconds,
    write_json,
)
from leader_takeover import Node, wait_role  # noqa: E402

from vaultd.evaluation import load_queries  # noqa: E402
from vaultd.vault import init_vault  # noqa: E402

WORK = OUT / "pg_load"
SCIFACT = OUT / "scifact" / "vault"
DATABASE = "pg_load"
CONFIG = "[embedding]\nthreads = 1\n\n[server]\nport = 0\n"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
PROBE_EVERY = 0.25
FINAL_WAIT = 60.0


# ---------------------------------------------------------------------------- set-up


def start_server(database: str = DATABASE, source: Path = SCIFACT) -> tuple[Any, str]:
    """The pgserver under WORK/pg and the URL of `database`, created and seeded with the
    vectors of `source`'s SQLite index the first time."""
    server, url, fresh = pg_database(WORK / "pg", database, fresh=False)
    if fresh:
        from eval_scifact import reuse_vectors

        seed = WORK / f"{database}-seed"  # where the store is opened: only its URL matters
        seed.mkdir(parents=True, exist_ok=True)
        init_vault(seed)
        started = time.perf_counter()
        reuse_vectors(source / ".vaultd" / "index.db", seed, url)
        print(f"seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return server, url


def vault_copy(name: str, source: Path = SCIFACT) -> Path:
    """A fresh copy of `source`'s notes (no index) at WORK/name, one "machine"."""
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".vaultd", ".extracted"))
    init_vault(root)
    (root / ".vaultd" / "config.toml").write_text(CONFIG, encoding="utf-8")
    return root


def daemon_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    if url:
        env["VAULTD_INDEX_URL"] = url
    return env


def start_node(root: Path, env: dict[str, str], role: str | None) -> tuple[Node, float]:
    """Start a daemon on `root` and wait until it answers (as `role`, when given) and is idle;
    seconds taken."""
    node = Node(root, env)
    started = time.monotonic()
    node.start()
    if role:
        wait_role(node, role, 600)
    else:
        while node.status() is None:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"the daemon on {root} exited: see {root}.out")
            time.sleep(0.2)
    api = DaemonApi(root)
    # before its first reconcile has begun a leader can look idle for a moment
    while role != "reader" and not api.call("GET", "/status")["first_index_done"]:
        if time.monotonic() - started > 3600:
            raise TimeoutError(f"the daemon on {root} did not finish its first index")
        time.sleep(1)
    api.wait_idle(3600)
    return node, round(time.monotonic() - started, 1)


def settle(node: Node, seconds: float = 20.0) -> None:
    """Give the daemon's start-up work off the request path (the in-memory BM25 copy loads on a
    thread after start) time to finish."""
    time.sleep(seconds)


def postgres_pids(server_dir: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and its children: this server's CPU."""
    try:
        master = int((server_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def database_size(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def table_sizes(url: str) -> dict[str, int]:
    """Bytes of each table of the database with its indexes and TOAST, largest first."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC").fetchall()
    return {str(name): int(size) for name, size in rows}


def index_rows(url: str) -> dict[str, int]:
    """Rows of the shared index: a reader that joined embedded nothing if `embeddings` did not
    grow."""
    import psycopg

    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("files", "chunks", "embeddings"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            out[table] = int(row[0]) if row else -1
    return out


# ---------------------------------------------------------------------------- load


def mcp_write(api: DaemonApi, text: str, number: int) -> dict[str, Any]:
    """MCP `memory_write` over the daemon's /mcp (stateless JSON: one POST per call)."""
    body = {"jsonrpc": "2.0", "id": number, "method": "tools/call",
            "params": {"name": "memory_write", "arguments": {"text": text}}}
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=120)
    try:
        conn.request("POST", "/mcp", body=json.dumps(body), headers={
            "Host": f"localhost:{api.port}", "Authorization": f"Bearer {api.token}",
            "Content-Type": "application/json", **MCP_HEADERS})
        response = conn.getresponse()
        data = json.loads(response.read())
    finally:
        conn.close()
    if response.status != 200 or "error" in data or data["result"].get("isError"):
        raise RuntimeError(f"/mcp memory_write: {response.status} {data}")
    result: dict[str, Any] = data["result"]
    return result


def found(api: DaemonApi, marker: str) -> bool:
    hits = api.call("POST", "/search", {"query": marker, "k": 10})["hits"]
    return any(marker in hit["text"] for hit in hits)


class Load:
    """The run's threads and what they saw."""

    def __init__(self, roots: list[Path], queries: list[str], searchers: int,
                 write_every: float, run_id: str) -> None:
        self.roots, self.queries, self.searchers = roots, queries, searchers
        self.write_every, self.run_id = write_every, run_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[list[float]] = [[] for _ in roots]
        self.errors: list[list[str]] = [[] for _ in roots]
        self.reconnects = [0 for _ in roots]
        self.written: dict[str, float] = {}  # marker -> monotonic time its write was answered
        self.write_errors: list[str] = []
        self.write_ms: list[float] = []
        self.visible: dict[tuple[str, int], float] = {}  # (marker, daemon) -> seconds
        self.probe_errors: list[str] = []

    def searcher(self, number: int) -> None:
        daemon = number % len(self.roots)
        api = DaemonApi(self.roots[daemon], timeout=60)
        i = number * 37
        lat, errors = self.latencies[daemon], self.errors[daemon]
        while not self.stop.is_set():
            query = self.queries[i % len(self.queries)]
            i += 1
            started = time.perf_counter()
            try:
                api.call("POST", "/search", {"query": query, "k": 10})
            except Exception as exc:  # every failure is counted, with its text
                with self.lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                api.conn.close()
                continue
            with self.lock:
                lat.append((time.perf_counter() - started) * 1000)
        with self.lock:
            self.reconnects[daemon] += api.reconnects

    def writer(self) -> None:
        api = DaemonApi(self.roots[0])
        number, due = 0, time.monotonic()
        while not self.stop.is_set():
            due += self.write_every
            marker = f"zqload{self.run_id}w{number:04d}"
            text = f"Load test entry {number}: the marker {marker} was written by the writer."
            started = time.perf_counter()
            try:
                mcp_write(api, text, number)
            except Exception as exc:
                with self.lock:
                    self.write_errors.append(f"{marker}: {type(exc).__name__}: {exc}"[:300])
            else:
                with self.lock:
                    self.written[marker] = time.monotonic()
                    self.write_ms.append((time.perf_counter() - started) * 1000)
            number += 1
            self.stop.wait(max(0.0, due - time.monotonic()))

    def prober(self) -> None:
        apis = [DaemonApi(root, timeout=60) for root in self.roots]
        while not self.stop.is_set():
            with self.lock:
                pending = [(m, d, t) for m, t in self.written.items()
                           for d in range(len(apis)) if (m, d) not in self.visible]
            for marker, daemon, at in pending:
                try:
                    if found(apis[daemon], marker):
                        with self.lock:
                            self.visible[(marker, daemon)] = time.monotonic() - at
                except Exception as exc:
                    with self.lock:
                        self.probe_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    apis[daemon].conn.close()
            self.stop.wait(PROBE_EVERY)

    def final_check(self) -> dict[str, list[str]]:
        """Markers not found on each daemon after up to FINAL_WAIT s (lost writes)."""
        apis = [DaemonApi(root, timeout=60) for root in self.roots]
        missing = {str(d): [m for m in self.written] for d in range(len(apis))}
        deadline = time.monotonic() + FINAL_WAIT
        while any(missing.values()) and time.monotonic() < deadline:
            for d, api in enumerate(apis):
                missing[str(d)] = [m for m in missing[str(d)] if not found(api, m)]
            if any(missing.values()):
                time.sleep(1)
        return missing


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    queries = [q.query for q in load_queries(args.data / "scifact-queries-train.jsonl")]
    server, url = start_server()
    nodes: list[Node] = []
    out: dict[str, Any] = {"machine": machine(), "seconds": args.seconds,
                           "searchers": args.searchers, "daemons": args.daemons,
                           "write_every_s": args.write_every, "threads_per_daemon": 1,
                           "model": "default (all-MiniLM-L6-v2 int8, ONNX)",
                           "write_path": "MCP memory_write at the leader's POST /mcp"}
    try:
        roots = [vault_copy(chr(ord("a") + i)) for i in range(args.daemons)]
        env = daemon_env(url)
        leader, took = start_node(roots[0], env, "leader")
        nodes.append(leader)
        status = DaemonApi(roots[0]).call("GET", "/status")
        out["leader_start"] = {"seconds": took, "last_batch": status["last_batch"]}
        print(f"leader up in {took} s: {status['last_batch']}", file=sys.stderr, flush=True)
        out["rows_leader_alone"] = index_rows(url)
        out["readers_start"] = []
        for root in roots[1:]:
            node, took = start_node(root, env, "reader")
            nodes.append(node)
            status = DaemonApi(root).call("GET", "/status")
            out["readers_start"].append({"seconds": took, "last_batch": status["last_batch"],
                                         "batches": status["batches"]})
            print(f"reader up in {took} s: {status['last_batch']}", file=sys.stderr, flush=True)
        out["rows_readers_joined"] = index_rows(url)
        settle(nodes[0], 20)
        mcp_write(DaemonApi(roots[0]), "Load test warm-up entry.", 0)  # loads the MCP SDK once
        time.sleep(3)
        pids = [int(n.proc.pid) for n in nodes if n.proc is not None]
        pg = postgres_pids(WORK / "pg")
        load = Load(roots, queries, args.searchers, args.write_every,
                    time.strftime("%H%M%S"))
        threads = [threading.Thread(target=load.searcher, args=(i,), daemon=True)
                   for i in range(args.searchers)]
        threads += [threading.Thread(target=load.writer, daemon=True),
                    threading.Thread(target=load.prober, daemon=True)]
        cpu_before = [pids_cpu_seconds([p]) for p in pids]
        pg_before = pids_cpu_seconds(pg)
        client_before = time.process_time()
        with Contention(tuple(pids + pg)) as contention:
            started = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            load.stop.set()
            for t in threads:
                t.join(120)
            wall = time.monotonic() - started
        out["wall_s"] = round(wall, 1)
        out["client_cpu_s"] = round(time.process_time() - client_before, 1)
        out["other_cores"] = contention.other_cores
        out["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        out["per_daemon"] = {}
        for d, root in enumerate(roots):
            lat = load.latencies[d]
            entry: dict[str, Any] = {"role": "leader" if d == 0 else "reader",
                                     "requests": len(lat), "errors": len(load.errors[d]),
                                     "error_samples": load.errors[d][:5],
                                     "reconnects": load.reconnects[d],
                                     "requests_per_s": round(len(lat) / wall, 1),
                                     "cpu_s": round(pids_cpu_seconds([pids[d]])
                                                    - cpu_before[d], 1),
                                     "rss_mb": mem_mb(pids[d])}
            if lat:
                entry.update({**latency(lat), "p99": round(pct(lat, 0.99), 3)})
            out["per_daemon"][root.name] = entry
        out["postgres_cpu_s"] = round(pids_cpu_seconds(pg) - pg_before, 1)
        missing = load.final_check()
        visible = {d: [s for (m, dd), s in load.visible.items() if dd == d]
                   for d in range(len(roots))}
        every = [s for v in visible.values() for s in v]
        out["writes"] = {
            "written": len(load.written), "write_errors": len(load.write_errors),
            "write_error_samples": load.write_errors[:5],
            "write_ms": latency(load.write_ms) if load.write_ms else None,
            "lost": {roots[int(d)].name: len(v) for d, v in missing.items()},
            "lost_markers": {roots[int(d)].name: v[:10] for d, v in missing.items() if v},
            "probe_errors": len(load.probe_errors), "probe_error_samples": load.probe_errors[:5],
            "to_searchable_s": {
                "all": _seconds(every),
                **{roots[d].name: _seconds(v) for d, v in visible.items()}},
            "seen_by_prober_during_run": len(every)}
        out["lifecycle_after"] = DaemonApi(roots[0]).call("GET", "/status")["lifecycle"]
        out["roles_after"] = [n.role() for n in nodes]
        out["database_bytes"] = database_size(url)
    finally:
        for node in nodes:
            node.stop()
        server.cleanup()
    return out


def _seconds(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": round(pct(values, 0.5), 2), "p95": round(pct(values, 0.95), 2),
            "max": round(max(values), 2), "n": len(values)}


# ---------------------------------------------------------------------------- scale


def search_run(root: Path, pid: int, queries: list[str]) -> dict[str, Any]:
    api = DaemonApi(root)
    for q in queries[:5]:
        api.call("POST", "/search", {"query": q, "k": 10})
    lat = []
    with Contention((pid,)) as contention:
        for q in queries:
            started = time.perf_counter()
            api.call("POST", "/search", {"query": q, "k": 10})
            lat.append((time.perf_counter() - started) * 1000)
    return {**latency(lat), "other_cores": contention.other_cores}


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    queries = [q.query for q in load_queries(args.data / "scifact-queries-train.jsonl")]
    queries = queries[:args.queries]
    source: Path = args.source.resolve()
    database = DATABASE if source == SCIFACT else f"pg_load_{source.name}"
    server, url = start_server(database, source)
    out: dict[str, Any] = {"machine": machine(), "source": source.name, "database": database,
                           "queries": len(queries), "reps": args.reps, "threads_per_daemon": 1}
    nodes: dict[str, Node] = {}
    try:
        named = source != SCIFACT
        lite = vault_copy(f"{source.name}-sqlite" if named else "sqlite", source)
        shutil.copy2(source / ".vaultd" / "index.db", lite / ".vaultd" / "index.db")
        node, took = start_node(lite, daemon_env(""), None)
        nodes["sqlite"] = node
        out["sqlite_start_s"] = took
        pg_root = vault_copy(f"{source.name}-pg" if named else "a", source)
        node, took = start_node(pg_root, daemon_env(url), "leader")
        nodes["postgres"] = node
        out["postgres_start_s"] = took
        roots = {"sqlite": lite, "postgres": pg_root}
        for name, root in roots.items():
            status = DaemonApi(root).call("GET", "/status")
            out[f"{name}_start_batch"] = status["last_batch"]
            out[f"{name}_counts"] = status.get("progress")
        settle(nodes["postgres"], 20)
        runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgres": []}
        for _ in range(args.reps):
            for name, root in roots.items():
                assert nodes[name].proc is not None
                runs[name].append(search_run(root, nodes[name].proc.pid, queries))
                print(f"{name}: {runs[name][-1]}", file=sys.stderr, flush=True)
        out["search_ms"] = runs
        out["postgres_database_bytes"] = database_size(url)
        out["postgres_table_bytes"] = table_sizes(url)
        index = lite / ".vaultd" / "index.db"
        out["sqlite_file_bytes"] = sum(p.stat().st_size for p in
                                       (index, Path(f"{index}-wal")) if p.exists())
        out["rss_mb"] = {name: mem_mb(node.proc.pid) for name, node in nodes.items()
                         if node.proc is not None}
    finally:
        for node in nodes.values():
            node.stop()
        server.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["load", "scale"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--searchers", type=int, default=20)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--write-every", type=float, default=2.0)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--source", type=Path, default=SCIFACT,
                        help="scale: a vault with a SQLite index (default SciFact's; e.g. "
                             "bench/out/scale/v100000 from scale_latency.py --build-only)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (SCIFACT / ".vaultd" / "index.db").exists():
        sys.exit("index the SciFact vault first: python bench/quality/eval_scifact.py")
    if args.what == "load":
        result = run_load(args)
        write_json(args.out or OUT / "pg_load.json", result)
    else:
        result = run_scale(args)
        write_json(args.out or OUT / "pg_scale.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
