"""The daemon: composition root for the background process of one vault.

It holds the vault's lock, loads the model once, serves the loopback API, watches the vault,
and is the single writer of the index. `Daemon` builds the parts, wires them and starts and
stops them; each part has one job:

- `work_loop.WorkLoop`: the main thread, which runs every write (file batches, reconciles,
  lifecycle jobs, requests handed over by HTTP threads), taking typed `commands` from a queue;
- `vector_fill.VectorFill`: the vectors phase of indexing, and the lifecycle jobs it holds;
- `jobs.Jobs`: the lifecycle phases and the flush; `schedule`: the cron jobs that queue them;
- `reads.Reads`: searches and counts on the HTTP threads, each with its own connection;
- `own_files.OwnFiles`: the watch over the daemon's files in `.vaultd/`;
- `server.Server`: the HTTP API, which asks the Daemon (its `App`) for answers, and MCP at
  `/mcp` (`mcp_http`: the memory tools over the Daemon's own vault, search and flush);
- `leadership.Leadership`, on an index shared in PostgreSQL: the lease that makes one of the
  daemons sharing it the leader. The leader runs the watcher, the reconcile and the schedule;
  the others only answer (docs/architecture.md, "One leader, many readers").

SIGTERM / SIGINT finish the batch or step in flight, commit, release the lock and exit 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vaultd import edits, gate
from vaultd.daemon.commands import Answer, Command, Reconcile, Request
from vaultd.daemon.discovery import INFO_FILE, Lock, ensure_token, info_path
from vaultd.daemon.index_fault import IndexFault
from vaultd.daemon.jobs import Jobs
from vaultd.daemon.leadership import Leadership, this_holder
from vaultd.daemon.own_files import OwnFiles
from vaultd.daemon.reads import Reads
from vaultd.daemon.recalls import RecallWriter
from vaultd.daemon.schedule import start_scheduler
from vaultd.daemon.stats import Health, Stats, Status
from vaultd.daemon.vector_fill import VectorFill
from vaultd.daemon.watcher import EventQueue, Watcher
from vaultd.daemon.work_loop import WorkLoop
from vaultd.errors import IndexUnavailableError, VaultMismatchError
from vaultd.search_request import SearchRequest
from vaultd.vault import Vault
from vaultd.vectors import trim_heap
from vaultd.writer_role import WriterRole, role

log = logging.getLogger("vaultd.daemon")

LOG_FILE = "daemon.log"
FLUSH_TIMEOUT = 300.0  # seconds a POST /flush waits for the main thread
LIFECYCLE_TIMEOUT = 600.0  # seconds a POST /lifecycle waits for it


def setup_logging(root: Path, max_bytes: int, to_stderr: bool) -> None:
    logger = logging.getLogger("vaultd")
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()  # a daemon started again in this process must not leak the old file
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(
        gate.own(root, LOG_FILE), maxBytes=max_bytes, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(fmt)
    logger.addHandler(file_handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        logger.addHandler(stream)


class Daemon:
    def __init__(self, vault: Vault, *, log_to_stderr: bool = True) -> None:
        self.vault = vault
        self.root = vault.root
        self.settings = vault.settings
        self.log_to_stderr = log_to_stderr
        self.events: EventQueue[Command] = EventQueue()
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.lock = Lock(self.root)
        # A vault shared between machines: only the writer's daemon runs the writing jobs;
        # on an index shared in PostgreSQL, only the lease's leader.
        # (on a database the lease decides, and asking the server here could fail: it may
        # be down at the start, which the daemon waits out)
        self.role = (role(self.settings.lifecycle.writer, vault.host) if self.settings.index.url
                     else vault.writer_role())
        self.leadership = self._leadership() if self.settings.index.url else None
        self.fault = IndexFault()  # why the index cannot be used now, if it cannot
        if self.leadership is not None:
            vault.role_source = self.writer_role  # the vault's own writing checks ask it too
        self.skipped_jobs: list[str] = []
        self._parts = threading.Lock()  # the watcher and the schedule start and stop under it
        self.recalls = RecallWriter(self.root)
        self.reads = Reads(vault, self.recalls)
        self.fill = VectorFill(vault, warm=self._warm, release=self.events.put_command,
                               on_error=self._count_error)
        self.jobs = Jobs(vault, self.stats, self.writer_role, warm=self.fill.warm)
        self.own_files = OwnFiles(self.root, self.lock, index_replaced=self._index_replaced,
                                  stop=self.stop_event.set)
        self.loop = WorkLoop(vault, self.events, stats=self.stats, fill=self.fill,
                             jobs=self.jobs, reads=self.reads, own_files=self.own_files,
                             stop=self.stop_event, leadership=self.leadership,
                             fault=self.fault)
        self.server: Any = None
        self.watcher: Watcher | None = None
        self.scheduler: Any = None

    # -- the App the server asks (HTTP threads)
    def health(self) -> dict[str, Any]:
        return self._health().to_dict()

    def status(self) -> dict[str, Any]:
        # what the main thread says first, the index's count after: read the other way round,
        # the last step could land in between, and "done" came with one chunk still pending
        progress, done = self.fill.progress, self.fill.first_index_done
        watcher, writer = self.watcher, self.writer_role(fence=False)
        reads_only = self.leadership is not None and not writer.writes
        if reads_only:  # a reader indexes nothing: what it answers from is the leader's index
            progress, done = None, True
        return Status(
            health=self._health(), pending_vectors=self._pending_vectors(),
            progress=progress, first_index_done=done, pid=os.getpid(),
            port=self.server.port if self.server else None,
            last_event_at=self.events.last_event_at,
            indexing=not reads_only and (self.loop.indexing.is_set() or self.fill.pending > 0),
            watcher_mode=watcher.mode if watcher else ("off" if reads_only else None),
            watcher_reason=watcher.reason if watcher else (
                "a reader: the leader watches and indexes" if reads_only else ""),
            stats=self.stats, writer=writer, skipped_jobs=self.skipped_jobs,
            index_fault=self.fault.line()).to_dict()

    def _pending_vectors(self) -> int:
        if self.fault.unavailable:
            return 0  # not asked of a server that is down: the status answers at once
        try:
            return self.reads.reader().pending_vectors()
        except IndexUnavailableError as exc:
            self.index_down(exc)
            return 0

    def index_down(self, exc: IndexUnavailableError) -> None:
        """The index's database cannot be used: one line in the log (when it is news) and in
        `vaultd status`; the work loop retries with backoff."""
        if self.fault.down(exc):
            log.warning("index: %s", self.fault.line())

    def writer_role(self, *, fence: bool = True) -> WriterRole:
        """Whether this daemon runs the writing jobs: by `[lifecycle] writer`, or on a shared
        index by the lease (asking the server first, the fencing check, unless `fence` is
        off: status only describes)."""
        if self.leadership is None:
            return self.role
        return self.leadership.role(fence=fence)

    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]:
        vectors = self.vault.embedder.embed(texts, kind=kind)  # type: ignore[arg-type]
        return self.vault.profile.id, self.vault.profile.dims, vectors.tolist()

    def count_tokens(self, texts: list[str]) -> int:
        return sum(self.vault.embedder.count_tokens(t) for t in texts)

    def decode_tokens(self, ids: list[int]) -> str:
        return self.vault.embedder.decode(ids)

    def served_model(self) -> dict[str, Any]:
        """The served model as the model endpoints describe it (`routes.App`)."""
        profile = self.vault.profile
        size = 0
        if profile.onnx:
            with contextlib.suppress(OSError):
                size = os.path.getsize(profile.onnx)
        return {"id": profile.id, "dims": profile.dims, "max_tokens": profile.max_tokens,
                "pooling": profile.pooling, "kind": profile.kind, "size": size,
                "digest": profile.sha256, "quantized": bool(profile.build_from),
                "aliases": dict(self.settings.server.model_aliases)}

    def search(self, request: SearchRequest) -> dict[str, Any]:
        """A search; while the database is unreachable, at once the line of why (a 503)."""
        if self.fault.problem == "unreachable":
            raise self.fault.unavailable_error()
        if self.fault.refused:  # another vault's index: its notes are not this vault's
            raise VaultMismatchError(self.fault.refused)
        stale = self.events.qsize() + (1 if self.loop.indexing.is_set() else 0)
        try:
            return self.reads.search(request, stale_files=stale).to_dict()
        except IndexUnavailableError as exc:
            self.index_down(exc)
            raise self.fault.unavailable_error() from exc

    def flush_now(self, timeout: float = FLUSH_TIMEOUT) -> Answer:
        """For POST /flush: flush on the main thread and wait."""
        return self._hand_over(Request(self.jobs.flush), "flush", timeout)

    def lifecycle_now(self, phases: list[str], dry_run: bool = False,
                      timeout: float = LIFECYCLE_TIMEOUT) -> Answer:
        """For POST /lifecycle: run the phases on the main thread (the index's only writer),
        wait, and answer what `vaultd lifecycle --json` prints."""
        chosen = list(phases)
        return self._hand_over(Request(lambda: self.jobs.on_request(chosen, dry_run)),
                               "lifecycle", timeout)

    def _hand_over(self, request: Request, what: str, timeout: float) -> Answer:
        self.events.put_command(request)
        return request.reply.wait(what, timeout)

    def _health(self) -> Health:
        profile = self.vault.profile
        return Health(model=profile.id, dims=profile.dims, pooling=profile.pooling,
                      uptime=round(time.time() - self.stats.started_at, 1),
                      queue=self.events.qsize(), index_lag=self.loop.index_lag(),
                      connect_pending=self.loop.connect_due is not None)

    # -- the process's own life
    def run(self) -> int:
        """Run in the foreground until SIGTERM/SIGINT. Returns the exit code."""
        # Two cores serve a query's embedding, BM25 and KNN: no thread may spin-wait
        # (onnxruntime's, OpenBLAS's) while another needs the core; the KNN scan uses both
        # cores itself (vectors._scan). OpenBLAS reads this when numpy loads, so it is set
        # first of all: the model's identity, below, loads numpy.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.lock.acquire()
        try:
            # First: a SIGTERM while the model loads must also end in a clean exit 0.
            self._install_signals()
            setup_logging(self.root, self.settings.daemon.log_max_bytes, self.log_to_stderr)
            self.stats.started_at = time.time()
            self._prepare()
            if not self._open_index():
                return 0  # stopped while waiting for the database
            self._start_parts()
            if self.leadership is None:  # (a leader's start is `_lead`'s)
                self.events.put_command(Reconcile())  # catch up on what changed while down
            self.loop.run()
            return 0
        finally:
            self._shutdown()

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def _prepare(self) -> None:
        """The token, what crashed writers left, and the model."""
        self.own_files.token = ensure_token(self.root)
        from vaultd.doctor import remove_temp_files

        for rel in remove_temp_files(self.root):  # of writers a crash interrupted
            log.info("removed %s, left by an interrupted write", rel)
        self.vault.embedder.warm_up()  # the first request must not pay for the model load

    def _check_vault(self) -> None:
        """The index must be this vault's (`vault_identity`); on another vault's database the
        daemon changes nothing there, and says so (status, log, search)."""
        from vaultd.vault_identity import check_vault

        store = self.vault.store
        try:
            check_vault(self.root, store, self.settings.index.url)
        except VaultMismatchError as exc:
            if self.fault.refuse(str(exc)):
                log.error("index: %s", exc)
            return
        store.ensure_model(self.vault.embedder.identity())

    def _open_index(self) -> bool:
        """Open the index and its warm copies. A database that cannot be used yet (the server
        down at the start) is waited for, with backoff (`index_fault`), while the HTTP API
        already answers: status with the line of why, search with a 503 saying it. False when
        the daemon was stopped meanwhile."""
        while True:
            try:
                self._check_vault()  # before `ensure_model`, which may wipe the vectors
                break
            except IndexUnavailableError as exc:
                self.index_down(exc)
                if self.server is None:
                    self._start_server()
            self.fault.due()  # schedules the try after this one
            if self.stop_event.wait(self.fault.wait_seconds()):
                return False
        lasted = self.fault.clear()
        if lasted is not None:
            log.info("index: %s answers again after %.0fs", self.fault.where, lasted)
        self.own_files.index_opened()
        self.vault.keep_vectors_warm()  # no query pays for loading the vectors
        return True

    def _start_parts(self) -> None:
        s = self.settings.server
        self._start_server()
        if self.leadership is None:
            self._start_watcher()
            self._start_scheduler()
        elif not self.fault.refused:  # (another vault's database: never lead it, nor write)
            self.leadership.start()  # a leader starts its watcher and schedule (`_lead`)
        watcher = self.watcher
        log.info("vaultd daemon pid %d serving %s on %s:%d (model %s, watcher %s)",
                 os.getpid(), self.root, s.host, self.server.port, self.vault.profile.id,
                 watcher.mode if watcher else "off: a reader of the shared index")
        if self.leadership is None and not self.role.writes:
            log.warning("%s: skipping the scheduled %s", self.role.summary(),
                        ", ".join(self.skipped_jobs) or "jobs")

    def _start_server(self) -> None:
        if self.server is not None:
            return
        from vaultd.daemon.client_tokens import ClientTokens
        from vaultd.daemon.mcp_http import McpHttp
        from vaultd.daemon.server import Server
        from vaultd.mcp_server import daemon_server

        self.server = Server(self, self.settings.server, token=self.own_files.token,
                             mcp=McpHttp(lambda: daemon_server(self)),
                             clients=ClientTokens(self.root))
        self.server.start()
        self._write_info()

    def _start_watcher(self) -> None:
        d = self.settings.daemon
        self.watcher = Watcher(self.root, self.events, self.vault.ignore,
                               force_polling=d.polling, poll_interval=d.poll_seconds)
        self.watcher.start()

    def _start_scheduler(self) -> None:
        writes = self.leadership is not None or self.role.writes  # (a leader's are its own)
        self.scheduler = start_scheduler(self.settings, self.events, writes=writes,
                                         check_watcher=self._check_watcher,
                                         skipped=self.skipped_jobs)

    # -- on a shared index: the lease's leader writes, the others read
    def _leadership(self) -> Leadership:
        from vaultd.store.postgres.lease import PgLease

        holder = this_holder()
        d = self.settings.daemon
        return Leadership(PgLease(self.settings.index.url, holder.id, holder.host, holder.pid),
                          holder, writer=self.settings.lifecycle.writer,
                          lease_seconds=d.lease_seconds, renew_seconds=d.lease_renew_seconds,
                          on_gain=self._lead, on_lose=self._follow)

    def _lead(self) -> None:
        """This daemon became the leader: watch the vault, index what changed meanwhile (a
        reconcile: vectors whose content is in the database already are reused), and run the
        schedule."""
        with self._parts:
            if self.stop_event.is_set():
                return
            self._start_watcher()
            self._start_scheduler()
        self.events.put_command(Reconcile())

    def _follow(self, reason: str) -> None:
        """This daemon lost the lease: stop watching and scheduling; what it had queued is
        dropped by the work loop's fencing check."""
        with self._parts:
            self._stop_scheduler()
            self._stop_watcher()
            self.scheduler = self.watcher = None

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "host": self.settings.server.host, "port": self.server.port,
                "started_at": self.stats.started_at, "vault": str(self.root)}
        edits.write_own(self.root, INFO_FILE, json.dumps(info))

    def _check_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.check()

    def _index_replaced(self) -> None:
        """The index file was deleted or replaced: open the new one and index the vault."""
        self.vault.reopen_index()
        self.vault.store.ensure_model(self.vault.embedder.identity())
        self.own_files.index_opened()
        self.reads.reopen()
        self.loop.reconcile()

    def _warm(self) -> None:
        """Reload the in-memory vectors and BM25 postings, then give back what the index work
        freed (a reconcile's file lists, chunk texts, …)."""
        if self.vault.vectors is not None:
            self.vault.vectors.refresh(self.vault.store)
        if self.vault.bm25 is not None:
            self.vault.bm25.load(self.vault.store, background=True)
        trim_heap()

    def _count_error(self) -> None:
        self.stats.errors += 1

    def _shutdown(self) -> None:
        for step in (self.recalls.close, self._stop_leading, self._stop_scheduler,
                     self._stop_watcher, self._stop_server, self.vault.close):
            try:
                step()
            except Exception:  # keep shutting down: the lock must be released
                log.exception("error during shutdown")
        with contextlib.suppress(OSError):
            info = json.loads(info_path(self.root).read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                edits.remove_own(self.root, INFO_FILE)
        log.info("vaultd daemon pid %d stopped", os.getpid())
        self.lock.release()

    def _stop_leading(self) -> None:
        if self.leadership is not None:
            self.leadership.stop()  # a leader gives the lease up: a reader takes over at once

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)

    def _stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
