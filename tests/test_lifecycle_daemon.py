"""The lifecycle through the daemon (POST /lifecycle, `vaultd lifecycle` routed to it), and a
consolidation or fade cut short by a crash converging when the lifecycle runs again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, env_for, running_daemon, vaultd

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.vault import lifecycle_anywhere, open_vault

SHARED = "the nightly refund webhook test fails on the staging postgres pool after deploy"


def daily(day: str, entries: list[tuple[str, str]]) -> str:
    body = "".join(f"\n## {9 + i:02d}:00 — {title}\n{text}\n"
                   for i, (title, text) in enumerate(entries))
    return f"---\ntype: episodic\ncreated: {day}\ntags: [daily]\n---\n# {day}\n{body}"


# three entries the hash embedder puts at cosine ≥ 0.5 (one consolidation group) without
# being template noise, and two one-offs
NOTES = {
    "episodic/2026-10-01.md": daily("2026-10-01", [
        ("Webhook flake", SHARED + " again alpha bravo"),
        ("Lunch", "ramen place closed mondays"),
        ("Webhook flake twice", SHARED + " with charlie delta")]),
    "episodic/2026-10-02.md": daily("2026-10-02", [
        ("Webhook flake thrice", SHARED + " and echo foxtrot"),
        ("Bike", "fixed the bike tyre")]),
}


def live_and_archived(root: Path) -> str:
    """The daily logs, live and archived (merged notes repeat their members word for word)."""
    return "".join(p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.md"))
                   if "consolidation:" not in p.read_text(encoding="utf-8"))


def test_post_lifecycle_runs_the_phases_on_the_daemon(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG)
    with running_daemon(root) as daemon:
        status, body = daemon.call("POST", "/lifecycle", {"phases": ["connect", "consolidate"]})
        assert status == 200, body
        assert [r["phase"] for r in body["phases"]] == ["connect", "consolidate"]
        merge = body["phases"][1]
        assert [a["kind"] for a in merge["actions"]] == ["merge"]
        assert len(merge["actions"][0]["entries"]) == 3
        [note] = [p for p in merge["created"] if p.startswith("semantic/")]
        assert (root / note).read_text(encoding="utf-8").count("consolidated_from:") == 1
        assert "states" in body and daemon.daemon.stats.lifecycle["consolidate"]
        # the members stay in their logs, each exactly once, like the one-offs
        text = live_and_archived(root)
        for word in ("alpha bravo", "charlie delta", "echo foxtrot", "ramen", "bike tyre"):
            assert text.count(word) == 1, word
        assert "alpha bravo" in (root / "episodic/2026-10-01.md").read_text("utf-8")
        assert not (root / "archive").exists()
        # the daemon indexed what it wrote: nothing is stale afterwards
        status, again = daemon.call("POST", "/lifecycle", {"phases": "all"})
        assert status == 200 and [r["phase"] for r in again["phases"]][0] == "connect"
        assert again["phases"][2]["actions"] == []  # converged: no second merge


def test_post_lifecycle_refuses_unknown_phases_and_bad_bodies(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG)
    with running_daemon(root) as daemon:
        status, body = daemon.call("POST", "/lifecycle", {"phases": ["connect", "compost"]})
        assert status == 400 and "'compost'" in body["error"]
        status, body = daemon.call("POST", "/lifecycle", {"phases": "connect"})
        assert status == 400 and "phases" in body["error"]
        status, body = daemon.call("POST", "/lifecycle", {"dry_run": "yes"})
        assert status == 400 and "dry_run" in body["error"]
        status, _ = daemon.call("POST", "/lifecycle", {}, token="wrong")
        assert status == 401
        status, body = daemon.call("POST", "/lifecycle", {"phases": ["consolidate"],
                                                          "dry_run": True})
        assert status == 200 and body["phases"][0]["actions"][0]["kind"] == "merge"
        assert not (root / "archive" / "episodic").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_lifecycle_goes_through_the_daemon_when_it_runs(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG)
    embedder = HashEmbedder(builtin_profiles(tmp_path)["hash-256"])
    with running_daemon(root) as daemon, open_vault(root, env={}, daemon="never",
                                                    embedder=embedder) as v:
        result = lifecycle_anywhere(v, ["connect", "consolidate"])
        assert result.phases[1].actions[0].kind == "merge"
        assert v._store is None  # this process never opened the index
        assert "on request" in daemon.daemon.stats.lifecycle["consolidate"].summary
        # and the CLI: `vaultd lifecycle` (not a dry run) is answered by the daemon
        assert "age" not in daemon.daemon.stats.lifecycle
        cli = vaultd(root, "lifecycle", "--phase", "age", "--json", env=env_for(tmp_path))
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["phases"][0]["phase"] == "age"
        assert "on request" in daemon.daemon.stats.lifecycle["age"].summary


@pytest.mark.slow
def test_lifecycle_runs_in_process_without_a_daemon(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG)
    cli = vaultd(root, "lifecycle", "--phase", "consolidate", "--json", env=env_for(tmp_path))
    assert cli.returncode == 0, cli.stderr
    [phase] = json.loads(cli.stdout)["phases"]
    assert phase["actions"][0]["kind"] == "merge"
    assert [p for p in phase["created"] if p.startswith("semantic/")]
    assert all((root / rel).read_text(encoding="utf-8") == text
               for rel, text in NOTES.items() if rel.startswith("episodic/"))


# -- a consolidation run again (regressions found by tests/test_crash.py: re-running the
#    lifecycle archived an entry a second time and merged it into a second note). A merge
#    writes one file, its note, so a crash leaves it whole or not at all.

DAY1, DAY2 = "episodic/2026-10-01.md", "episodic/2026-10-02.md"
MEMBERS = ("alpha bravo", "charlie delta", "echo foxtrot")


def _consolidated(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A vault consolidated once; returns it and its daily logs' bytes before."""
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG)
    before = {rel: (root / rel).read_bytes() for rel in (DAY1, DAY2)}
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        v.index()
        [report] = v.lifecycle(["consolidate"])
        assert report.actions[0].kind == "merge"
    return root, before


def _rerun(root: Path, tmp_path: Path) -> tuple[str, str]:
    """Every phase run again, twice: one merged note still; the logs' and the archive's
    text."""
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        v.index()
        v.lifecycle(["connect", "consolidate", "age", "prune"])
        v.lifecycle(["consolidate"])
    merged = [p for p in (root / "semantic").glob("*.md")]
    assert len(merged) == 1, merged  # no second merged note
    live = "".join((root / rel).read_text(encoding="utf-8") for rel in (DAY1, DAY2))
    archived = "".join((root / "archive" / rel).read_text(encoding="utf-8")
                       for rel in (DAY1, DAY2) if (root / "archive" / rel).exists())
    return live, archived


def test_a_merge_run_again_merges_nothing_twice(tmp_path: Path) -> None:
    root, before = _consolidated(tmp_path)
    assert all((root / rel).read_bytes() == data for rel, data in before.items())
    live, archived = _rerun(root, tmp_path)
    for words in (*MEMBERS, "ramen", "bike tyre"):  # where they were, each exactly once
        assert (live.count(words), archived.count(words)) == (1, 0), words


def test_members_an_older_vaultd_moved_halfway_stay_where_they_are(tmp_path: Path) -> None:
    """A merge an older vaultd cut short (it moved members to archive/ one by one): the ones
    it moved stay archived, the rest stay in their log, and nothing is merged again."""
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry
    from vaultd.lifecycle.plans import Outcome

    root, _ = _consolidated(tmp_path)
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        v.index()
        [moved] = [x for x in snapshot(v.store, v.seals)[0]
                   if x.path == DAY2 and x.merged_into]
        archive_entry(root, moved, "consolidated into an older note", Outcome(), seals=v.seals)
    live, archived = _rerun(root, tmp_path)
    moved_words = next(w for w in MEMBERS if w in archived)
    for words in MEMBERS:
        assert (live.count(words), archived.count(words)) == \
            ((0, 1) if words == moved_words else (1, 0)), words


def test_a_member_changed_since_its_merge_is_the_users_again(tmp_path: Path) -> None:
    """The merged note lists what each member said: an entry edited since is no longer the
    merged one (it may fade, be merged or go to MEMORY.md as any entry), and stays put."""
    from vaultd.lifecycle.entries import snapshot

    root, before = _consolidated(tmp_path)
    edited = before[DAY1].decode().replace("alpha bravo", "alpha bravo, edited")
    (root / DAY1).write_text(edited, encoding="utf-8")
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        v.index()
        views = snapshot(v.store, v.seals)[0]
        marks = {w: x.merged_into for x in views if x.is_daily for w in MEMBERS if w in x.text}
        v.lifecycle(["consolidate"])
    assert marks["alpha bravo"] is None and marks["charlie delta"] and marks["echo foxtrot"]
    assert (root / DAY1).read_text(encoding="utf-8") == edited


def test_a_whole_note_move_cut_short_is_finished_not_copied_again(tmp_path: Path) -> None:
    """A note fading as a whole is copied to archive/, then removed; killed in between, the
    next fade removed it after making a second archive copy (`meeting-<hash>.md`)."""
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry
    from vaultd.lifecycle.plans import Outcome

    text = "---\ntype: episodic\n---\n# Meeting\n\nWe talked about the kiwi orchard.\n"
    root = make_vault(tmp_path, {"episodic/meeting.md": text}, config=FAST_CONFIG)
    with open_vault(root, env=env_for(tmp_path), daemon="never") as v:
        v.index()
        [view] = [x for x in snapshot(v.store, v.seals)[0] if x.path == "episodic/meeting.md"]
        archive_entry(root, view, "faded", Outcome(), seals=v.seals)
        (root / "episodic" / "meeting.md").write_text(text, encoding="utf-8")  # the kill
        out = Outcome()
        archive_entry(root, view, "faded", out, seals=v.seals)
    assert out.written == ["episodic/meeting.md"]
    assert not (root / "episodic" / "meeting.md").exists()
    assert [p.name for p in (root / "archive" / "episodic").glob("*.md")] == ["meeting.md"]
    assert "kiwi orchard" in (root / "archive/episodic/meeting.md").read_text(encoding="utf-8")
