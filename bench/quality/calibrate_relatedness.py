"""The link threshold for *related* memories, per model profile (issue 14, point 2).

    python bench/quality/calibrate_relatedness.py [--data DIR] [--model NAME ...]

connect is meant to link memories that are about the same thing, so that they survive and can
be consolidated, while isolated ones fade. "Same meaning" (STS-B gold ≥ 4, what
calibrate_stsb.py measures) is the wrong question for that: two facts about Caroline's
adoption plans are related without saying the same thing. Two measures of relatedness:

- STS-B dev, "related" = gold ≥ 3 ("roughly equivalent, some details differ"): precision and
  recall of "cosine ≥ t" over the 1,500 pairs;
- locomo-dev (the three conversations of the agent-memory protocol): "related" pairs are two
  different facts that are both evidence for the same question; "random" pairs are pairs of
  facts drawn at random from the same conversation (the related pairs excluded), as many per
  conversation as it has related pairs (seed 0). Recall = related pairs at ≥ t, false-positive
  rate = random pairs at ≥ t, precision at that 1:1 balance, and the share of *all* pairs of a
  conversation at ≥ t (how dense the link graph gets).

The link threshold shipped follows Youden's J (recall − false-positive rate) on locomo-dev — it
does not depend on how many related pairs there are, which a vault does not know — with the
one-standard-error rule: J is flat over a wide band (198 related pairs), so the highest
threshold (on a 0.01 grid) whose J is within one bootstrap standard error (1,000 resamples of
both pair sets) of the best J is taken: as related by the data as the best, with fewer spurious
links. STS-B (gold ≥ 3) precision/recall are reported at it as the second check. Writes
bench/out/relatedness.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import DEFAULT_DATA, OUT, write_json  # noqa: E402
from calibrate_stsb import load_pairs, prf  # noqa: E402
from memory_lifecycle import facts_of, load, questions_of  # noqa: E402

from vaultd.embedder import DEFAULT_MODEL, SHIPPED_MODEL, builtin_profiles, make_embedder  # noqa: E402
from vaultd.vault import cache_dir  # noqa: E402

GRID = [round(float(t), 3) for t in np.arange(0.30, 0.80, 0.01)]


def locomo_pairs(conv: dict[str, Any]) -> tuple[list[str], list[tuple[int, int]],
                                                list[tuple[int, int]]]:
    """(fact texts, related pairs, random pairs) of one conversation, as index pairs."""
    facts, _ = facts_of(conv, dt.date.today())
    texts = sorted({f["text"] for f in facts})
    index = {t: i for i, t in enumerate(texts)}
    related: set[tuple[int, int]] = set()
    for q in questions_of(conv, facts):
        gold = sorted({index[g] for g in q["gold"]})
        related |= {(a, b) for i, a in enumerate(gold) for b in gold[i + 1:]}
    rng = random.Random(0)
    randoms: set[tuple[int, int]] = set()
    while len(randoms) < len(related):
        a, b = sorted(rng.sample(range(len(texts)), 2))
        if (a, b) not in related:
            randoms.add((a, b))
    return texts, sorted(related), sorted(randoms)


def summary(values: np.ndarray) -> dict[str, float]:
    return {"median": round(float(np.median(values)), 3),
            "p25": round(float(np.percentile(values, 25)), 3),
            "p75": round(float(np.percentile(values, 75)), 3), "n": int(values.size)}


def calibrate(model: str, convs: list[dict[str, Any]], stsb: tuple[list[str], list[str],
              np.ndarray]) -> dict[str, Any]:
    embedder = make_embedder(builtin_profiles(cache_dir(dict(os.environ)))[model])
    left, right, gold = stsb
    cos = (embedder.embed(left) * embedder.embed(right)).sum(axis=1)
    related_sts = gold >= 3.0
    rel_all, rnd_all, density = [], [], {}
    per_conv = {}
    for conv in convs:
        texts, related, randoms = locomo_pairs(conv)
        vecs = embedder.embed(texts)
        sims = vecs @ vecs.T
        rel = np.array([sims[a, b] for a, b in related])
        rnd = np.array([sims[a, b] for a, b in randoms])
        rel_all.append(rel)
        rnd_all.append(rnd)
        every = sims[np.triu_indices(len(texts), 1)]
        density[conv["sample_id"]] = every
        per_conv[conv["sample_id"]] = {"facts": len(texts), "related": summary(rel),
                                       "random": summary(rnd)}
    rel, rnd = np.concatenate(rel_all), np.concatenate(rnd_all)
    rows = []
    for t in GRID:
        recall = float((rel >= t).mean())
        fpr = float((rnd >= t).mean())
        precision = recall / max(recall + fpr, 1e-9)
        sp, sr, sf = prf(cos, related_sts, t)
        rows.append({
            "t": t, "locomo_recall": round(recall, 4), "locomo_fpr": round(fpr, 4),
            "locomo_precision": round(precision, 4), "youden": round(recall - fpr, 4),
            "locomo_f1": round(2 * precision * recall / max(precision + recall, 1e-9), 4),
            "stsb_precision": round(sp, 4), "stsb_recall": round(sr, 4), "stsb_f1": round(sf, 4),
            "all_pairs_linked": {c: round(float((d >= t).mean()), 4) for c, d in density.items()},
            "links_per_entry": {c: round(float((d >= t).sum()) * 2 / per_conv[c]["facts"], 1)
                                for c, d in density.items()},
        })
    best = max(rows, key=lambda r: (r["youden"], -r["t"]))
    rng = np.random.default_rng(0)
    boot = [float((rng.choice(rel, rel.size) >= best["t"]).mean()
                  - (rng.choice(rnd, rnd.size) >= best["t"]).mean()) for _ in range(1000)]
    se = float(np.std(boot))
    chosen = max((r for r in rows if r["youden"] >= best["youden"] - se), key=lambda r: r["t"])
    stsb_best = max(rows, key=lambda r: r["stsb_f1"])
    return {"model": model, "locomo": {"related": summary(rel), "random": summary(rnd),
                                       "conversations": per_conv},
            "stsb": {"pairs": len(gold), "related_pairs": int(related_sts.sum()),
                     "best_f1": stsb_best},
            "max_youden": best, "youden_se": round(se, 4), "link": chosen, "grid": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", action="append", help=f"default: {DEFAULT_MODEL}, {SHIPPED_MODEL}")
    args = ap.parse_args()
    convs = load(args.data)
    stsb = load_pairs(args.data)
    results = []
    for model in args.model or [DEFAULT_MODEL, SHIPPED_MODEL]:
        r = calibrate(model, convs, stsb)
        results.append(r)
        lo = r["locomo"]
        print(f"{model}: locomo related median {lo['related']['median']:.3f} "
              f"(IQR {lo['related']['p25']:.3f}–{lo['related']['p75']:.3f}, n "
              f"{lo['related']['n']}), random median {lo['random']['median']:.3f} "
              f"(IQR {lo['random']['p25']:.3f}–{lo['random']['p75']:.3f})")
        print("| t | locomo P (1:1) | locomo R | random ≥ t | J | STS-B≥3 P | STS-B≥3 R | "
              "links/entry (26/30/41) |")
        print("|---|---|---|---|---|---|---|---|")
        for row in r["grid"]:
            if round(row["t"] * 100) % 5 and row is not r["link"]:
                continue
            lpe = "/".join(f"{v:.0f}" for v in row["links_per_entry"].values())
            print(f"| {row['t']:.2f}{' **' if row is r['link'] else ''} | "
                  f"{row['locomo_precision']:.3f} | {row['locomo_recall']:.3f} | "
                  f"{row['locomo_fpr']:.3f} | {row['youden']:.3f} | {row['stsb_precision']:.3f} | "
                  f"{row['stsb_recall']:.3f} | {lpe} |")
        b = r["stsb"]["best_f1"]
        print(f"max J {r['max_youden']['youden']:.3f} at {r['max_youden']['t']:.2f} (bootstrap "
              f"SE {r['youden_se']:.3f}); link (one-SE rule): {r['link']['t']:.2f}; "
              f"STS-B gold>=3 best F1 at {b['t']:.2f} (P {b['stsb_precision']:.3f} "
              f"R {b['stsb_recall']:.3f})\n",
              flush=True)
    write_json(OUT / "relatedness.json", {"grid": [GRID[0], GRID[-1]], "results": results,
                                          "medians_of_models": statistics.median(
                                              r["link"]["t"] for r in results)})


if __name__ == "__main__":
    main()
