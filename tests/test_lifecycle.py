"""The memory lifecycle with a fake embedder whose similarities the tests control: texts that
name the same `topicX` word point the same way; everything else is small noise."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    NIGHTLY,
    copy_sample_vault,
    daily,
    fake_embedder,
    make_vault,
    nightly_log,
    vaultd_wrote,
    with_settings,
    write,
)

from vaultd import edits, layout
from vaultd.embedder import HashEmbedder
from vaultd.store import Store
from vaultd.vault import Vault, open_vault


def test_remember_appends_timestamped_entries(vault: Vault) -> None:
    path, heading = vault.remember("The cache key must include uv.lock", tags=["ci"])
    vault.remember("Second thought")
    text = (vault.root / path).read_text(encoding="utf-8")
    assert text.startswith("---\ntype: episodic\n") and f"## {heading}" in text
    assert "#ci" in text and text.count("## ") == 2
    report = vault.index()
    assert path in report.new


@pytest.mark.slow
def test_ten_concurrent_writers_lose_nothing(vault: Vault) -> None:
    code = ("import sys; from pathlib import Path; from vaultd.edits import append_entry; "
            "[append_entry(Path(sys.argv[1]), f'writer {sys.argv[2]} note {i}') for i in range(5)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(vault.root), str(n)])
             for n in range(10)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    text = "".join(p.read_text(encoding="utf-8") for p in (vault.root / "episodic").glob("*.md"))
    for n in range(10):
        for i in range(5):
            assert text.count(f"\nwriter {n} note {i}\n") == 1


def test_connect_links_by_threshold_and_mirrors_related(vault: Vault) -> None:
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", [
        "topicpool exhausted under load.", "lunch was ramen."]))
    mine = ("---\ntitle: Pool   # my title\nrelated: ['[[My hand-picked link]]']\n"
            "aliases:\n  - 'pool'\n---\n# Pool\n\ntopicpool sizing and pgbouncer notes.\n")
    write(vault.root, "semantic/pool.md", mine)
    vault.index()
    before = vault.embedder.texts_embedded
    [report] = vault.lifecycle(["connect"])
    links = [a for a in report.actions if a.kind == "link" and a.scores]
    assert {a.entries[0].split(":")[0] for a in links} == {"episodic/2026-11-01.md",
                                                             "semantic/pool.md"}
    daily_log = (vault.root / "episodic/2026-11-01.md").read_text(encoding="utf-8")
    fm = edits.get_frontmatter("episodic/2026-11-01.md", daily_log)
    assert fm["vaultd_related"] == ["[[semantic/pool]]"]  # vaultd's own key, in its scope
    assert (vault.root / "semantic/pool.md").read_text(encoding="utf-8") == mine  # the user's
    assert report.written == ["episodic/2026-11-01.md"]
    # the frontmatter-only change re-indexed the file without embedding anything
    assert vault.embedder.texts_embedded == before
    again = vault.lifecycle(["connect"])[0]
    assert not again.actions and not again.written  # nothing buffered, nothing rewritten
    # opted in: the user's note gets vaultd's key, and no other byte of it changes
    with_settings(vault, mirror_outside_scope=True)
    [report] = vault.lifecycle(["connect"])
    assert report.written == ["semantic/pool.md"]
    assert (vault.root / "semantic/pool.md").read_text(encoding="utf-8") == mine.replace(
        "  - 'pool'\n---", "  - 'pool'\nvaultd_related: ['[[episodic/2026-11-01]]']\n---")


def test_consolidate_merges_a_coherent_group_and_undo_archives_the_note(vault: Vault) -> None:
    says = ["topicflaky refund test failed locally. Passed on rerun, suspect timing.",
            "topicflaky nightly broke again near midnight. Berlin timezone involved.",
            "topicflaky root cause found: local date versus UTC date in the fixture."]
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(vault.root, f"episodic/{day}.md", daily(day, [says[i],
                                                            f"unrelated topicother{i} note."]))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    logs = {p: p.read_bytes() for p in (vault.root / "episodic").glob("*.md")}
    [report] = vault.lifecycle(["consolidate"])
    assert len(report.actions) == 1 and "every pair at cosine" in report.actions[0].reason
    merged = [p for p in report.created if p.startswith("semantic/")]
    assert len(merged) == 1
    text = (vault.root / merged[0]).read_text(encoding="utf-8")
    fm = edits.get_frontmatter(merged[0], text)
    assert fm["status"] == "proven" and len(fm["consolidated_from"]) == 3
    assert "Passed on rerun, suspect timing." in text and "Berlin timezone involved." in text
    assert "local date versus UTC date in the fixture." in text
    assert {p: p.read_bytes() for p in logs} == logs  # the members stay in their logs
    assert not (vault.root / "archive").exists()
    # each fact answers once, from its log (where its day's entries are around it); the
    # note's copies of the same words are not news; a search for knowledge gets the note
    hits = vault.search("topicflaky refund")
    texts = [h.text for h in hits]
    assert hits[0].path.startswith("episodic/") and len(set(texts)) == len(texts)
    assert not any(h.path == merged[0] for h in hits)
    assert vault.search("topicflaky refund", types=["semantic"])[0].path == merged[0]
    # merged once: the next pass does not group them again
    vault.index()
    [again] = vault.lifecycle(["consolidate"])
    assert not again.actions and not again.created
    vault.undo(fm["consolidation"][:6])
    assert {p: p.read_bytes() for p in logs} == logs
    assert not (vault.root / merged[0]).exists()
    assert (vault.root / "archive" / merged[0]).exists()  # undone, but never deleted
    vault.index()
    [after_undo] = vault.lifecycle(["consolidate"], dry_run=True)
    assert len(after_undo.actions) == 1  # no longer merged: the group may be merged again


def test_structural_noise_is_not_consolidated(vault: Vault, tmp_path: Path) -> None:
    noisy = Vault(vault.root, vault.settings,
                  replace(vault.profile, id="hash", consolidate_threshold=0.8),
                  embedder=HashEmbedder(replace(vault.profile, id="hash-256")))
    template = "\n".join(f"- checklist item {k}: done" for k in range(25))
    for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
        write(vault.root, f"episodic/{day}.md", daily(day, [f"Session log {i}.\n{template}"]))
    noisy.index()
    [report] = noisy.lifecycle(["consolidate"], dry_run=True)
    assert not report.actions
    assert any("structural noise" in n for n in report.notes)


def test_a_dry_run_plans_the_coherence_check_too(vault: Vault) -> None:
    """Entries alike only in the lines they all share (a meeting template) cluster, but what
    each says on its own is another topic: the real run skips the group, so must the dry run."""
    shared = " ".join(f"topicsync{k}" for k in range(20)) + "."  # the template's line
    own = ["topicalpha the boiler was serviced and the pressure valve replaced by the plumber",
           "topicbeta our quarterly taxes were filed with the accountant on friday morning",
           "topicgamma the garden fence panels blew down during the storm last night"]
    for day, says in zip(["2026-11-01", "2026-11-02", "2026-11-03"], own):
        write(vault.root, f"episodic/{day}.md", daily(day, [f"{says}.\n{shared}"]))
    vault.index()
    [dry] = vault.lifecycle(["consolidate"], dry_run=True)
    [real] = vault.lifecycle(["consolidate"])
    assert any("not coherent" in n for n in real.notes) and not real.actions
    assert (dry.actions, dry.notes, dry.files) == (real.actions, real.notes, real.files)


def test_isolated_episodes_fade_after_three_reprieves_and_restore(vault: Vault) -> None:
    write(vault.root, "episodic/2026-01-01.md", daily("2026-01-01", [
        "topiclonely lunch place.", "topicdecided use uv #decision."]))
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", [
        f"topicnew{i} thing." for i in range(4)]))
    vault.index()
    vault.lifecycle(["connect"])
    vault.settings = replace(vault.settings, lifecycle=replace(vault.settings.lifecycle,
                                                               newer_entries=3))
    for expected in (1, 2, 3):
        [report] = vault.lifecycle(["age"])
        lonely = [a for a in report.actions if "lonely" in a.entries[0]]
        assert [a.kind for a in lonely] == ["reprieve"]
        assert f"reprieve {expected} of 3" in lonely[0].reason
        assert all("decided" not in a.entries[0] for a in report.actions)  # protected
    fm = edits.get_frontmatter("x", (vault.root / "episodic/2026-01-01.md").read_text())
    assert fm["vaultd"]["reprieves"] == {"10:00 — topiclonely lunch place": 3}
    [report] = vault.lifecycle(["age"])
    assert [a.kind for a in report.actions if "lonely" in a.entries[0]] == ["fade"]
    live = (vault.root / "episodic/2026-01-01.md").read_text(encoding="utf-8")
    archived = (vault.root / "archive/episodic/2026-01-01.md").read_text(encoding="utf-8")
    assert "topiclonely" not in live and "topicdecided" in live
    assert "topiclonely" in archived and "archived:" in archived
    # faded lowers prominence, never recall: found by default, marked, left out on request
    [hit] = vault.search("topiclonely lunch", mode="bm25")
    assert hit.path == "archive/episodic/2026-01-01.md" and hit.archived
    assert not vault.search("topiclonely lunch", mode="bm25", archive="none")
    vault.restore("archive/episodic/2026-01-01.md")
    assert "topiclonely" in (vault.root / "episodic/2026-01-01.md").read_text(encoding="utf-8")
    assert not (vault.root / "archive/episodic/2026-01-01.md").exists()
    [hit] = vault.search("topiclonely lunch", mode="bm25")
    assert hit.path == "episodic/2026-01-01.md" and not hit.archived


def test_recall_promotion_after_three_queries(vault: Vault) -> None:
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", ["topicpgbouncer setup."]))
    write(vault.root, "semantic/pg.md", "# PG\n\ntopicpgbouncer transaction pooling.\n")
    vault.index()
    for q in ("pgbouncer", "topicpgbouncer pooling", "how is pgbouncer set up"):
        vault.search(q, record=True)
        vault.search(q, record=True)  # the same query twice is one occasion
    pg = (vault.root / "semantic/pg.md").read_bytes()
    [report] = vault.lifecycle(["promote"])
    promoted = {a.entries[0].split(":")[0] for a in report.actions}
    assert promoted == {"episodic/2026-11-01.md"}  # the user's own note is not rewritten
    assert (vault.root / "semantic/pg.md").read_bytes() == pg
    with_settings(vault, scope=("episodic", "semantic"))  # semantic/ is the agent's too
    [report] = vault.lifecycle(["promote"])
    assert [a.entries[0].split(":")[0] for a in report.actions] == ["semantic/pg.md"]
    assert edits.get_frontmatter("s", (vault.root / "semantic/pg.md").read_text())[
        "status"] == "proven"
    fm = edits.get_frontmatter("e", (vault.root / "episodic/2026-11-01.md").read_text())
    assert fm["vaultd"]["proven"] == ["10:00 — topicpgbouncer setup"]


def test_states_survive_an_index_rebuild(vault: Vault) -> None:
    write(vault.root, "episodic/2026-01-01.md", daily("2026-01-01", ["topicold alone."]))
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", [
        f"topicnew{i} thing." for i in range(3)]))
    vaultd_wrote(vault.root, "semantic/pinned.md",
                 "---\npinned: true\nstatus: proven\n---\n# P\n\nx\n")
    vault.index()
    vault.settings = replace(vault.settings, lifecycle=replace(vault.settings.lifecycle,
                                                               newer_entries=2))
    vault.lifecycle(["connect", "age"])
    before = vault.states()
    vault.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(layout.index_path(vault.root)) + suffix).unlink(missing_ok=True)
    vault.index()
    assert vault.states() == before
    rows = {r["entry"].split(":")[0] + r["entry"].split(")")[0][-12:]: r
            for r in before["entries"]}
    assert any(r["reprieves"] == 1 for r in rows.values())
    assert any(r["pinned"] and r["proven"] for r in rows.values())
    assert json.dumps(before)  # JSON-able, as `vaultd lifecycle --json` prints it


# -- route, heartbeat, prune, LLM merge, scheduling ------------------------------------------


def test_route_writes_only_inside_the_managed_block(vault: Vault, tmp_path: Path) -> None:
    # knowledge vaultd proved from the agent's memory: merged notes it made (sealed claims)
    vaultd_wrote(vault.root, "semantic/deploys.md", "---\nstatus: proven\nconsolidation: t1\n"
                 "---\n# Deploys\n\ntopicdeploy always canary first.\n")
    vaultd_wrote(vault.root, "semantic/style.md", "---\nstatus: proven\nconsolidation: t2\n"
                 "---\n# Style\n\ntopicstyle small PRs please.\n")
    claude = "# Rules\n\nUser text topicdeploy stays.\n\n<!-- vaultd:begin -->\nold\n" \
             "<!-- vaultd:end -->\n\nMore user text.\n"
    write(vault.root, "CLAUDE.md", claude)
    write(vault.root, "procedural/style-guide.md", "# Guide\n\ntopicstyle guide.\n")
    with_settings(vault, route_targets=("CLAUDE.md", "procedural/style-guide.md"))
    vault.index()
    [dry] = vault.lifecycle(["route"], dry_run=True)
    diffs = {a.target: a.diff for a in dry.actions if a.kind == "write"}
    assert "+- Deploys: topicdeploy always canary first. ([[semantic/deploys]])" in \
        diffs["CLAUDE.md"] and "-old" in diffs["CLAUDE.md"]
    assert (vault.root / "CLAUDE.md").read_text() == claude  # dry run wrote nothing
    [report] = vault.lifecycle(["route"])
    text = (vault.root / "CLAUDE.md").read_text(encoding="utf-8")
    assert text.startswith("# Rules\n\nUser text topicdeploy stays.\n\n<!-- vaultd:begin -->\n")
    assert text.endswith("<!-- vaultd:end -->\n\nMore user text.\n")
    assert "semantic/deploys" in text and "semantic/style" not in text
    guide = (vault.root / "procedural/style-guide.md").read_text(encoding="utf-8")
    assert guide.startswith("# Guide\n\ntopicstyle guide.\n") and "[[semantic/style]]" in guide
    again = vault.lifecycle(["route"])[0]
    assert not again.written  # idempotent: nothing new, nothing rewritten


def test_route_refuses_paths_outside_the_vault(vault: Vault, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "AGENTS.md"
    outside.parent.mkdir()
    outside.write_text("# Agents\n\ntopicdeploy.\n", encoding="utf-8")
    vaultd_wrote(vault.root, "semantic/d.md",
                 "---\nstatus: proven\nconsolidation: t1\n---\n# D\n\ntopicdeploy x.\n")
    vault.index()
    for target in (str(outside), "../elsewhere/AGENTS.md"):
        with_settings(vault, route_targets=(target,))
        with pytest.raises(Exception, match="outside the vault"):
            vault.lifecycle(["route"])
    with_settings(vault, route_targets=(str(outside),), route_outside=(str(outside),))
    vault.lifecycle(["route"])
    assert "[[semantic/d]]" in outside.read_text(encoding="utf-8")


def test_heartbeat_extracts_high_signal_knowledge(vault: Vault) -> None:
    import datetime as dt

    write(vault.root, "semantic/pool.md", "# Pool\n\ntopicpool sizing facts.\n")
    write(vault.root, "procedural/deploy.md", "# Deploy\n\ntopicdeploy steps.\n")
    write(vault.root, "episodic/2026-11-20.md", daily("2026-11-20", [
        "topicpool max is twenty connections.", "topiclunch ramen."]))
    vault.index()
    vault.lifecycle(["connect"])
    [report] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    assert [a.type for a in report.actions] == ["semantic"]
    [created] = report.created
    text = (vault.root / created).read_text(encoding="utf-8")
    assert created.startswith("semantic/") and "topicpool max is twenty" in text
    fm = edits.get_frontmatter(created, text)
    assert fm["extracted_from"] == ["[[episodic/2026-11-20]]"] and fm["status"] == "proven"
    assert "\n- topicpool max is twenty connections. — [2026-11-20](../episodic/2026-11-20.md)\n" \
        in text
    again = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))[0]
    assert not again.actions  # already extracted: recorded in the daily log's frontmatter


def test_prune_archives_the_weaker_near_duplicate(vault: Vault) -> None:
    write(vault.root, "episodic/2026-11-01.md", daily("2026-11-01", ["topicdup same words."]))
    write(vault.root, "episodic/2026-11-02.md", daily("2026-11-02", ["topicdup same words!"]))
    vault.index()
    vault.profile = replace(vault.profile, duplicate_threshold=0.95)
    [report] = vault.lifecycle(["prune"])
    [action] = report.actions
    assert action.entries[0].startswith("episodic/2026-11-02.md")  # the newer one goes
    assert "near-duplicate" in action.reason
    assert (vault.root / "archive/episodic/2026-11-02.md").exists()


def test_llm_merge_is_used_and_checked(vault: Vault) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answer = "- " + "Every failure of the refund test happened between local and UTC midnight."

    class Chat(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            raw = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with_settings(vault, llm_provider="openai", llm_model="m",
                      llm_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
        says = ["topicflaky failed locally at night, rerun passed.",
                "topicflaky nightly broke again near midnight.",
                "topicflaky root cause: local versus UTC dates."]
        for i, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"]):
            write(vault.root, f"episodic/{day}.md", daily(day, [says[i]]))
        vault.index()
        [report] = vault.lifecycle(["consolidate"])
        merged = next(p for p in report.created if p.startswith("semantic/"))
        text = (vault.root / merged).read_text(encoding="utf-8")
        assert "merged_by: llm" in text and "between local and UTC midnight" in text
    finally:
        server.shutdown()
        server.server_close()


def test_daemon_schedules_lifecycle_jobs_without_overlap(vault: Vault) -> None:
    from vaultd.daemon.commands import Command, RunPhase
    from vaultd.daemon.process import Daemon
    from vaultd.daemon.watcher import EventQueue

    queue: EventQueue[Command] = EventQueue()
    for _ in range(5):  # a job that fires while its previous run is still queued
        queue.put_command(RunPhase("age"))
    queue.put_command(RunPhase("prune"))
    got = [queue.get(timeout=0.1) for _ in range(3)]
    assert got == [RunPhase("age"), RunPhase("prune"), None]

    with_settings(vault, age_cron="* * * * *", prune_cron="", heartbeat_cron="bad cron")
    daemon = Daemon(vault, log_to_stderr=False)
    with pytest.raises(Exception, match="heartbeat_cron"):
        daemon._start_scheduler()
    with_settings(vault, heartbeat_cron="")
    daemon = Daemon(vault, log_to_stderr=False)
    daemon._start_scheduler()
    try:
        jobs = {job.id for job in daemon.scheduler.get_jobs()}
        assert "lifecycle-age" in jobs and "lifecycle-prune" not in jobs
        assert all(job.max_instances == 1 for job in daemon.scheduler.get_jobs())
        daemon.scheduler.get_job("lifecycle-age").func(*daemon.scheduler.get_job(
            "lifecycle-age").args)  # the job's own call: it only enqueues
        assert daemon.events.get(timeout=0.1) == RunPhase("age")
    finally:
        daemon.scheduler.shutdown(wait=False)
    # a failing phase is logged and counted; the daemon carries on
    daemon.jobs.phase("no-such-phase")
    assert daemon.stats.errors == 1
    vault.index()
    daemon.jobs.phase("connect")
    assert "connect" in daemon.stats.lifecycle


def test_clusters_drop_the_weakest_member_until_every_pair_is_close() -> None:
    from vaultd.lifecycle.consolidate import clusters
    from vaultd.lifecycle.entries import EntryView

    def view(i: int) -> EntryView:
        return EntryView(id=str(i), path=f"episodic/2026-01-0{i + 1}.md", key=str(i), heading="",
                         type="episodic", date=None, tags=(), start_line=1, end_line=1,
                         text="", hash="", is_daily=True, frontmatter={})

    # unit vectors at 0°, 20°, 35° and 70°: a, b, c pairwise >= 0.82; d reaches 0.8 with c only,
    # so BFS joins all four and pruning must drop d (the lowest mean similarity)
    angles = np.radians([0, 20, 35, 70])
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    groups = clusters([view(i) for i in range(4)], vecs.astype(np.float32), 0.8)
    assert groups == [[0, 1, 2]]
    assert clusters([view(i) for i in range(4)], vecs.astype(np.float32), 0.95) == []


@pytest.mark.slow
@pytest.mark.model
def test_real_model_lifecycle_on_sample_vault(tmp_path: Path) -> None:
    root = copy_sample_vault(tmp_path / "sample")
    with open_vault(root, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")},
                    daemon="never") as v:
        v.index()
        reports = {r.phase: r for r in v.lifecycle(["connect", "consolidate", "age"])}
        links = sum(len(a.scores) for a in reports["connect"].actions if a.kind == "link")
        assert links > 20
        merges = [a for a in reports["consolidate"].actions if a.kind == "merge"]
        merged_keys = " ".join(" ".join(a.entries) for a in merges)
        assert "test_refund_webhook" in merged_keys  # the planted recurring flaky test
        assert all(len(a.entries) >= 3 for a in merges)
        kinds = {a.kind for a in reports["age"].actions}
        assert kinds <= {"reprieve"}  # first pass: reprieves, nothing fades yet
        assert not (root / "archive").exists()  # merged entries stay in their logs
        # the episodes answer, each once (the merged note's copies of them are not news);
        # a search for knowledge finds the merged note
        hits = v.search("why did the refund webhook test fail at night", k=5)
        assert any("refund" in h.text for h in hits if h.path.startswith("episodic/"))
        assert len({h.text for h in hits}) == len(hits)
        known = v.search("why did the refund webhook test fail at night", k=5,
                         types=["semantic"])
        assert any(h.path in {a.path for a in merges} for h in known)


# -- entry identity: entries that share a heading (issue 12, point 1) ------------------------


def test_a_merge_marks_each_entry_that_shares_a_heading(vault: Vault) -> None:
    from vaultd.lifecycle.entries import snapshot

    write(vault.root, "episodic/2026-11-05.md", nightly_log("2026-11-05"))
    log = vault.root / "episodic/2026-11-05.md"
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    before = log.read_bytes()
    [report] = vault.lifecycle(["consolidate"])
    [merged] = [p for p in report.created if p.startswith("semantic/")]
    assert log.read_bytes() == before
    vault.index()
    views, _ = snapshot(vault.store, vault.seals)
    marks = {v.text.split("\n")[-1]: v.merged_into for v in views
             if v.path == "episodic/2026-11-05.md"}
    assert [marks[t] for t in NIGHTLY] == [merged] * 3 and marks["topicfood."] is None


def test_undo_brings_back_every_entry_an_older_merge_moved(vault: Vault) -> None:
    """A merge made before merges left their entries in place moved them to archive/: undo
    still brings every one back, entries that share a heading too."""
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry
    from vaultd.lifecycle.plans import Outcome

    write(vault.root, "episodic/2026-11-05.md", nightly_log("2026-11-05"))
    vault.index()
    vault.lifecycle(["connect"])
    [report] = vault.lifecycle(["consolidate"])
    [merged] = [p for p in report.created if p.startswith("semantic/")]
    vault.index()
    views, _ = snapshot(vault.store, vault.seals)
    members = sorted((v for v in views if v.merged_into == merged), key=lambda v: -v.start_line)
    for view in members:  # what an older vaultd's merge did with its members
        archive_entry(vault.root, view, f"consolidated into {merged}", Outcome(),
                      seals=vault.seals)
    live = vault.root / "episodic/2026-11-05.md"
    archive = vault.root / "archive/episodic/2026-11-05.md"
    assert "topicnightly" not in live.read_text(encoding="utf-8")
    assert all(t in archive.read_text(encoding="utf-8") for t in NIGHTLY)
    fm = edits.get_frontmatter(merged, (vault.root / merged).read_text(encoding="utf-8"))
    vault.undo(fm["consolidation"])
    text = live.read_text(encoding="utf-8")
    assert [text.count(t) for t in NIGHTLY] == [1, 1, 1]
    assert not archive.exists()  # it held only these three, all back


def test_restore_of_an_old_heading_keyed_archive_brings_back_all_entries(vault: Vault) -> None:
    """Archive files written before records carried a hash keep working (read as migrated)."""
    body = "".join(f"\n## Nightly failure\n{t}\n" for t in NIGHTLY)
    write(vault.root, "archive/episodic/2026-11-05.md",
          "---\narchived: {'Nightly failure': {from: episodic/2026-11-05.md, reason: x}}\n"
          f"---\n# 2026-11-05\n{body}\n## Stray\nno record for this one.\n")
    vault.restore("archive/episodic/2026-11-05.md")
    text = (vault.root / "episodic/2026-11-05.md").read_text(encoding="utf-8")
    assert [text.count(t) for t in NIGHTLY] == [1, 1, 1]
    archive = (vault.root / "archive/episodic/2026-11-05.md").read_text(encoding="utf-8")
    assert "no record for this one." in archive  # never deleted while it holds an entry
    assert "topicnightly" not in archive


def test_same_minute_remembers_survive_prune_and_restore(vault: Vault) -> None:
    import datetime as dt

    when = dt.datetime(2026, 11, 6, 9, 14)
    says = [f"topicdup nightly failure on the payments service again today: cause {c}."
            for c in ("timezone", "locked fixture", "sandbox network")]
    headings = {edits.append_entry(vault.root, s, when=when)[1] for s in says}
    assert len(headings) == 1  # one heading for all three
    vault.index()
    vault.profile = replace(vault.profile, duplicate_threshold=0.95)
    [report] = vault.lifecycle(["prune"])
    assert report.actions and not report.conflicts
    archive = vault.root / "archive/episodic/2026-11-06.md"
    assert archive.exists()
    vault.restore("archive/episodic/2026-11-06.md")
    text = (vault.root / "episodic/2026-11-06.md").read_text(encoding="utf-8")
    assert [text.count(s) for s in says] == [1, 1, 1]
    assert not archive.exists()


def test_archiving_one_of_several_same_heading_entries_keeps_the_others_state(
        vault: Vault) -> None:
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry
    from vaultd.lifecycle.plans import Outcome

    log = nightly_log("2026-11-05").replace(
        "created: 2026-11-05\n", "created: 2026-11-05\nvaultd: {reprieves: {Nightly failure: 2}}\n")
    write(vault.root, "episodic/2026-11-05.md", log)
    vault.index()
    [view] = [v for v in snapshot(vault.store)[0] if NIGHTLY[1] in v.text]
    archive_entry(vault.root, view, "test", Outcome(), seals=vault.seals)
    text = (vault.root / "episodic/2026-11-05.md").read_text(encoding="utf-8")
    assert NIGHTLY[1] not in text and NIGHTLY[0] in text and NIGHTLY[2] in text
    fm = edits.get_frontmatter("episodic/2026-11-05.md", text)
    assert fm["vaultd"]["reprieves"] == {"Nightly failure": 2}  # the two left keep theirs


def test_an_identical_twin_left_in_the_log_is_not_taken_for_an_interrupted_move(
        vault: Vault) -> None:
    """An agent that remembered the same words twice in one minute: prune archives one twin;
    the next run must not move the other as if a crash had cut a move short."""
    import datetime as dt

    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.recovery import finish_interrupted

    when = dt.datetime(2026, 11, 6, 9, 14)
    twin = "topictwin the deploy hook failed on the staging runner."
    for _ in range(2):
        edits.append_entry(vault.root, twin, when=when)
    vault.index()
    vault.profile = replace(vault.profile, duplicate_threshold=0.95)
    [report] = vault.lifecycle(["prune"])
    assert len(report.actions) == 1 and not report.conflicts
    vault.index()
    log = vault.root / "episodic/2026-11-06.md"
    assert log.read_text(encoding="utf-8").count(twin) == 1
    out = finish_interrupted(vault.root, snapshot(vault.store, vault.seals)[0],
                             vault.settings.lifecycle.scope, vault.seals)
    assert not out.written and log.read_text(encoding="utf-8").count(twin) == 1
    archive = (vault.root / "archive/episodic/2026-11-06.md").read_text(encoding="utf-8")
    assert archive.count(twin) == 1


@pytest.mark.slow
def test_connect_and_prune_hold_similarities_a_block_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model change re-buffers every entry: connect (and prune) built an entries x entries
    similarity matrix at once (50k entries: 10 GB; a 100k-chunk daemon grew to 13.5 GB). Now a
    block of rows at a time: the same plans, and memory bounded by the block."""
    import random
    import tracemalloc

    from vaultd.lifecycle import connect, plans, prune
    from vaultd.lifecycle.actions import Link

    words = [f"w{i}" for i in range(3000)]
    rng = random.Random(7)
    root = make_vault(tmp_path, {f"episodic/2026-10-{d:02d}.md": daily(f"2026-10-{d:02d}", [
        f"Entry {d} {n}. " + " ".join(rng.sample(words, 12)) for n in range(60)])
        for d in range(1, 26)})  # 1,500 entries
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        ctx = vault.lifecycle_context(dry_run=True, mirror=False)  # (links in the index)
        assert sum(v.type == "episodic" for v in ctx.views) == 1500
        peaks, planned = [], []
        for floats in (1500 * 1500, 1500 * 7):  # all pairs at once (9 MB), 7 rows a block
            monkeypatch.setattr(plans, "SIMILARITY_FLOATS", floats)
            tracemalloc.start()
            planned.append([connect.plan(ctx), prune.plan(ctx)])
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    whole, blocked = planned

    def links(p: plans.Plan) -> list[tuple[str, tuple[str, ...], dict[str, float]]]:
        return [(x.kind, x.entries[:1], dict(x.every_link.pairs()) if isinstance(x, Link)
                 else {}) for x in p.actions]

    for a, b in zip(whole, blocked):  # the same links; a product's last bits depend on how
        # many rows BLAS multiplies at once, so near-equal scores may come in another order
        assert len(a.actions) == len(b.actions)
        for (kind, entry, x), (kind2, entry2, y) in zip(links(a), links(b)):
            assert (kind, entry, set(x)) == (kind2, entry2, set(y))
            assert all(abs(x[k] - y[k]) <= 1e-3 for k in x)
    assert peaks[1] < peaks[0] - 1500 * 1500 * 4 * 0.8, peaks  # the 9 MB matrix is gone


@pytest.mark.slow
def test_a_dense_graph_is_held_compactly_and_reported_by_its_strongest_links(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry of a dense vault links to thousands (a 100k-chunk vault: 14M links, and
    connect grew the daemon to 4.5 GB holding each as Python objects, and each again as a
    label in the report). The plan holds every link compactly, the report shows the strongest
    MAX_LINKS with the count, and applying saves them all."""
    import tracemalloc

    from vaultd.lifecycle import connect
    from vaultd.lifecycle.plans import Outcome, PhaseReport
    from vaultd.store import links as store

    days = 30
    for d in range(1, days + 1):
        write(vault.root, f"episodic/2026-10-{d:02d}.md", daily(f"2026-10-{d:02d}", [
            f"topicdense note {d} {n}." for n in range(10)]))
    vault.index()
    ctx = vault.lifecycle_context()
    n = sum(v.type == "episodic" for v in ctx.views)
    assert n == 300  # (and what init_vault wrote, about something else)
    tracemalloc.start()
    plan = connect.plan(ctx)
    report = PhaseReport.of(plan, Outcome(), ctx.by_id, dry_run=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    links = n * (n - 1)
    # every link held as an id reference and a float64 (16 bytes), not as objects or labels
    # (246 bytes a link before); each entry's action and report, ~7 KB, on top
    assert peak < 20 * links + 10_000 * n, (peak - 10_000 * n) / links
    linking = [a for a in report.actions if a.kind == "link" and a.scores]
    assert len(linking) == n
    assert all(a.links == n - 1 and len(a.scores) == connect.MAX_LINKS
               and len(a.entries) == 1 + connect.MAX_LINKS for a in linking)
    assert all(list(a.scores) == sorted(a.scores, reverse=True) for a in linking)

    # applying streams the links into the index, a few thousand rows at a time
    monkeypatch.setattr(store, "LINK_ROWS", 2000)
    tracemalloc.start()
    outcome = connect.apply(ctx, plan)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * links, peak / links
    assert sum(1 for _ in vault.store.links()) == links
    # each daily log lists its strongest MAX_LINKS other notes (it links to all 29)
    assert outcome.written and all(
        len(edits.get_frontmatter(p, (vault.root / p).read_text(encoding="utf-8"))
            ["vaultd_related"]) == connect.MAX_LINKS for p in outcome.written)


def test_related_links_keep_the_strongest_in_one_pass() -> None:
    """`vaultd_related:` is each note's MAX_LINKS strongest links, ties by name: the same from
    the one-pass reduction (which drops a note's weaker targets as it goes) as from holding
    every link, whatever the order the links come in."""
    import random

    from vaultd.lifecycle import connect
    from vaultd.lifecycle.entries import EntryView

    rng = random.Random(3)
    views = [EntryView(id=f"e{i}", path=f"semantic/n{i % 150}.md", key=f"k{i}", heading="",
                       type="semantic", date=None, tags=(), start_line=1, end_line=2,
                       text="", hash=f"h{i}", is_daily=False, frontmatter={})
             for i in range(300)]
    scores = [round(rng.uniform(0.5, 0.9), 2) for _ in range(40)]  # coarse: many ties
    links = [(f"e{a}", f"e{b}", rng.choice(scores)) for a in range(300)
             for b in rng.sample(range(300), 120) if a != b]

    def every_link(order: list[tuple[str, str, float]]) -> dict[str, list[str]]:
        best: dict[str, dict[str, float]] = {}
        for a, b, s in order:
            pa, pb = views[int(a[1:])].path, views[int(b[1:])].path
            if pa != pb:
                t = f"[[{pb.removesuffix('.md')}]]"
                best.setdefault(pa, {})[t] = max(best.get(pa, {}).get(t, -1.0), s)
        return {p: sorted(sorted(s, key=lambda t: (-s[t], t))[:connect.MAX_LINKS])
                for p, s in best.items()}

    want = every_link(links)
    assert all(len(v) == connect.MAX_LINKS for v in want.values())
    for _ in range(3):
        rng.shuffle(links)
        assert connect.related_links(iter(links), views) == want


def test_save_links_replaces_each_saved_entrys_links_in_both_directions(vault: Vault) -> None:
    write(vault.root, "episodic/2026-10-01.md", daily("2026-10-01", [
        f"topicx entry {n}." for n in range(5)]))
    vault.index()
    a, b, c, d, e = (v.id for v in vault.lifecycle_context().views if v.type == "episodic")
    store = vault.store

    def graph() -> set[tuple[str, str, float]]:
        return set(store.links())

    store.save_links([(a, [(b, 0.9), (c, 0.8)], "h"), (d, [(e, 0.7)], "h")], 1.0)
    assert graph() == {(a, b, 0.9), (b, a, 0.9), (a, c, 0.8), (c, a, 0.8), (d, e, 0.7),
                       (e, d, 0.7)}
    # saved again, an entry's links become exactly these (a-b, a-c and d-e go); a pair whose
    # entries are both saved is linked if either lists it (c-e)
    store.save_links([(b, [(d, 0.6)], "h"), (c, [], "h"), (e, [(c, 0.5)], "h")], 2.0)
    assert graph() == {(b, d, 0.6), (d, b, 0.6), (e, c, 0.5), (c, e, 0.5)}
    assert store.link_degrees() == {b: 1, c: 1, d: 1, e: 1}


def test_an_index_of_the_two_row_link_graph_is_migrated_to_one_row_a_pair(
        vault: Vault) -> None:
    """Migration 3: an index whose link graph has a row per direction (migration 2's table)
    reads the same links afterwards, both ways, from one row a pair (half the rows, one
    B-tree fewer)."""
    write(vault.root, "episodic/2026-10-01.md", daily("2026-10-01", [
        f"topicx entry {n}." for n in range(4)]))
    vault.index()
    a, b, c, d = sorted(v.id for v in vault.lifecycle_context().views if v.type == "episodic")
    directed = {(a, b, 0.9), (b, a, 0.9), (a, c, 0.8), (c, a, 0.8), (d, b, 0.7), (b, d, 0.7)}
    with vault.store.transaction():  # the index as migration 2 left it
        conn = vault.store.conn
        conn.execute("DROP TABLE link_pairs")
        conn.execute("CREATE TABLE edges (a TEXT NOT NULL, b TEXT NOT NULL, score REAL NOT "
                     "NULL, PRIMARY KEY (a, b))")
        conn.execute("CREATE INDEX edges_b ON edges(b)")
        conn.executemany("INSERT INTO edges(a, b, score) VALUES (?, ?, ?)", sorted(directed))
        conn.execute("PRAGMA user_version = 2")
    store = Store(layout.index_path(vault.root))  # opened anew: migration 3 runs
    try:
        assert store.schema_version == 4
        assert set(store.links()) == directed
        assert store.link_degrees() == {a: 2, b: 2, c: 1, d: 1}
        assert store.conn.execute("SELECT count(*) FROM link_pairs").fetchone()[0] == 3
        store.save_links([(c, [(d, 0.6)], "h")], 2.0)  # and it goes on as usual
        assert set(store.links()) == {(a, b, 0.9), (b, a, 0.9), (d, b, 0.7), (b, d, 0.7),
                                      (c, d, 0.6), (d, c, 0.6)}
    finally:
        store.close()
