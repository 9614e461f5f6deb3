"""Healthy-looking but wrong (issue 12): what a red-team found vaultd got quietly wrong, each
held by a test — a vault nested in another is its own, a file unreadable once is read again,
and a daemon whose index, token or lock file is deleted under it notices."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAYS, daily, make_vault, refuse_reads, write
from daemon_helpers import FAST_CONFIG, env_for, running_daemon, vaultd, wait_for

from vaultd import layout
from vaultd.daemon.client import DaemonClient, DaemonError
from vaultd.daemon.discovery import Lock, read_info, read_token, token_path
from vaultd.errors import VaultdError
from vaultd.vault import Vault, init_vault, open_vault

# ---------------------------------------------------------------- a vault inside a vault


def _inner_vault(outer: Path) -> dict[str, bytes]:
    """A vault of its own inside `outer`, with entries the outer lifecycle would merge and a
    MEMORY.md of its own. Returns its files' bytes."""
    inner = outer / "projects" / "inner"
    init_vault(inner)
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(inner, f"episodic/{day}.md", daily(day, [SAYS[i]]))
    return {p.relative_to(outer).as_posix(): p.read_bytes()
            for p in sorted(inner.rglob("*")) if p.is_file() and ".vaultd" not in p.parts}


def test_a_vault_nested_in_another_is_never_absorbed(vault: Vault) -> None:
    for i, day in enumerate(["2026-10-01", "2026-10-02", "2026-10-03"]):
        write(vault.root, f"episodic/{day}.md", daily(day, [SAYS[i].replace("flaky", "outer")]))
    inner = _inner_vault(vault.root)
    report = vault.index()
    assert ("projects/inner/", layout.NESTED_VAULT) in report.skipped
    assert not [p for p in vault.store.file_states() if p.startswith("projects/")]
    for _ in range(2):
        vault.lifecycle(list(__import__("vaultd.lifecycle").lifecycle.PHASE_NAMES))
    vault.flush()
    after = {rel: (vault.root / rel).read_bytes() for rel in inner}
    assert after == inner  # not one byte of the inner vault changed
    made = [p.relative_to(vault.root).as_posix() for p in vault.root.rglob("*.md")
            if p.parts[len(vault.root.parts)] in ("semantic", "archive")]
    assert made and not any("inner" in p for p in made)  # the outer vault's merge, not theirs
    # events from the daemon's watcher take the same rule
    scan = layout.stat_paths(vault.root, ["projects/inner/episodic/2026-11-01.md"],
                             vault.ignore)
    assert not scan.files and scan.skipped == {"projects/inner/": layout.NESTED_VAULT}


# ---------------------------------------------------------------- a file unreadable once


def test_a_note_unreadable_once_is_read_again(vault: Vault,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "semantic/locked.md", "# Locked\n\nthe zanzibar fact.\n")
    write(vault.root, "semantic/open.md", "# Open\n\nthe other fact.\n")
    # chmod 000 does not stop root: fail like it would
    refuse_reads(monkeypatch, lambda p: PermissionError(13, "Permission denied")
                 if p.endswith("/locked.md") else None)
    report = vault.index()
    assert [p for p, _ in report.skipped] == ["semantic/locked.md"]
    monkeypatch.undo()  # the user fixes the permission (or file descriptors free up)
    assert "semantic/locked.md" in vault.changed_since_index()  # status and doctor see it
    assert "semantic/locked.md" in vault.doctor().paths("stale", "missing")
    report = vault.index()
    assert report.new + report.changed == ["semantic/locked.md"] and not report.skipped
    assert [h.path for h in vault.search("zanzibar", k=1, mode="bm25")] == ["semantic/locked.md"]


def test_a_note_unreadable_for_a_moment_stays_searchable(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "semantic/fact.md", "# Fact\n\nthe quokka fact.\n")
    vault.index()
    write(vault.root, "semantic/fact.md", "# Fact\n\nthe quokka fact, edited.\n")
    refuse_reads(monkeypatch, lambda p: OSError(24, "Too many open files")
                 if p.endswith("/fact.md") else None)
    report = vault.index()
    assert "stays searchable" in report.skipped[0][1]
    assert [h.path for h in vault.search("quokka", k=1, mode="bm25")] == ["semantic/fact.md"]
    monkeypatch.undo()
    assert vault.index().changed == ["semantic/fact.md"]


# ---------------------------------------------------------------- the daemon's own files


@pytest.mark.slow
def test_an_index_deleted_under_the_daemon_is_opened_anew(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/a.md": "# A\n\nthe axolotl note\n"},
                      config=FAST_CONFIG)
    with running_daemon(root) as daemon:
        wait_for(lambda: daemon.call("POST", "/search", {"query": "axolotl"})[1].get("hits"),
                 "the first index")
        layout.index_path(root).unlink()  # the README's recipe, with the daemon up
        for suffix in ("-wal", "-shm"):
            Path(str(layout.index_path(root)) + suffix).unlink(missing_ok=True)
        write(root, "semantic/b.md", "# B\n\nthe bandicoot note\n")

        def found(query: str) -> bool:
            status, body = daemon.call("POST", "/search", {"query": query})
            return status == 200 and bool(body["hits"])

        wait_for(lambda: found("bandicoot"), "a note written after the index was deleted")
        assert found("axolotl")  # the whole vault, indexed into the new file
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        assert {"semantic/a.md", "semantic/b.md"} <= set(v.store.file_states())


@pytest.mark.slow
def test_a_deleted_token_is_restored_and_never_means_not_running(tmp_path: Path) -> None:
    root = make_vault(tmp_path, config=FAST_CONFIG)
    with running_daemon(root):
        token = read_token(root)
        token_path(root).unlink()
        # meanwhile a client must not take the daemon for gone and work beside it
        with pytest.raises(DaemonError, match="token file"):
            DaemonClient.for_vault(root)
        wait_for(lambda: read_token(root) == token, "the token put back")
        client = DaemonClient.for_vault(root)
        assert client is not None and client.health()["status"] == "ok"


@pytest.mark.slow
def test_a_deleted_lock_file_lets_no_second_daemon_start(tmp_path: Path) -> None:
    root = make_vault(tmp_path, config=FAST_CONFIG)
    env = env_for(tmp_path)
    assert vaultd(root, "start", env=env).returncode == 0
    try:
        pid = read_info(root)["pid"]
        lock = layout.state_dir(root) / "daemon.lock"
        lock.unlink()
        second = vaultd(root, "run", env=env, timeout=30)  # would lock a new file
        assert second.returncode != 0 and f"pid {pid}" in second.stderr
        wait_for(lambda: lock.exists() and lock.read_text().strip() == str(pid),
                 "the lock file put back by the running daemon")
        with pytest.raises(VaultdError, match=f"another vaultd daemon \\(pid {pid}\\)"):
            Lock(root).acquire()
        stopped = vaultd(root, "stop", env=env)
        assert stopped.returncode == 0 and str(pid) in stopped.stdout
    finally:
        vaultd(root, "stop", env=env)
