"""Query latency at 1k, 10k and 100k chunks: the library, the daemon, and the other stacks.

    python bench/speed/scale_latency.py [--sizes 1000 10000 100000] [--reps 3] [--skip-others]

The corpora are SciFact scaled synthetically. 1k: the first SciFact notes; 10k: all of SciFact
(10,835 chunks, the real vectors); 100k: SciFact plus replicas of its notes, each replica's
title marked " (rN)" (so its chunks hash differently) and its vectors the originals plus small
Gaussian noise (cosine ≈ 0.95 to the original), renormalised. Each corpus is a real vault on
disk indexed by vaultd's own Indexer with an embedder that looks the vectors up instead of
running the model (a chunk whose text isn't in the SciFact index — it was built by an older
chunker — is embedded once by the real model and shared by its replicas), so files,
chunks, FTS rows and vectors are exactly what `vaultd index` would store, and the daemon's
start-up reconcile finds nothing to do.

For each size: `Vault.search` (hybrid, k = 10; in-process, warm model) and the daemon's
`/search` over HTTP (`python -m vaultd start`, port from .vaultd/daemon.json), p50/p95 of 200
SciFact queries per run, median and spread over runs; where a query's time goes (embed, KNN,
FTS, fusion, rows); the daemon's RSS; then chromadb (with its embedding function passed
explicitly, i.e. warm) and sentence-transformers + numpy over the same vectors and the same
queries. Writes bench/out/scale_latency.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import (  # noqa: E402
    CHROMA_PY,
    DEFAULT_DATA,
    OUT,
    ST_PY,
    Contention,
    DaemonApi,
    idle_cpu_percent,
    latency,
    least_disturbed,
    machine,
    mem_mb,
    run_worker,
    summary,
    vaultd_cli,
    wait_for_idle,
    wait_quiet,
    write_json,
)

from vaultd.bm25 import Bm25Index  # noqa: E402
from vaultd.embedder import DEFAULT_MODEL, Embedder, OnnxEmbedder, builtin_profiles  # noqa: E402
from vaultd.evaluation import load_queries  # noqa: E402
from vaultd.search import _hit, _rrf, fts_query, fts_terms  # noqa: E402
from vaultd.store import Filters  # noqa: E402
from vaultd.vault import cache_dir, init_vault, open_vault  # noqa: E402
from vaultd.vectors import VectorIndex  # noqa: E402

WORK = OUT / "scale"
SCIFACT = OUT / "scifact" / "vault"
NOISE_SIGMA = 0.0168  # per dimension: cos(original, noisy) ≈ 1/sqrt(1 + 384σ²) ≈ 0.95
MARK = re.compile(r" \(r\d+\)")


class LookupEmbedder(Embedder):
    """Vectors looked up by text (replica marks removed; replicas get seeded noise); unknown
    texts go to the real model. Same identity as the default model, so the index is one
    `vaultd` accepts."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
        super().__init__(profile, batch_size=256)
        self.vectors = vectors
        self.real = OnnxEmbedder(profile, threads=2, batch_size=8)
        self.misses = 0

    def file_hash(self) -> str:
        return self.real.file_hash()  # the default is built, not shipped: its hash is the file's

    def count_tokens(self, text: str) -> int:
        return self.real.count_tokens(text)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        keys = [MARK.sub("", t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.vectors))
        if missing:  # embedded once by the real model, then shared by every replica
            self.misses += len(missing)
            for key, vec in zip(missing, self.real.embed(missing)):
                self.vectors[key] = vec
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, (text, key) in enumerate(zip(texts, keys)):
            vec = self.vectors[key]
            if key != text:
                seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
                vec = vec + np.random.default_rng(seed).normal(0, NOISE_SIGMA, self.dims)
                vec = vec / np.linalg.norm(vec)
            out[i] = vec
        return out


def scifact_vectors() -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """embed text → vector, and note → chunk count, from the SciFact index (read-only)."""
    import sqlean

    conn = sqlean.connect(f"file:{SCIFACT / '.vaultd' / 'index.db'}?mode=ro", uri=True)
    vectors, per_note = {}, {}
    for heading, text, path, blob in conn.execute(
            "SELECT c.heading, c.text, c.path, e.vector FROM chunks c "
            "JOIN embeddings e ON e.hash = c.hash"):
        vectors[f"{heading}\n{text}" if heading else text] = np.frombuffer(blob, np.float32)
        per_note[path] = per_note.get(path, 0) + 1
    conn.close()
    return vectors, per_note


def replica(text: str, r: int) -> str:
    """The note with its frontmatter title and its first H1 marked " (rN)"."""
    text = re.sub(r'^(title: "[^\n]*?)("\s*)$', rf"\1 (r{r})\2", text, count=1, flags=re.M)
    return re.sub(r"^(# [^\n]*?)(\s*)$", rf"\1 (r{r})\2", text, count=1, flags=re.M)


def build_vault(size: int, vectors: dict[str, np.ndarray], per_note: dict[str, int]
                ) -> dict[str, Any]:
    """A vault of about `size` chunks (see the module doc), indexed; reused when present."""
    root = WORK / f"v{size}"
    done = root / ".vaultd" / "built.json"
    if done.exists():
        return json.loads(done.read_text())
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    init_vault(root)
    notes = sorted(p for p in per_note if p != "MEMORY.md")
    planned, r = 0, 0
    while planned < size:
        for name in notes:
            if planned >= size:
                break
            text = (SCIFACT / name).read_text(encoding="utf-8")
            if r == 0:
                (root / name).write_text(text, encoding="utf-8")
            else:
                (root / f"r{r}-{name}").write_text(replica(text, r), encoding="utf-8")
            planned += per_note[name]
        r += 1
    embedder = LookupEmbedder(vectors)
    started = time.perf_counter()
    with open_vault(root, embedder=embedder) as vault:
        report = vault.index()
        counts = vault.store.counts()
    info = {"target": size, "chunks": counts["chunks"], "notes": counts["notes"],
            "replicas": r, "index_seconds": round(time.perf_counter() - started, 1),
            "embedded_by_model": embedder.misses, "report": report.summary()}
    done.write_text(json.dumps(info))
    return info


# ---------------------------------------------------------------------------- vaultd


def query_run(ask: Any, queries: list[str], pids: tuple[int, ...] = ()) -> dict[str, Any]:
    """One run: 5 warm-up queries, then p50/p95 over `queries`; again if disturbed. `pids`: the
    daemon answering, whose CPU is the measurement's own, not other processes'."""
    def measure() -> dict[str, Any]:
        wait_quiet()
        for q in queries[:5]:
            ask(q)
        lat = []
        with Contention(pids) as contention:
            for q in queries:
                t = time.perf_counter()
                ask(q)
                lat.append((time.perf_counter() - t) * 1000)
        return {**latency(lat), "other_cores": contention.other_cores}

    return least_disturbed(measure)


def library_latency(root: Path, queries: list[str], reps: int) -> dict[str, Any]:
    """`Vault.search` p50/p95 per run (hybrid and vector), and a per-part breakdown."""
    out: dict[str, Any] = {}
    with open_vault(root, daemon="never") as vault:
        vault.embedder.load()
        for mode in ("hybrid", "vector", "bm25"):
            runs = [query_run(lambda q, m=mode: vault.search(q, k=10, mode=m), queries)
                    for _ in range(reps if mode == "hybrid" else 1)]
            out[mode] = runs_summary(runs)
        out["breakdown_ms"] = breakdown(vault, queries)
    return out


def runs_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"p50": summary([r["p50"] for r in runs], 2),
            "p95": summary([r["p95"] for r in runs], 2), "n_per_run": runs[0]["n"],
            "other_cores": [r.get("other_cores") for r in runs]}


def breakdown(vault: Any, queries: list[str]) -> dict[str, float]:
    """Median milliseconds of each step of a hybrid query, run step by step as Searcher does."""
    store, emb = vault.store, vault.embedder
    pool = max(vault.settings.search.candidates, 30)
    parts: dict[str, list[float]] = {k: [] for k in
                                     ("embed", "knn", "fts", "fusion", "rows+hits", "total",
                                      "knn in memory (daemon)", "bm25 in memory (daemon)")}
    memory = VectorIndex()
    memory.refresh(store)
    texts = Bm25Index()
    t = time.perf_counter()
    texts.load(store)
    load_s = time.perf_counter() - t
    wait_quiet()
    for q in queries:
        t0 = time.perf_counter()
        qv = np.asarray(emb.embed([q], kind="query")[0], dtype=np.float32)
        t1 = time.perf_counter()
        vh = store.knn(qv.tobytes(), pool, Filters())
        t2 = time.perf_counter()
        memory.knn(store, qv, pool, include_archive=False)
        tm = time.perf_counter()
        parts["knn in memory (daemon)"].append((tm - t2) * 1000)
        th = store.fts(fts_query(q), pool, Filters())
        t3 = time.perf_counter()
        texts.search(store, fts_terms(q), pool, include_archive=False)
        parts["bm25 in memory (daemon)"].append((time.perf_counter() - t3) * 1000)
        t3 = time.perf_counter()
        scores = _rrf([(vh, 1.0), (th, 1.0)], 60)
        t4 = time.perf_counter()
        rows = store.chunks_by_rowid(scores)
        ranked = sorted(rows, key=lambda r: (-scores[r], rows[r].path, rows[r].start_line))
        _ = [_hit(rows[r], scores[r]) for r in ranked[:10]]
        t5 = time.perf_counter()
        for key, a, b in (("embed", t0, t1), ("knn", t1, t2), ("fts", tm, t3),
                          ("fusion", t3, t4), ("rows+hits", t4, t5)):
            parts[key].append((b - a) * 1000)
        parts["total"].append(((t5 - t0) - (tm - t2)) * 1000)  # the library's path
    out = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    out.update({"bm25 in memory: load s": round(load_s, 2),
                "bm25 in memory: MB": round(texts.nbytes / 2**20, 1),
                "vectors in memory: MB": round(memory.nbytes / 2**20, 1)})
    return out


IDLE_SECONDS = 30.0
SETTLE_SECONDS = 20.0


def daemon_latency(root: Path, queries: list[str], reps: int) -> dict[str, Any]:
    env = {"VAULTD_SERVER_PORT": "0"}
    vaultd_cli("--vault", str(root), "stop")
    started = time.perf_counter()
    proc = vaultd_cli("--vault", str(root), "start", env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"daemon did not start: {proc.stderr}")
    out: dict[str, Any] = {"start_s": round(time.perf_counter() - started, 2)}
    try:
        api = DaemonApi(root)
        api.wait_idle()
        out["start_batch"] = api.call("GET", "/status")["last_batch"]
        out["rss_after_start_mb"] = mem_mb(api.pid)
        time.sleep(SETTLE_SECONDS)  # the in-memory BM25 loads on a thread after start
        # (at 100k chunks that takes 14-19 s, sometimes longer than the settling time)
        out["settle_s"] = SETTLE_SECONDS + wait_for_idle(api.pid)
        out["rss_settled_mb"] = mem_mb(api.pid)
        out["idle_cpu_percent"] = idle_cpu_percent(api.pid, IDLE_SECONDS)
        runs = [query_run(lambda q: api.call("POST", "/search", {"query": q, "k": 10}), queries,
                          (int(api.pid),)) for _ in range(reps)]
        out["hybrid"] = runs_summary(runs)
        out["rss_after_queries_mb"] = mem_mb(api.pid)
        time.sleep(3)  # the daemon trims its heap once searches pause for 2 s
        out["rss_after_queries_idle_3s_mb"] = mem_mb(api.pid)
    finally:
        vaultd_cli("--vault", str(root), "stop")
    return out


# ---------------------------------------------------------------------------- other stacks


def export(root: Path) -> dict[str, str]:
    """The scale index's vectors (.npy), embed texts and ids, for the other stacks."""
    vec_file = root.parent / f"{root.name}-vectors.npy"
    text_file = root.parent / f"{root.name}-texts.json"
    ids_file = root.parent / f"{root.name}-ids.json"
    if not vec_file.exists():
        import sqlean

        conn = sqlean.connect(f"file:{root / '.vaultd' / 'index.db'}?mode=ro", uri=True)
        rows = conn.execute("SELECT c.rowid, c.heading, c.text, e.vector FROM chunks c "
                            "JOIN embeddings e ON e.hash = c.hash ORDER BY c.rowid").fetchall()
        conn.close()
        np.save(vec_file, np.stack([np.frombuffer(r[3], np.float32) for r in rows]))
        text_file.write_text(json.dumps([f"{h}\n{t}" if h else t for _, h, t, _ in rows]))
        ids_file.write_text(json.dumps([str(r[0]) for r in rows]))
    return {"vectors": str(vec_file), "texts": str(text_file),
            "ids": json.loads(ids_file.read_text())}


def with_st(stacks: Any) -> Any:
    from compare_stacks import with_st

    return with_st(stacks)


def other_stacks(root: Path, query_file: Path, reps: int, st_model: str) -> dict[str, Any]:
    job = {**export(root), "queries": str(query_file), "latency_queries": 200}
    out: dict[str, Any] = {}
    for stack, py, extra, env in with_st((
            ("chroma-warm", CHROMA_PY, {}, None),
            ("st", ST_PY, {"model_dir": st_model},
             {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}))):
        runs = [run_worker(py, stack, "scale",
                           {**job, **extra, "workdir": str(WORK / f"{stack}-{root.name}-db")},
                           WORK, env=env) for _ in range(reps)]
        out[stack] = {**runs_summary([{**r["query_ms"], "other_cores": r["other_cores"]}
                                      for r in runs]),
                      "load_vectors_s": summary([r["load_vectors_seconds"] for r in runs], 2),
                      "rss_mb": summary([r["memory_mb"]["VmHWM"] for r in runs], 1)}
        print(f"  {stack}: p50 {out[stack]['p50']['median']} ms", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-others", action="store_true")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--daemon-only", action="store_true",
                        help="only the daemon's /search (no library runs, no breakdown)")
    parser.add_argument("--out", type=Path, default=OUT / "scale_latency.json",
                        help="result file (e.g. for a prototype vaultd on PYTHONPATH)")
    args = parser.parse_args(argv)
    if not (SCIFACT / ".vaultd" / "index.db").exists():
        sys.exit("index the SciFact vault first: python bench/quality/eval_scifact.py")
    WORK.mkdir(parents=True, exist_ok=True)
    queries = [q.query for q in load_queries(args.data / "scifact-queries-train.jsonl")]
    queries = queries[:args.queries]
    query_file = WORK / "queries.json"
    query_file.write_text(json.dumps(queries))
    path = args.out
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    results.setdefault("sizes", {})
    vectors, per_note = scifact_vectors()
    st_model = ""
    if not args.skip_others:
        from compare_stacks import HAVE_ST, st_model_dir

        st_model = st_model_dir() if HAVE_ST else ""
    for size in args.sizes:
        info = build_vault(size, vectors, per_note)
        print(f"{size}: {info}", file=sys.stderr, flush=True)
        if args.build_only:
            continue
        root = WORK / f"v{size}"
        entry: dict[str, Any] = {"corpus": info}
        if not args.daemon_only:
            entry["library"] = library_latency(root, queries, args.reps)
            print(f"  library: {entry['library']['hybrid']['p50']} "
                  f"{entry['library']['breakdown_ms']}", file=sys.stderr, flush=True)
        entry["daemon"] = daemon_latency(root, queries, args.reps)
        print(f"  daemon: {entry['daemon']['hybrid']['p50']}", file=sys.stderr, flush=True)
        if not args.skip_others:
            entry["others"] = other_stacks(root, query_file, args.reps, st_model)
        elif "others" in results["sizes"].get(str(size), {}):  # keep the last run's
            entry["others"] = results["sizes"][str(size)]["others"]
            entry["others_from_an_earlier_run"] = True
        results["sizes"][str(size)] = entry
        write_json(path, results)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
