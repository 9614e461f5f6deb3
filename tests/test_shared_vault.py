"""A vault shared between machines (Syncthing, git, iCloud): one writer, and conflict copies that
are never indexed as notes (issue 13, point 7)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fake_embedder, make_vault
from daemon_helpers import FAST_CONFIG, running_daemon, wait_for

from vaultd import layout
from vaultd.cli import main
from vaultd.config import load_settings
from vaultd.daemon.schedule import SCHEDULED_PHASES
from vaultd.vault import open_vault
from vaultd.writer_role import NotWriterError, config_with_writer, role, same_host

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
        listed = {s.path: s.reason for s in status.skipped_files}
        assert set(CONFLICTS) <= set(listed)
        assert status.changed_since_index == 0
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


# -- the writer -------------------------------------------------------------------------------

def test_same_host() -> None:
    assert same_host("Studio", "studio") and same_host("studio", "studio.local")
    assert same_host("studio.local.", "STUDIO.local")
    assert not same_host("studio.home", "studio.work") and not same_host("studio", "laptop")


def test_writer_setting_default_env_and_init(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "nothing", env={}).lifecycle.writer == ""
    assert role("", "laptop").writes  # no writer set: any machine, as before
    assert role("studio", "STUDIO").writes and not role("studio", "laptop").writes
    root = make_vault(tmp_path)  # what `vaultd init` writes
    config = (root / ".vaultd" / "config.toml").read_text()
    assert f'writer = "{socket.gethostname()}"' in config
    assert load_settings(root, env={}).lifecycle.writer == socket.gethostname()
    assert load_settings(root, env={"VAULTD_LIFECYCLE_WRITER": "studio"}).lifecycle.writer \
        == "studio"
    assert config_with_writer('[lifecycle]\n# writer = ""\n', "a\\b") == \
        '[lifecycle]\nwriter = "a\\\\b"\n'


def test_non_writer_refuses_writing_jobs_naming_the_writer(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/deploy.md": NOTE,
                                 "episodic/2026-01-05.md": "# 2026-01-05\n\n## 09:00 — x\n"
                                 "zebracorn deploy rolled back\n"})
    before = files(root)
    env = {"VAULTD_LIFECYCLE_WRITER": "studio"}
    with open_vault(root, env=env, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        with pytest.raises(NotWriterError, match="only studio may"):
            vault.flush()
        with pytest.raises(NotWriterError, match="studio"):
            vault.lifecycle(["age"])
        with pytest.raises(NotWriterError, match="studio"):
            vault.lifecycle(["connect"])  # connect mirrors links into the notes
        vault.lifecycle(["connect"], mirror=False)  # links in the index only: fine
        assert vault.flush(dry_run=True).memory_diff  # a dry run writes nothing: fine
        vault.lifecycle(["connect", "age"], dry_run=True)
        assert vault.status().writer.to_dict() == {
            "writer": "studio", "host": socket.gethostname(), "writes": False,
            "summary": f"studio is the writer; this machine ({socket.gethostname()}) indexes "
                       "and searches only"}
    assert files(root) == before
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache"),
                            "VAULTD_EMBEDDING_MODEL": "hash-256", **env})
    for args in (["flush"], ["lifecycle"], ["lifecycle", "--phase", "age"]):
        out = runner.invoke(main, ["--vault", str(root), *args])
        assert out.exit_code == 2 and "only studio may" in out.output, out.output
    assert runner.invoke(main, ["--vault", str(root), "flush", "--dry-run"]).exit_code == 0
    out = runner.invoke(main, ["--vault", str(root), "hook", "session-end"])
    assert out.exit_code == 0 and "flush skipped" in out.output  # an agent's hook: no error
    assert files(root) == before  # no note, no MEMORY.md written on this machine
    out = runner.invoke(main, ["--vault", str(root), "status"])
    assert "writer     studio is the writer" in out.output


# -- two machines, one vault, a daemon on each ------------------------------------------------

def sync(src: Path, dst: Path) -> list[str]:
    """What a sync tool does between two machines: newer files cross over, .vaultd/ stays."""
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or rel.parts[0] == layout.STATE_DIR:
            continue
        target = dst / rel
        if target.exists() and (target.read_bytes() == path.read_bytes()
                                or target.stat().st_mtime_ns >= path.stat().st_mtime_ns):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(rel.as_posix())
    return copied


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and layout.STATE_DIR not in p.relative_to(root).parts}


@pytest.mark.slow
def test_two_machines_share_a_vault_only_the_writer_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = FAST_CONFIG + '\n[lifecycle]\nwriter = "studio"\n'  # the same, synced, config
    studio = make_vault(tmp_path, {"semantic/deploy.md": NOTE}, name="studio", config=config)
    laptop = tmp_path / "laptop"
    shutil.copytree(studio, laptop, ignore=shutil.ignore_patterns(layout.STATE_DIR))
    (laptop / layout.STATE_DIR).mkdir()
    (laptop / layout.STATE_DIR / "config.toml").write_text(config)

    monkeypatch.setattr(socket, "gethostname", lambda: "studio")
    with running_daemon(studio) as a:
        monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
        with running_daemon(laptop) as b:
            status_a, status_b = a.call("GET", "/status")[1], b.call("GET", "/status")[1]
            assert status_a["writer"]["writes"] and status_a["writer"]["skipped_jobs"] == []
            assert status_b["writer"] == {
                "writer": "studio", "host": "laptop", "writes": False,
                "summary": "studio is the writer; this machine (laptop) indexes and searches "
                           "only",
                "skipped_jobs": list(SCHEDULED_PHASES)}
            jobs_a = {j.id for j in a.daemon.scheduler.get_jobs()}
            jobs_b = {j.id for j in b.daemon.scheduler.get_jobs()}
            assert {f"lifecycle-{p}" for p in SCHEDULED_PHASES} <= jobs_a
            assert not {j for j in jobs_b if j.startswith("lifecycle-")}
            log_b = (laptop / ".vaultd" / "daemon.log").read_text()
            assert "indexes and searches only: skipping the scheduled connect" in log_b

            # the agent on the laptop remembers something; the sync carries it to the studio
            (laptop / "episodic" / "2026-01-05.md").write_text(
                "# 2026-01-05\n\n## 09:00 — rollback\nzebracorn rollback done from laptop\n")
            assert sync(laptop, studio) == ["episodic/2026-01-05.md"]
            for d in (a, b):
                wait_for(lambda d=d: "episodic/2026-01-05.md" in d.paths("zebracorn"),
                         "both daemons to index the synced note")

            laptop_files = files(laptop)
            status, answer = b.call("POST", "/flush", {})
            assert status == 400 and "only studio may" in answer["error"]
            status, answer = b.call("POST", "/lifecycle", {"phases": ["age"]})
            assert status == 400 and "only studio may" in answer["error"]
            status, answer = b.call("POST", "/lifecycle", {"phases": ["age"], "dry_run": True})
            assert status == 200
            assert files(laptop) == laptop_files  # the laptop's daemon wrote nothing

            status, answer = a.call("POST", "/flush", {})
            assert status == 200 and answer["memory_written"]
            assert "zebracorn rollback" in (studio / "MEMORY.md").read_text()
            assert "MEMORY.md" in sync(studio, laptop)  # the writer's work reaches the laptop
            memory = hashlib.sha256((laptop / "MEMORY.md").read_bytes()).hexdigest()
            with open_vault(laptop, env={}, daemon="never") as vault:
                wait_for(lambda: vault.store.file_states()["MEMORY.md"][2] == memory,
                         "the laptop to index the studio's MEMORY.md")

            # a sync conflict on the laptop: indexed by neither daemon, listed as skipped
            conflict = "semantic/deploy.sync-conflict-20260105-101500-LAPTOP1.md"
            (laptop / conflict).write_text(NOTE + "conflictonly\n")
            (laptop / "semantic" / "later.md").write_text("# Later\nconflictonly marker\n")
            assert sync(laptop, studio) == [conflict, "semantic/later.md"]
            for d in (a, b):
                wait_for(lambda d=d: "semantic/later.md" in d.paths("conflictonly"),
                         "both daemons to index the note written after the conflict copy")
                assert conflict not in d.paths("conflictonly")
                with open_vault(d.root, env={}, daemon="never") as vault:
                    skipped = {s.path: s.reason for s in vault.status().skipped_files}
                assert "sync conflict" in skipped[conflict]
            assert b.stop() == 0
        assert a.stop() == 0
    assert json.loads(json.dumps(status_b))  # what `vaultd status --json` carries
