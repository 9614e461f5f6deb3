"""The heartbeat's prototype rule on locomo-dev (issue 14, point 3).

    python bench/quality/calibrate_prototypes.py [--data DIR] [--model NAME] [--at T]

A fresh vault has no curated semantic or procedural notes to learn what knowledge looks like,
so the heartbeat classifies each recent entry by its nearest example in
`templates/prototypes.toml` and extracts it when that example is of a knowledge kind and at
cosine ≥ `min_similarity`. Every observation fact of the three locomo-dev conversations goes
through that rule here (the heartbeat itself only sees the last days, and only linked or
recalled entries): how many would be extracted at each threshold, by kind, and, at `--at`
(default: the shipped `min_similarity`), 20 of them drawn at random (seed 0) to read and judge
by hand — the precision reported in bench/RESULTS.md is that reading. Writes
bench/out/prototypes.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, write_json  # noqa: E402
from memory_lifecycle import facts_of, load  # noqa: E402

from vaultd.embedder import DEFAULT_MODEL, builtin_profiles, make_embedder  # noqa: E402
from vaultd.lifecycle.heartbeat import KNOWLEDGE, load_prototypes  # noqa: E402
from vaultd.vault import cache_dir, templates_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--at", type=float, help="threshold to sample at (default: shipped)")
    args = ap.parse_args()
    protos = load_prototypes(Path("/nonexistent"), templates_dir())
    embedder = make_embedder(builtin_profiles(cache_dir(dict(os.environ)))[args.model])
    examples = embedder.embed(protos.texts())
    facts = [(c["sample_id"], f["text"]) for c in load(args.data)
             for f in facts_of(c, dt.date.today())[0]]
    vecs = embedder.embed([t for _, t in facts])
    nearest = protos.classify(vecs, examples)
    rows = []
    for t in np.round(np.arange(0.35, 0.71, 0.05), 2):
        chosen = [k for k, s in nearest if k.type in KNOWLEDGE and s >= t]
        rows.append({"t": float(t), "extracted": len(chosen), "share": len(chosen) / len(facts),
                     "by_kind": dict(Counter(k.name for k in chosen).most_common())})
    at = args.at if args.at is not None else protos.min_similarity
    picked = [(c, t, k.name, round(s, 3)) for (c, t), (k, s) in zip(facts, nearest)
              if k.type in KNOWLEDGE and s >= at]
    sample = random.Random(0).sample(picked, min(20, len(picked)))
    print(f"{len(facts)} facts; nearest-example rule, knowledge kinds only")
    print("| min_similarity | extracted | share | by kind |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['t']:.2f} | {r['extracted']} | {r['share']:.1%} | {r['by_kind']} |")
    print(f"\n20 at {at:.2f}:")
    for _conv, text, kind, score in sample:
        print(f"- [{kind} {score:.2f}] {text}")
    write_json(OUT / "prototypes.json", {"model": args.model, "facts": len(facts),
                                         "min_similarity": protos.min_similarity, "grid": rows,
                                         "sample_at": at, "sample": sample})


if __name__ == "__main__":
    main()
