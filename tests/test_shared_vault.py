"""A vault shared between machines (Syncthing, git, iCloud): conflict copies are never indexed
as notes (issue 13, point 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fake_embedder, make_vault

from vaultd import layout
from vaultd.vault import open_vault

NOTE = "# Deploy\n\n## Rollback\nfly releases rollback v41 zebracorn\n"
CONFLICTS = {
    "semantic/deploy.sync-conflict-20260105-101500-ABCDEF1.md": NOTE + "syncthingonly\n",
    "semantic/deploy (Ann's conflicted copy 2026-01-05).md": NOTE + "dropboxonly\n",
    "semantic/deploy.md.orig": NOTE + "origonly\n",
}


# -- sync-conflict copies ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "conflict"), [
    ("deploy.sync-conflict-20260105-101500-ABCDEF1.md", True),
    ("deploy.sync-conflict-20260105-101500.markdown", True),
    ("deploy (Ann's conflicted copy 2026-01-05).md", True),
    ("deploy (conflicted copy 2026-01-05 101500).md", True),
    ("deploy.md.orig", True),
    ("deploy.md", False), ("sync-conflict notes.md", False), ("deploy (copy).md", False),
    ("deploy.orig", False), ("deploy.sync-conflict-20260105-101500-ABCDEF1.png", False),
])
def test_sync_conflict_names(name: str, conflict: bool) -> None:
    reason = layout.sync_conflict(name)
    assert (reason is not None) == conflict
    if conflict:
        assert "sync conflict" in reason


def test_conflict_copies_are_skipped_with_a_reason_not_indexed(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/deploy.md": NOTE, **CONFLICTS})
    scan = layout.scan(root, layout.Ignore())
    assert "semantic/deploy.md" in scan.files
    assert not set(CONFLICTS) & set(scan.files)
    assert set(CONFLICTS) <= set(scan.skipped)
    assert all("sync conflict" in scan.skipped[p] for p in CONFLICTS)
    named = layout.stat_paths(root, ["semantic/deploy.md", *CONFLICTS], layout.Ignore())
    assert list(named.files) == ["semantic/deploy.md"]
    assert set(named.skipped) == set(CONFLICTS)
    ignored = layout.stat_paths(root, list(CONFLICTS), layout.Ignore(("semantic",)))
    assert not ignored.files and not ignored.skipped  # an ignored folder stays silent
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        report = vault.index()
        assert {p for p, _ in report.skipped} >= set(CONFLICTS)
        assert [h.path for h in vault.search("zebracorn", mode="bm25")] == ["semantic/deploy.md"]
        for word in ("syncthingonly", "dropboxonly", "origonly"):
            assert vault.search(word, mode="bm25") == []
        status = vault.status()
        listed = {s["path"]: s["reason"] for s in status["skipped_files"]}
        assert set(CONFLICTS) <= set(listed)
        assert status["changed_since_index"] == 0
        assert vault.indexer().sync_paths(list(CONFLICTS)).new == []  # a watcher batch


def test_conflict_copy_indexed_before_is_dropped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An index built by an older vaultd holds a conflict copy as a note: the next index
    removes it."""
    conflict = "semantic/deploy.sync-conflict-20260105-101500-ABCDEF1.md"
    root = make_vault(tmp_path, {"semantic/deploy.md": NOTE, conflict: NOTE})
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        with monkeypatch.context() as old:
            old.setattr(layout, "sync_conflict", lambda name: None)  # as before this rule
            assert conflict in vault.index().new
        report = vault.index()
        assert conflict in report.deleted
        assert [h.path for h in vault.search("zebracorn", mode="bm25")] == ["semantic/deploy.md"]
