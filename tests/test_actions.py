"""Lifecycle actions are typed values serialised in one place: the JSON of `vaultd lifecycle
--json`, `POST /lifecycle` and `vaultd flush --json` keeps its keys, per kind, and reads back
into the same values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vaultd.lifecycle.actions import (
    KINDS,
    Action,
    Extract,
    Fade,
    Link,
    Links,
    Merge,
    Mirror,
    Promote,
    Reprieve,
    Rewrite,
    Route,
    Write,
)
from vaultd.lifecycle.flush import FlushReport
from vaultd.lifecycle.plans import FileChange, LifecycleRun, Outcome, PhaseReport, Plan

# One of each kind, as its phase plans it; and the keys its JSON has, in order.
PLANNED: list[tuple[Action, list[str]]] = [
    (Link(entries=("e1", "e2"), reason="1 link(s)", scores=(0.91,), links=1, hash="h1",
          held=Links(["e2"], np.array([0.91]))),
     ["kind", "reason", "entries", "scores", "links", "hash"]),
    (Mirror(entries=(), reason="1 link(s) into vaultd_related:", path="semantic/a.md",
            held=Rewrite("old\n", "new\n")),
     ["kind", "reason", "entries", "path"]),
    (Merge(entries=("e1", "e2", "e3"), reason="3 entries", title="Pool", path="semantic/pool.md",
           created="2026-11-02", facts=("a — [d](l)", "b — [d](l)"), tags=("db",)),
     ["kind", "reason", "entries", "title", "path", "created", "facts", "tags"]),
    (Route(entries=("e1",), reason="nearest target", target="CLAUDE.md"),
     ["kind", "reason", "entries", "target"]),
    (Write(entries=(), reason="managed block of CLAUDE.md", target="CLAUDE.md",
           path="/vault/CLAUDE.md", diff="--- a\n+++ b\n", held=Rewrite("", "block\n")),
     ["kind", "reason", "entries", "target", "path", "diff"]),
    (Reprieve(entries=("e1",), reason="unconnected", reprieves=2),
     ["kind", "reason", "entries", "reprieves"]),
    (Fade(entries=("e1",), reason="near-duplicate"), ["kind", "reason", "entries"]),
    (Promote(entries=("e1",), reason="in the top 5"), ["kind", "reason", "entries"]),
    (Extract(entries=("e1",), reason="reads as semantic", type="semantic",
             path="semantic/preferences.md", title="Preferences", bullet="- x — [d](l)"),
     ["kind", "reason", "entries", "type", "path", "title", "bullet"]),
]


def report_of(actions: list[Action]) -> PhaseReport:
    plan = Plan("test", actions=list(actions), notes=["a note"], files={"a.md": "change"},
                diffs={"a.md": "diff"})
    return PhaseReport.of(plan, Outcome(written=["a.md"]), {}, dry_run=True)


def test_every_kind_is_pinned_here() -> None:
    assert sorted(KINDS) == sorted(action.kind for action, _ in PLANNED)


@pytest.mark.parametrize("action,keys", PLANNED, ids=[a.kind for a, _ in PLANNED])
def test_a_reported_action_keeps_its_json_keys_in_order(action: Action, keys: list[str]) -> None:
    shown = report_of([action]).to_dict()["actions"][0]
    assert list(shown) == keys
    assert shown["kind"] == action.kind and shown["entries"] == list(action.entries)
    json.dumps(shown)  # plain JSON: lists, not tuples or arrays


@pytest.mark.parametrize("action,keys", PLANNED, ids=[a.kind for a, _ in PLANNED])
def test_a_report_reads_back_into_the_same_typed_action(action: Action, keys: list[str]) -> None:
    report = report_of([action])
    again = PhaseReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report and type(again.actions[0]) is type(action)
    assert again.to_dict() == report.to_dict()


def test_a_report_holds_nothing_for_applying_and_cannot_be_applied() -> None:
    link, mirror = PLANNED[0][0], PLANNED[1][0]
    assert isinstance(link, Link) and isinstance(mirror, Mirror)
    assert dict(link.every_link.pairs()) == {"e2": 0.91}
    shown_link, shown_mirror = report_of([link, mirror]).actions
    assert isinstance(shown_link, Link) and isinstance(shown_mirror, Mirror)
    assert shown_link.held is None and shown_mirror.held is None
    with pytest.raises(ValueError, match="holds nothing to apply"):
        shown_mirror.rewrite  # noqa: B018


def test_a_report_labels_entries_it_knows_and_keeps_the_phase_report_keys() -> None:
    report = report_of([PLANNED[5][0]])
    assert list(report.to_dict()) == ["phase", "dry_run", "notes", "actions", "written",
                                      "created", "conflicts", "files"]
    assert report.to_dict()["files"] == [{"path": "a.md", "change": "change", "diff": "diff"}]


def test_a_link_that_found_nothing_is_news_not_an_act() -> None:
    lonely = Link(entries=("e1",), reason="no entry", scores=(), links=0, hash="h")
    report = report_of([lonely, PLANNED[6][0]])
    assert [a.kind for a in report.acted] == ["fade"]


def test_a_flush_report_serialises_its_phases_once() -> None:
    phase = report_of([PLANNED[0][0]])
    flushed = FlushReport("1 new", [phase], True, "diff", 12,
                          [FileChange("MEMORY.md", "change", "diff"), FileChange("b.md", "create")])
    data = json.loads(json.dumps(flushed.to_dict()))
    assert list(data) == ["indexed", "phases", "memory_written", "memory_diff",
                          "memory_chars", "files"]
    assert data["phases"] == [phase.to_dict()]
    assert data["files"][1] == {"path": "b.md", "change": "create"}  # no diff for a new file
    # what the CLI reads from the daemon is the report it sent, field for field
    assert FlushReport.from_dict(data) == flushed


def test_a_lifecycle_run_reads_back_what_it_wrote() -> None:
    run = LifecycleRun([report_of([action]) for action, _ in PLANNED[:3]],
                       {"e1": {"state": "buffer"}})
    assert LifecycleRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run
