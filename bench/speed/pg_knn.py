"""KNN on the PostgreSQL backend: the exact scan against the HNSW index, at N vectors.

    python bench/speed/pg_knn.py [--rows 20000] [--dims 384] [--queries 20]

Starts a pgserver (pip install pgserver) under bench/out/pg_knn, fills a fresh index through
the store (`PgStore.write_file`, random unit vectors), then times `knn` (k = 50, the search's
candidates) with the exact scan, builds the HNSW index the store makes past HNSW_ROWS (m 16,
ef_construction 64), and times `knn` again, with its recall@50 against the exact answer.
What docs/architecture.md's threshold rests on. Writes bench/out/pg_knn.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import OUT, machine, pg_database, write_json  # noqa: E402

from vaultd.store import ChunkRecord, FileRecord, Filters, open_index  # noqa: E402


def timed(store: object, queries: np.ndarray, k: int) -> tuple[float, list[set[int]]]:
    seconds, found = [], []
    for q in queries:
        started = time.perf_counter()
        hits = store.knn(q.tobytes(), k, Filters())  # type: ignore[attr-defined]
        seconds.append(time.perf_counter() - started)
        found.append({h.rowid for h in hits})
    return 1000 * statistics.median(seconds), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("-k", type=int, default=50)
    args = parser.parse_args(argv)

    import psycopg

    folder = OUT / "pg_knn"
    server, url, _ = pg_database(folder / "pg", "pg_knn")

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(args.rows, args.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = open_index(folder / "index.db", url)
    from vaultd.store.postgres import files

    files.HNSW_ROWS = args.rows + 1  # this run builds the index itself, below
    store.ensure_model({"id": "bench", "dims": args.dims})
    started = time.perf_counter()
    per_file = 100
    for start in range(0, args.rows, per_file):
        with store.transaction():
            store.write_file(
                FileRecord(f"notes/{start}.md", 1, 1, str(start)), [],
                [ChunkRecord(f"c{i}", "e", "H", i, i, f"text {i}", f"h{i}", None, ())
                 for i in range(start, min(start + per_file, args.rows))],
                {f"h{i}": vectors[i].tobytes()
                 for i in range(start, min(start + per_file, args.rows))})
    fill = time.perf_counter() - started
    queries = rng.normal(size=(args.queries, args.dims)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact_ms, exact = timed(store, queries, args.k)
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX chunk_vectors_hnsw ON chunk_vectors USING hnsw "
                     f"(embedding vector_cosine_ops) WITH (m = {files.HNSW_M}, "
                     f"ef_construction = {files.HNSW_EF_CONSTRUCTION})")
        build = time.perf_counter() - started
    hnsw_ms, approx = timed(store, queries, args.k)
    recall = statistics.mean(len(a & e) / len(e) for a, e in zip(approx, exact))
    versions = store.versions()
    store.close()
    server.cleanup()
    result = {"rows": args.rows, "dims": args.dims, "k": args.k, "queries": args.queries,
              "fill_seconds": round(fill, 1), "exact_p50_ms": round(exact_ms, 1),
              "hnsw_build_seconds": round(build, 1), "hnsw_p50_ms": round(hnsw_ms, 1),
              "hnsw_recall_at_k": round(recall, 4), "versions": versions, "machine": machine()}
    print(result)
    write_json(OUT / "pg_knn.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
