"""The one write gate (issue 24, point 1): every path vaultd writes is inside the vault, through
no link, outside other tools' folders and nested vaults, a regular file with one link — whatever
an archive record, a route target or an agent names. Breaks #1, #7, #9, #10 and the over-long
MCP path of #12, each with the probe that found it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import make_vault, write

from vaultd import edits, gate, layout
from vaultd.errors import VaultdError
from vaultd.mcp_server import PathError, note_path, resolve_inside
from vaultd.notes import parse

DAY = "2026-11-05"
LOG = f"---\ntype: episodic\ncreated: {DAY}\n---\n# {DAY}\n\n## 10:00 — rollback\nRan it.\n"
GIT_CONFIG = "[core]\n\tbare = false\n"


def cli(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`vaultd --vault ROOT ARGS` in a child process, killed after 60 s: a hang fails the test
    instead of stopping the run."""
    env = {**os.environ, "VAULTD_EMBEDDING_MODEL": "hash-256",
           "VAULTD_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VAULTD_VAULT", None)
    return subprocess.run([sys.executable, "-m", "vaultd", "--vault", str(root), *args],
                          capture_output=True, text=True, timeout=60, env=env)


# ------------------------------------------------------------------ break #1: restore, undo

def crafted_archive(root: Path, origin: str) -> str:
    """An archive file whose record says its entry came `from: origin`."""
    rel, body = f"archive/episodic/{DAY}.md", f"# {DAY}\n\n## 10:00 — rollback\nRan it.\n"
    taken = parse(rel, body).entries[0]
    write(root, rel, f"---\ntype: episodic\narchived: [{{key: '{taken.key}', hash: "
          f"'{taken.hash}', from: '{origin}', at: '2026-11-06T10:00:00+00:00', reason: "
          f"faded, left: 0}}]\n---\n{body}")
    return rel


@pytest.mark.parametrize("origin", [".git/config", "../outside.md", ".vaultd/config.toml",
                                    ".obsidian/plugins/x/main.js",
                                    f"nested/episodic/{DAY}.md"])
def test_a_crafted_archive_record_never_restores_into_a_protected_path(
        tmp_path: Path, origin: str) -> None:
    from vaultd.vault import init_vault, open_vault

    root = tmp_path / "v"
    init_vault(root)
    init_vault(root / "nested")
    write(root, ".git/config", GIT_CONFIG)
    write(root, ".obsidian/plugins/x/main.js", "module.exports = {};\n")
    write(root, f"nested/episodic/{DAY}.md", LOG)
    target = root / origin
    before = {p: p.read_bytes() for p in (target, root / ".vaultd/config.toml",
                                          root / ".git/config") if p.exists()}
    rel = crafted_archive(root, origin)
    vault = open_vault(root, env={"VAULTD_EMBEDDING_MODEL": "hash-256",
                                  "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    try:  # refused by the gate, naming the path (or the record not trusted at all: issue
        vault.restore(rel)  # 24 point 2 — either way nothing reaches the path it names)
    except VaultdError as exc:
        assert origin.removeprefix("../") in str(exc)
    finally:
        vault.close()
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "outside.md").exists()


@pytest.mark.parametrize("origin", [".git/config", ".vaultd/config.toml", ".git",
                                    ".obsidian/plugins/x/main.js", f"nested/episodic/{DAY}.md",
                                    "node_modules/x/index.md", ".trash/old.md"])
def test_the_path_restore_and_undo_write_is_checked_by_the_gate(tmp_path: Path,
                                                                 origin: str) -> None:
    from vaultd.lifecycle.moves import _check_inside

    root = make_vault(tmp_path)
    (root / "nested" / layout.STATE_DIR).mkdir(parents=True)
    with pytest.raises(edits.RefusedError, match=origin.split("/")[0].replace(".", r"\.")):
        _check_inside(root, origin)


# ------------------------------------------------------------------ the gate's rules

@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_vault(tmp_path, {"semantic/a.md": "# A\n"})
    (tmp_path / "outside").mkdir()
    return root


def test_the_gate_allows_a_plain_note_new_or_existing(root: Path) -> None:
    assert gate.check(root, root / "semantic/a.md") is not None
    assert gate.check(root, root / "semantic/new/b.md") is None


@pytest.mark.parametrize(("rel", "reason"), [
    ("../outside/x.md", "outside the vault"),
    ("semantic/../../outside/x.md", "outside the vault"),
    (".git/config", r"\.git/"),
    (".vaultd/token", r"\.vaultd/"),
    ("notes/.obsidian/plugins/x/main.js", r"\.obsidian/"),
    (".trash/a.md", r"\.trash/"),
    ("node_modules/p/README.md", "node_modules/"),
])
def test_the_gate_refuses_paths_outside_or_in_other_tools_folders(root: Path, rel: str,
                                                                   reason: str) -> None:
    with pytest.raises(edits.RefusedError, match=reason):
        gate.check(root, root / rel)


def test_the_gate_follows_no_link_on_the_way(root: Path) -> None:
    (root / "linked").symlink_to(root / "semantic", target_is_directory=True)
    (root / "semantic" / "l.md").symlink_to(root / "semantic" / "a.md")  # even inside
    for rel in ("linked/a.md", "linked/new.md", "semantic/l.md"):
        with pytest.raises(edits.OutsideError, match="symbolic link"):
            gate.check(root, root / rel)


def test_the_gate_refuses_a_nested_vault_and_ignored_paths(root: Path) -> None:
    (root / "team" / "sub" / layout.STATE_DIR).mkdir(parents=True)
    with pytest.raises(edits.RefusedError, match="team/sub/, a vault of its own"):
        gate.check(root, root / "team/sub/semantic/x.md")
    assert gate.check(root, root / "team/x.md") is None  # the folder above it is this vault's
    gate.register(root, layout.Ignore(("drafts",)))
    with pytest.raises(edits.RefusedError, match="ignore"):
        gate.check(root, root / "notes/drafts/x.md")


def test_the_gate_refuses_fifos_and_hard_links(root: Path) -> None:
    os.mkfifo(root / "pipe.md")
    with pytest.raises(edits.RefusedError, match="FIFO"):
        gate.check(root, root / "pipe.md")
    os.link(root / "semantic/a.md", root / "semantic/twin.md")
    with pytest.raises(edits.RefusedError, match="hard-linked"):
        gate.check(root, root / "semantic/a.md")
    assert gate.check(root, root / "semantic/a.md", reading=True) is not None  # readable


def test_own_files_are_reached_only_through_the_own_entry_point(root: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(edits.RefusedError):
        edits.atomic_write(root / ".vaultd/daemon.json", "{}", root=root)
    edits.write_own(root, "daemon.json", "{}")
    assert (root / ".vaultd/daemon.json").read_text() == "{}"
    (root / ".vaultd/daemon.json").unlink()
    (root / ".vaultd/daemon.json").symlink_to(tmp_path / "outside" / "bashrc")
    with pytest.raises(edits.OutsideError, match="symbolic link"):
        edits.write_own(root, "daemon.json", "{}")
    assert not (tmp_path / "outside" / "bashrc").exists()


def test_every_write_entry_point_asks_the_gate(root: Path) -> None:
    write(root, ".git/config", GIT_CONFIG)
    path = root / ".git/config"
    snap = edits.Snapshot(path, GIT_CONFIG.encode())
    for attempt in (lambda: edits.create_new(root / ".git/new", "x", root=root),
                    lambda: edits.replace_checked(snap, "x", root=root),
                    lambda: edits.remove_checked(snap, root=root),
                    lambda: edits.append_text(path, "x", root=root),
                    lambda: edits.take_back(path, 0, GIT_CONFIG.encode(), root=root),
                    lambda: edits.atomic_write(path, "x", root=root)):
        with pytest.raises(edits.RefusedError, match=r"\.git/"):
            attempt()
    assert path.read_text() == GIT_CONFIG and not (root / ".git/new").exists()


# ------------------------------------------------------------------ break #7: a linked route target

def test_a_route_target_that_is_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    from dataclasses import replace

    from conftest import TopicEmbedder, with_settings

    from vaultd.embedder import builtin_profiles
    from vaultd.vault import init_vault, open_vault

    root = tmp_path / "v"
    init_vault(root)
    (root / ".vaultd/config.toml").write_text('[embedding]\nmodel = "hash-256"\n')
    plugin_code = "// topicdeploy helper\nmodule.exports = {};\n"
    write(root, ".obsidian/plugins/foo/main.js", plugin_code)
    write(root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\n"
          "topicdeploy canary first.\n")
    (root / "CLAUDE.md").symlink_to(root / ".obsidian/plugins/foo/main.js")
    profile = replace(builtin_profiles(tmp_path)["hash-256"], id="topic-256",
                      route_threshold=0.35)
    vault = open_vault(root, env={}, embedder=TopicEmbedder(profile))
    try:
        with_settings(vault, route_targets=("CLAUDE.md",), scope=(".",))
        vault.index()
        with pytest.raises(VaultdError, match="CLAUDE.md: is a symbolic link"):
            vault.lifecycle(["route"])
    finally:
        vault.close()
    assert (root / ".obsidian/plugins/foo/main.js").read_text() == plugin_code
    assert (root / "CLAUDE.md").is_symlink()


# ------------------------------------------------------------------ break #10: FIFOs never block

@pytest.mark.slow
def test_a_fifo_as_memory_md_fails_flush_promptly_naming_it(tmp_path: Path) -> None:
    from vaultd.vault import init_vault

    root = tmp_path / "v"
    init_vault(root)
    (root / layout.MEMORY_FILE).unlink()
    os.mkfifo(root / layout.MEMORY_FILE)
    done = cli(root, tmp_path, "flush")  # a hang is a TimeoutExpired
    assert done.returncode != 0
    assert f"{layout.MEMORY_FILE}: is a FIFO" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_fifo_as_a_route_target_is_skipped_promptly_naming_it(tmp_path: Path) -> None:
    from vaultd.vault import init_vault

    root = tmp_path / "v"
    init_vault(root)
    write(root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\nCanary.\n")
    os.mkfifo(root / "CLAUDE.md")
    (root / ".vaultd/config.toml").write_text('[embedding]\nmodel = "hash-256"\n\n'
                                              '[lifecycle]\nroute_targets = ["CLAUDE.md"]\n')
    cli(root, tmp_path, "index")
    done = cli(root, tmp_path, "lifecycle", "--phase", "route")
    assert "CLAUDE.md: is a FIFO" in done.stdout + done.stderr


def test_reading_a_fifo_or_a_link_never_waits_and_never_follows(root: Path) -> None:
    os.mkfifo(root / "pipe.md")
    (root / "l.md").symlink_to(root / "semantic/a.md")
    for name, kind in (("pipe.md", "FIFO"), ("l.md", "symbolic link")):
        outcome = read_within(root / name, 10)
        assert outcome, f"reading {name} blocked"
        assert isinstance(outcome[0], edits.RefusedError) and kind in str(outcome[0])
        assert isinstance(outcome[0], OSError)  # readers that skip unreadable files skip it


def read_within(path: Path, seconds: float) -> list[object]:
    """[what `edits.read(path)` returned or raised], or [] when it still waits after `seconds`
    (on a thread of its own, so a blocked read cannot hang the run)."""
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(edits.read(path))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    return outcome


# ------------------------------------------------------------------ break #9 and #12: MCP paths

def test_mcp_paths_cannot_reach_a_nested_vault(root: Path) -> None:
    write(root, "team/semantic/secret.md", "# Team secret\n")
    (root / "team" / layout.STATE_DIR).mkdir()
    for must_exist in (True, False):
        with pytest.raises(PathError, match="a vault of its own"):
            note_path(root, "team/semantic/secret.md", layout.Ignore(), must_exist=must_exist)


def test_a_hard_link_to_vaultds_token_is_neither_read_nor_indexed(root: Path) -> None:
    write(root, ".vaultd/token", "secret-token\n")
    os.link(root / ".vaultd/token", root / "semantic/token.md")
    with pytest.raises(PathError, match="hard link"):
        note_path(root, "semantic/token.md", layout.Ignore())
    scanned = layout.scan(root, layout.Ignore())
    assert "semantic/token.md" not in scanned.files
    assert "hard link" in scanned.skipped["semantic/token.md"]
    batch = layout.stat_paths(root, ["semantic/token.md", "semantic/a.md"], layout.Ignore())
    assert list(batch.files) == ["semantic/a.md"] and "semantic/token.md" in batch.skipped


def test_a_hard_link_into_a_nested_vaults_state_is_not_indexed(root: Path) -> None:
    write(root, "team/.vaultd/token", "their-token\n")
    os.link(root / "team/.vaultd/token", root / "semantic/theirs.md")
    assert "semantic/theirs.md" not in layout.scan(root, layout.Ignore()).files


def test_two_ordinary_hard_linked_notes_are_still_indexed(root: Path) -> None:
    os.link(root / "semantic/a.md", root / "semantic/twin.md")
    assert {"semantic/a.md", "semantic/twin.md"} <= set(layout.scan(root, layout.Ignore()).files)


@pytest.mark.parametrize("rel", ["x" * 300 + ".md", "a/" + "b" * 256 + "/c.md",
                                 "/".join(["abcdefgh"] * 600) + ".md"])
def test_an_over_long_mcp_path_is_a_clear_tool_error(root: Path, rel: str) -> None:
    for must_exist in (True, False):
        with pytest.raises(PathError):
            resolve_inside(root, rel, must_exist=must_exist)
