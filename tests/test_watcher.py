"""coalesce(): raw file events → net work, with synthetic event sequences from real editors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.daemon.watcher import Changes, RawEvent, coalesce
from vaultd.layout import Ignore

IGNORE = Ignore(("drafts",))


def ev(kind: str, path: str, dest: str | None = None, is_dir: bool = False) -> RawEvent:
    return RawEvent(kind=kind, path=path, dest=dest, is_dir=is_dir)  # type: ignore[arg-type]


def run(*events: RawEvent) -> Changes:
    return coalesce(events, IGNORE)


def test_create_then_delete_is_nothing() -> None:
    assert not run(ev("created", "a.md"), ev("modified", "a.md"), ev("deleted", "a.md"))


def test_repeated_modifies_are_one_upsert() -> None:
    changes = run(*[ev("modified", "n.md") for _ in range(50)], ev("closed", "n.md"))
    assert changes.upserts == ["n.md"] and not changes.deletes


def test_delete_then_recreate_is_an_upsert() -> None:
    changes = run(ev("deleted", "n.md"), ev("created", "n.md"), ev("modified", "n.md"))
    assert changes.upserts == ["n.md"] and not changes.deletes


def test_vim_atomic_save() -> None:
    # vim: probe file 4913, rename the note to a ~ backup, write a new note, delete the backup
    changes = run(ev("created", "4913"), ev("deleted", "4913"),
                  ev("moved", "n.md", "n.md~"), ev("created", "n.md"), ev("modified", "n.md"),
                  ev("deleted", "n.md~"))
    assert changes.upserts == ["n.md"] and not changes.deletes and not changes.dirs


def test_jetbrains_safe_write() -> None:
    changes = run(ev("created", "n.md___jb_tmp___"), ev("modified", "n.md___jb_tmp___"),
                  ev("moved", "n.md", "n.md___jb_old___"),
                  ev("moved", "n.md___jb_tmp___", "n.md"), ev("deleted", "n.md___jb_old___"))
    assert changes.upserts == ["n.md"] and not changes.deletes


def test_vscode_and_obsidian_temp_then_rename() -> None:
    changes = run(ev("created", ".n.md.tmp"), ev("modified", ".n.md.tmp"),
                  ev("moved", ".n.md.tmp", "n.md"))
    assert changes.upserts == ["n.md"]
    changes = run(ev("modified", "n.md"), ev("modified", "n.md"))  # Obsidian writes in place
    assert changes.upserts == ["n.md"]


def test_move_is_delete_plus_upsert() -> None:
    changes = run(ev("moved", "semantic/a.md", "procedural/a.md"))
    assert changes.deletes == ["semantic/a.md"] and changes.upserts == ["procedural/a.md"]


def test_move_out_of_the_vault_is_a_delete() -> None:
    changes = run(ev("moved", "a.md", None))
    assert changes.deletes == ["a.md"] and not changes.upserts


def test_move_into_the_vault_of_a_new_file() -> None:
    changes = run(ev("created", "x.md"), ev("moved", "x.md", "y.md"))
    assert changes.upserts == ["y.md"] and not changes.deletes  # x.md never existed for us


def test_directory_events_become_folders_to_rescan() -> None:
    changes = run(ev("moved", "old", "new", is_dir=True), ev("created", "fresh", is_dir=True),
                  ev("deleted", "gone", is_dir=True), ev("modified", "new", is_dir=True))
    assert changes.dirs == ["old", "new", "fresh", "gone"]


def test_ignored_and_non_note_paths_drop_out() -> None:
    changes = run(ev("modified", ".obsidian/workspace.md"), ev("modified", "drafts/x.md"),
                  ev("modified", "image.png"), ev("modified", ".vaultd/index.db"),
                  ev("created", ".git", is_dir=True), ev("modified", "ok.md"))
    assert changes.upserts == ["ok.md"] and not changes.dirs


def test_order_of_first_appearance_is_kept() -> None:
    changes = run(ev("modified", "b.md"), ev("modified", "a.md"), ev("modified", "b.md"))
    assert changes.upserts == ["b.md", "a.md"]


# -- property: coalesce agrees with a model of the file system -------------------------------

PATHS = ["a.md", "b.md", "c.md", "a.md~", "tmp"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[set[str], list[RawEvent], set[str]]:
    start = set(draw(st.sets(st.sampled_from(PATHS))))
    files = set(start)
    events: list[RawEvent] = []
    for _ in range(draw(st.integers(0, 25))):
        op = draw(st.sampled_from(["create", "modify", "delete", "move"]))
        p = draw(st.sampled_from(PATHS))
        if op == "create" and p not in files:
            files.add(p)
            events.append(ev("created", p))
        elif op == "modify" and p in files:
            events.append(ev("modified", p))
        elif op == "delete" and p in files:
            files.discard(p)
            events.append(ev("deleted", p))
        elif op == "move" and p in files:
            q = draw(st.sampled_from(PATHS))
            if q != p:
                files.discard(p)
                files.add(q)  # replaces q if it existed
                events.append(ev("moved", p, q))
    return start, events, files


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(histories())
def test_net_effect_matches_the_file_system(history: tuple[set[str], list[RawEvent], set[str]]
                                            ) -> None:
    start, events, end = history
    changes = coalesce(events, Ignore())
    touched = {e.path for e in events} | {e.dest for e in events if e.dest}
    notes = {p for p in touched if p.endswith(".md")}
    assert set(changes.upserts) == notes & end  # everything that exists now gets indexed
    assert not set(changes.upserts) & set(changes.deletes)
    # whatever existed before and is gone now is deleted; a spurious delete is harmless
    assert (notes & start) - end <= set(changes.deletes)
    assert set(changes.deletes) <= notes - end
