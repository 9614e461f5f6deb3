"""`vaultd doctor`: each kind of drift between vault and index is found, named and repaired.

Damage is done to a real index with SQL on purpose (the test plays a crash or a stray tool);
the code under test reaches the index only through `Store`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fake_embedder, make_vault
from daemon_helpers import FAST_CONFIG, running_daemon

from vaultd import layout
from vaultd.cli import main
from vaultd.daemon.discovery import Lock, ensure_token, info_path
from vaultd.errors import VaultdError
from vaultd.store import Store
from vaultd.vault import Vault, open_vault

NOTES = {
    "semantic/deploy.md": "# Deploy\n\n## Rollback\nfly releases rollback v41\n",
    "semantic/pool.md": "# Pool\n\npostgres pool exhausted under load\n",
    "procedural/release.md": "# Release\n\n1. tag\n2. push\n3. watch the dashboards\n",
    "episodic/2026-11-20.md": "# 2026-11-20\n\n## 09:00 — pool\npool exhausted #incident\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_vault(tmp_path, NOTES)
    (root / ".vaultd" / "config.toml").write_text(FAST_CONFIG, encoding="utf-8")
    return root


def opened(root: Path, tmp_path: Path) -> Vault:
    return open_vault(root, env={}, embedder=fake_embedder(tmp_path))


@pytest.fixture
def vault(root: Path, tmp_path: Path) -> Vault:
    with opened(root, tmp_path) as v:
        v.index()
        yield v


def damage(root: Path, *sql: str) -> None:
    store = Store(layout.index_path(root))
    try:
        for statement in sql:
            store.conn.execute(statement)
    finally:
        store.close()


def fixed_and_clean(vault: Vault) -> list[str]:
    vault.close()
    report = vault.doctor(fix=True)
    assert report.clean, report.lines()
    assert report.fixed
    assert vault.doctor().clean
    return report.fixed


def test_a_fresh_index_is_clean(vault: Vault) -> None:
    report = vault.doctor()
    assert report.clean, report.lines()
    assert report.checked["files"] == len(NOTES) + 1  # + MEMORY.md
    assert report.checked["chunks"] == report.checked["vectors"] > 0
    assert report.lines()[-1].startswith("ok: 5 files")


def test_no_index_is_reported_and_not_created(root: Path, tmp_path: Path) -> None:
    with opened(root, tmp_path) as v:
        report = v.doctor()
        assert report.kinds() == {"no-index"}
        assert not layout.index_path(root).exists()
        assert "nothing is indexed" in report.findings[0].message
        assert "built the index" in fixed_and_clean(v)


def test_missing_stale_and_extra_files(vault: Vault, root: Path) -> None:
    (root / "semantic" / "new.md").write_text("# New\nbrand new note\n", encoding="utf-8")
    (root / "semantic" / "deploy.md").write_text("# Deploy\nnow blue-green\n", encoding="utf-8")
    (root / "semantic" / "pool.md").unlink()
    report = vault.doctor()
    assert {(f.kind, f.path) for f in report.findings} == {
        ("missing", "semantic/new.md"), ("stale", "semantic/deploy.md"),
        ("extra", "semantic/pool.md")}
    assert "semantic/deploy.md: content differs" in "\n".join(report.lines())
    fixed_and_clean(vault)
    assert [h.path for h in vault.search("blue-green", mode="bm25")] == ["semantic/deploy.md"]


def test_same_size_and_mtime_but_other_content_is_stale(vault: Vault, root: Path) -> None:
    path = root / "semantic" / "pool.md"
    before = path.stat()
    path.write_text(path.read_text(encoding="utf-8").replace("load", "lead"), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = vault.doctor()
    assert [(f.kind, f.path) for f in report.findings] == [("stale", "semantic/pool.md")]
    fixed_and_clean(vault)
    assert [h.path for h in vault.search("lead", mode="bm25")] == ["semantic/pool.md"]


def test_a_touched_file_is_stale_by_mtime(vault: Vault, root: Path) -> None:
    os.utime(root / "semantic" / "pool.md", ns=(1, 10**18))
    report = vault.doctor()
    assert [f.kind for f in report.findings] == ["stale"]
    assert "same content" in report.findings[0].message
    fixed_and_clean(vault)


def test_a_newly_ignored_file_is_extra(root: Path, tmp_path: Path, vault: Vault) -> None:
    config = root / ".vaultd" / "config.toml"
    config.write_text(FAST_CONFIG + '\n[index]\nignore = ["procedural"]\n', encoding="utf-8")
    with opened(root, tmp_path) as v:
        report = v.doctor()
        assert [(f.kind, f.path) for f in report.findings] == [
            ("extra", "procedural/release.md")]
        assert "ignored now" in report.findings[0].message
        fixed_and_clean(v)


def test_vectors_out_of_sync_are_rebuilt(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "DELETE FROM chunk_vectors WHERE rowid = (SELECT min(rowid) FROM chunks)")
    report = vault.doctor()
    assert report.kinds() == {"vectors"}
    assert "vectors for" in report.findings[0].message
    assert "rebuilt the vector table from the embedding cache" in fixed_and_clean(vault)
    assert vault.search("rollback", mode="vector")


def test_fts_out_of_sync_is_rebuilt(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "DELETE FROM chunk_fts WHERE rowid = (SELECT rowid FROM chunks WHERE path = "
           "'semantic/pool.md')",
           "UPDATE chunk_fts SET text = 'something else' WHERE rowid = (SELECT rowid FROM "
           "chunks WHERE path = 'semantic/deploy.md')")
    report = vault.doctor()
    assert report.kinds() == {"fts"}
    assert "2 file(s)" in report.findings[0].message
    fixed_and_clean(vault)
    assert [h.path for h in vault.search("postgres", mode="bm25")] == ["semantic/pool.md"]


def test_orphans_and_lost_embeddings(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "DELETE FROM files WHERE path = 'semantic/pool.md'",
           "DELETE FROM embeddings WHERE hash IN (SELECT hash FROM chunks WHERE path = "
           "'semantic/deploy.md')")
    report = vault.doctor()
    assert {(f.kind, f.path) for f in report.findings} == {
        ("orphan", "semantic/pool.md"), ("missing", "semantic/pool.md"),
        ("embeddings", "semantic/deploy.md")}
    fixed_and_clean(vault)


def test_garbage_index_is_named_and_rebuilt_aside(vault: Vault, root: Path) -> None:
    vault.close()
    index = layout.index_path(root)
    for sidecar in root.glob(".vaultd/index.db-*"):
        sidecar.unlink()
    index.write_bytes(b"this is not a database\n" * 200)
    report = vault.doctor()
    assert report.kinds() == {"corrupt"}
    assert report.findings[0].message == (
        ".vaultd/index.db is not a usable SQLite index: file is not a database")
    fixed = fixed_and_clean(vault)
    aside = sorted(root.glob(".vaultd/index.db.broken-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert f"old one is kept as .vaultd/{aside[0].name}" in fixed[-1]
    assert not list(root.glob(".vaultd/index.db.rebuild*"))


def test_a_corrupt_fts_inverted_index_is_caught(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "UPDATE chunk_fts_content SET c1 = 'words the index never saw' WHERE id = "
           "(SELECT min(id) FROM chunk_fts_content)")
    report = vault.doctor()
    assert report.kinds() == {"corrupt"}
    assert "integrity check" in report.findings[0].message
    fixed_and_clean(vault)


def test_another_model_is_reported_and_rebuilt(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "UPDATE meta SET value = '{\"dims\": 384, \"file\": \"x\", \"id\": "
           "\"all-MiniLM-L6-v2\"}' WHERE key = 'model'")
    report = vault.doctor()
    assert report.kinds() == {"model"}
    assert "built with model all-MiniLM-L6-v2 (384 dims" in report.findings[0].message
    assert "configured for hash-256 (256 dims" in report.findings[0].message
    fixed_and_clean(vault)


def test_an_old_schema_is_reported_without_being_migrated(vault: Vault, root: Path) -> None:
    vault.close()
    damage(root, "PRAGMA user_version = 1")
    report = vault.doctor()
    assert report.kinds() == {"schema"}
    assert "schema version 1; this vaultd uses 4" in report.findings[0].message
    probe = Store.open_as_is(layout.index_path(root))
    assert probe.schema_version == 1  # looking did not migrate it
    probe.close()
    fixed_and_clean(vault)


def test_token_mode_and_empty_token(vault: Vault, root: Path) -> None:
    ensure_token(root)
    token = root / ".vaultd" / "token"
    token.chmod(0o644)
    report = vault.doctor()
    assert [(f.kind, f.path) for f in report.findings] == [("token", ".vaultd/token")]
    assert "mode 0644; it must be 0600" in report.findings[0].message
    fixed_and_clean(vault)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    token.write_text("", encoding="utf-8")
    assert "is empty" in vault.doctor().findings[0].message
    fixed_and_clean(vault)
    assert len(token.read_text(encoding="utf-8").strip()) >= 32


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_daemon_files_of_a_dead_daemon(vault: Vault, root: Path) -> None:
    pid = dead_pid()
    (root / ".vaultd" / "daemon.lock").write_text(str(pid), encoding="utf-8")
    info_path(root).write_text(json.dumps({"pid": pid, "port": 1}), encoding="utf-8")
    report = vault.doctor()
    assert report.kinds() == {"lock"}
    assert f"names daemon pid {pid}, which is not running" in report.findings[0].message
    fixed_and_clean(vault)
    assert not info_path(root).exists()


def test_temp_files_of_dead_writers_only(vault: Vault, root: Path) -> None:
    dead = root / "semantic" / f".pool.md.{dead_pid()}.abcd1234.vaultd-tmp"
    dead.write_text("half a no", encoding="utf-8")
    live = root / "semantic" / f".deploy.md.{os.getpid()}.abcd1234.vaultd-tmp"
    live.write_text("being written", encoding="utf-8")
    report = vault.doctor()
    assert [(f.kind, f.path) for f in report.findings] == [
        ("temp", f"semantic/{dead.name}")]
    fixed_and_clean(vault)
    assert not dead.exists() and live.exists()  # a write in progress is left alone


def test_atomic_writes_name_their_writer(tmp_path: Path) -> None:
    """Regression: temp files carried no pid, so nothing could tell a crash's leftover from a
    write in progress."""
    from vaultd import edits

    seen: list[str] = []
    real = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real(src, dst)

    target = tmp_path / "note.md"
    os.replace, saved = spy, os.replace  # type: ignore[assignment]
    try:
        edits.atomic_write(target, "text", root=tmp_path)
    finally:
        os.replace = saved
    assert seen and seen[0].startswith(f".note.md.{os.getpid()}.")
    assert seen[0].endswith(".vaultd-tmp")


def test_checks_run_next_to_a_daemon_but_fix_is_refused(root: Path) -> None:
    env = {"VAULTD_EMBEDDING_MODEL": "hash-256", "VAULTD_SERVER_PORT": "0"}
    with running_daemon(root, env) as running:
        v = open_vault(root, env=env, daemon="never")
        report = v.doctor()
        assert report.clean, report.lines()
        with pytest.raises(VaultdError, match=r"daemon \(pid \d+\) is running.*vaultd stop"):
            v.doctor(fix=True)
        v.close()
        assert running.thread.is_alive()


def test_fix_is_refused_while_the_lock_is_held(vault: Vault, root: Path) -> None:
    lock = Lock(root)
    lock.acquire()
    try:
        with pytest.raises(VaultdError, match="`vaultd stop`, then `vaultd doctor --fix`"):
            vault.doctor(fix=True)
    finally:
        lock.release()


def test_cli_exit_codes_and_json(vault: Vault, root: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_EMBEDDING_MODEL": "hash-256",
                            "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    clean = runner.invoke(main, ["--vault", str(root), "doctor", "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["clean"] is True
    (root / "semantic" / "new.md").write_text("# New\nfresh\n", encoding="utf-8")
    found = runner.invoke(main, ["--vault", str(root), "doctor", "--json"])
    assert found.exit_code == 1
    data = json.loads(found.output)
    assert data["findings"] == [{"kind": "missing", "path": "semantic/new.md",
                                 "message": "semantic/new.md: in the vault but not indexed"}]
    text = runner.invoke(main, ["--vault", str(root), "doctor"])
    assert text.exit_code == 1
    assert "missing: semantic/new.md" in text.output and "doctor --fix" in text.output
    fixed = runner.invoke(main, ["--vault", str(root), "doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output.splitlines()[0].startswith("fixed: indexed 1 file(s) again")
    assert runner.invoke(main, ["--vault", str(root), "doctor", "--bogus"]).exit_code == 2
