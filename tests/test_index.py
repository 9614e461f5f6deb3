"""Indexer + store: reconcile new/changed/moved/deleted, reuse by content hash, model identity,
the rebuild invariant, with real SQLite + sqlite-vec and the deterministic fake embedder; the
tests that take `index_env` run on both backends (SQLite, and PostgreSQL + pgvector)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from vaultd import layout
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.errors import ExtensionError, VaultdError
from vaultd.store import MIGRATIONS, Store, sqlite_module
from vaultd.vault import Vault, init_vault, open_vault

DAILY = """---
type: episodic
created: 2026-11-20
tags: [daily]
---
# 2026-11-20

## 09:14 — Flaky refund webhook test
test_refund_webhook failed in CI: the fixture builds timestamps in local time. #ci

## 11:30 — Postgres pool
Connection pool exhaustion under load; raised the pool size to 20. #decision

- 14:02 lunch at the ramen place
"""

NOTE = """---
title: Deploying ledgerly
tags: [ops, deploy]
owner: sam
---
# Deploying ledgerly

## Rollback
Roll back with `fly releases rollback` and skip migrations.

## Canary
Send ten percent of traffic to the canary first.
"""


def make(tmp_path: Path) -> tuple[Path, HashEmbedder]:
    root = tmp_path / "vault"
    init_vault(root)
    (root / "episodic" / "2026-11-20.md").write_text(DAILY, encoding="utf-8")
    (root / "semantic" / "deploy.md").write_text(NOTE, encoding="utf-8")
    return root, HashEmbedder(builtin_profiles(tmp_path)["hash-256"])


def opened(root: Path, embedder: HashEmbedder, env: dict[str, str] | None = None) -> Vault:
    return open_vault(root, env=env or {}, embedder=embedder)


def test_first_index_then_nothing_to_do(tmp_path: Path, index_env: dict[str, str]) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, index_env) as vault:
        first = vault.index()
        assert sorted(first.new) == ["MEMORY.md", "episodic/2026-11-20.md", "semantic/deploy.md"]
        assert first.chunks_embedded > 0 and first.chunks_reused == 0
        calls, texts = emb.calls, emb.texts_embedded
        second = vault.index()
    assert second.chunks_embedded == 0
    assert second.unchanged == 3 and not second.new and not second.changed
    assert (emb.calls, emb.texts_embedded) == (calls, texts)  # the model was not called at all
    assert "0 chunks embedded" in second.summary()


def test_touch_without_change_embeds_nothing(tmp_path: Path, index_env: dict[str, str]) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, index_env) as vault:
        vault.index()
        path = root / "semantic" / "deploy.md"
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        report = vault.index()
        assert report.chunks_embedded == 0 and not report.changed
        assert vault.changed_since_index() == []


def test_one_section_edit_embeds_only_that_chunk(tmp_path: Path, index_env: dict[str, str]) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, index_env) as vault:
        vault.index()
        path = root / "semantic" / "deploy.md"
        path.write_text(NOTE.replace("ten percent", "five percent"), encoding="utf-8")
        report = vault.index()
        assert report.changed == ["semantic/deploy.md"]
        assert report.chunks_embedded == 1
        assert report.chunks_reused >= 1
        hits = vault.search("five percent canary", k=1, mode="bm25")
        assert hits[0].path == "semantic/deploy.md" and "five percent" in hits[0].text
        assert not vault.search("ten", k=5, mode="bm25")  # no phantom rows of the old text


def test_move_and_rename_reuse_every_vector(tmp_path: Path, index_env: dict[str, str]) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, index_env) as vault:
        vault.index()
        (root / "procedural").mkdir(exist_ok=True)
        shutil.move(root / "semantic" / "deploy.md", root / "procedural" / "deploy-howto.md")
        before = emb.texts_embedded
        report = vault.index()
        assert report.moved == [("semantic/deploy.md", "procedural/deploy-howto.md")]
        assert report.deleted == [] and report.new == []
        assert report.chunks_embedded == 0 and emb.texts_embedded == before
        hit = vault.search("canary traffic", k=1)[0]
        assert hit.path == "procedural/deploy-howto.md"
        assert hit.type == "procedural"  # the type follows the new folder


def test_delete_removes_every_row(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb) as vault:
        vault.index()
        (root / "semantic" / "deploy.md").unlink()
        report = vault.index()
        assert report.deleted == ["semantic/deploy.md"]
        assert all(h.path != "semantic/deploy.md" for h in vault.search("rollback canary"))
        counts = vault.store.counts()
        assert counts["chunks"] == counts["vectors"]
        rows = vault.store.conn.execute("SELECT count(*) FROM chunk_fts").fetchone()[0]
        assert rows == counts["chunks"]


def test_entries_and_frontmatter_are_indexed(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb) as vault:
        vault.index()
        conn = vault.store.conn
        entries = conn.execute("SELECT heading, start_line, end_line, tags FROM entries "
                               "WHERE path = 'episodic/2026-11-20.md' ORDER BY ordinal").fetchall()
        assert [e[0] for e in entries] == ["09:14 — Flaky refund webhook test",
                                           "11:30 — Postgres pool"]
        assert entries[0][1:3] == (8, 9)
        assert '"decision"' in entries[1][3]
        fm = conn.execute("SELECT frontmatter, type, title FROM files "
                          "WHERE path = 'semantic/deploy.md'").fetchone()
        assert '"owner": "sam"' in fm[0] and fm[1] == "semantic" and fm[2] == "Deploying ledgerly"


def test_rebuild_gives_identical_results(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    queries = ["refund webhook", "pool size", "rollback migrations", "canary traffic"]
    with opened(root, emb) as vault:
        vault.index()
        before = [[(h.path, h.lines, round(h.score, 6)) for h in vault.search(q)] for q in queries]
    for suffix in ("", "-wal", "-shm"):
        Path(str(layout.index_path(root)) + suffix).unlink(missing_ok=True)
    with opened(root, emb) as vault:
        vault.index()
        after = [[(h.path, h.lines, round(h.score, 6)) for h in vault.search(q)] for q in queries]
    assert before == after and any(before)


def test_model_change_rebuilds_the_index(tmp_path: Path, index_env: dict[str, str]) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, index_env) as vault:
        vault.index()
    from dataclasses import replace

    other = HashEmbedder(replace(emb.profile, id="hash-other", dims=128))
    with opened(root, other, index_env) as vault:
        with pytest.raises(Exception, match="run `vaultd index`"):
            vault.search("pool")
        report = vault.index()
        assert report.rebuilt and report.chunks_embedded > 0
        assert vault.store.model_identity() == {"id": "hash-other", "dims": 128, "file": "hash"}
        assert vault.search("pool size", k=1)[0].path == "episodic/2026-11-20.md"


def test_status_reports_staleness(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb) as vault:
        vault.index()
        status = vault.status()
        assert status.counts["notes"] == 3
        assert status.counts["chunks"] == status.counts["vectors"] > 0
        assert status.versions["sqlite_vec"].startswith("v0.")
        assert status.changed_since_index == 0 and status.last_index_at
        (root / "semantic" / "new.md").write_text("# New\n\nfresh words\n", encoding="utf-8")
        (root / "semantic" / "deploy.md").unlink()
        status = vault.status()
        assert status.changed_since_index == 2
        assert status.changed_paths == ["semantic/deploy.md", "semantic/new.md"]


def test_schema_version_and_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS) == 4
    store.close()
    store = Store(path)  # a second open applies nothing and keeps the data
    assert store.schema_version == len(MIGRATIONS) == 4
    store.close()


def test_an_index_from_a_newer_vaultd_is_refused_with_the_fix(tmp_path: Path) -> None:
    """An index a newer vaultd migrated (an older one opened after a downgrade) is not read
    as if it were this version's: its tables may mean something else (migration 3 made the
    link graph one row a pair). The message names the index and both ways out."""
    path = tmp_path / "index.db"
    store = Store(path)
    store.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store.close()
    with pytest.raises(VaultdError, match=r"schema version 5, newer than this vaultd's 4.*"
                                          r"Upgrade vaultd.*`vaultd index`"):
        Store(path)


def _a_two_row_link_graph(path: Path, links: int) -> None:
    """An index as migration 2 left it, its link graph a row per direction."""
    store = Store(path)
    with store.transaction():
        store.conn.execute("DROP TABLE link_pairs")
        store.conn.execute("CREATE TABLE edges (a TEXT NOT NULL, b TEXT NOT NULL, score REAL "
                           "NOT NULL, PRIMARY KEY (a, b))")
        store.conn.execute("CREATE INDEX edges_b ON edges(b)")
        rows = [(f"entry-{i:06d}", f"entry-{j:06d}", 0.5) for i in range(links // 20)
                for j in range(i + 1, i + 11)]
        store.conn.executemany("INSERT INTO edges VALUES (?, ?, ?)",
                               rows + [(b, a, s) for a, b, s in rows])
        store.conn.execute("PRAGMA user_version = 2")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def test_a_migration_that_frees_much_gives_the_space_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 3 halves the link graph's rows; when that frees much of the file, the index
    is compacted (VACUUM) right after, and its file shrinks."""
    import vaultd.store.schema

    path = tmp_path / "index.db"
    _a_two_row_link_graph(path, 40_000)
    before = path.stat().st_size
    monkeypatch.setattr(vaultd.store.schema, "COMPACT_BYTES", 1)
    store = Store(path)
    try:
        assert store.schema_version == 4 and sum(1 for _ in store.links()) == 40_000
        assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    finally:
        store.close()
    assert path.stat().st_size < before * 0.6


def test_sqlite_module_falls_back_or_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    module = sqlite_module()
    can_load = hasattr(sqlite3.connect(":memory:"), "enable_load_extension")
    assert module.__name__ == ("sqlite3" if can_load else "sqlean")

    import vaultd.store.opening as store_mod

    monkeypatch.setattr(store_mod, "_MODULE", None)
    monkeypatch.setattr(store_mod, "_try_module", lambda m: f"{m.__name__}: no extensions")
    with pytest.raises(ExtensionError, match="pip install sqlean-py"):
        store_mod.sqlite_module()


def test_archive_is_indexed_and_found_as_a_lower_tier(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    (root / "archive").mkdir()
    (root / "archive" / "old.md").write_text("# Old\n\nzeppelin maintenance log\n",
                                             encoding="utf-8")
    (root / ".obsidian").mkdir()
    (root / ".obsidian" / "x.md").write_text("zeppelin\n", encoding="utf-8")
    with opened(root, emb) as vault:
        vault.index()
        assert vault.search("zeppelin", mode="bm25", archive="none") == []
        [lower] = vault.search("zeppelin", mode="bm25")
        assert lower.path == "archive/old.md" and lower.archived
        [equal] = vault.search("zeppelin", mode="bm25", archive="equal")
        assert equal.path == "archive/old.md" and lower.score == pytest.approx(0.95 * equal.score)
        hits = vault.search("zeppelin", mode="vector", archive="equal", k=1)
        assert hits[0].path == "archive/old.md"
