"""Index-time embedding of the int8 default: one text per call one after another (as before
issue 15 point 2) against two calls side by side (now), interleaved on the same chunks.

    python bench/speed/embed_ab.py [--chunks 160] [--rounds 3]

The same session, the same texts (SciFact chunks of the bench index, fixed sample), so the
ratio holds even on a busy machine; vectors are checked bit for bit. Writes
bench/out/embed_ab.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import OUT, Contention, machine, summary, write_json  # noqa: E402

from vaultd.embedder import DEFAULT_MODEL, OnnxEmbedder, builtin_profiles  # noqa: E402
from vaultd.store import Store  # noqa: E402
from vaultd.vault import cache_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    store = Store(OUT / "scifact" / "vault" / ".vaultd" / "index.db")
    rows = store.chunks_by_rowid(range(1, 20000))
    texts = [f"{r.heading}\n{r.text}" if r.heading else r.text for r in rows.values()]
    texts = random.Random(15).sample(texts, args.chunks)
    embedder = OnnxEmbedder(builtin_profiles(cache_dir({}))[DEFAULT_MODEL], threads=2)
    embedder.load()
    embedder.embed(texts[:4])
    rates: dict[str, list[float]] = {"sequential": [], "side by side": []}
    others: list[float] = []
    vectors = {}
    for _ in range(args.rounds):
        for name in rates:
            t = time.perf_counter()
            with Contention() as contention:
                if name == "sequential":  # the base class's loop: one call after another
                    vectors[name] = np.vstack([embedder.embed([x]) for x in texts])
                else:
                    vectors[name] = embedder.embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t))
            others.append(contention.other_cores)
            print(name, round(rates[name][-1], 1), file=sys.stderr, flush=True)
    out = {"machine": machine(), "chunks": len(texts),
           "chunks_per_s": {k: summary(v, 2) for k, v in rates.items()},
           "ratio_of_medians": round(summary(rates["side by side"])["median"]
                                     / summary(rates["sequential"])["median"], 3),
           "same_bits": bool(np.array_equal(vectors["sequential"], vectors["side by side"])),
           "other_cores": summary(others, 2)}
    print(out, file=sys.stderr)
    write_json(OUT / "embed_ab.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
