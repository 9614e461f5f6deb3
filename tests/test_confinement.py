"""Confinement (issue #7, point 7): vaultd writes nothing outside the vault except the route
targets a config explicitly declares, whatever paths frontmatter, config, CLI or MCP input hold
(`..`, absolute paths, `~`, a symlinked file or folder).

Every test snapshots the whole of `tmp_path` outside the vault — names, kinds, bytes, modes,
mtimes, link targets — runs vaultd, and compares.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import SAYS, TopicEmbedder, daily, vaultd_wrote, with_settings, write

from vaultd import edits
from vaultd.embedder import builtin_profiles
from vaultd.errors import VaultdError
from vaultd.mcp_server import MemoryTools
from vaultd.transcript import capture
from vaultd.vault import Vault, init_vault, open_vault

FIXTURES = Path(__file__).parent / "fixtures"
ALL_PHASES = ["connect", "promote", "consolidate", "route", "age", "heartbeat", "prune"]


def tree(base: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under `base` but `skip`, without following links."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [n for n in dirnames if here / n != skip]
        for name in dirnames + filenames:
            path = here / name
            st = path.lstat()
            rel = path.relative_to(base).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


class World:
    """A vault at tmp_path/v, an `outside` folder beside it, a `home` holding a declared route
    target, and HOME pointing at `home`."""

    def __init__(self, tmp_path: Path, vault: Vault) -> None:
        self.tmp = tmp_path
        self.vault = vault
        self.root = vault.root
        self.outside = tmp_path / "outside"
        self.home = tmp_path / "home"

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        return tree(self.tmp, self.root)

    def changed(self, before: dict[str, tuple[Any, ...]]) -> set[str]:
        after = self.snapshot()
        return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    outside, home = tmp_path / "outside", tmp_path / "home"
    write(outside, "secret.md", "# Secret\n\ntopicdeploy the outside secret.\n")
    write(outside, "notes/n.md", "# N\n\ntopicdeploy outside notes.\n")
    write(outside, "escaped.md", "---\narchived_from: semantic/stolen.md\n---\n# Escaped\n\n"
          "an outside file that claims to be archived.\n")
    write(home, "AGENTS.md", "# Agents\n\ntopicdeploy rules for agents.\n")
    shutil.copy(FIXTURES / "transcript.jsonl", outside / "transcript.jsonl")
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "v"
    init_vault(root)
    (root / ".vaultd" / "config.toml").write_text('[embedding]\nmodel = "hash-256"\n')
    profile = replace(builtin_profiles(tmp_path)["hash-256"], id="topic-256",
                      link_threshold=0.7, consolidate_threshold=0.8, route_threshold=0.35)
    v = open_vault(root, env={}, embedder=TopicEmbedder(profile))
    yield World(tmp_path, v)
    v.close()


def hostile_vault(w: World) -> None:
    """Notes whose frontmatter and links try every way out."""
    root = w.root
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(root, f"episodic/{day}.md", daily(day, [SAYS[i], f"unrelated topicother{i}."]))
    write(root, "episodic/lonely.md", "---\ntype: episodic\nrelated: ['[[../outside/secret]]']"
          "\n---\n# Lonely\n\ntopiclonely lunch place.\n")
    # proven knowledge vaultd made (sealed), which route may send to a declared target
    vaultd_wrote(root, "semantic/deploys.md", "---\nstatus: proven\nconsolidation: good1\n---\n"
                 "# Deploys\n\ntopicdeploy canary first.\n")
    write(root, "semantic/fake-merge.md",
          "---\nconsolidation: evilmerge1\nconsolidated_from: ['../../outside/escaped.md', "
          "'../outside/secret.md#key', '/etc/hostname']\n---\n# Fake\n\ntopicfake.\n")
    write(root, "archive/up.md", "---\narchived_from: ../outside/up.md\n---\n# Up\n")
    write(root, "archive/abs.md", f"---\narchived_from: {w.outside / 'abs.md'}\n---\n# Abs\n")
    write(root, "archive/episodic/2026-01-01.md",
          "---\narchived: {'10:00 — gone': {from: '../outside/day.md'}}\n---\n# 2026-01-01\n"
          "\n## 10:00 — gone\ntopicgone entry.\n")
    (root / "semantic" / "link.md").symlink_to(w.outside / "secret.md")
    (root / "linked").symlink_to(w.outside / "notes", target_is_directory=True)
    (root / "archive" / "link.md").symlink_to(w.outside / "escaped.md")


def test_nothing_outside_the_vault_changes_but_a_declared_route_target(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    hostile_vault(w)
    with_settings(w.vault, route_targets=("~/AGENTS.md",), route_outside=("~/AGENTS.md",),
                  newer_entries=3)
    before = w.snapshot()

    w.vault.index()
    reports = {r.phase: r for r in w.vault.lifecycle(ALL_PHASES)}
    ages = [reports["age"]] + [w.vault.lifecycle(["age"])[0] for _ in range(3)]
    w.vault.flush()
    w.vault.remember("remembered with a path-like text ../../outside/x.md /etc/passwd")
    capture(w.root, w.outside / "transcript.jsonl")
    monkeypatch.setenv("VAULTD_EMBEDDING_MODEL", "hash-256")
    monkeypatch.setenv("VAULTD_CACHE_DIR", str(w.root / ".vaultd" / "cache"))
    tools = MemoryTools(w.root)
    try:
        written = tools.write("an MCP note", type="../../outside/evil", tags=["/tmp/x", "../y"])
    finally:
        tools.close()
    assert written["path"].startswith("episodic/")
    refusals = []
    for rel in ("archive/../../outside/escaped.md", "archive/link.md"):
        with pytest.raises(VaultdError, match="outside the vault|symbolic link") as exc:
            w.vault.restore(rel)
        refusals.append(str(exc.value))
    # an archive's own word on where it came from is not vaultd's (unsealed): it goes back to
    # the path the archive mirrors, inside the vault
    for rel in ("archive/up.md", "archive/abs.md", "archive/episodic/2026-01-01.md"):
        assert all(not p.startswith("..") and not p.startswith("/")
                   for p in w.vault.restore(rel))
    with pytest.raises(VaultdError):
        w.vault.undo("evilmerge1")

    # the run did real work: it merged, faded, routed and wrote MEMORY.md
    assert any(p.startswith("semantic/") for p in reports["consolidate"].created)
    assert any(a.kind == "fade" for age in ages for a in age.actions)
    assert (w.root / "archive/episodic/lonely.md").is_file()
    assert (w.root / "MEMORY.md").is_file()
    assert not (w.root / "semantic/stolen.md").exists()
    # and outside the vault only the declared route target changed, inside its block
    assert w.changed(before) == {"home/AGENTS.md"}
    agents = (w.home / "AGENTS.md").read_text(encoding="utf-8")
    assert agents.startswith("# Agents\n\ntopicdeploy rules for agents.\n")
    assert "[[semantic/deploys]]" in agents
    assert len(refusals) == 2
    assert (w.root / "up.md").is_file() and (w.root / "episodic/2026-01-01.md").is_file()


@pytest.mark.parametrize("target", ["../outside/secret.md", "ABS", "~/AGENTS.md",
                                    "CLAUDE.md", "linked/n.md", "sub/../../outside/new.md"])
def test_an_undeclared_route_target_outside_the_vault_is_refused(world: World,
                                                                 target: str) -> None:
    w = world
    write(w.root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\n"
          "topicdeploy canary first.\n")
    (w.root / "CLAUDE.md").symlink_to(w.outside / "secret.md")
    (w.root / "linked").symlink_to(w.outside / "notes", target_is_directory=True)
    target = str(w.outside / "secret.md") if target == "ABS" else target
    with_settings(w.vault, route_targets=(target,))
    before = w.snapshot()
    w.vault.index()
    with pytest.raises(VaultdError, match="outside the vault"):
        w.vault.lifecycle(["route"])
    with pytest.raises(VaultdError, match="outside the vault"):
        w.vault.flush()
    assert w.changed(before) == set()


@pytest.mark.parametrize("folder", ["episodic", "archive", "semantic"])
def test_a_symlinked_folder_does_not_carry_writes_out(world: World, folder: str) -> None:
    w = world
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(w.root, f"episodic/{day}.md", daily(day, [SAYS[i], f"unrelated topicother{i}."]))
    write(w.root, "episodic/lonely.md", "---\ntype: episodic\n---\n# Lonely\n\n"
          "topiclonely lunch place.\n")
    w.vault.index()
    w.vault.lifecycle(["connect"], mirror=False)
    with_settings(w.vault, newer_entries=3)
    for _ in range(3):
        w.vault.lifecycle(["age"])
    elsewhere = w.outside / f"{folder}-elsewhere"
    elsewhere.mkdir()
    if folder == "episodic":  # the daily logs were moved out and a link left in their place
        for path in (w.root / "episodic").iterdir():
            shutil.move(path, elsewhere / path.name)
        (w.root / "episodic").rmdir()
    else:
        shutil.rmtree(w.root / folder, ignore_errors=True)
    (w.root / folder).symlink_to(elsewhere, target_is_directory=True)
    before = w.snapshot()
    if folder == "episodic":
        with pytest.raises(edits.OutsideError, match="outside the vault"):
            w.vault.remember("a new entry")
        with pytest.raises(edits.OutsideError):
            capture(w.root, FIXTURES / "transcript.jsonl")
    elif folder == "archive":
        [report] = w.vault.lifecycle(["age"])
        assert "fade" in [a.kind for a in report.actions] and not report.written
        assert report.conflicts and all("outside the vault" in c for c in report.conflicts)
        assert (w.root / "episodic/lonely.md").is_file()  # not moved: nowhere safe to go
    else:
        [report] = w.vault.lifecycle(["consolidate"])
        assert len(report.actions) == 1 and not report.created
        assert "outside the vault" in report.conflicts[0]
        assert "topicflaky" in (w.root / "episodic/2026-11-01.md").read_text()  # not archived
    assert w.changed(before) == set()


def test_a_symlinked_daily_log_is_not_written_through(world: World) -> None:
    w = world
    day = "2026-11-05"
    (w.root / "episodic" / f"{day}.md").symlink_to(w.outside / "secret.md")
    before = w.snapshot()
    import datetime as dt

    with pytest.raises(edits.OutsideError):
        edits.append_entry(w.root, "text", when=dt.datetime(2026, 11, 5, 9, 0))
    assert w.changed(before) == set()
    assert (w.root / "episodic" / f"{day}.md").is_symlink()  # the user's link is left alone


@pytest.mark.parametrize("target", [".vaultd/token", ".vaultd/config.toml", ".git/config"])
def test_a_route_target_in_vaultds_or_gits_own_folder_is_refused(world: World,
                                                                  target: str) -> None:
    w = world
    write(w.root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\n"
          "topicdeploy canary first.\n")
    write(w.root, ".vaultd/token", "secret-token")
    write(w.root, ".git/config", "[core]\n\tbare = false\n")
    before = {p: (w.root / p).read_bytes() for p in (".vaultd/token", ".git/config",
                                                     ".vaultd/config.toml")}
    with_settings(w.vault, route_targets=(target,))
    w.vault.index()
    with pytest.raises(VaultdError, match="own folder"):
        w.vault.lifecycle(["route"])
    assert {p: (w.root / p).read_bytes() for p in before} == before


def test_a_memory_md_linked_outside_is_neither_written_through_nor_replaced(
        world: World) -> None:
    w = world
    write(w.root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\n"
          "topicdeploy canary first.\n")
    (w.root / "MEMORY.md").unlink(missing_ok=True)  # init may have made one
    (w.root / "MEMORY.md").symlink_to(w.outside / "secret.md")
    before = w.snapshot()
    with pytest.raises(edits.OutsideError, match="MEMORY.md"):
        w.vault.flush()
    assert w.changed(before) == set()
    assert (w.root / "MEMORY.md").is_symlink()


def test_a_note_replaced_by_a_link_outside_is_not_written(world: World) -> None:
    w = world
    path = w.root / "episodic" / "lonely.md"
    write(w.root, "episodic/lonely.md", "---\ntype: episodic\n---\n# Lonely\n\n"
          "topiclonely lunch place.\n")
    for i in range(4):
        write(w.root, f"episodic/new-{i}.md", f"# New {i}\n\ntopicnew{i} thing.\n")
    w.vault.index()
    w.vault.lifecycle(["connect"], mirror=False)
    with_settings(w.vault, newer_entries=4)
    shutil.copy(path, w.outside / "lonely.md")  # the user moves it out and links it back
    path.unlink()
    path.symlink_to(w.outside / "lonely.md")
    before = w.snapshot()
    [report] = w.vault.lifecycle(["age"])
    assert [a.kind for a in report.actions] == ["reprieve"]
    assert "outside the vault" in report.conflicts[0] and not report.written
    assert w.changed(before) == set() and path.is_symlink()


def test_related_mirroring_does_not_replace_a_note_that_became_a_link(world: World) -> None:
    w = world
    with_settings(w.vault, scope=(".",))  # these notes are the agent's
    write(w.root, "semantic/a.md", "---\ntitle: A\n---\n# A\n\ntopiclink first.\n")
    write(w.root, "semantic/b.md", "---\ntitle: B\n---\n# B\n\ntopiclink second.\n")
    w.vault.index()
    shutil.copy(w.root / "semantic/a.md", w.outside / "a.md")
    (w.root / "semantic/a.md").unlink()
    (w.root / "semantic/a.md").symlink_to(w.outside / "a.md")
    before = w.snapshot()
    [report] = w.vault.lifecycle(["connect"])
    assert any("symbolic link" in c for c in report.conflicts + report.notes)  # never read
    assert report.written == ["semantic/b.md"]
    assert w.changed(before) == set() and (w.root / "semantic/a.md").is_symlink()
