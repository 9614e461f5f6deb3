"""The daemon's rooms, without a socket or a thread: typed commands and their dispatch by the
work loop, and the vector fill as an object that owns its state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from conftest import fake_embedder, make_vault

from vaultd.daemon import vector_fill
from vaultd.daemon.commands import (
    Command,
    Flush,
    IndexBatch,
    Reconcile,
    Request,
    RunPhase,
)
from vaultd.daemon.process import Daemon
from vaultd.daemon.schedule import SCHEDULED_PHASES, job_command
from vaultd.daemon.vector_fill import VectorFill
from vaultd.daemon.watcher import Changes, EventQueue
from vaultd.errors import VaultdError
from vaultd.indexer import IndexProgress
from vaultd.vault import open_vault

# -- commands are values


def test_equal_commands_wait_once_in_the_queue_and_requests_never_merge() -> None:
    queue: EventQueue[Command] = EventQueue()
    for command in (RunPhase("age"), RunPhase("age"), Reconcile(), Reconcile(), Flush()):
        queue.put_command(command)
    first, second = Request(lambda: {}), Request(lambda: {})
    queue.put_command(first)
    queue.put_command(second)
    got = [queue.get(timeout=0.1) for _ in range(6)]
    assert got[:3] == [RunPhase("age"), Reconcile(), Flush()]
    assert got[3] is first and got[4] is second and got[5] is None


def test_every_scheduled_phase_queues_a_typed_command() -> None:
    commands = [job_command(phase) for phase in SCHEDULED_PHASES]
    assert commands[-1] == Flush()
    assert commands[:-1] == [RunPhase(p) for p in SCHEDULED_PHASES[:-1]]


def test_a_reply_says_why_the_work_failed_or_that_it_took_too_long() -> None:
    request = Request(lambda: {})
    request.reply.refuse("flush failed: MEMORY.md changed")
    with pytest.raises(VaultdError, match="MEMORY.md changed"):
        request.reply.wait("flush", 1.0)
    late = Request(lambda: {})
    with pytest.raises(VaultdError, match="flush did not finish within 0s"):
        late.reply.wait("flush", 0.0)
    assert late.reply.abandoned


# -- the work loop's dispatch


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    root = make_vault(tmp_path, {"semantic/kiln.md": "# Kiln\n\nThe kiln thermocouple reads "
                                 "40 degrees low above 1000 C.\n"})
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        yield Daemon(vault, log_to_stderr=False)


def test_every_kind_of_command_has_a_handler(daemon: Daemon) -> None:
    ran: list[str] = []
    daemon.jobs.phase = lambda name, mirror=True: ran.append(name)  # type: ignore[method-assign]
    daemon.jobs.flush = lambda: ran.append("flush") or {}  # type: ignore[method-assign]
    samples: dict[type, Command] = {
        Reconcile: Reconcile(), IndexBatch: IndexBatch(Changes()), RunPhase: RunPhase("age"),
        Flush: Flush(), Request: Request(lambda: {"ok": True})}
    assert set(samples) == set(get_args(Command))
    for command in samples.values():
        daemon.loop.dispatch(command)
    assert ran == ["age", "flush"]
    assert daemon.stats.batches == 1 and daemon.stats.last_batch.startswith("reconcile: ")


def test_a_request_is_answered_on_the_loop_and_an_abandoned_one_never_runs(
        daemon: Daemon) -> None:
    answered = Request(lambda: {"memory_written": True})
    daemon.loop.dispatch(answered)
    assert answered.reply.wait("flush", 0.0) == {"memory_written": True}

    def refuse() -> dict[str, object]:
        raise VaultdError("this machine does not write the vault")

    refused = Request(refuse)
    daemon.loop.dispatch(refused)
    with pytest.raises(VaultdError, match="does not write"):
        refused.reply.wait("flush", 0.0)

    ran = threading.Event()
    abandoned = Request(lambda: ran.set() or {})
    abandoned.reply.abandoned = True
    daemon.loop.dispatch(abandoned)
    assert not ran.is_set()


def test_phases_and_the_flush_wait_for_the_vectors_then_run_once(daemon: Daemon) -> None:
    ran: list[str] = []
    daemon.jobs.phase = lambda name, mirror=True: ran.append(name)  # type: ignore[method-assign]
    daemon.jobs.flush = lambda: ran.append("flush") or {}  # type: ignore[method-assign]
    daemon.fill.pending = 3
    for command in (RunPhase("connect"), RunPhase("connect"), Flush()):
        daemon.loop.dispatch(command)
    assert ran == [] and daemon.fill.held == [RunPhase("connect"), Flush()]
    daemon.loop.reconcile()  # indexes the note and fills every vector at once: step 1
    assert daemon.fill.pending == 0 and daemon.fill.held == []
    assert [daemon.events.get(timeout=0.1) for _ in range(3)] == [
        RunPhase("connect"), Flush(), None]


def test_a_scheduled_flush_that_fails_is_counted_and_the_loop_goes_on(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(daemon.vault, "flush", broken)
    daemon.loop.dispatch(Flush())
    assert daemon.stats.errors == 1 and "flush" not in daemon.stats.lifecycle


def test_an_empty_batch_clears_the_pending_time_and_counts_nothing(daemon: Daemon) -> None:
    daemon.stats.pending_since = 1.0
    daemon.loop.dispatch(IndexBatch(Changes()))
    assert daemon.stats.pending_since is None and daemon.stats.batches == 0


# -- the vector fill


class FakeVault:
    """Chunks waiting for a vector; `embed_pending` gives `limit` of them one, or fails."""

    def __init__(self, pending: int) -> None:
        self.waiting = pending
        self.fail = False

    def pending_vectors(self) -> int:
        return self.waiting

    def embed_pending(self, *, limit: int | None = None) -> int:
        if self.fail:
            raise RuntimeError("the model fell over")
        done = min(self.waiting, limit or self.waiting)
        self.waiting -= done
        return done


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fill:
    def __init__(self, pending: int) -> None:
        self.vault, self.clock = FakeVault(pending), Clock()
        self.warmed, self.released, self.errors = 0, list[Command](), 0
        self.fill = VectorFill(self.vault, warm=self._warm, release=self.released.append,
                               on_error=self._error, clock=self.clock)

    def _warm(self) -> None:
        self.warmed += 1

    def _error(self) -> None:
        self.errors += 1


def test_the_fill_embeds_a_step_at_a_time_and_reports_its_progress(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_fill, "VECTOR_STEP", 2)
    f = Fill(5)
    f.fill.after_index(step=True)
    assert f.fill.pending == 3 and f.vault.waiting == 3
    assert f.fill.progress is not None and (f.fill.progress.done, f.fill.progress.total) == (2, 5)
    assert f.fill.ready()
    f.fill.step()
    f.fill.step()
    assert f.fill.pending == 0 and f.fill.progress is None and not f.fill.ready()


def test_the_first_index_is_done_only_after_the_start_reconcile_and_every_vector() -> None:
    f = Fill(1)
    f.fill.after_index(step=True)  # a batch before the start's reconcile finished
    assert f.fill.pending == 0 and not f.fill.first_index_done
    f.fill.reconciled()
    f.vault.waiting = 1
    f.fill.after_index(step=True)
    assert f.fill.first_index_done


def test_held_commands_are_released_once_when_the_fill_ends() -> None:
    f = Fill(10)
    assert not f.fill.hold(RunPhase("age"))  # nothing waits yet: run it now
    f.fill.after_index()
    assert f.fill.hold(RunPhase("age")) and f.fill.hold(RunPhase("age"))
    assert f.fill.hold(Flush())
    assert f.released == []
    f.fill.step()
    assert f.released == [RunPhase("age"), Flush()] and f.fill.held == []


def test_a_failed_step_is_counted_and_retried_after_a_pause() -> None:
    f = Fill(3)
    f.fill.after_index()
    f.vault.fail = True
    f.fill.step()
    assert f.errors == 1 and f.fill.pending == 3 and not f.fill.ready()
    f.clock.now += vector_fill.VECTOR_RETRY
    assert f.fill.ready()
    f.vault.fail = False
    f.fill.step()
    assert f.fill.pending == 0


def test_while_filling_the_copies_are_warmed_now_and_then_and_at_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_fill, "VECTOR_STEP", 1)
    f = Fill(4)
    f.fill.after_index()  # chunks wait: warm what the files phase wrote
    assert f.warmed == 1
    f.fill.step()
    f.fill.step()
    assert f.warmed == 1  # not every step
    f.clock.now += vector_fill.WARM_EVERY
    f.fill.step()
    assert f.warmed == 2
    f.fill.step()  # the last
    assert f.warmed == 3 and f.fill.pending == 0


def test_a_failed_index_run_keeps_the_progress_of_a_fill_in_flight() -> None:
    f = Fill(0)
    f.fill.files_progress(IndexProgress("files", 1, 9))
    f.fill.index_failed()
    assert f.fill.progress is None
    f.vault.waiting = 2
    f.fill.after_index()
    f.fill.index_failed()
    assert f.fill.progress is not None and f.fill.progress.phase == "vectors"
