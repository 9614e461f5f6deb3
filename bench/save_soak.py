"""Save soak: a person saves MEMORY.md and a daily log vim-style (rename) and appends to today's
log with `>>` while vaultd flushes, remembers and runs the lifecycle; counts saves lost (the
loop of tests/test_save_soak.py, at full length).

    python bench/save_soak.py --saves 3400 [--seed 1] [--out bench/out/save_soak.json]

`--saves` is per kind (three kinds: MEMORY.md renames, daily-log renames, `>>` appends).
Prints and writes a JSON summary; exit 1 when any save was lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import write_json  # noqa: E402

from tests.test_save_soak import run_save_soak  # noqa: E402 - after the path is set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=3400, help="saves per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pause-ms", type=float, default=3.0,
                        help="each saver waits 0..this between saves")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "save_soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vaultd-save-soak-") as work:
        summary = run_save_soak(Path(work), args.saves, args.seed, args.pause_ms)
    print(json.dumps(summary, indent=2))
    write_json(args.out, summary)
    return 1 if summary["lost_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
