"""Searchable after start (issue 15 point 3): seconds from `vaultd run` on a never-indexed vault
until a BM25 search finds a known phrase, and until every chunk has its vector.

    python bench/speed/first_search.py [--tree SRC] [--runs 3] [--label after]

Each run copies the `til` vault (1,873 notes, the shared data's til.tar.gz, extracted under
/tmp) to a fresh folder, runs `vaultd init` on it and starts `python -m vaultd run --quiet`
with `PYTHONPATH=SRC` (default: this checkout; pass an exported older tree for "before").
It then polls the daemon's API every 0.2 s:

- `bm25_s`: a `mode=bm25` /search for a phrase of `zsh/where-and-which-are-whence.md` (the last
  folder in path order, the worst case for an index that goes file by file) first returns that
  note;
- `hybrid_s`: a default (hybrid) /search for the same query first returns it;
- `full_s`: /status says nothing is left to index: a batch has been recorded, nothing is
  queued or indexing, and (when the daemon reports it) no chunk waits for a vector.

Times are from the moment the process is spawned (so they include Python start-up and the model
load). Medians with min/max over the runs; JSON in bench/out/first_search-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

from benchlib import BENCH, DEFAULT_DATA, OUT, Contention, DaemonApi, machine, summary, write_json  # noqa: E402

WORK = Path("/tmp/vaultd-first-search")
QUERY = "whence zshbuiltins"
EXPECT = "zsh/where-and-which-are-whence.md"


def extract(data: Path) -> Path:
    source = WORK / "til-source"
    if not (source / "til").is_dir():
        source.mkdir(parents=True, exist_ok=True)
        with tarfile.open(data / "til.tar.gz") as tar:
            tar.extractall(source, filter="data")
    return source / "til"


def found(api: DaemonApi, mode: str) -> tuple[bool, dict[str, Any]]:
    data = api.call("POST", "/search", {"query": QUERY, "k": 5, "mode": mode})
    return any(h["path"] == EXPECT for h in data["hits"]), data


def one_run(tree: Path, source: Path, n: int, label: str, timeout: float) -> dict[str, Any]:
    vault = WORK / f"{label}-{n}"
    shutil.rmtree(vault, ignore_errors=True)
    shutil.copytree(source, vault)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "vaultd", "init", str(vault)], env=env, check=True,
                   capture_output=True)
    notes = sum(1 for _ in vault.rglob("*.md"))
    started = time.perf_counter()
    out: dict[str, Any] = {"run": n, "notes": notes}
    with Contention() as contention:
        proc = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(vault), "run",
                                 "--quiet"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            api = None
            while time.perf_counter() - started < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited {proc.returncode}: {proc.stderr.read()}")
                if api is None:
                    try:
                        api = DaemonApi(vault)
                        api.call("GET", "/health")
                        out["health_s"] = round(time.perf_counter() - started, 2)
                    except (OSError, ValueError, KeyError):
                        api = None
                        time.sleep(0.1)
                        continue
                now = time.perf_counter() - started
                if "bm25_s" not in out and found(api, "bm25")[0]:
                    out["bm25_s"] = round(now, 2)
                if "hybrid_s" not in out:
                    hit, data = found(api, "hybrid")
                    if hit:
                        out["hybrid_s"] = round(now, 2)
                        if data.get("pending_vectors"):
                            out["hybrid_pending_vectors"] = data["pending_vectors"]
                status = api.call("GET", "/status")
                done = (status["batches"] >= 1 and not status["queue"]
                        and not status["indexing"] and not status.get("pending_vectors", 0))
                if done and "bm25_s" in out and "hybrid_s" in out:
                    out["full_s"] = round(time.perf_counter() - started, 2)
                    out["last_batch"] = status["last_batch"]
                    break
                time.sleep(0.2)
            else:
                raise TimeoutError(f"not fully indexed within {timeout:.0f}s: {out}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    out["other_cores"] = contention.other_cores
    shutil.rmtree(vault, ignore_errors=True)
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=BENCH.parent,
                        help="the vaultd source tree to run (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--label", default="after")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    source = extract(args.data)
    runs = [one_run(args.tree.resolve(), source, n, args.label, args.timeout)
            for n in range(1, args.runs + 1)]
    result = {
        "label": args.label, "query": QUERY, "expect": EXPECT, "notes": runs[0]["notes"],
        **{key: summary([r[key] for r in runs], 2)
           for key in ("health_s", "bm25_s", "hybrid_s", "full_s")},
        "tree": str(args.tree), "runs": runs, "machine": machine(),
    }
    write_json(OUT / f"first_search-{args.label}.json", result)
    print(json.dumps({k: result[k] for k in ("health_s", "bm25_s", "hybrid_s", "full_s")}))


if __name__ == "__main__":
    main()
