"""How fast the link graph goes into the index: `Store.save_links` on a synthetic dense graph.

    python bench/speed/save_links.py [--entries 5000] [--degree 300]

A vault whose entries are all about one field links each entry to hundreds at the link threshold
(the 100k-chunk scale vault: 50k entries, 14M directed links), and a model change re-connects
every entry. This saves `entries` entries each linked to ~`degree` random others into a fresh
index, twice (the second time every entry's old links are replaced), and prints links a second.
Compare two versions by running it with each on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from vaultd.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--degree", type=int, default=300)
    args = parser.parse_args()
    n = args.entries
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "index.db")
        ids = [f"episodic/2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}.md#{i:x}" for i in range(n)]
        with store.transaction():  # entries as the indexer would list them (bench only)
            store.conn.executemany(
                "INSERT INTO entries(id, path, ordinal, heading, start_line, end_line, date, "
                "tags, key, hash) VALUES (?, ?, 0, '', 1, 2, NULL, '[]', '', '')",
                [(e, e.split("#")[0]) for e in ids])
        rng = random.Random(1)
        near: list[set[int]] = [set() for _ in range(n)]
        for i in range(n):
            for j in rng.sample(range(n), args.degree // 2):
                if j != i:
                    near[i].add(j)
                    near[j].add(i)
        links = [(ids[i], [(ids[j], round(rng.uniform(0.5, 0.9), 3)) for j in sorted(near[i])],
                  "hash") for i in range(n)]
        total = sum(len(others) for _, others, _ in links)
        for what in ("into an empty graph", "replacing every entry's links"):
            started = time.perf_counter()
            store.save_links(links, time.time())
            seconds = time.perf_counter() - started
            size = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
            print(f"{what}: {total:,} directed links of {n:,} entries in {seconds:.1f} s "
                  f"({total / seconds / 1000:.0f}k links/s); index files {size:.0f} MB",
                  flush=True)
        store.close()


if __name__ == "__main__":
    main()
