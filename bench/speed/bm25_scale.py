"""BM25 at 100k+ chunks: FTS5 against the daemon's in-memory copy (vaultd.bm25), same answers?

    python bench/speed/bm25_scale.py [--copies 10] [--queries 200]

A quick stand-in for scale_latency's 100k vault when there is no time to build one through the
indexer: the SciFact index's chunks (bench/quality/eval_scifact.py), copied `copies` times
into a fresh index (each copy's path and heading marked " (rN)", texts unchanged, so every
term's document frequency scales with the copies, as in scale_latency's replicas), FTS5 rows
only. Measures per
query: FTS5 (`Store.fts`, what the library and the daemon used) and `Bm25Index.search`, checks
they rank the same rows, and the copy's load time and memory. Writes bench/out/bm25_scale.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, Contention, latency, machine, mem_mb, write_json  # noqa: E402

from vaultd.bm25 import Bm25Index  # noqa: E402
from vaultd.evaluation import load_queries  # noqa: E402
from vaultd.search import fts_query, fts_terms  # noqa: E402
from vaultd.store import Filters, Store  # noqa: E402

SCIFACT_DB = OUT / "scifact" / "vault" / ".vaultd" / "index.db"


def build(copies: int) -> Path:
    path = OUT / "bm25_scale" / f"x{copies}" / "index.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(path)  # the real schema
    conn = store.conn
    conn.execute("ATTACH DATABASE ? AS src", (f"file:{SCIFACT_DB}?mode=ro",))
    conn.execute("BEGIN")
    for r in range(copies):
        mark = "" if r == 0 else f" (r{r})"
        conn.execute(
            "INSERT INTO chunks(id, path, entry_id, type, heading, start_line, end_line, text, "
            "hash, date, archived) SELECT id || ?, ? || path, entry_id, type, heading || ?, "
            "start_line, end_line, text, hash || ?, date, archived FROM src.chunks "
            "ORDER BY rowid", (mark, f"r{r}-" if r else "", mark, mark))
    conn.execute("INSERT INTO chunk_fts(rowid, heading, text) "
                 "SELECT rowid, heading, text FROM chunks")
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")
    store.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pool", type=int, default=50)
    args = parser.parse_args(argv)
    queries = [q.query for q in load_queries(args.data / "scifact-queries-train.jsonl")]
    queries = queries[:args.queries]
    results: dict[str, Any] = {"machine": machine(), "sizes": {}}
    for copies in args.copies:
        t = time.perf_counter()
        path = build(copies)
        built = time.perf_counter() - t
        store = Store(path)
        chunks = store.counts()["chunks"]
        rss0 = mem_mb()["VmRSS"]
        index = Bm25Index()
        t = time.perf_counter()
        index.load(store)
        load_s = time.perf_counter() - t
        rss1 = mem_mb()["VmRSS"]
        fts_ms, mem_ms, same, matched = [], [], 0, []
        with Contention() as contention:
            for q in queries:
                t0 = time.perf_counter()
                expected = store.fts(fts_query(q), args.pool, Filters())
                t1 = time.perf_counter()
                got = index.search(store, fts_terms(q), args.pool, include_archive=False)
                t2 = time.perf_counter()
                fts_ms.append((t1 - t0) * 1000)
                mem_ms.append((t2 - t1) * 1000)
                same += got is not None and [r for r, _ in got] == [r for r, _ in expected]
        for q in queries[:50]:  # the share of chunks an OR query matches
            matched.append(len(store.fts(fts_query(q), 10 ** 7, Filters())) / chunks)
        entry = {"chunks": chunks, "build_s": round(built, 1), "load_s": round(load_s, 2),
                 "memory_mb": round(index.nbytes / 2**20, 1),
                 "rss_growth_mb": round(rss1 - rss0, 1),
                 "fts5_ms": latency(fts_ms), "in_memory_ms": latency(mem_ms),
                 "same_ranking": f"{same}/{len(queries)}",
                 "matched_share_median": round(statistics.median(matched), 3),
                 "other_cores": contention.other_cores}
        print(copies, entry, file=sys.stderr, flush=True)
        results["sizes"][str(chunks)] = entry
        store.close()
    write_json(OUT / "bm25_scale.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
