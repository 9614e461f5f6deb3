"""The daemon's work loop: the main thread, the index's only writer.

It takes file events and typed commands (`daemon.commands`) from one queue. File events are
debounced into a batch (at most MAX_BATCH_WAIT seconds, so a steady stream still gets
indexed), coalesced into their net changes and applied as an `IndexBatch`; commands that
arrive meanwhile run after it. Each command's class picks its handler from one table. When
nothing waits, the loop fills in vectors (`VectorFill`), then runs the post-batch connect once
the vault is quiet, then gives back memory. SIGTERM / SIGINT finish the batch or step in flight.

On an index shared in PostgreSQL only the leader writes it (`daemon.leadership`): a reader's
loop indexes nothing and fills in no vectors, and a leader asks its lease (the fencing check)
before each batch or reconcile, so one that lost the lease drops what it had queued.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vaultd import layout
from vaultd.daemon.commands import (
    Command,
    Flush,
    IndexBatch,
    Reconcile,
    Request,
    RunPhase,
)
from vaultd.daemon.index_fault import IndexFault
from vaultd.daemon.jobs import Jobs
from vaultd.daemon.leadership import Leadership
from vaultd.daemon.own_files import OwnFiles
from vaultd.daemon.reads import Reads
from vaultd.daemon.stats import Stats
from vaultd.daemon.vector_fill import VectorFill
from vaultd.daemon.watcher import Changes, EventQueue, RawEvent, coalesce
from vaultd.errors import IndexUnavailableError, VaultdError, VaultMismatchError
from vaultd.indexer import IndexReport
from vaultd.vault import Vault

log = logging.getLogger("vaultd.daemon")

MAX_BATCH_WAIT = 2.0  # seconds: a steady stream of events still gets indexed
CONNECT_QUIET = 1.0  # seconds without events before the post-batch connect runs
IDLE_WAIT = 0.5  # seconds the loop blocks on an empty queue (a stop is seen this fast)


class WorkLoop:
    def __init__(self, vault: Vault, events: EventQueue[Command], *, stats: Stats,
                 fill: VectorFill, jobs: Jobs, reads: Reads, own_files: OwnFiles,
                 stop: threading.Event, leadership: Leadership | None = None,
                 fault: IndexFault | None = None) -> None:
        self.vault = vault
        self.fault = fault or IndexFault()  # the database down, or another vault's
        self.leadership = leadership  # None: this daemon's index is its own (SQLite)
        self.events = events
        self.stats = stats
        self.fill = fill
        self.jobs = jobs
        self.reads = reads
        self.own_files = own_files
        self.stop = stop
        self.indexing = threading.Event()  # index work in flight (HTTP threads read it)
        self.connect_due: float | None = None  # a post-batch connect, once the vault is quiet
        self._debounce = vault.settings.daemon.debounce_ms / 1000
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            Reconcile: lambda _: self.reconcile(),
            IndexBatch: self._index_batch,
            RunPhase: self._run_phase,
            Flush: self._flush,
            Request: self._answer,
        }

    def run(self) -> None:
        while not self.stop.is_set():
            filling = self.fill.ready() and self._leads() and not self.fault.unavailable
            item = self.events.get(timeout=0 if filling else IDLE_WAIT)
            self.own_files.check_if_due()
            if item is None:
                self._idle(filling)
            elif isinstance(item, RawEvent):
                self._debounced(item)
            else:
                self.dispatch(item)

    def dispatch(self, command: Command) -> None:
        self._handlers[type(command)](command)

    def index_lag(self) -> float:
        since = self.stats.pending_since
        return round(time.monotonic() - since, 3) if since is not None else 0.0

    def _leads(self) -> bool:
        """Whether this daemon writes the index, by its own clock (cheap: for every turn)."""
        return self.leadership is None or self.leadership.leads()

    def _may_write(self, what: str) -> bool:
        """The fencing check before index work: on a shared index, the lease as the server
        has it. What a reader (or a leader that lost its lease) had queued is dropped: the
        next leader's reconcile finds it."""
        if self.leadership is None or self.leadership.fence():
            return True
        log.debug("%s dropped: this daemon does not lead the shared index", what)
        return False

    def _idle(self, filling: bool) -> None:
        if self.fault.due():
            self._retry_index()
        if not self._leads():
            self.connect_due = None
            self.reads.idle()
            return
        if filling:
            self.fill.step()
            return
        if self.fill.pending:
            return  # waiting to retry the vectors phase: nothing else may run yet
        if self.connect_due is not None and time.monotonic() >= self.connect_due:
            self.connect_due = None
            self.jobs.phase("connect", mirror=False)
        self.reads.idle()

    def _debounced(self, first: RawEvent) -> None:
        """Collect the events of one batch; commands that come meanwhile run after it."""
        self.stats.pending_since = first.at or time.monotonic()
        batch, commands = [first], []
        started = time.monotonic()
        while not self.stop.is_set():  # stopping: commit what is collected
            wait = min(self._debounce, MAX_BATCH_WAIT - (time.monotonic() - started))
            nxt = self.events.get(timeout=max(wait, 0)) if wait > 0 else None
            if nxt is None:
                break
            if isinstance(nxt, RawEvent):
                batch.append(nxt)
            else:
                commands.append(nxt)
        self.dispatch(IndexBatch(coalesce(batch, self.vault.ignore)))
        for command in dict.fromkeys(commands):
            self.dispatch(command)

    # -- the handlers
    def _run_phase(self, command: RunPhase) -> None:
        if not self.fill.hold(command):  # runs once every chunk has its vector
            self.jobs.phase(command.name)

    def _flush(self, command: Flush) -> None:
        if self.fill.hold(command):
            return
        with contextlib.suppress(VaultdError):  # logged and counted by the flush itself
            self.jobs.flush()

    def _answer(self, request: Request) -> None:
        """Run an HTTP thread's work and hand it the answer, unless it gave up waiting."""
        if not request.reply.abandoned:
            try:
                request.reply.give(request.work())
            except VaultdError as exc:
                request.reply.refuse(str(exc))
        if self._leads():
            self.fill.after_index()  # a flush or lifecycle request indexes, vectors too

    def _index_batch(self, command: IndexBatch) -> None:
        changes = command.changes
        if not changes or not self._may_write("a batch of file changes"):
            self.stats.pending_since = None
            return
        self.indexing.set()
        try:
            report = self.vault.indexer().sync_paths(self._expand(changes),
                                                     self.fill.files_progress, vectors=False)
            self._indexed(report, "batch")
        except (IndexUnavailableError, VaultMismatchError) as exc:
            self._index_fault(exc)  # the reconcile once it is back finds this batch's files
        except Exception:
            self.stats.errors += 1
            self.fill.index_failed()
            log.exception("indexing a batch failed; the periodic reconcile will retry")
        finally:
            self.indexing.clear()
            if self.events.qsize() == 0:
                self.stats.pending_since = None

    def reconcile(self) -> None:
        if not self._may_write("a reconcile"):
            return
        self.indexing.set()
        try:
            report = self.vault.index(self.fill.files_progress, vectors=False)
            self._index_back()  # it wrote: the database takes writes again, say so at once
            if report.chunks_pending:
                log.info("files indexed in %.1fs: keyword search finds them; %d chunks wait "
                         "for their vectors", report.seconds, report.chunks_pending)
            self.fill.reconciled()
            self._count_drift(report)
            self._indexed(report, "reconcile")
        except (IndexUnavailableError, VaultMismatchError) as exc:
            self._index_fault(exc)
        except Exception:
            self.stats.errors += 1
            self.fill.index_failed()
            log.exception("reconcile failed")
        finally:
            self.indexing.clear()

    # -- the database down, or another vault's
    def _index_fault(self, exc: IndexUnavailableError | VaultMismatchError) -> None:
        """One line in the log when it is news, the same in `vaultd status`; nothing of the
        work was written, and the work loop tries again (`_retry_index`)."""
        self.stats.errors += 1
        self.fill.index_failed()
        if isinstance(exc, IndexUnavailableError):
            if self.fault.down(exc):
                log.warning("index: %s", self.fault.line())
        elif self.fault.refuse(str(exc)):
            log.error("index: %s", exc)

    def _retry_index(self) -> None:
        """Try the database again: a leader reconciles (what changed meanwhile, found by the
        scan: the watcher's events of the outage went with the failed batches), and only a
        reconcile that wrote tells a database that refused writes is back; a reader reads."""
        if self.leadership is None or self.leadership.leads():
            self.reconcile()
            return
        try:
            self.reads.reader().pending_vectors()
        except IndexUnavailableError as exc:
            self._index_fault(exc)
            return
        if self.fault.problem == "unreachable":
            self._index_back()

    def _index_back(self) -> None:
        lasted = self.fault.clear()
        if lasted is not None:
            log.info("index: %s answers again after %.0fs; what changed meanwhile is "
                     "indexed", self.fault.where, lasted)

    # -- after index work
    def _count_drift(self, report: IndexReport) -> None:
        """Changes a reconcile found after the first batch: no file event announced them."""
        changed = len(report.new) + len(report.changed) + len(report.deleted) + len(
            report.moved)
        if changed and self.stats.batches > 0:
            self.stats.drift += changed
            log.warning("reconcile found %d change(s) no file event announced", changed)

    def _indexed(self, report: IndexReport, what: str) -> None:
        self._record(report, what)
        self._connect_after(report)
        self.fill.after_index(step=True)

    def _expand(self, changes: Changes) -> list[str]:
        """The note paths of a batch, a folder standing for every note known or found in it."""
        paths = list(changes.upserts) + list(changes.deletes)
        if changes.dirs:
            known = self.vault.store.file_states()
            for folder in changes.dirs:
                prefix = folder.rstrip("/") + "/"
                paths += [p for p in known if p.startswith(prefix)]
                target = self.vault.root / folder
                if target.is_dir():
                    sub = layout.scan(target, self.vault.ignore)
                    paths += [f"{prefix}{p}" for p in sub.files]
        return paths

    def _connect_after(self, report: IndexReport) -> None:
        """Links only: the `vaultd_related:` mirror, which writes files, waits for the
        scheduled connect so it never races a person still typing in the note just indexed.
        And only once the vault has been quiet for CONNECT_QUIET: connect reads every entry,
        which would otherwise delay the next edit's batch."""
        if self.vault.settings.lifecycle.connect_after_index and (
                report.new or report.changed or report.moved):
            self.connect_due = time.monotonic() + CONNECT_QUIET

    def _record(self, report: IndexReport, what: str) -> None:
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        self.stats.last_batch = f"{what}: {report.summary()}"
        for path, reason in report.skipped:
            log.warning("skipped %s: %s", path, reason)
        for warning in report.warnings:
            log.warning("%s", warning)
        if report.new or report.changed or report.deleted or report.moved:
            log.info("%s", self.stats.last_batch)
