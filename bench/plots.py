"""PNG plots from the benchmark JSON (needs matplotlib; any Python that has it).

    python bench/plots.py

Reads bench/out/compare_stacks.json and bench/out/scale_latency.json (and, when present,
bench/out/scale_latency.prototype.json) and writes bench/latency_vs_corpus.png and
bench/index_throughput.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def load(name: str) -> dict:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else {}


def latency_plot(scale: dict, proto: dict) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    sizes = sorted(scale.get("sizes", {}), key=int)
    series: dict[str, list[tuple[int, float, float, float]]] = {}

    def add(label: str, chunks: int, p: dict) -> None:
        series.setdefault(label, []).append((chunks, p["median"], p["min"], p["max"]))

    for s in sizes:
        e = scale["sizes"][s]
        n = e["corpus"]["chunks"]
        add("vaultd daemon /search (hybrid)", n, e["daemon"]["hybrid"]["p50"])
        add("vaultd library Vault.search (hybrid)", n, e["library"]["hybrid"]["p50"])
        add("vaultd library, vector only", n, e["library"]["vector"]["p50"])
        for stack, label in (("chroma-warm", "chromadb (default ONNX EF, warm)"),
                             ("st", "sentence-transformers + numpy")):
            if stack in e.get("others", {}):
                add(label, n, e["others"][stack]["p50"])
    for s in sorted(proto.get("sizes", {}), key=int):
        e = proto["sizes"][s]
        add("vaultd daemon, prototype fixes", e["corpus"]["chunks"], e["daemon"]["hybrid"]["p50"])
    styles = {"vaultd daemon /search (hybrid)": ("C0", "o", "-"),
              "vaultd library Vault.search (hybrid)": ("C0", "s", "--"),
              "vaultd library, vector only": ("C0", "^", ":"),
              "vaultd daemon, prototype fixes": ("C2", "o", "-"),
              "chromadb (default ONNX EF, warm)": ("C1", "D", "-"),
              "sentence-transformers + numpy": ("C3", "v", "-")}
    for label, pts in series.items():
        pts.sort()
        x = [p[0] for p in pts]
        y = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        color, marker, line = styles.get(label, ("k", "x", "-"))
        ax.errorbar(x, y, yerr=err, label=label, color=color, marker=marker, linestyle=line,
                    capsize=3)
    ax.scatter([10_000, 100_000], [5, 15], marker="*", s=160, color="k", zorder=5,
               label="target (daemon p50)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the index")
    ax.set_ylabel("query latency p50 (ms), k = 10")
    ax.set_title("Query latency vs corpus size (SciFact, scaled; 2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    path = BENCH / "latency_vs_corpus.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def throughput_plot(compare: dict) -> Path:
    sub = compare["index_subset"]
    labels = {"vaultd": "vaultd index", "chroma-warm": "chromadb add\n(EF passed)",
              "chroma": "chromadb add\n(default, as shipped)",
              "st": "sentence-transformers\nencode + numpy"}
    names = [k for k in ("vaultd", "chroma-warm", "chroma", "st") if k in sub["chunks_per_s"]]
    med = [sub["chunks_per_s"][k]["median"] for k in names]
    err = [[sub["chunks_per_s"][k]["median"] - sub["chunks_per_s"][k]["min"] for k in names],
           [sub["chunks_per_s"][k]["max"] - sub["chunks_per_s"][k]["median"] for k in names]]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colors = {"vaultd": "C0", "chroma-warm": "C1", "chroma": "C1", "st": "C3"}
    bars = ax.bar([labels[k] for k in names], med, yerr=err, capsize=4,
                  color=[colors[k] for k in names])
    for bar, value in zip(bars, med):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.1f}", ha="center",
                va="bottom", fontsize=9)
    if "chroma-warm" in sub["chunks_per_s"]:
        target = 2 * sub["chunks_per_s"]["chroma-warm"]["median"]
        ax.axhline(target, color="k", linestyle="--", linewidth=1)
        ax.text(len(names) - 0.5, target, "target: 2× chromadb", ha="right", va="bottom",
                fontsize=8)
    ax.set_ylabel("chunks / s (median of runs; bars: min–max)")
    ax.set_title(f"Index throughput, same {sub['chunks']} SciFact chunks, 2 cores")
    fig.tight_layout()
    path = BENCH / "index_throughput.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> int:
    compare, scale = load("compare_stacks.json"), load("scale_latency.json")
    proto = load("scale_latency.prototype.json")
    if scale:
        print("wrote", latency_plot(scale, proto))
    if compare.get("index_subset"):
        print("wrote", throughput_plot(compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
