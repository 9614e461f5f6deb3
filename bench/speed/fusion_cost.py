"""What the entry-neighbour lift and the same-file spread add to a hybrid search, on the daemon's
path (warm in-memory vectors and BM25), and what counting a merged fact once adds on top
(`SearchOptions.one_copy`: each list fetched twice as deep, the twins looked up): each query
searched with all three off, with the two rules on, and with the defaults (all on), in
rotating order, the query vector cached so that the embedding (the same in all) does not hide
the difference.

    python bench/speed/fusion_cost.py VAULT [VAULT ...] --queries FILE [--reps 5] [--k 10]
        [--out FILE.json]

VAULT: an indexed vault (e.g. one kept by bench/quality/eval_locomo_sessions.py --keep, or the
SciFact vault of bench/quality/eval_scifact.py). FILE: the queries, a JSONL file of
`{"query": ...}` lines or plain text, one query a line; each VAULT is asked every query.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import OUT, machine, write_json  # noqa: E402

from vaultd.search import Searcher, SearchOptions  # noqa: E402
from vaultd.store import Filters  # noqa: E402
from vaultd.vault import open_vault  # noqa: E402


def read_queries(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".jsonl":
        return [str(json.loads(line)["query"]) for line in lines if line]
    return [line for line in lines if line]


def measure(vault_dir: Path, queries: list[str], reps: int, k: int) -> dict[str, Any]:
    with open_vault(vault_dir, daemon="never") as vault:
        vault.keep_vectors_warm()
        assert vault.bm25 is not None and vault.bm25.wait(), "BM25 copy did not load"
        cache: dict[str, Any] = {}

        def embed(text: str) -> Any:
            if text not in cache:
                cache[text] = vault.embedder.embed([text], kind="query")[0]
            return cache[text]

        searcher = Searcher(vault.store, embed, vault.vectors, vault._executor, vault.bm25,
                            vault.merged_hint)
        filters = Filters(include_archive=True)
        configs = {
            "off": SearchOptions(k=k, filters=filters, neighbour_share=0.0, repeat_step=0.0,
                                 one_copy=False),
            "rules": SearchOptions(k=k, filters=filters, one_copy=False),
            "on": SearchOptions(k=k, filters=filters)}
        for q in queries:  # warm: embeddings cached, SQLite pages read
            searcher.search(q, configs["on"])
        names = list(configs)
        times: dict[str, list[float]] = {name: [] for name in names}
        for q in queries:
            per: dict[str, list[float]] = {name: [] for name in names}
            for rep in range(reps):
                for name in names[rep % 3:] + names[:rep % 3]:
                    started = time.perf_counter()
                    searcher.search(q, configs[name])
                    per[name].append(1000 * (time.perf_counter() - started))
            for name in per:
                times[name].append(statistics.median(per[name]))
        chunks = vault.store.counts()["chunks"]

    def added(a: str, b: str) -> list[float]:
        return [y - x for x, y in zip(times[a], times[b])]

    return {"vault": vault_dir.name, "chunks": chunks, "queries": len(queries), "reps": reps,
            **{f"{name}_p50_ms": round(statistics.median(times[name]), 3) for name in names},
            "added_median_ms": round(statistics.median(added("off", "on")), 3),
            "added_mean_ms": round(statistics.mean(added("off", "on")), 3),
            "one_copy_median_ms": round(statistics.median(added("rules", "on")), 3),
            "one_copy_mean_ms": round(statistics.mean(added("rules", "on")), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vaults", nargs="+", type=Path)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT / "fusion_cost.json")
    args = ap.parse_args(argv)
    queries = read_queries(args.queries)
    rows = []
    for vault_dir in args.vaults:
        row = measure(vault_dir, queries, args.reps, args.k)
        print(row, flush=True)
        rows.append(row)
    write_json(args.out, {"benchmark": "fusion cost", "rows": rows, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
