"""What a cross-encoder reranker would cost per query on this CPU, measured with a stand-in.

No cross-encoder can be had offline here (docs/architecture.md, "Search"), so this measures the
work one would do: a MiniLM-L6 cross-encoder (ms-marco-MiniLM-L-6-v2: 6 layers, 384 wide, the
same shape as vaultd's default embedder) runs one forward pass per (query, candidate) pair over
the pair's joined tokens. The default embedder given the joined `query + passage` texts does the
same arithmetic, so its time is the reranker's (tokenising and pooling aside).

Pairs are locomo-dev questions with dialog turns (short candidates) and with passages of joined
turns cut near `--long-tokens` tokens (chunk-sized candidates, as SciFact's).

    python bench/speed/rerank_cost.py [--data DIR] [--depths 5,10,20] [--queries 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quality"))

from benchlib import DEFAULT_DATA, OUT, Contention, machine, write_json  # noqa: E402
from memory_lifecycle import load  # noqa: E402

from vaultd.vault import init_vault, open_vault  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--depths", default="5,10,20", help="candidates reranked per query")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--long-tokens", type=int, default=180)
    ap.add_argument("--out", type=Path, default=OUT / "rerank_cost.json")
    args = ap.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    conv = load(args.data)[0]
    turns = [f"{t['speaker']}: {' '.join(t['text'].split())}"
             for key, value in conv["conversation"].items()
             if key.startswith("session_") and isinstance(value, list) for t in value]
    questions = [qa["question"] for qa in conv["qa"]][: args.queries]
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        init_vault(Path(tmp))
        with open_vault(Path(tmp), daemon="never") as vault:
            emb = vault.embedder
            emb.embed(["warm up"], kind="document")
            long_passages, current = [], ""
            for turn in turns:
                current = f"{current} {turn}".strip()
                if emb.count_tokens(current) >= args.long_tokens:
                    long_passages.append(current)
                    current = ""
            for label, passages in (("short", turns), ("long", long_passages)):
                for depth in depths:
                    times, tokens = [], []
                    with Contention() as busy:  # a shared machine: say how shared
                        for i, q in enumerate(questions):
                            pairs = [f"{q} [SEP] {passages[(i * depth + j) % len(passages)]}"
                                     for j in range(depth)]
                            started = time.perf_counter()
                            emb.embed(pairs, kind="document")
                            times.append(1000 * (time.perf_counter() - started))
                            tokens.extend(emb.count_tokens(p) for p in pairs)
                    result[f"{label} top {depth}"] = {
                        "ms_min": round(min(times), 1),
                        "ms_median": round(statistics.median(times), 1),
                        "pair_tokens": round(statistics.mean(tokens), 1),
                        "other_cores": busy.other_cores}
                    print(f"{label:>5} candidates, top {depth:>2}: min {min(times):6.1f}, "
                          f"median {statistics.median(times):6.1f} ms/query (pairs "
                          f"~{statistics.mean(tokens):.0f} tokens; other processes used "
                          f"{busy.other_cores:.2f} cores)", flush=True)
    write_json(args.out, {"benchmark": "cross-encoder cost stand-in", "result": result,
                          "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
