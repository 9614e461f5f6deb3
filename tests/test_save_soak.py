"""Save soak (issue 12, point 2): a person keeps saving while vaultd writes the same files, and
no save may be lost.

Three saver processes run beside vaultd, each for `saves` saves:

- `memory`: vim-style rename saves of MEMORY.md (read the file, add a unique line at the end,
  write a new file, rename it over) while vaultd flushes its managed block into it;
- `log`: the same on yesterday's daily log, whose `related:` frontmatter vaultd's connect phase
  rewrites;
- `append`: `>>` appends of a unique line to today's daily log, which `remember` appends to and
  connect rewrites.

Meanwhile the main process runs vaultd in a loop — `flush` (index, connect, route, MEMORY.md),
`remember`, and the lifecycle (connect with `related:` mirroring, promote, age) — in-process,
on a real SQLite index with the fake topic embedder. A save is lost when its unique line is
found in no file of the vault at the end. vaultd may refuse a write (a conflict: the file
changed under it); it must never drop a person's line.

`bench/save_soak.py` runs it at full length (≥ 10,000 saves); the test here is a short run.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import TopicEmbedder

from vaultd import edits
from vaultd.embedder import builtin_profiles
from vaultd.vault import init_vault, open_vault

KINDS = ("memory", "log", "append")
MEMORY = "# Memory\n\nThe person's own notes.\n\n<!-- vaultd:begin -->\n<!-- vaultd:end -->\n"


def _vim_save(path: Path, token: str, rng: random.Random) -> None:
    """Read the note, add a line, write a new file beside it and rename it over the note."""
    text = path.read_bytes()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.swp")
    tmp.write_bytes(text + f"- {token}\n".encode())
    os.replace(tmp, path)


def _append(path: Path, token: str, rng: random.Random) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"- {token}\n")


def _saver(kind: str, path: str, saves: int, seed: int, start: Any, pause_ms: float) -> None:
    rng = random.Random(seed)
    save = _append if kind == "append" else _vim_save
    start.wait()
    for i in range(saves):
        save(Path(path), f"soak-{kind}-{i:06d}-end", rng)
        time.sleep(rng.uniform(0, pause_ms) / 1000)


def _vault(root: Path, work: Path) -> Any:
    profile = replace(builtin_profiles(work)["hash-256"], id="topic-256", link_threshold=0.7,
                      consolidate_threshold=0.8, route_threshold=0.35)
    return open_vault(root, env={}, embedder=TopicEmbedder(profile))


def run_save_soak(work: Path, saves: int, seed: int = 1, pause_ms: float = 3.0
                  ) -> dict[str, Any]:
    """`saves` saves of each kind while vaultd writes; returns the counts (see the module)."""
    root = work / "vault"
    init_vault(root)
    today = dt.date.today()
    yesterday = today - dt.timedelta(days=1)
    files = {"memory": root / "MEMORY.md",
             "log": root / f"episodic/{yesterday}.md",
             "append": root / f"episodic/{today}.md"}
    files["memory"].write_text(MEMORY, encoding="utf-8")
    files["log"].write_text(
        f"---\ntype: episodic\ncreated: {yesterday}\n---\n# {yesterday}\n\n## 09:00 — soak\n"
        "topicsoak the person's log.\n", encoding="utf-8")
    (root / "semantic").mkdir(exist_ok=True)
    (root / "semantic/soak.md").write_text("---\nstatus: proven\n---\n# Soak\n\ntopicsoak "
                                           "what is known.\n", encoding="utf-8")
    edits.append_entry(root, "topicsoak first entry of the day")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_saver, args=(kind, str(files[kind]), saves, seed + n, start,
                                              pause_ms))
             for n, kind in enumerate(KINDS)]
    for proc in procs:
        proc.start()
    ops = {"flush": 0, "remember": 0, "lifecycle": 0}
    conflicts: list[str] = []
    began = time.monotonic()
    with _vault(root, work) as vault:
        start.set()
        n = 0
        while any(p.is_alive() for p in procs):
            n += 1
            op = ("lifecycle", "remember", "flush")[n % 3]
            ops[op] += 1
            try:
                if op == "lifecycle":
                    for report in vault.lifecycle(["connect", "promote", "age"]):
                        conflicts += report.conflicts
                elif op == "remember":
                    vault.remember(f"topicsoak vaultd entry {n}")
                else:
                    vault.flush()
            except edits.ConflictError as exc:  # vaultd gave way to the person: allowed
                conflicts.append(str(exc))
    for proc in procs:
        proc.join()
    seconds = time.monotonic() - began
    text = "".join(p.read_text(encoding="utf-8", errors="replace")
                   for p in root.rglob("*.md") if ".vaultd" not in p.parts)
    lost = {kind: [i for i in range(saves) if f"soak-{kind}-{i:06d}-end" not in text]
            for kind in KINDS}
    return {
        "saves": {kind: saves for kind in KINDS}, "saves_total": saves * len(KINDS),
        "lost": {kind: len(v) for kind, v in lost.items()},
        "lost_total": sum(len(v) for v in lost.values()),
        "lost_examples": {kind: v[:5] for kind, v in lost.items() if v},
        "vaultd_ops": ops,  # attempted; a conflict (vaultd gave way) is counted below
        "vaultd_conflicts": len(conflicts),
        "conflict_copies": len(list(root.rglob("*.conflict-*"))),
        "seconds": round(seconds, 1), "exchange": getattr(edits, "_exchange", None) is not None,
    }


@pytest.mark.slow
def test_no_save_is_lost_while_vaultd_writes(tmp_path: Path) -> None:
    result = run_save_soak(tmp_path, saves=300, pause_ms=4.0)
    assert result["lost_total"] == 0, result
    assert result["vaultd_ops"]["flush"] >= 3 and result["vaultd_ops"]["lifecycle"] >= 3, result
