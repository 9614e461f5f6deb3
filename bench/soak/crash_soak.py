"""Crash soak: SIGKILL a real daemon at random moments while it indexes, runs the lifecycle
and flushes, restart it, and check nothing was lost, torn or left out of sync (the loop of
tests/test_crash.py, for many iterations).

    python bench/soak/crash_soak.py --iterations 100 [--seed 1] [--out bench/out/crash_soak.json]

Prints and writes a JSON summary: iterations, kills per phase (and how many landed while that
work was in flight: indexing, `POST /flush`, `POST /lifecycle` with every phase), notes and
daily-log entries written, merged notes at the end, what the uninterrupted lifecycle run after
each lifecycle kill did (merges, fades, reprieves), failures. Exit 1 when any iteration failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # benchlib
sys.path.insert(0, str(REPO / "tests"))  # the test helpers import each other by module name

from benchlib import write_json  # noqa: E402

from tests.test_crash import run_soak  # noqa: E402 - after the path is set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "crash_soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vaultd-crash-") as work:
        summary = run_soak(Path(work), args.iterations, args.seed)
    summary.pop("root")
    print(json.dumps(summary, indent=2))
    write_json(args.out, summary)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
