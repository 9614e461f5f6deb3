"""Write races (issue #7, point 6): concurrent `vaultd remember` processes while a real daemon
indexes, a user saving MEMORY.md or a routed file in the middle of a flush, and every lifecycle
writer meeting a file the user changed after vaultd read it.

The interleavings are deterministic: `user_saves_after_read` wraps the real `edits.read` so the
"user" writes the file right after vaultd read it and before vaultd writes — vaultd's own logic
runs unchanged. A change between a phase's plan and its apply is made by saving the file before
calling the real apply function.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SAYS, daily, make_vault, vaultd_wrote, with_settings, write
from daemon_helpers import FAST_CONFIG, env_for, running_daemon, wait_for

from vaultd import edits
from vaultd.blocks import outside_block
from vaultd.edits import exchange as exchange_module
from vaultd.lifecycle import age, consolidate, heartbeat, route
from vaultd.lifecycle.moves import restore
from vaultd.lifecycle.plans import Context, Outcome, Plan
from vaultd.vault import Vault


def user_saves_after_read(monkeypatch: pytest.MonkeyPatch, path: Path,
                          edit: Callable[[str], str], times: int = 1,
                          skip: int = 0) -> list[str]:
    """After vaultd's next `times` reads of `path` (past the first `skip`), the user saves
    `edit(text)` to it. Returns the list of texts the user saved (the last one is what must
    survive)."""
    real = edits.read
    saved: list[str] = []
    reads = [0]

    def read(p: Path) -> edits.Snapshot:
        snap = real(p)
        if Path(p) == path:
            reads[0] += 1
        if Path(p) == path and reads[0] > skip and len(saved) < times:
            saved.append(edit(snap.text))
            path.write_bytes(saved[-1].encode("utf-8"))
        return snap

    monkeypatch.setattr(edits, "read", read)
    return saved


# ---------------------------------------------------------------- ten remember processes


@pytest.mark.slow
def test_ten_remember_processes_while_the_daemon_indexes(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    root = make_vault(tmp_path, name="v", config=FAST_CONFIG)
    tokens = [f"racetoken{n}q" for n in range(10)]
    with running_daemon(root, env) as daemon:
        batches = daemon.daemon.stats.batches
        for i in range(150):  # a burst the daemon is busy indexing while the writers run
            write(root, f"semantic/burst-{i:03d}.md", f"# Burst {i}\n\nfiller note {i}.\n")
        procs = [subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root),
                                   "remember", f"entry from writer {token}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for token in tokens]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out.startswith("episodic/")
        text = "".join(p.read_text(encoding="utf-8") for p in (root / "episodic").glob("*.md"))
        for token in tokens:
            assert text.count(f"\nentry from writer {token}\n") == 1, token

        def settled() -> bool:
            status, health = daemon.call("GET", "/health", token=None)
            return (status == 200 and health["queue"] == 0 and health["index_lag"] == 0
                    and daemon.daemon.stats.batches > batches
                    and len(daemon.search("burst filler", k=1000)["hits"]) == 150
                    and all(daemon.search(t)["hits"] for t in tokens))

        wait_for(settled, "the daemon to index the burst and all ten entries")
        for token in tokens:
            hits = [h for h in daemon.search(token)["hits"] if token in h["text"]]
            assert len(hits) == 1 and hits[0]["path"].startswith("episodic/"), (token, hits)


# ---------------------------------------------------------------- a user edit during a flush


MEMORY = "# Memory\n\nMy notes.\n\n<!-- vaultd:begin -->\n<!-- vaultd:end -->\n\nTail line.\n"


def test_a_user_save_to_memory_md_during_a_flush_survives_byte_for_byte(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "MEMORY.md", MEMORY)
    vaultd_wrote(vault.root, "semantic/money.md",
                 "---\nstatus: proven\n---\n# Money\n\nIn cents.\n")
    path = vault.root / "MEMORY.md"
    saved = user_saves_after_read(
        monkeypatch, path, lambda t: t.replace("My notes.", "My notes, EDITED\r\n  exactly."))
    result = vault.flush()
    assert saved and result.memory_written
    final = path.read_bytes().decode("utf-8")
    assert outside_block(final) == outside_block(saved[-1])  # the user's bytes, all kept
    assert "Money" in final and "EDITED\r\n  exactly." in final


def test_a_user_who_keeps_saving_memory_md_wins(vault: Vault,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "MEMORY.md", MEMORY)
    vaultd_wrote(vault.root, "semantic/money.md",
                 "---\nstatus: proven\n---\n# Money\n\nIn cents.\n")
    path = vault.root / "MEMORY.md"
    saved = user_saves_after_read(monkeypatch, path, lambda t: t + "another line\n", times=99)
    with pytest.raises(edits.ConflictError, match="kept changing"):
        vault.flush()
    assert path.read_text(encoding="utf-8") == saved[-1]  # nothing of ours over their save


ROUTED = ("# Rules\n\nUser rule topicdeploy.\n\n<!-- vaultd:begin -->\n<!-- vaultd:end -->\n"
          "\nUser tail.\n")


def _routed_vault(vault: Vault) -> Path:
    write(vault.root, "CLAUDE.md", ROUTED)
    vaultd_wrote(vault.root, "semantic/deploys.md", "---\nstatus: proven\nconsolidation: t1\n"
                 "---\n# Deploys\n\ntopicdeploy always canary first.\n")
    write(vault.root, "procedural/canary.md", "# Canary\n\ntopicdeploy canary steps.\n")
    with_settings(vault, route_targets=("CLAUDE.md",))
    return vault.root / "CLAUDE.md"


def test_a_user_save_to_a_routed_file_between_plan_and_write_survives(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _routed_vault(vault)
    user = ROUTED.replace("User rule", "User rule, edited while vaultd planned,")
    real_apply = route.PHASE.apply

    def user_saves_then_apply(ctx: Context, plan: Plan) -> Outcome:
        path.write_bytes(user.encode())
        return real_apply(ctx, plan)

    monkeypatch.setattr(route.PHASE, "apply", user_saves_then_apply)
    result = vault.flush()
    routed = next(p for p in result.phases if p.phase == "route")
    assert routed.conflicts and "CLAUDE.md" in routed.conflicts[0]
    assert path.read_bytes() == user.encode()  # refused: not one byte of ours
    monkeypatch.undo()
    vault.flush()  # the next run plans again on the user's text
    final = path.read_text(encoding="utf-8")
    assert outside_block(final) == outside_block(user) and "[[semantic/deploys]]" in final


def test_a_user_save_to_a_routed_file_between_read_and_write_survives(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _routed_vault(vault)
    real_apply = route.PHASE.apply
    saved: list[list[str]] = []

    def apply_with_a_user(ctx: Context, plan: Plan) -> Outcome:
        # the user saves right after route's apply reads the file
        saved.append(user_saves_after_read(monkeypatch, path,
                                           lambda t: t + "Saved mid-write.\n"))
        return real_apply(ctx, plan)

    monkeypatch.setattr(route.PHASE, "apply", apply_with_a_user)
    result = vault.flush()
    routed = next(p for p in result.phases if p.phase == "route")
    assert saved[0] and routed.conflicts
    assert path.read_text(encoding="utf-8") == saved[0][-1]


# ---------------------------------------------------------------- lifecycle writers


def test_related_mirroring_never_overwrites_a_save_made_after_its_read(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    with_settings(vault, scope=(".",))  # these notes are the agent's
    write(vault.root, "semantic/a.md", "---\ntitle: A\n---\n# A\n\ntopiclink first.\n")
    write(vault.root, "semantic/b.md", "---\ntitle: B\n---\n# B\n\ntopiclink second.\n")
    vault.index()
    path = vault.root / "semantic/a.md"
    saved = user_saves_after_read(monkeypatch, path, lambda t: t + "\nUser line.\n")
    [report] = vault.lifecycle(["connect"])
    assert saved and any("semantic/a.md" in c for c in report.conflicts)
    assert path.read_text(encoding="utf-8") == saved[-1]
    assert "semantic/b.md" in report.written  # the other file was mirrored as usual
    monkeypatch.undo()
    vault.index()
    vault.lifecycle(["connect"])  # next time: planned again on the user's text
    text = path.read_text(encoding="utf-8")
    assert text.endswith("topiclink first.\n\nUser line.\n") and "[[semantic/b]]" in text


def _consolidation(vault: Vault) -> list[str]:
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    for i, day in enumerate(days):
        write(vault.root, f"episodic/{day}.md", daily(day, [
            SAYS[i],
            f"unrelated topicother{i} note."]))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    return days


def test_consolidate_leaves_an_entry_edited_between_plan_and_apply(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    days = _consolidation(vault)
    path = vault.root / f"episodic/{days[1]}.md"
    user = path.read_text(encoding="utf-8").replace("Berlin timezone involved.",
                                                    "Berlin timezone. User adds: CET!")
    real_apply = consolidate.PHASE.apply

    def user_saves_then_apply(ctx: Context, plan: Plan) -> Outcome:
        path.write_bytes(user.encode())
        return real_apply(ctx, plan)

    monkeypatch.setattr(consolidate.PHASE, "apply", user_saves_then_apply)
    [report] = vault.lifecycle(["consolidate"])
    assert len(report.actions) == 1
    assert any(days[1] in c for c in report.conflicts)
    assert path.read_bytes() == user.encode()
    # the group is no longer the one planned: nothing merged
    assert not report.created and not list((vault.root / "semantic").glob("*.md"))
    for day in days:
        assert "topicflaky" in (vault.root / f"episodic/{day}.md").read_text(encoding="utf-8")


def test_archiving_an_entry_of_a_file_saved_after_its_read_moves_nothing(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry

    days = _consolidation(vault)
    path = vault.root / f"episodic/{days[0]}.md"
    [view] = [v for v in snapshot(vault.store, vault.seals)[0]
              if v.path == f"episodic/{days[0]}.md" and "topicflaky" in v.text]
    # archiving reads the log, copies the entry into the archive, then cuts it from the log:
    # the user saves right after that read (as age fading it would meet)
    saved = user_saves_after_read(monkeypatch, path,
                                  lambda t: t + "\n## 18:00 — Evening\nUser wrote this.\n")
    with pytest.raises(edits.ConflictError):
        archive_entry(vault.root, view, "a test", Outcome(), seals=vault.seals)
    assert saved and path.read_text(encoding="utf-8") == saved[-1]
    # the entry stayed in its file, so the archive must not hold a second copy of it
    archived = vault.root / f"archive/episodic/{days[0]}.md"
    assert not archived.exists() or "Passed on rerun" not in archived.read_text(encoding="utf-8")


def _lonely_note(vault: Vault) -> Path:
    write(vault.root, "episodic/lonely.md", "---\ntype: episodic\n---\n# Lonely\n\n"
          "topiclonely lunch place.\n")
    for i in range(4):
        write(vault.root, f"episodic/new-{i}.md", f"# New {i}\n\ntopicnew{i} thing.\n")
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    with_settings(vault, newer_entries=4)
    return vault.root / "episodic/lonely.md"


def test_a_reprieve_is_not_written_over_a_save_made_after_its_read(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _lonely_note(vault)
    saved = user_saves_after_read(monkeypatch, path, lambda t: t + "Still useful!\n")
    [report] = vault.lifecycle(["age"])
    assert [a.kind for a in report.actions] == ["reprieve"]
    assert saved and report.conflicts and not report.written
    assert path.read_text(encoding="utf-8") == saved[-1]


def test_a_note_edited_since_it_was_planned_does_not_fade(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _lonely_note(vault)
    for _ in range(3):
        vault.lifecycle(["age"])
    assert edits.get_frontmatter("x", path.read_text())["reprieves"] == 3
    user = path.read_text(encoding="utf-8").replace("lunch place.", "lunch place. Keep this!")
    real_apply = age.PHASE.apply

    def user_saves_then_apply(ctx: Context, plan: Plan) -> Outcome:
        path.write_bytes(user.encode())
        return real_apply(ctx, plan)

    monkeypatch.setattr(age.PHASE, "apply", user_saves_then_apply)
    [report] = vault.lifecycle(["age"])
    assert [a.kind for a in report.actions] == ["fade"]  # planned on the old text
    assert report.conflicts and not report.written
    assert path.read_bytes() == user.encode()  # the user's note stays, as they left it
    assert not (vault.root / "archive/episodic/lonely.md").exists()


def test_a_promotion_is_not_written_over_a_save_made_after_its_read(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    with_settings(vault, scope=(".",))  # this note is the agent's
    write(vault.root, "semantic/fact.md", "# Fact\n\ntopicfact amounts are cents.\n")
    vault.index()
    for query in ("topicfact cents", "amounts cents", "topicfact amounts"):
        vault.search(query, record=True)
    path = vault.root / "semantic/fact.md"
    # after the plan's read (what promotion would write), at promotion's own read
    saved = user_saves_after_read(monkeypatch, path, lambda t: "---\ntags: [mine]\n---\n" + t,
                                  skip=1)
    [report] = vault.lifecycle(["promote"])
    assert [a.kind for a in report.actions] == ["promote"]
    assert saved and report.conflicts
    assert path.read_text(encoding="utf-8") == saved[-1]
    monkeypatch.undo()
    vault.index()
    [report] = vault.lifecycle(["promote"])  # planned again, on the user's text
    fm = edits.get_frontmatter("semantic/fact.md", path.read_text(encoding="utf-8"))
    assert fm["status"] == "proven" and fm["tags"] == ["mine"]



def test_restore_leaves_an_archived_note_edited_after_its_read(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "archive/semantic/old.md", "---\narchived_from: semantic/old.md\n"
          "archived_reason: faded\n---\n# Old\n\nold text.\n")
    path = vault.root / "archive/semantic/old.md"
    saved = user_saves_after_read(monkeypatch, path, lambda t: t + "Edited in the archive.\n")
    with pytest.raises(edits.ConflictError, match="changed while restoring"):
        restore(vault.root, "archive/semantic/old.md", seals=vault.seals)
    assert path.read_text(encoding="utf-8") == saved[-1]
    assert not (vault.root / "semantic/old.md").exists()  # no stale copy brought back


def test_restore_of_daily_entries_takes_them_back_when_the_archive_changed(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    live = daily("2026-01-01", ["topickept stays here."])
    write(vault.root, "episodic/2026-01-01.md", live)
    write(vault.root, "archive/episodic/2026-01-01.md",
          "---\narchived: {'11:00 — gone': {from: episodic/2026-01-01.md}, "
          "'12:00 — also gone': {from: episodic/2026-01-02.md}}\n---\n# 2026-01-01\n"
          "\n## 11:00 — gone\ntopicgone entry.\n\n## 12:00 — also gone\ntopicalso entry.\n")
    path = vault.root / "archive/episodic/2026-01-01.md"
    for keys, edit in (([], lambda t: t + "\nUser note.\n"),
                       (["11:00 — gone"], lambda t: t.replace("topicgone", "topicGONE"))):
        saved = user_saves_after_read(monkeypatch, path, edit)
        with pytest.raises(edits.ConflictError):
            restore(vault.root, "archive/episodic/2026-01-01.md", keys or None,
                    seals=vault.seals)
        assert path.read_text(encoding="utf-8") == saved[-1]
        # every entry restored before the conflict was taken back: none is in two places
        assert (vault.root / "episodic/2026-01-01.md").read_text(encoding="utf-8") == live
        assert not (vault.root / "episodic/2026-01-02.md").exists()
        monkeypatch.undo()
    assert "topicGONE" in path.read_text(encoding="utf-8")
    # and then it works
    assert restore(vault.root, "archive/episodic/2026-01-01.md", seals=vault.seals)
    assert "topicGONE" in (vault.root / "episodic/2026-01-01.md").read_text(encoding="utf-8")
    # its record's `from:` is unsealed (not vaultd's word): it goes where the archive mirrors
    assert "topicalso" in (vault.root / "episodic/2026-01-01.md").read_text(encoding="utf-8")
    assert not path.exists()


def test_heartbeat_takes_back_its_note_when_the_log_changed_after_its_read(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    write(vault.root, "semantic/pool.md", "# Pool\n\ntopicpool sizing facts.\n")
    write(vault.root, "procedural/deploy.md", "# Deploy\n\ntopicdeploy steps.\n")
    write(vault.root, "episodic/2026-11-20.md", daily("2026-11-20", [
        "topicpool max is twenty connections.", "topiclunch ramen."]))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)

    def review() -> Outcome:
        ctx = vault.lifecycle_context(today=dt.date(2026, 11, 21))
        plan = heartbeat.plan(ctx)
        assert [a.type for a in plan.actions] == ["semantic"]  # type: ignore[attr-defined]
        return heartbeat.apply(ctx, plan)

    path = vault.root / "episodic/2026-11-20.md"
    # after the plan's read (what marking the log would write), at the extraction's own read
    saved = user_saves_after_read(monkeypatch, path, lambda t: t + "\n## 18:00 — Later\nx.\n",
                                  skip=1)
    out = review()
    assert out.conflicts and not out.created
    assert path.read_text(encoding="utf-8") == saved[-1]
    assert sorted(p.name for p in (vault.root / "semantic").glob("*.md")) == ["pool.md"]  # back
    monkeypatch.undo()
    vault.index()
    out = review()  # planned again on the user's text: extracted once, and marked
    assert len(out.created) == 1 and not out.conflicts
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n## 18:00 — Later\nx.\n") and "extracted:" in text


# ------------------------------------- a save inside vaultd's own write (issue 12, point 2)
#
# The red-team's probe made deterministic: the person's save lands in the instant between
# vaultd's last check of the file and its replace (the window `replace_checked` narrows to one
# system call and then watches), or while vaultd's temp file is being fsynced.


def rename_save(path: Path, text: str) -> None:
    """What vim, VS Code or Obsidian do: write a new file, rename it over the note."""
    tmp = path.with_name(path.name + ".swp~")
    tmp.write_bytes(text.encode("utf-8"))
    os.replace(tmp, path)


def in_place_save(path: Path, text: str) -> None:
    """What `vim` with backupcopy=yes or a `cat > note` does: truncate and write the inode."""
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(text.encode("utf-8"))


def save_after_check(monkeypatch: pytest.MonkeyPatch, path: Path, save: Callable[..., None],
                     text: str, nth: int = 2) -> None:
    """The person saves `text` right after vaultd's `nth` read of `path` from now (by default
    the second: the first is the snapshot, the second the last check before the replace)."""
    real = Path.read_bytes
    reads = [0]

    def read_bytes(self: Path) -> bytes:
        data = real(self)
        if self == path:
            reads[0] += 1
            if reads[0] == nth:
                save(path, text)
        return data

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "no-exchange"])
@pytest.mark.parametrize("save", [rename_save, in_place_save], ids=["rename", "in-place"])
def test_a_save_between_the_check_and_the_replace_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, save: Callable[..., None],
        exchange: bool) -> None:
    if not exchange:  # a file system without an atomic exchange: the link-aside fallback
        monkeypatch.setattr(exchange_module, "_exchange", None)
    root = tmp_path / "v"
    write(root, "semantic/n.md", "# N\n\nfirst text.\n")
    path = root / "semantic/n.md"
    snap = edits.read(path)
    theirs = "# N\n\nfirst text, and what the person typed.\n"
    save_after_check(monkeypatch, path, save, theirs, nth=1)  # snapshot taken: next, the check
    with pytest.raises(edits.ConflictError, match="saved by someone else|changed since"):
        edits.replace_checked(snap, "# N\n\nvaultd's rewrite.\n", root=root)
    monkeypatch.undo()
    assert path.read_bytes().decode("utf-8") == theirs
    assert sorted(p.name for p in path.parent.iterdir()) == ["n.md"]  # no temp file, no copy


def test_a_save_while_vaultd_fsyncs_its_temp_file_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "v"
    write(root, "MEMORY.md", MEMORY)
    path = root / "MEMORY.md"
    snap = edits.read(path)
    theirs = MEMORY.replace("My notes.", "My notes, saved during a slow fsync.")
    real = os.fsync
    done: list[int] = []

    def slow_fsync(fd: int) -> None:
        if not done:
            done.append(fd)
            rename_save(path, theirs)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    with pytest.raises(edits.ConflictError):
        edits.replace_checked(snap, MEMORY.replace("Tail", "vaultd's"), root=root)
    monkeypatch.undo()
    assert done and path.read_bytes().decode("utf-8") == theirs


def test_a_flush_merges_into_a_save_made_in_the_instant_of_its_write(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    write(vault.root, "MEMORY.md", MEMORY)
    vaultd_wrote(vault.root, "semantic/money.md",
                 "---\nstatus: proven\n---\n# Money\n\nIn cents.\n")
    path = vault.root / "MEMORY.md"
    vault.index()
    theirs = MEMORY.replace("Tail line.", "Tail line, and a vim save mid-flush.")
    # the snapshot is read without Path.read_bytes: its first call is the last check
    save_after_check(monkeypatch, path, rename_save, theirs, nth=1)
    result = vault.flush()
    monkeypatch.undo()
    final = path.read_bytes().decode("utf-8")
    assert result.memory_written and "Money" in final
    assert outside_block(final) == outside_block(theirs)  # their save, every byte


def test_a_shell_append_during_remember_is_kept(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """`echo line >> today.md` while `vaultd remember` writes the same log: both lines stay
    (the append happens while vaultd syncs its write, the moment a replace would drop it)."""
    rel, _ = vault.remember("first entry")
    path = vault.root / rel
    real = os.fsync
    done: list[int] = []

    def fsync(fd: int) -> None:
        if not done:
            done.append(fd)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("- appended by the shell\n")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    vault.remember("second entry")
    monkeypatch.undo()
    text = path.read_text(encoding="utf-8")
    assert done and "- appended by the shell\n" in text
    assert "\nfirst entry\n" in text and "\nsecond entry\n" in text


# ------------------------------------- in-place saves against a replace (issue 24, point 5)
#
# An editor that saves in place (open with O_TRUNC, write, close: node's `fs.writeFile`,
# Obsidian, VS Code) keeps the inode: a replace made while it has the file open displaces the
# very file its next write() goes to. The saver is a real second process; pipes and events
# order its open and its write around vaultd's replace, and no step waits on a sleep.


def _in_place_saver(path: str, flags: int, first: bytes, rest: bytes, go_open: object,
                    opened: object, go_write: object) -> None:
    """Open `path` with `flags` when told, write `first`, say so, write `rest` when told."""
    go_open.wait()  # type: ignore[attr-defined]
    fd = os.open(path, flags)
    try:
        os.write(fd, first)
        opened.set()  # type: ignore[attr-defined]
        go_write.wait()  # type: ignore[attr-defined]
        os.write(fd, rest)
    finally:
        os.close(fd)


class _Saver:
    """The in-place saver process and its three events."""

    def __init__(self, path: Path, flags: int, first: bytes, rest: bytes) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.go_open, self.opened, self.go_write = ctx.Event(), ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_in_place_saver, args=(
            str(path), flags, first, rest, self.go_open, self.opened, self.go_write))
        self.proc.start()

    def finish(self) -> None:
        self.go_open.set()
        assert self.opened.wait(30), "the saver never opened the file"
        self.go_write.set()
        self.proc.join(30)
        assert self.proc.exitcode == 0


@pytest.mark.parametrize("first", [b"", b"# N\n\nthe person's new te"],
                         ids=["truncated", "half-written"])
def test_an_in_place_save_in_progress_is_not_replaced(tmp_path: Path, first: bytes) -> None:
    """vaultd reads the file while an in-place save is under way (empty just after the
    O_TRUNC, or half written) and the save goes on after vaultd's check: vaultd must not swap
    its text in, or the rest of the save lands in the displaced file."""
    root = tmp_path / "v"
    write(root, "semantic/n.md", "# N\n\nthe old text.\n")
    path = root / "semantic/n.md"
    rest = b"xt, saved in place.\n"
    saver = _Saver(path, os.O_WRONLY | os.O_TRUNC, first, rest)
    saver.go_open.set()
    assert saver.opened.wait(30)
    snap = edits.read(path)  # what vaultd sees mid-save
    assert snap.data == first
    try:
        with pytest.raises(edits.ConflictError, match="being written"):
            edits.replace_checked(snap, "# N\n\nvaultd's rewrite.\n", root=root)
    finally:
        saver.finish()
    assert path.read_bytes() == first + rest
    assert sorted(p.name for p in path.parent.iterdir()) == ["n.md"]


def test_an_in_place_save_that_opens_during_the_exchange_gets_its_file_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The saver's open reaches the file while vaultd exchanges it (held back by vaultd's
    lease until vaultd swaps the file back), and it writes after vaultd has returned: its
    line is in the file at the note's name, not in a displaced one."""
    import fcntl
    import time

    root = tmp_path / "v"
    old = b"# N\n\nthe old text.\n"
    write(root, "semantic/n.md", old.decode())
    path = root / "semantic/n.md"
    saver = _Saver(path, os.O_WRONLY | os.O_APPEND, b"", b"- a line saved in place\n")
    leases: list[int] = []
    real_lease = getattr(exchange_module, "_take_lease", None)

    def take_lease(p: Path, fd: int) -> bool:
        held = real_lease(p, fd)  # type: ignore[misc]
        leases.append(fd)
        return held

    def writer_blocked() -> bool:
        return bool(leases) and fcntl.fcntl(leases[0], 1025) == 2  # F_GETLEASE: break pending

    real_exchange = exchange_module._exchange
    calls: list[int] = []

    def exchange(a: Path, b: Path) -> bool:
        if not calls:  # vaultd's swap-in: the saver opens the note now
            saver.go_open.set()
            deadline = time.monotonic() + 30
            while not (saver.opened.is_set() or writer_blocked()):
                assert time.monotonic() < deadline, "the saver neither opened nor waited"
                time.sleep(0.001)
        calls.append(1)
        return bool(real_exchange(a, b))

    monkeypatch.setattr(exchange_module, "_take_lease", take_lease, raising=False)
    monkeypatch.setattr(exchange_module, "_exchange", exchange)
    snap = edits.read(path)
    try:
        with pytest.raises(edits.ConflictError):
            edits.replace_checked(snap, "# N\n\nvaultd's rewrite.\n", root=root)
    finally:
        saver.finish()
    monkeypatch.undo()
    assert path.read_bytes() == old + b"- a line saved in place\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["n.md"]


def test_without_leases_a_file_still_being_written_is_waited_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel grants no lease (another OS, a network file system), a file modified
    a moment ago may be half written: vaultd lets it rest first and gives way when it keeps
    changing (here the saver writes its second half while vaultd waits)."""
    import time

    root = tmp_path / "v"
    write(root, "semantic/n.md", "# N\n\nthe old text.\n")
    path = root / "semantic/n.md"
    first, rest = b"# N\n\nthe person's new te", b"xt, saved in place.\n"
    saver = _Saver(path, os.O_WRONLY | os.O_TRUNC, first, rest)
    saver.go_open.set()
    assert saver.opened.wait(30)
    real_sleep, now, wall = time.sleep, time.monotonic, time.time

    class Clock:  # edits' clock, whose first sleep lets the saver write its second half
        monotonic, time = staticmethod(now), staticmethod(wall)

        @staticmethod
        def sleep(seconds: float) -> None:
            if not saver.go_write.is_set():
                saver.go_write.set()
                saver.proc.join(30)
            real_sleep(seconds)

    monkeypatch.setattr(exchange_module, "_take_lease", lambda p, fd: False, raising=False)
    monkeypatch.setattr(exchange_module, "time", Clock, raising=False)
    snap = edits.read(path)
    try:
        with pytest.raises(edits.ConflictError, match="being written"):
            edits.replace_checked(snap, "# N\n\nvaultd's rewrite.\n", root=root)
    finally:
        saver.finish()
    monkeypatch.undo()
    assert path.read_bytes() == first + rest
