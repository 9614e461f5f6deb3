"""Two (or more) running daemons answering the same queries alternately, query by query: a
before/after comparison that holds while the machine's speed drifts (a shared VM's can move by
half within an hour).

    python bench/speed/daemon_ab.py VAULT_A VAULT_B [--rounds 3] [--queries FILE]

Each vault needs its daemon running (`vaultd --vault V start`; for "before", start it from a
checkout of the old code with its own `VAULTD_CACHE_DIR`). Every query goes to each daemon in
turn, the order flipped every query; prints each daemon's p50/p95 and, for two, the median of
the per-query ratios B/A.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import OUT, DaemonApi, wait_for_idle  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vaults", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=Path, default=OUT / "scale" / "queries.json")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    queries = json.loads(args.queries.read_text())
    for root in args.vaults:  # indexed, and its start-up work (the BM25 copy's load) done
        api = DaemonApi(root)
        api.wait_idle()
        wait_for_idle(api.pid)
    time.sleep(3)
    apis = [DaemonApi(root) for root in args.vaults]  # fresh keep-alive connections
    for api in apis:  # warm-up
        for q in queries[:5]:
            api.call("POST", "/search", {"query": q, "k": args.k})
    times: list[list[float]] = [[] for _ in apis]
    for _ in range(args.rounds):
        for i, q in enumerate(queries):
            order = range(len(apis)) if i % 2 == 0 else reversed(range(len(apis)))
            for j in order:
                started = time.perf_counter()
                apis[j].call("POST", "/search", {"query": q, "k": args.k})
                times[j].append(time.perf_counter() - started)
    for root, t in zip(args.vaults, times):
        ranked = sorted(t)
        print(f"{root}: p50 {statistics.median(t) * 1000:.2f} ms, "
              f"p95 {ranked[int(len(t) * 0.95)] * 1000:.2f} ms ({len(t)} queries)")
    if len(times) == 2:
        ratios = [b / a for a, b in zip(times[0], times[1])]
        print(f"median per-query ratio B/A: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
