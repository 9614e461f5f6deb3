"""Similarity thresholds for a model, justified on STS-B dev (1,500 scored sentence pairs).

    python bench/quality/calibrate_stsb.py [--data DIR] [--model all-MiniLM-L6-v2]

"Same meaning" = gold score ≥ 4 (of 5). For each cosine threshold we report precision and
recall of "cosine ≥ t" for that class, and pick:
  - link (no longer shipped from here): the threshold with the best F1 for "same meaning".
    Since 2026-12-03 the link threshold answers "related", not "same meaning", and comes from
    bench/quality/calibrate_relatedness.py (locomo-dev evidence pairs, and STS-B with gold ≥ 3);
  - consolidate: the lowest threshold whose precision is ≥ 0.90 (merging is heavier; the
    shipped value is now chosen on bench/quality/memory_lifecycle.py);
  - duplicate: the lowest threshold whose precision for near-identical pairs (gold ≥ 4.6)
    is ≥ 0.90.
Also Spearman's rho between cosine and gold. Prints a table; writes bench/out/stsb.json.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from vaultd.embedder import builtin_profiles, make_embedder

BENCH = Path(__file__).resolve().parents[1]
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data"


def load_pairs(data: Path) -> tuple[list[str], list[str], np.ndarray]:
    with tarfile.open(data / "stsb-dev.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("sts-dev.csv"))
        raw = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
    left, right, gold = [], [], []
    for line in raw.splitlines():
        cols = line.split("\t")
        if len(cols) < 7:
            continue
        gold.append(float(cols[4]))
        left.append(cols[5])
        right.append(cols[6])
    return left, right, np.asarray(gold)


def prf(scores: np.ndarray, positive: np.ndarray, t: float) -> tuple[float, float, float]:
    predicted = scores >= t
    tp = float((predicted & positive).sum())
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max(positive.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return precision, recall, f1


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()

    left, right, gold = load_pairs(args.data)
    with tempfile.TemporaryDirectory() as cache:
        embedder = make_embedder(builtin_profiles(Path(cache))[args.model])
        a = embedder.embed(left)
        b = embedder.embed(right)
    cos = (a * b).sum(axis=1)
    same = gold >= 4.0
    near_identical = gold >= 4.6
    grid = np.round(np.arange(0.30, 0.96, 0.025), 3)
    rows = []
    for t in grid:
        p, r, f = prf(cos, same, t)
        pd, rd, _ = prf(cos, near_identical, t)
        rows.append({"t": float(t), "precision": p, "recall": r, "f1": f,
                     "dup_precision": pd, "dup_recall": rd})
    link = max(rows, key=lambda row: row["f1"])
    consolidate = next((row for row in rows if row["precision"] >= 0.90), rows[-1])
    duplicate = next((row for row in rows if row["dup_precision"] >= 0.90), rows[-1])
    result = {
        "model": args.model, "pairs": len(gold), "same_meaning_pairs": int(same.sum()),
        "spearman": spearman(cos, gold),
        "mean_cosine_by_gold_band": {
            f"{lo}-{lo + 1}": float(cos[(gold >= lo) & (gold < lo + 1 + (lo == 4))].mean())
            for lo in range(5)},
        "link": link, "consolidate": consolidate, "duplicate": duplicate, "grid": rows,
    }
    print(f"{args.model} on STS-B dev: {len(gold)} pairs, {int(same.sum())} with gold >= 4; "
          f"Spearman {result['spearman']:.3f}")
    print("mean cosine by gold band:",
          {k: round(v, 3) for k, v in result["mean_cosine_by_gold_band"].items()})
    print("| t | precision | recall | F1 | dup precision (gold>=4.6) | dup recall |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['t']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | "
              f"{row['f1']:.3f} | {row['dup_precision']:.3f} | {row['dup_recall']:.3f} |")
    for name in ("link", "consolidate", "duplicate"):
        row = result[name]
        print(f"{name}: t = {row['t']:.3f} (precision {row['precision']:.3f}, "
              f"recall {row['recall']:.3f}, dup precision {row['dup_precision']:.3f})")
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "stsb.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
