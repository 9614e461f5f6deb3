"""The daemon: composition root for the background process of one vault.

It holds the vault's lock, loads the model once, serves the loopback API, watches the vault,
and is the single writer of the index. Every write to the index happens on the main thread,
which runs the work loop: debounced batches of file events, the reconcile at start (changes
made while it was down) and a periodic cheap reconcile (size/mtime) that catches missed events
and reports drift. Indexing has two phases (`vaultd.indexer`): a batch or reconcile writes
files, chunks and full-text rows at once (keyword search finds them), and the loop then embeds
the chunks waiting for a vector VECTOR_STEP at a time whenever no event waits, so a first index
of a large vault neither delays search nor the next edit. Lifecycle phases wait until every
chunk has its vector (an entry's vector is the mean of its chunks'). SIGTERM / SIGINT finish
the batch or step in flight, commit, release the lock and exit 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultd import edits, gate, layout
from vaultd.daemon.files import (
    INFO_FILE,
    Lock,
    ensure_token,
    file_identity,
    info_path,
    read_token,
    write_token,
)
from vaultd.daemon.watcher import Changes, EventQueue, Watcher, coalesce
from vaultd.errors import VaultdError
from vaultd.indexer import IndexProgress, IndexReport, RateMeter
from vaultd.lifecycle import PHASE_NAMES
from vaultd.search_request import SearchRequest
from vaultd.store import Store
from vaultd.vault import Vault
from vaultd.vectors import trim_heap

log = logging.getLogger("vaultd.daemon")

LOG_FILE = "daemon.log"
RECONCILE = "reconcile"
LIFECYCLE = "lifecycle:"
REQUEST = "request:"  # + id: a POST /flush or /lifecycle waiting for the main thread
SCHEDULED_PHASES = (*PHASE_NAMES, "flush")
OWN_FILES_EVERY = 2.0  # seconds between checks that the daemon's files in .vaultd/ are its own
MAX_BATCH_WAIT = 2.0  # seconds: a steady stream of events still gets indexed
CONNECT_QUIET = 1.0  # seconds without events before the post-batch connect runs
VECTOR_STEP = 64  # chunk contents embedded per step of the vectors phase (1-3 s here), so an
#                   event or a stop waits at most one step
VECTOR_RETRY = 30.0  # seconds before the vectors phase tries again after a failure
TRIM_AFTER = 2.0  # seconds without a search before the heap the searches freed is trimmed
WARM_EVERY = 5.0  # seconds between reloads of the in-memory vectors while they fill in


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


RECALL_QUIET = 0.05  # seconds without a search before recalls are written
RECALL_WAIT = 2.0  # seconds a recall waits at most while searches go on


class RecallWriter:
    """Records which hits searches recalled (for recall promotion) on a thread of its own, with
    its own connection: a search answered while the main thread holds the index's write lock
    (a long batch) would otherwise wait for it before answering.

    It writes once searches pause for RECALL_QUIET seconds (or every RECALL_WAIT seconds of
    steady searching): written right away, each search's recalls took the GIL and a core while
    the search's response was being sent and the next query embedded (10k chunks: sending the
    response 0.19-0.32 -> 0.80-0.84 ms p50)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._queue: queue.SimpleQueue[tuple[list[Any], str, float] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None

    def put(self, item: tuple[list[Any], str, float]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vaultd-recalls",
                                            daemon=True)
            self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from vaultd.lifecycle.promote import record_recalls

        path = layout.index_path(self.root)
        store: Store | None = None
        opened: Any = None
        closing = False
        try:
            while not closing and (item := self._queue.get()) is not None:
                batch, first = [item], time.monotonic()
                while time.monotonic() - first < RECALL_WAIT:
                    try:
                        item = self._queue.get(timeout=RECALL_QUIET)
                    except queue.Empty:
                        break  # searches paused: write now
                    if item is None:
                        closing = True
                        break
                    batch.append(item)
                for item in batch:
                    try:
                        if store is None or file_identity(path) != opened:  # new, or replaced
                            if store is not None:
                                store.close()
                                store = None
                            # opened here, inside the guard: an index deleted or replaced just
                            # now (a disk I/O error) loses this recall, not every later one
                            store, opened = Store(path), file_identity(path)
                        record_recalls(store, *item)
                    except Exception:  # a lost recall must never take the daemon down
                        log.exception("recording a search's recalls failed")
        finally:
            if store is not None:
                store.close()


@dataclass
class _Stats:
    started_at: float = 0.0
    last_batch_at: float | None = None
    last_batch: str = ""
    pending_since: float | None = None  # monotonic time of the oldest unindexed event
    drift: int = 0  # changes the periodic reconcile found that no event announced
    batches: int = 0
    errors: int = 0
    lifecycle: dict[str, dict[str, Any]] = field(default_factory=dict)


class Daemon:
    def __init__(self, vault: Vault, *, log_to_stderr: bool = True) -> None:
        self.vault = vault
        self.root = vault.root
        self.settings = vault.settings
        self.events = EventQueue()
        self.stats = _Stats()
        self.stop_event = threading.Event()
        self.lock = Lock(self.root)
        self.log_to_stderr = log_to_stderr
        self._readers = threading.local()
        self._index_id: tuple[int, int] | None = None  # the index file's (device, inode)
        self._index_generation = 0  # counts reopenings: HTTP threads reopen their readers
        self._token = ""
        self._checked_at = 0.0
        self._lock_lost = 0  # checks in a row that found the lock file held by another
        self.recalls = RecallWriter(self.root)
        self._connect_due: float | None = None  # a post-batch connect, once the vault is quiet
        # The vectors phase: chunks waiting for a vector, and how the filling goes
        self.pending_vectors = 0
        self.progress: IndexProgress | None = None  # of the index work running now, if any
        self.first_index_done = False  # the start's reconcile and all its vectors
        self._reconciled = False
        self._filled = 0  # chunks given a vector since the phase began
        self._meter: RateMeter | None = None
        self._vectors_retry_at = 0.0
        self._deferred: list[str] = []  # lifecycle commands waiting for the vectors
        self._warmed_at = 0.0
        self._searched_at = 0.0  # monotonic time of the last search, until the heap is trimmed
        self._indexing = threading.Event()
        # POST /flush and /lifecycle, waiting for the main thread: id → (done, work, answer)
        self._requests: dict[str, tuple[threading.Event, Callable[[], dict[str, Any]],
                                        dict[str, Any]]] = {}
        self.server: Any = None
        self.watcher: Watcher | None = None
        self.scheduler: Any = None
        # A vault shared between machines: only the writer's daemon runs the writing jobs.
        self.role = vault.writer_role()
        self.skipped_jobs: list[str] = []

    # -- App protocol for the server (called from HTTP threads)
    def _reader(self) -> Store:
        store = getattr(self._readers, "store", None)
        if store is None or self._readers.generation != self._index_generation:
            if store is not None:
                store.close()
            store = Store(layout.index_path(self.root))
            self._readers.store, self._readers.generation = store, self._index_generation
        return store

    def index_lag(self) -> float:
        since = self.stats.pending_since
        return round(time.monotonic() - since, 3) if since is not None else 0.0

    def health(self) -> dict[str, Any]:
        profile = self.vault.profile
        return {"status": "ok", "model": profile.id, "dims": profile.dims,
                "pooling": profile.pooling, "uptime": round(time.time() - self.stats.started_at, 1),
                "queue": self.events.qsize(), "index_lag": self.index_lag(),
                "connect_pending": self._connect_due is not None}

    def status(self) -> dict[str, Any]:
        watcher = self.watcher
        # what the main thread says first, the index's count after: read the other way round,
        # the last step could land in between, and "done" came with one chunk still pending
        progress, done = self.progress, self.first_index_done
        return {
            **self.health(),
            "pending_vectors": self._reader().pending_vectors(),
            "progress": progress.to_dict() if progress is not None else None,
            "first_index_done": done,
            "pid": os.getpid(),
            "port": self.server.port if self.server else None,
            "started_at": self.stats.started_at,
            "last_event_at": self.events.last_event_at,
            "last_batch_at": self.stats.last_batch_at,
            "last_batch": self.stats.last_batch,
            "indexing": self._indexing.is_set() or self.pending_vectors > 0,
            "watcher": {"mode": watcher.mode if watcher else None,
                        "reason": watcher.reason if watcher else ""},
            "drift": self.stats.drift,
            "batches": self.stats.batches,
            "errors": self.stats.errors,
            "lifecycle": self.stats.lifecycle,
            "writer": {**self.role.to_dict(), "skipped_jobs": self.skipped_jobs},
        }

    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]:
        vectors = self.vault.embedder.embed(texts, kind=kind)  # type: ignore[arg-type]
        return self.vault.profile.id, self.vault.profile.dims, vectors.tolist()

    def count_tokens(self, texts: list[str]) -> int:
        return sum(self.vault.embedder.count_tokens(t) for t in texts)

    def decode_tokens(self, ids: list[int]) -> str:
        return self.vault.embedder.decode(ids)

    def search(self, request: SearchRequest) -> dict[str, Any]:
        hits = self.vault.search_with(self._reader(), request)
        self._searched_at = time.monotonic()
        if hits:  # recall promotion counts it; written aside, so no search waits on a writer
            self.recalls.put((hits[:5], request.query, time.time()))
        pending = self.events.qsize() + (1 if self._indexing.is_set() else 0)
        # exactly the JSON of `vaultd search --json` (index lag is in /health and /status);
        # its `pending_vectors` says how many chunks were ranked by BM25 alone
        return request.response(hits, stale_files=pending)

    # -- lifecycle of the process
    def run(self) -> int:
        """Run in the foreground until SIGTERM/SIGINT. Returns the exit code."""
        from vaultd.daemon.server import Server

        # Two cores serve a query's embedding, BM25 and KNN: no thread may spin-wait
        # (onnxruntime's, OpenBLAS's) while another needs the core (10k chunks: /search p50
        # 13.3 -> 9.3 ms); the KNN scan uses both cores itself (vectors._scan). OpenBLAS
        # reads this when numpy loads: so first of all (the model's identity, below, loads
        # numpy: set after it, as it was until 2026-12-03, it did nothing; 10k chunks, /search
        # p50 7.0-8.3 -> 5.5-5.7 ms).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.lock.acquire()
        try:
            # First: a SIGTERM while the model loads must also end in a clean exit 0.
            self._install_signals()
            setup_logging(self.root, self.settings.daemon.log_max_bytes, self.log_to_stderr)
            self.stats.started_at = time.time()
            token = self._token = ensure_token(self.root)
            from vaultd.doctor import remove_temp_files

            for rel in remove_temp_files(self.root):  # of writers a crash interrupted
                log.info("removed %s, left by an interrupted write", rel)
            self.vault.store.ensure_model(self.vault.embedder.identity())
            self._index_id = file_identity(layout.index_path(self.root))
            self.vault.embedder.warm_up()  # the first request must not pay for the model load
            self.vault.keep_vectors_warm()  # and no query pays for loading the vectors
            s = self.settings.server
            self.server = Server(self, s, token=token)
            self.server.start()
            self._write_info()
            d = self.settings.daemon
            self.watcher = Watcher(self.root, self.events, self.vault.ignore,
                                   force_polling=d.polling, poll_interval=d.poll_seconds)
            self.watcher.start()
            self._start_scheduler()
            log.info("vaultd daemon pid %d serving %s on %s:%d (model %s, watcher %s)",
                     os.getpid(), self.root, s.host, self.server.port, self.vault.profile.id,
                     self.watcher.mode)
            if not self.role.writes:
                log.warning("%s: skipping the scheduled %s", self.role.summary(),
                            ", ".join(self.skipped_jobs) or "jobs")
            self.events.put_command(RECONCILE)  # catch up on changes made while we were down
            self._loop()
            return 0
        finally:
            self._shutdown()

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "host": self.settings.server.host, "port": self.server.port,
                "started_at": self.stats.started_at, "vault": str(self.root)}
        edits.write_own(self.root, INFO_FILE, json.dumps(info))

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(daemon=True)
        minutes = self.settings.daemon.reconcile_minutes
        if minutes > 0:
            self.scheduler.add_job(lambda: self.events.put_command(RECONCILE), "interval",
                                   minutes=minutes, id="reconcile", max_instances=1,
                                   coalesce=True)
        self.scheduler.add_job(self._check_watcher, "interval", seconds=30, id="watcher-health",
                               max_instances=1, coalesce=True)
        from apscheduler.triggers.cron import CronTrigger

        cfg = self.settings.lifecycle
        for phase in SCHEDULED_PHASES:
            expr = getattr(cfg, f"{phase}_cron").strip()
            if not expr:
                continue
            if not self.role.writes:  # another machine's daemon writes this shared vault
                self.skipped_jobs.append(phase)
                continue
            try:
                trigger = CronTrigger.from_crontab(expr)
            except ValueError as exc:
                raise VaultdError(f"[lifecycle] {phase}_cron = {expr!r}: {exc}") from exc
            # Jobs only enqueue: the phase runs on the main thread, so no two phases (nor a
            # phase and an index batch) ever overlap, and a queued phase is not queued twice.
            self.scheduler.add_job(self.events.put_command, trigger, args=[LIFECYCLE + phase],
                                   id=f"lifecycle-{phase}", max_instances=1, coalesce=True,
                                   misfire_grace_time=3600)
        self.scheduler.start()

    def _check_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.check()

    def _shutdown(self) -> None:
        for step in (
            self.recalls.close,
            lambda: self.scheduler and self.scheduler.shutdown(wait=False),
            lambda: self.watcher and self.watcher.stop(),
            lambda: self.server and self.server.stop(),
            lambda: self.vault.close(),
        ):
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

    # -- the work loop (main thread; the only writer)
    def _loop(self) -> None:
        debounce = self.settings.daemon.debounce_ms / 1000
        while not self.stop_event.is_set():
            filling = (self.pending_vectors > 0
                       and time.monotonic() >= self._vectors_retry_at)
            item = self.events.get(timeout=0 if filling else 0.5)
            if time.monotonic() - self._checked_at >= OWN_FILES_EVERY:
                self._check_own_files()
            if item is None:
                if filling:
                    self._embed_step()
                    continue
                if self.pending_vectors:
                    continue  # waiting to retry the vectors phase: nothing else may run yet
                if self._connect_due is not None and time.monotonic() >= self._connect_due:
                    self._connect_due = None
                    self._lifecycle("connect", mirror=False)
                if self._searched_at and time.monotonic() - self._searched_at >= TRIM_AFTER:
                    self._searched_at = 0.0
                    trim_heap()  # what a burst of searches freed (100k chunks: ~17 MB)
                continue
            if isinstance(item, str):
                self._command(item)
                continue
            self.stats.pending_since = item.at or time.monotonic()
            batch, commands = [item], []
            started = time.monotonic()
            while not self.stop_event.is_set():  # stopping: commit what is collected
                wait = min(debounce, MAX_BATCH_WAIT - (time.monotonic() - started))
                nxt = self.events.get(timeout=max(wait, 0)) if wait > 0 else None
                if nxt is None:
                    break
                if isinstance(nxt, str):
                    commands.append(nxt)
                else:
                    batch.append(nxt)
            self._apply(coalesce(batch, self.vault.ignore))
            for command in dict.fromkeys(commands):
                self._command(command)

    def _check_own_files(self) -> None:
        """Files in `.vaultd/` that someone deleted or replaced under the running daemon:
        - the index (`rm .vaultd/index.db && vaultd index`): open the new one and reconcile,
          instead of writing on into a deleted file;
        - the token: put it back, or clients could not reach the daemon and would work
          beside it, a second writer;
        - the lock: put it back, or a second daemon could start."""
        self._checked_at = time.monotonic()
        path = layout.index_path(self.root)
        if file_identity(path) != self._index_id:
            log.warning("%s was deleted or replaced: opening it anew and indexing the vault",
                        path)
            self.vault.reopen_index()
            self.vault.store.ensure_model(self.vault.embedder.identity())
            self._index_id = file_identity(path)
            self._index_generation += 1
            self._reconcile()
        if self._token and read_token(self.root) != self._token:
            log.warning(".vaultd/token was removed or changed: restoring it")
            write_token(self.root, self._token)
        if self.lock.check():
            self._lock_lost = 0
        else:  # a second daemon may hold it for the moment it takes to see us and give up
            self._lock_lost += 1
            log.warning("this vault's lock file is held by another process")
            if self._lock_lost >= 3:
                log.error("another daemon holds this vault's lock file; stopping")
                self.stop_event.set()

    def _command(self, command: str) -> None:
        if command == RECONCILE:
            self._reconcile()
        elif command.startswith(REQUEST):
            self._answer(command[len(REQUEST):])
            self._after_index()  # a flush or lifecycle request indexes, vectors too
        elif command.startswith(LIFECYCLE) and self.pending_vectors:
            if command not in self._deferred:  # runs once every chunk has its vector
                self._deferred.append(command)
        elif command == LIFECYCLE + "flush":
            with contextlib.suppress(VaultdError):  # logged and counted by _flush
                self._flush()
        elif command.startswith(LIFECYCLE):
            self._lifecycle(command[len(LIFECYCLE):])

    def _flush(self) -> dict[str, Any]:
        """Drain pending index work, connect, route, write MEMORY.md (main thread)."""
        self.role.check("flush")
        try:
            result = {k: v for k, v in self.vault.flush().to_dict().items() if k != "phases"}
        except edits.ConflictError as exc:  # a file vaultd must not or cannot write now: said
            log.warning("flush: %s", exc)   # in one line (it names the file and why)
            raise VaultdError(f"flush failed: {exc}") from exc
        except Exception as exc:
            self.stats.errors += 1
            log.exception("flush failed")
            raise VaultdError(f"flush failed: {exc}") from exc
        self.stats.lifecycle["flush"] = {"at": time.time(),
                                         "summary": f"memory_written={result['memory_written']}"}
        return result

    def _lifecycle_on_request(self, phases: list[str], dry_run: bool) -> dict[str, Any]:
        """Index what changed, then run the phases exactly as `vaultd lifecycle` does
        in-process (main thread)."""
        if not dry_run:
            self.role.check("the lifecycle")
        started = time.perf_counter()
        try:
            self.vault.index()
            result = {"phases": [r.to_dict()
                                 for r in self.vault.lifecycle(phases, dry_run=dry_run)],
                      "states": self.vault.states()}
        except Exception as exc:
            self.stats.errors += 1
            log.exception("lifecycle %s on request failed", ",".join(phases))
            raise VaultdError(f"lifecycle failed: {exc}") from exc
        if not dry_run:
            self._warm_vectors()
            line = f"{len(phases)} phase(s) on request in {time.perf_counter() - started:.2f}s"
            for phase in phases:
                self.stats.lifecycle[phase] = {"at": time.time(), "summary": line}
            log.info("lifecycle %s: %s", ",".join(phases), line)
        return result

    def flush_now(self, timeout: float = 300.0) -> dict[str, Any]:
        """For POST /flush (an HTTP thread): flush on the main thread and wait."""
        return self._on_main_thread(self._flush, "flush", timeout)

    def lifecycle_now(self, phases: list[str], dry_run: bool = False,
                      timeout: float = 600.0) -> dict[str, Any]:
        """For POST /lifecycle (an HTTP thread): run the phases on the main thread (the
        index's only writer), wait, and answer what `vaultd lifecycle --json` prints."""
        return self._on_main_thread(lambda: self._lifecycle_on_request(list(phases), dry_run),
                                    "lifecycle", timeout)

    def _on_main_thread(self, work: Callable[[], dict[str, Any]], what: str,
                        timeout: float) -> dict[str, Any]:
        request = secrets.token_hex(8)
        done, answer = threading.Event(), {}
        self._requests[request] = (done, work, answer)
        self.events.put_command(REQUEST + request)
        if not done.wait(timeout):
            self._requests.pop(request, None)
            raise VaultdError(f"{what} did not finish within {timeout:.0f}s")
        if "error" in answer:
            raise VaultdError(answer["error"])
        return answer["result"]

    def _answer(self, request: str) -> None:
        waiter = self._requests.pop(request, None)
        if waiter is None:
            return  # its caller gave up waiting
        done, work, answer = waiter
        try:
            answer["result"] = work()
        except VaultdError as exc:
            answer["error"] = str(exc)
        done.set()

    def _lifecycle(self, phase: str, mirror: bool = True) -> None:
        """One lifecycle phase, on the main thread (the index's only writer). A failure is
        logged and the job simply runs again at its next time. Files changed in the last
        minute are left alone by `vaultd_related:` mirroring (someone is likely editing them)."""
        started = time.perf_counter()
        try:
            [report] = self.vault.lifecycle([phase], mirror=mirror, quiet_seconds=60.0)
        except Exception:
            self.stats.errors += 1
            log.exception("lifecycle %s failed; it runs again at its next scheduled time", phase)
            return
        line = (f"{len(report.acted)} action(s), {len(report.written)} written, "
                f"{len(report.created)} created, {len(report.conflicts)} conflict(s) "
                f"in {time.perf_counter() - started:.2f}s")
        self.stats.lifecycle[phase] = {"at": time.time(), "summary": line}
        if report.acted or report.conflicts:
            log.info("lifecycle %s: %s", phase, line)
        for conflict in report.conflicts:
            log.warning("lifecycle %s: %s", phase, conflict)


    def _expand(self, changes: Changes) -> list[str]:
        paths = list(changes.upserts) + list(changes.deletes)
        if changes.dirs:
            known = self.vault.store.file_states()
            for folder in changes.dirs:
                prefix = folder.rstrip("/") + "/"
                paths += [p for p in known if p.startswith(prefix)]
                target = self.root / folder
                if target.is_dir():
                    sub = layout.scan(target, self.vault.ignore)
                    paths += [f"{prefix}{p}" for p in sub.files]
        return paths

    def _apply(self, changes: Changes) -> None:
        if not changes:
            self.stats.pending_since = None
            return
        self._indexing.set()
        try:
            report = self.vault.indexer().sync_paths(self._expand(changes),
                                                     self._on_progress, vectors=False)
            self._record(report, "batch")
            self._connect_after(report)
            self._after_index(step=True)
        except Exception:
            self.stats.errors += 1
            self.progress = None if not self.pending_vectors else self.progress
            log.exception("indexing a batch failed; the periodic reconcile will retry")
        finally:
            self._indexing.clear()
            if self.events.qsize() == 0:
                self.stats.pending_since = None

    def _reconcile(self) -> None:
        self._indexing.set()
        try:
            report = self.vault.index(self._on_progress, vectors=False)
            if report.chunks_pending:
                log.info("files indexed in %.1fs: keyword search finds them; %d chunks wait "
                         "for their vectors", report.seconds, report.chunks_pending)
            self._reconciled = True
            changed = len(report.new) + len(report.changed) + len(report.deleted) + len(
                report.moved)
            if changed and self.stats.batches > 0:
                self.stats.drift += changed
                log.warning("reconcile found %d change(s) no file event announced", changed)
            self._record(report, "reconcile")
            self._connect_after(report)
            self._after_index(step=True)
        except Exception:
            self.stats.errors += 1
            self.progress = None if not self.pending_vectors else self.progress
            log.exception("reconcile failed")
        finally:
            self._indexing.clear()

    def _on_progress(self, progress: IndexProgress) -> None:
        self.progress = progress

    def _after_index(self, step: bool = False) -> None:
        """After index work: count the chunks waiting for a vector and, with `step`, embed a
        first step of them at once (a small batch is then complete when `indexing` clears),
        then warm the in-memory vectors."""
        self.pending_vectors = self.vault.pending_vectors()
        if self.pending_vectors and self._meter is None:
            self._meter, self._filled = RateMeter(), 0
        if self.pending_vectors:
            self.progress = IndexProgress("vectors", self._filled,
                                          self._filled + self.pending_vectors)
        if step and self.pending_vectors:
            self._embed_step()
            return
        self._warm_vectors()
        if not self.pending_vectors:
            self._vectors_done()

    def _embed_step(self) -> None:
        """One step of the vectors phase (main thread). A failure is logged, and the phase
        tries again after VECTOR_RETRY seconds; lifecycle phases wait meanwhile. (Not a file
        change in flight: `indexing` in /status counts pending vectors, `stale_files` not.)"""
        try:
            self._filled += self.vault.embed_pending(limit=VECTOR_STEP)
            self.pending_vectors = self.vault.pending_vectors()
            rate = self._meter.update(self._filled) if self._meter is not None else None
            self.progress = IndexProgress("vectors", self._filled,
                                          self._filled + self.pending_vectors, rate)
            if not self.pending_vectors or time.monotonic() - self._warmed_at >= WARM_EVERY:
                self._warm_vectors()  # (a search in between brings its copy up to date)
        except Exception:
            self.stats.errors += 1
            self._vectors_retry_at = time.monotonic() + VECTOR_RETRY
            log.exception("embedding chunks that wait for a vector failed; trying again in "
                          "%.0fs", VECTOR_RETRY)
        if not self.pending_vectors:
            self._vectors_done()

    def _vectors_done(self) -> None:
        """Every chunk has its vector: say so once, and let waiting lifecycle phases run."""
        if self._meter is not None:
            log.info("every chunk has its vector (%d embedded in this phase)", self._filled)
        self._meter, self.progress = None, None
        if self._reconciled:
            self.first_index_done = True
        for command in self._deferred:
            self.events.put_command(command)
        self._deferred.clear()

    def _warm_vectors(self) -> None:
        """Reload the in-memory vectors now, on the writer's thread, rather than in the first
        search after a change."""
        self._warmed_at = time.monotonic()
        if self.vault.vectors is not None:
            self.vault.vectors.refresh(self.vault.store)
        if self.vault.texts is not None:
            self.vault.texts.load(self.vault.store, background=True)
        trim_heap()  # what the index work freed (a reconcile's file lists, chunk texts, …)

    def _connect_after(self, report: IndexReport) -> None:
        if self.settings.lifecycle.connect_after_index and (report.new or report.changed
                                                            or report.moved):
            # links only: the `vaultd_related:` mirror, which writes files, waits for the scheduled
            # connect so it never races a person still typing in the note just indexed. And
            # once the vault has been quiet for CONNECT_QUIET: connect reads every entry
            # (~0.2 s at 10k chunks), which would otherwise delay the next edit's batch.
            self._connect_due = time.monotonic() + CONNECT_QUIET

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
