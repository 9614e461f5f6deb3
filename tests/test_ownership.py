"""vaultd changes only what it owns (issue 13): the lifecycle moves, merges and marks only the
agent's memory (`[lifecycle] scope`), links go into a frontmatter key vaultd owns, and
`vaultd init` leaves nothing a git-synced vault would commit by mistake."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from conftest import SAYS, daily, vaultd_wrote, with_settings, write

from vaultd import edits, lifecycle
from vaultd.cli import main
from vaultd.config import load_settings
from vaultd.vault import Vault, init_vault


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vaultd" not in p.parts}


def test_the_lifecycle_changes_only_the_agents_memory(vault: Vault) -> None:
    """An Obsidian vault's own daily notes and notes are indexed and linked, never cut,
    merged, archived or marked; the agent's episodic/ log next to them still consolidates."""
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    for i, day in enumerate(days):  # the user's own daily notes, about one topic
        write(vault.root, f"Daily/{day}.md", daily(day, [SAYS[i], f"topiclone{i} errand."]))
        write(vault.root, f"episodic/{day}.md",  # the agent's log of the same days
              daily(day, [SAYS[i].replace("topicflaky", "topicdeploy")]))
    write(vault.root, "Home.md", "---\ntags: [home]\n---\n# Home\n\ntopicflaky is my worry.\n")
    vault.index()
    users = {k: v for k, v in files(vault.root).items() if not k.startswith("episodic/")}
    for _ in range(4):
        reports = {r.phase: r for r in vault.lifecycle(list(lifecycle.PHASE_NAMES))}
    vault.flush()
    after = files(vault.root)
    changed = sorted(k for k in users if after.get(k) != users[k])
    assert changed == ["MEMORY.md"]  # only vaultd's block in it (flush)
    merged = [p for p in after if p.startswith("semantic/") and p.endswith(".md")]
    assert len(merged) == 1 and "topicdeploy" in after[merged[0]].decode()
    assert not [p for p in after if p.startswith("archive/Daily/")]
    assert all(not e.startswith(("Daily/", "Home")) for r in reports.values()
               for a in r.actions if a.kind != "link" for e in a.entries)
    states = {row["entry"].split(":")[0]: row for row in vault.states()["entries"]}
    assert "outside the lifecycle's scope" in states["Home.md"]["protected"]
    # and with the whole vault in scope, the user's daily notes are the agent's too
    with_settings(vault, scope=(".",))
    [report] = vault.lifecycle(["consolidate"])
    assert report.created and any(e.startswith("Daily/") for a in report.actions
                                  for e in a.entries)


TRICKY = """---
# my own comment, kept
title: "Quoted: title"   # trailing comment
related: ["[[My hand-picked link]]"]
aliases:
  - 'single quoted'
  - "double quoted"
nested:
  key: value
  list: [a, b]
description: |
  a block scalar
  on two lines
tags: [x, 'y']
---
# Tricky

topicpool sizing.
"""


def test_mirroring_touches_no_byte_but_its_own_key(vault: Vault) -> None:
    with_settings(vault, mirror_outside_scope=True)
    write(vault.root, "notes/tricky.md", TRICKY)
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", ["topicpool exhausted."]))
    vault.index()
    vault.lifecycle(["connect"])
    text = (vault.root / "notes/tricky.md").read_text(encoding="utf-8")
    assert text == TRICKY.replace(
        "tags: [x, 'y']\n---", "tags: [x, 'y']\nvaultd_related: ['[[episodic/2026-11-01]]']\n---")
    fm = edits.get_frontmatter("notes/tricky.md", text)
    assert fm["related"] == ["[[My hand-picked link]]"]  # the user's key, as it was
    # the link goes away (the log is deleted): vaultd's key goes, the file is as the user left it
    (vault.root / "episodic/2026-11-01.md").unlink()
    vault.index()
    vault.lifecycle(["connect"])
    assert (vault.root / "notes/tricky.md").read_text(encoding="utf-8") == TRICKY


def test_a_note_without_frontmatter_gets_none_added(vault: Vault) -> None:
    with_settings(vault, mirror_outside_scope=True)
    plain = "- topicpool exhausted at 09:14\n- topicpool raised to 20\n"
    write(vault.root, "memory/2026-11-01.md", plain)  # an OpenClaw-style daily file
    write(vault.root, "semantic/pool.md", "---\ntitle: Pool\n---\n# Pool\n\ntopicpool notes.\n")
    vault.index()
    [report] = vault.lifecycle(["connect"])
    assert report.written == ["semantic/pool.md"]
    assert (vault.root / "memory/2026-11-01.md").read_text(encoding="utf-8") == plain


def test_init_keeps_vaultds_files_out_of_git(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, "Home.md", "# Home\n")
    init_vault(root)
    (root / ".vaultd" / "token").write_text("secret\n")
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                             "--untracked-files=all"], capture_output=True, text=True,
                            check=True).stdout
    assert ".vaultd" not in status and "Home.md" in status


def test_init_recognises_an_openclaw_memory_folder_and_says_what_it_may_change(
        tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    write(memory, "2026-11-01.md", "- fixed the flaky test\n")
    result = CliRunner().invoke(main, ["init", str(memory)], catch_exceptions=False)
    assert result.exit_code == 0
    assert "only the agent's memory (the whole vault" in result.output
    assert load_settings(memory, {}).lifecycle.scope == (".",)
    assert not (memory / "episodic").exists()  # its own layout stays as it is
    notes = tmp_path / "obsidian"
    write(notes, "Daily/2026-11-01.md", "# a day\n")
    result = CliRunner().invoke(main, ["init", str(notes)], catch_exceptions=False)
    assert "only the agent's memory (episodic/" in result.output
    assert load_settings(notes, {}).lifecycle.scope == ("episodic",)


# ---------------------------------------------------------------- a dry run lists every file


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vaultd" not in p.parts
            and not p.name.endswith(".vaultd-lock")}


def touched(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, str]:
    out = {p: "create" for p in after if p not in before}
    out.update({p: "remove" for p in before if p not in after})
    out.update({p: "change" for p in before if p in after and before[p] != after[p]})
    return out


def _busy_vault(vault: Vault) -> None:
    """A vault where every phase has work: links to mirror, recalls to promote, a group to
    merge, proven knowledge to route, an isolated episode out of reprieves, a duplicate."""
    with_settings(vault, route_targets=("CLAUDE.md",), newer_entries=1, scope=(".",))
    vault.profile = replace(vault.profile, duplicate_threshold=0.95)  # the topicdupe twins
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(vault.root, f"episodic/{day}.md", daily(day, [SAYS[i], f"topicpool note {i}."]))
    lonely = daily("2026-11-04", ["topiclonely lunch was ramen."]).replace(
        "tags: [daily]\n", "tags: [daily]\nvaultd: {reprieves: {'10:00 — topiclonely lunch "
        "was ramen': 3}}\n")
    write(vault.root, "episodic/2026-11-04.md", lonely)
    write(vault.root, "episodic/2026-11-05.md", daily("2026-11-05", [
        "topicdupe the cache key includes the lockfile.",
        "topicdupe the cache key includes the lockfile!"]))
    vaultd_wrote(vault.root, "semantic/deploys.md", "---\nstatus: proven\n---\n# Deploys\n\n"
          "topicdeploy always canary first.\n")
    write(vault.root, "semantic/recalled.md", "---\ntitle: R\n---\n# R\n\ntopicrecall fact.\n")
    write(vault.root, "CLAUDE.md", "# Rules\n\ntopicdeploy rules for agents.\n")
    vault.index()
    for query in ("topicrecall", "topicrecall fact", "what is the topicrecall fact"):
        vault.search(query, record=True)


def test_a_dry_run_lists_exactly_the_files_a_real_run_touches(vault: Vault) -> None:
    _busy_vault(vault)
    worked = []
    for phase in ("connect", "promote", "consolidate", "route", "age", "prune"):
        before = tree(vault.root)
        [dry] = vault.lifecycle([phase], dry_run=True)
        assert tree(vault.root) == before, f"{phase}: the dry run wrote"
        planned = {f.path: f.change for f in dry.files}
        assert all(f.diff is not None for f in dry.files if f.change == "change"
                   and not f.path.startswith("archive/")), phase
        [real] = vault.lifecycle([phase])
        assert not real.conflicts, (phase, real.conflicts)
        assert touched(before, tree(vault.root)) == planned, phase
        worked += [phase] if planned else []
    assert worked == ["connect", "promote", "consolidate", "route", "age", "prune"]
    # flush: connect, route and MEMORY.md
    write(vault.root, "episodic/2026-11-06.md", daily("2026-11-06", ["topicpool raised."]))
    before = tree(vault.root)
    dry = vault.flush(dry_run=True)
    assert tree(vault.root) == before
    planned = {f.path: f.change for f in dry.files}
    assert "MEMORY.md" in planned and "episodic/2026-11-06.md" in planned
    vault.flush()
    assert touched(before, tree(vault.root)) == planned


def test_the_cli_dry_runs_print_every_file(vault: Vault) -> None:
    _busy_vault(vault)
    vault.close()
    runner = CliRunner()
    env = {"VAULTD_EMBEDDING_MODEL": "hash-256"}
    out = runner.invoke(main, ["--vault", str(vault.root), "flush", "--dry-run"], env=env,
                        catch_exceptions=False).output
    assert "would change MEMORY.md" in out and "would change episodic/2026-11-01.md" in out
    assert "+vaultd_related:" in out
    as_json = runner.invoke(main, ["--vault", str(vault.root), "flush", "--dry-run", "--json"],
                            env=env, catch_exceptions=False).output
    import json

    paths = {f["path"] for f in json.loads(as_json)["files"]}
    assert {"MEMORY.md", "episodic/2026-11-01.md"} <= paths


def test_doctor_finds_what_vaultd_left_beside_notes_and_fix_removes_it(vault: Vault) -> None:
    write(vault.root, "semantic/a.md", "# A\n\nalpha.\n")
    write(vault.root, "semantic/.a.md.vaultd-lock", "")  # what an older vaultd left
    write(vault.root, "archive/episodic/.2026-01-01.md.vaultd-lock", "")
    write(vault.root, "semantic/a.sync-conflict-20261102-101010-ABCDEFG.md", "# A\n\nold.\n")
    vault.index()
    report = vault.doctor()
    assert report.paths("litter") == ["archive/episodic/.2026-01-01.md.vaultd-lock",
                                      "semantic/.a.md.vaultd-lock"]
    assert report.paths("sync-conflict") == [
        "semantic/a.sync-conflict-20261102-101010-ABCDEFG.md"]
    fixed = vault.doctor(fix=True)
    assert not (vault.root / "semantic/.a.md.vaultd-lock").exists()
    assert "litter" not in fixed.kinds()
    # a conflict copy holds the user's words: listed, never deleted
    assert (vault.root / "semantic/a.sync-conflict-20261102-101010-ABCDEFG.md").exists()
    assert fixed.paths("sync-conflict")
