"""File events → work. The watchdog handler only enqueues; `coalesce(events)` is pure.

Editors save in many ways — write in place (Obsidian), write a temp file then rename over the
note (vim, JetBrains `___jb_tmp___`, VS Code), delete then re-create, or a burst of modifies.
Coalescing reduces any such sequence to the net effect per note path: upsert, delete, or
nothing (created then deleted within the batch). Temp files are not notes, so they drop out;
what remains is the rename onto the note's real name. Directory creates, deletes and moves
become folders to rescan.

A permission change is a change too: `chmod` on a note the indexer could not read (it was
skipped with its reason) makes it readable without touching its bytes, so nothing but the
attribute event (watchdog's `attrib`, inotify's IN_ATTRIB) says it can be indexed now. Such an
event re-reads the note (unchanged bytes cost one hash) or rescans the folder; waiting for the
periodic reconcile would leave the note unsearchable for minutes.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from vaultd.layout import Ignore

log = logging.getLogger("vaultd.daemon.watcher")

EventKind = Literal["created", "modified", "deleted", "moved", "closed", "attrib"]
KINDS: tuple[EventKind, ...] = ("created", "modified", "deleted", "moved", "closed", "attrib")


@dataclass(frozen=True)
class RawEvent:
    kind: EventKind
    path: str  # vault-relative posix; "" when outside the vault
    dest: str | None = None  # for moves; None when moved out of the vault
    is_dir: bool = False
    at: float = 0.0  # monotonic time of arrival


@dataclass
class Changes:
    upserts: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # folders to rescan

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.dirs)


def coalesce(events: Iterable[RawEvent], ignore: Ignore) -> Changes:
    """Reduce raw events to the net change per note path, in arrival order."""
    state: dict[str, str] = {}  # path → "created" | "upsert" | "delete"
    dirs: dict[str, None] = {}

    def upsert(path: str, created: bool) -> None:
        if not path or not ignore.is_note(path):
            return
        before = state.get(path)
        if before == "created":
            return
        if before is None and created:
            state[path] = "created"
        else:
            state[path] = "upsert"

    def delete(path: str) -> None:
        if not path or not ignore.is_note(path):
            return
        if state.get(path) == "created":
            del state[path]  # born and gone within the batch: nothing happened
        else:
            state[path] = "delete"

    for ev in events:
        if ev.is_dir:
            for d in (ev.path, ev.dest) if ev.kind == "moved" else (ev.path,):
                if d and ev.kind in ("created", "deleted", "moved", "attrib") \
                        and not ignore.ignored(d):
                    dirs[d] = None
            continue
        if ev.kind == "moved":
            delete(ev.path)
            if ev.dest:
                upsert(ev.dest, created=False)  # a move may replace a note that existed
        elif ev.kind == "created":
            upsert(ev.path, created=True)
        elif ev.kind in ("modified", "closed", "attrib"):
            upsert(ev.path, created=False)
        elif ev.kind == "deleted":
            delete(ev.path)
    return Changes(upserts=[p for p, s in state.items() if s != "delete"],
                   deletes=[p for p, s in state.items() if s == "delete"],
                   dirs=list(dirs))


C = TypeVar("C", bound=Hashable)


class EventQueue(Generic[C]):
    """Thread-safe queue of RawEvents with arrival times, and of the commands (any hashable
    value: the daemon's are `daemon.commands`) that wait their turn among them."""

    def __init__(self) -> None:
        self._q: queue.Queue[RawEvent | C] = queue.Queue()
        self.last_event_at: float | None = None  # wall clock, for status
        self._pending: set[C] = set()
        self._lock = threading.Lock()

    def put(self, event: RawEvent) -> None:
        self.last_event_at = time.time()
        self._q.put(event)

    def put_command(self, command: C) -> None:
        """Queue a command unless the same one is already waiting."""
        with self._lock:
            if command in self._pending:
                return
            self._pending.add(command)
        self._q.put(command)

    def qsize(self) -> int:
        return self._q.qsize()

    def get(self, timeout: float | None) -> RawEvent | C | None:
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if not isinstance(item, RawEvent):
            with self._lock:
                self._pending.discard(item)
        return item


def _rel(root: str, path: str | bytes) -> str:
    text = os.fsdecode(path)
    try:
        rel = os.path.relpath(text, root)
    except ValueError:  # another drive on Windows
        return ""
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return ""
    return Path(rel).as_posix()


class Handler:
    """A watchdog event handler that only translates and enqueues."""

    def __init__(self, root: Path, events: EventQueue[Any], ignore: Ignore) -> None:
        self.root = str(root)
        self.events = events
        self.ignore = ignore

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        if kind not in KINDS:  # opened, closed_no_write: a read changes nothing
            return
        dest = getattr(event, "dest_path", None) if kind == "moved" else None
        path = _rel(self.root, event.src_path)
        dest_rel = (_rel(self.root, dest) or None) if dest else None
        if self._noise(path) and (dest_rel is None or self._noise(dest_rel)):
            return  # e.g. our own .vaultd/ files: not worth a queue entry
        self.events.put(RawEvent(kind=kind, path=path, dest=dest_rel,
                                 is_dir=bool(event.is_directory), at=time.monotonic()))

    def _noise(self, path: str) -> bool:
        return not path or self.ignore.ignored(path)


class Watcher:
    """Runs a watchdog observer over the vault; falls back to polling when native watching
    fails (e.g. the OS refuses more inotify watches) and says so."""

    def __init__(self, root: Path, events: EventQueue[Any], ignore: Ignore, *,
                 force_polling: bool = False, poll_interval: float = 2.0) -> None:
        self.root = root
        self.events = events
        self.ignore = ignore
        self.poll_interval = poll_interval
        self.mode = "polling" if force_polling else "native"
        self.reason = "configured" if force_polling else ""
        self._observer: Any = None

    def start(self) -> None:
        if self.mode == "native":
            try:
                self._start(native=True)
                return
            except OSError as exc:
                self._fallback(f"native watching failed: {exc}")
                return
        self._start(native=False)

    def _start(self, native: bool) -> None:
        if native:
            from watchdog.observers import Observer

            observer = Observer()
        else:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=self.poll_interval)
        # duck-typed: watchdog calls only `dispatch`, and subclassing its handler would load
        # watchdog with this module
        handler: Any = Handler(self.root, self.events, self.ignore)
        observer.schedule(handler, str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _fallback(self, reason: str) -> None:
        log.warning("watcher: %s; switching to polling every %.1fs", reason, self.poll_interval)
        self.stop()
        self.mode, self.reason = "polling", reason
        self._start(native=False)

    def check(self) -> None:
        """Called periodically: if the observer died, switch to polling. An emitter thread (the
        one reading inotify) can die alone, e.g. when the OS refuses a watch for a new folder,
        while the observer thread dispatching its events lives on: check both."""
        observer = self._observer
        if observer is None:
            return
        emitters = list(getattr(observer, "emitters", ()))
        if not observer.is_alive() or not all(e.is_alive() for e in emitters):
            self._fallback("the native observer stopped")

    def stop(self) -> None:
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout=5)
            except Exception:  # a dead observer may fail to stop; nothing to keep
                log.debug("observer stop failed", exc_info=True)
            self._observer = None
