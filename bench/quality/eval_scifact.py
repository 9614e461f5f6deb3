"""Retrieval quality on SciFact: hybrid vs vector vs BM25, with the real default model.

    python bench/quality/eval_scifact.py            # extract, index (first run: minutes), evaluate
    python bench/quality/eval_scifact.py --sweep    # also try hybrid fusion settings
    python bench/quality/eval_scifact.py --data DIR --limit 100
    python bench/quality/eval_scifact.py --postgres      # the same vault, indexed in PostgreSQL
    python bench/quality/eval_scifact.py --index-url postgresql://…   # on a server of yours
    python bench/quality/eval_scifact.py --postgres --out bench/out/pg \
        --reuse-vectors bench/out/scifact/vault/.vaultd/index.db   # the SQLite run's vectors

The vault is extracted to bench/out/scifact/vault and indexed once with `vaultd init` and
`vaultd index` (run as a subprocess and polled); later runs reuse the index. Results are printed
as markdown and written to bench/out/eval_scifact.json (eval_scifact_postgres.json with a
PostgreSQL index: `--postgres` starts a pgserver under bench/out/pg for the run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import vaultd
from vaultd.evaluation import (
    CHUNK_K,
    Query,
    evaluate,
    evaluate_ranker,
    load_queries,
    markdown_table,
    unique_paths,
)
from vaultd.search import Searcher, SearchOptions
from vaultd.store import Filters
from vaultd.vault import Vault, open_vault

BENCH = Path(__file__).resolve().parents[1]
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data"
TARBALL = "scifact-vault.tar.gz"
QUERIES = "scifact-queries-train.jsonl"
# (vector_weight, text_weight) × rrf_k
SWEEP_WEIGHTS = ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))
SWEEP_RRF_K = (10, 60)


def vaultd_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaultd.cli", *args]


def extract(data: Path, work: Path) -> Path:
    vault = work / "vault"
    if not (vault / ".extracted").exists():
        work.mkdir(parents=True, exist_ok=True)
        print(f"extracting {data / TARBALL} -> {work}", flush=True)
        with tarfile.open(data / TARBALL) as tar:
            tar.extractall(work, filter="data")
        (vault / ".extracted").write_text("ok\n")
    return vault


def ensure_index(vault: Path, poll: float) -> dict[str, Any]:
    """`vaultd init` + `vaultd index` in the background, polling the index for progress."""
    subprocess.run(vaultd_cli("init", str(vault)), check=True, stdout=subprocess.DEVNULL)
    log = vault.parent / "index.log"
    report = vault.parent / "index.json"  # a file, not a pipe: the report of 5k new paths
    started = time.perf_counter()  # outgrows a pipe's buffer and the child would block on it
    with open(log, "w") as err, open(report, "w") as out_file:
        proc = subprocess.Popen(vaultd_cli("--vault", str(vault), "index", "--json"),
                                stdout=out_file, stderr=err, text=True)
        last = ""
        while proc.poll() is None:
            time.sleep(poll)
            try:
                with open_vault(vault) as v:
                    line = f"  indexing… {v.store.counts()['notes']} notes indexed"
            except Exception as exc:  # the DB may be busy or mid-migration
                line = f"  indexing… ({exc.__class__.__name__})"
            if line != last:
                print(f"{line} ({time.perf_counter() - started:.0f}s)", flush=True)
                last = line
    if proc.returncode != 0:
        raise SystemExit(f"vaultd index failed ({proc.returncode}); see {log}")
    return json.loads(report.read_text(encoding="utf-8"))


def reuse_vectors(sqlite_index: Path, vault: Path, url: str) -> None:
    """Seed the PostgreSQL index with the SQLite index's vectors, as a machine joining a
    shared index would find them: `vaultd index` then embeds only what is missing. The int8
    model's vectors depend on how texts were batched, so two separate indexing runs differ a
    little; seeded, the two backends rank the very same vectors."""
    from vaultd.store import Store, open_index

    source = Store.open_as_is(sqlite_index)
    identity = source.model_identity()
    assert identity is not None, f"{sqlite_index} has no vectors"
    hashes = sorted(set(source.chunk_keys(embedded_only=True).hashes))
    target = open_index(vault / ".vaultd" / "index.db", url)
    try:
        target.ensure_model(identity)
        for start in range(0, len(hashes), 2000):
            with target.transaction():
                target.add_vectors(source.cached_vectors(hashes[start:start + 2000]))
        print(f"seeded {len(hashes)} vectors from {sqlite_index}", flush=True)
    finally:
        target.close()
        source.close()


def sweep(vault: Vault, queries: list[Query]) -> dict[str, Any]:
    """Hybrid fusion settings scored through a Searcher built on the vault's store."""
    cache: dict[str, Any] = {}

    def embed_query(text: str) -> Any:
        if text not in cache:
            cache[text] = vault.embedder.embed([text], kind="query")[0]
        return cache[text]

    searcher = Searcher(vault.store, embed_query)
    candidates = vault.settings.search.candidates
    rows: dict[str, Any] = {}
    for vw, tw in SWEEP_WEIGHTS:
        for rrf_k in SWEEP_RRF_K:
            options = SearchOptions(k=CHUNK_K, mode="hybrid", vector_weight=vw, text_weight=tw,
                                    rrf_k=rrf_k, candidates=candidates)

            def rank(q: Query, options: SearchOptions = options) -> list[str]:
                if q.path_glob:
                    options = replace(options, filters=Filters(path_glob=q.path_glob))
                return unique_paths(searcher.search(q.query, options))

            rows[f"v{vw:g}:t{tw:g} rrf_k={rrf_k}"] = evaluate_ranker(rank, queries)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding {TARBALL} and {QUERIES}")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--limit", type=int, default=0, help="only the first N queries")
    parser.add_argument("--sweep", action="store_true", help="also sweep hybrid fusion settings")
    parser.add_argument("--poll", type=float, default=15.0, help="seconds between progress polls")
    parser.add_argument("--index-url", default="",
                        help="index the vault in this PostgreSQL database instead of SQLite")
    parser.add_argument("--postgres", action="store_true",
                        help="start a pgserver (pip install pgserver) and index there")
    parser.add_argument("--reuse-vectors", type=Path, default=None,
                        help="a SQLite index of the same vault: its cached vectors (by content "
                             "hash) fill the PostgreSQL index, so both rank the same vectors")
    args = parser.parse_args(argv)
    server = None
    if args.postgres:
        import pgserver
        import psycopg

        args.out.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(args.out / "pg", cleanup_mode="stop")
        uri = str(server.get_uri())
        with psycopg.connect(uri, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'scifact'"
                                ).fetchone():
                conn.execute("CREATE DATABASE scifact")
        head, _, query = uri.partition("?")
        args.index_url = f"{head.rsplit('/', 1)[0]}/scifact?{query}"
    if args.index_url:  # the `vaultd index` child and open_vault here both read it
        os.environ["VAULTD_INDEX_URL"] = args.index_url

    vault_dir = extract(args.data, args.out / "scifact")
    if args.reuse_vectors and args.index_url:
        reuse_vectors(args.reuse_vectors, vault_dir, args.index_url)
    report = ensure_index(vault_dir, args.poll)
    queries = load_queries(args.data / QUERIES)
    if args.limit:
        queries = queries[:args.limit]

    with open_vault(vault_dir) as vault:
        vault.embedder.embed(["warm up"], kind="query")  # model load is not query latency
        status = vault.status().to_dict()
        result = evaluate(vault, queries)
        swept = sweep(vault, queries) if args.sweep else {}
        # the daemon's path: in-memory vector matrix and in-memory BM25 (vaultd.bm25)
        vault.keep_vectors_warm()
        assert vault.bm25 is not None and vault.bm25.wait(), vault.bm25.unusable
        warm = evaluate(vault, queries)

    stats = {k: status[k] for k in ("notes", "chunks", "vectors", "skipped")}
    stats["model"] = status["model"]["id"]
    stats["index_seconds_this_run"] = report["seconds"]
    stats["chunks_embedded_this_run"] = report["chunks_embedded"]
    print(f"\nSciFact train: {result.queries} queries, {stats['notes']} notes, "
          f"{stats['chunks']} chunks, model {stats['model']}; "
          f"this run indexed {report['chunks_embedded']} chunks in {report['seconds']:.1f}s\n")
    print(result.markdown())
    for mode, m in result.modes.items():
        print(f"  {mode}: {1000 * m.seconds / max(m.queries, 1):.1f} ms/query")
    print("\nThe daemon's path (in-memory vectors and BM25):\n")
    print(warm.markdown())
    for mode, m in warm.modes.items():
        print(f"  {mode}: {1000 * m.seconds / max(m.queries, 1):.1f} ms/query")
    if swept:
        print("\nHybrid fusion sweep (vector_weight:text_weight, rrf_k):\n")
        print(markdown_table(swept, label="setting"))

    out = {
        "benchmark": "scifact-train", "vaultd": vaultd.__version__,
        "python": platform.python_version(), "index": stats, **result.to_dict(),
        "sweep": {name: m.to_dict() for name, m in swept.items()},
        "daemon_path": warm.to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stats["backend"] = "postgres" if args.index_url else "sqlite"
    out["index"] = stats
    path = args.out / ("eval_scifact_postgres.json" if args.index_url else "eval_scifact.json")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    if server is not None:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
