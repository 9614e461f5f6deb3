"""Save soak: a person saves while vaultd writes the same files; counts saves lost (the loops
of tests/test_save_soak.py, at full length).

    python bench/soak/save_soak.py --saves 3400 [--seed 1] [--out bench/out/save_soak.json]
    python bench/soak/save_soak.py --writer inplace --writer slowinplace --target flush \\
        --target mcp --saves 10000 --pause-ms 10

`--writer mixed` (the default) is the issue-12 soak: vim-style rename saves of MEMORY.md and of
a daily log and `>>` appends, while vaultd flushes, remembers and runs the lifecycle; `--saves`
is per kind (three kinds). `inplace` (open with O_TRUNC, write the whole text, close — node's
`fs.writeFile`) and `slowinplace` (the same in four pieces with pauses) each save one file
while one vaultd writer of it runs: `flush` (MEMORY.md's block) or `mcp` (`memory_edit_note`
in-process); one run per writer and target, `--saves` each.
Prints and writes a JSON summary; exit 1 when any save was lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # benchlib
sys.path.insert(0, str(REPO / "tests"))

from benchlib import write_json  # noqa: E402

from tests.test_save_soak import (  # noqa: E402 - after the path is set
    INPLACE_KINDS,
    TARGETS,
    run_inplace_soak,
    run_save_soak,
)


def _run(writer: str, target: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vaultd-save-soak-") as work:
        if writer == "mixed":
            return run_save_soak(Path(work), args.saves, args.seed, args.pause_ms)
        return run_inplace_soak(Path(work), writer, target, args.saves, args.seed,
                                args.pause_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=3400, help="saves per kind / per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pause-ms", type=float, default=3.0,
                        help="each saver waits 0..this between saves")
    parser.add_argument("--writer", action="append", choices=("mixed", *INPLACE_KINDS),
                        help="which savers (repeatable; default: mixed)")
    parser.add_argument("--target", action="append", choices=TARGETS,
                        help="the vaultd writer the in-place savers race (repeatable; "
                             "default: both)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "save_soak.json")
    args = parser.parse_args()
    runs = [(writer, target) for writer in args.writer or ["mixed"]
            for target in (["-"] if writer == "mixed" else args.target or list(TARGETS))]
    results = []
    for writer, target in runs:
        results.append(_run(writer, target, args))
        print(json.dumps(results[-1], indent=2), flush=True)
    summary = results[0] if len(results) == 1 else {
        "runs": results, "lost_total": sum(r.get("lost_total", r.get("lost", 0))
                                           for r in results)}
    write_json(args.out, summary)
    return 1 if summary.get("lost_total", summary.get("lost")) else 0


if __name__ == "__main__":
    sys.exit(main())
