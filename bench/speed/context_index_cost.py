"""What chunk context (`[index] context`) costs the index: a fresh index of locomo-dev's raw
dialog vaults (one daily log per session date, one `- Speaker: text` bullet per turn: almost
every chunk is short, so this is the worst case) under each policy, then the edits a chat log
gets: a turn appended, a turn in the middle changed.

For each policy: seconds of the files phase (read, parse, chunk — context adds token counts —
and full text) and of the vectors phase, chunks embedded, the share of chunks that took context
and their mean embedded tokens; then chunks embedded by one append and by one edit.

    python bench/speed/context_index_cost.py [--data DIR] [--policies none,previous]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quality"))

from benchlib import DEFAULT_DATA, OUT, machine, write_json  # noqa: E402
from eval_locomo_sessions import write_dialog_vault  # noqa: E402
from memory_lifecycle import load  # noqa: E402

from vaultd.vault import open_vault  # noqa: E402


def measure(root: Path, policy: str) -> dict[str, Any]:
    env = {"VAULTD_INDEX_CONTEXT": policy}
    with open_vault(root, daemon="never", env=env) as vault:
        vault.embedder.embed(["warm up"], kind="document")  # the model's load is not indexing
        indexer = vault.indexer()
        started = time.perf_counter()
        files = indexer.reconcile(vectors=False)
        files_s = time.perf_counter() - started
        started = time.perf_counter()
        embedded = indexer.embed_pending()
        vectors_s = time.perf_counter() - started
        rows = vault.store.conn.execute("SELECT heading, text, context FROM chunks").fetchall()
        with_context = [r[2] for r in rows if r[2]]
        count = vault.embedder.count_tokens
        logs = sorted((root / "episodic").glob("*.md"))
        log = logs[len(logs) // 2]
        text = log.read_text(encoding="utf-8")
        log.write_text(text + "- Caroline: One more thing I forgot to say.\n", encoding="utf-8")
        append = vault.index().chunks_embedded
        lines = log.read_text(encoding="utf-8").split("\n")
        middle = next(i for i in range(len(lines) // 2, len(lines)) if lines[i].startswith("- "))
        lines[middle] += " (edited)"
        log.write_text("\n".join(lines), encoding="utf-8")
        edit = vault.index().chunks_embedded
    return {"chunks": len(rows), "files_seconds": round(files_s, 2),
            "vectors_seconds": round(vectors_s, 2), "chunks_embedded": files.chunks_embedded
            + embedded, "with_context": len(with_context),
            "mean_tokens": round(statistics.mean(
                count(r[2] or f"{r[0]}\n{r[1]}") for r in rows), 1),
            "embedded_by_append": append, "embedded_by_edit": edit}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--policies", default="none,previous")
    ap.add_argument("--conv", default="conv-26")
    ap.add_argument("--out", type=Path, default=OUT / "context_index_cost.json")
    args = ap.parse_args(argv)
    conv = next(c for c in load(args.data) if c["sample_id"] == args.conv)
    result: dict[str, Any] = {}
    for policy in args.policies.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "vault"
            (root / "episodic").mkdir(parents=True)
            write_dialog_vault(root, conv)
            result[policy] = measure(root, policy)
        print(f"{policy:>9}: " + ", ".join(f"{k} {v}" for k, v in result[policy].items()),
              flush=True)
    write_json(args.out, {"benchmark": f"index cost of chunk context, locomo-dev {args.conv} "
                                       "raw dialog", "result": result, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
