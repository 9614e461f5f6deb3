"""A query's embedding, one short text at a time: which session settings are fastest on this
machine, alone and with a second thread busy beside it (as in the daemon, where the BM25 step
runs while the query embeds).

    python bench/speed/query_embed_ab.py [--queries 200] [--rounds 3]

Variants run interleaved, query by query, in one process (so machine load hits them alike):
intra-op threads 1 or 2 (no spinning, as the daemon sets), with or without the arena shrinkage
run option the embedder uses for document batches. Vectors are compared with the embedder's own.
Writes bench/out/query_embed_ab.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, Contention, machine, write_json  # noqa: E402

from vaultd.embedder import DEFAULT_MODEL, OnnxEmbedder, builtin_profiles  # noqa: E402
from vaultd.evaluation import load_queries  # noqa: E402
from vaultd.vault import cache_dir  # noqa: E402


def variants() -> dict[str, OnnxEmbedder]:
    profile = builtin_profiles(cache_dir({}))[DEFAULT_MODEL]
    out = {}
    for threads in (1, 2):
        for shrink in (True, False):
            emb = OnnxEmbedder(profile, threads=threads, batch_size=8)
            emb.warm_up()
            if shrink:  # as before 2026-12-03: shrinkage after every run, a query's too
                emb._short_run_options = emb._run_options
            else:
                import onnxruntime as ort

                emb._run_options = emb._short_run_options = ort.RunOptions()
            out[f"{threads}t{'' if shrink else '-noshrink'}"] = emb
    return out


def busy(stop: threading.Event) -> None:
    """A BM25-like numpy load on the other core (scatter-adds over 100k floats)."""
    rng = np.random.default_rng(0)
    scores = np.zeros(100_000)
    idx = rng.integers(0, 100_000, 40_000)
    while not stop.is_set():
        scores[idx] += 1.5
        time.sleep(0.0002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    queries = [q.query for q in load_queries(args.data / "scifact-queries-train.jsonl")]
    queries = queries[:args.queries]
    embs = variants()
    ref = embs["2t"].embed(queries[:20], kind="query")
    same = {name: float(np.abs(e.embed(queries[:20], kind="query") - ref).max())
            for name, e in embs.items()}
    result: dict[str, Any] = {"machine": machine(), "max_abs_diff_vs_2t": same, "rounds": []}
    for rnd in range(args.rounds):
        for beside in (False, True):
            stop = threading.Event()
            worker = threading.Thread(target=busy, args=(stop,), daemon=True)
            if beside:
                worker.start()
            times: dict[str, list[float]] = {name: [] for name in embs}
            with Contention() as contention:
                for q in queries:
                    for name, e in embs.items():
                        t = time.perf_counter()
                        e.embed([q], kind="query")
                        times[name].append((time.perf_counter() - t) * 1000)
            stop.set()
            row = {"round": rnd, "busy_thread_beside": beside,
                   "other_cores": contention.other_cores,
                   "p50_ms": {n: round(statistics.median(v), 3) for n, v in times.items()},
                   "mean_ms": {n: round(statistics.fmean(v), 3) for n, v in times.items()}}
            print(row, flush=True)
            result["rounds"].append(row)
    write_json(OUT / "query_embed_ab.json", result)


if __name__ == "__main__":
    main()
