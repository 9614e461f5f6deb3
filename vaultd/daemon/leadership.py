"""One leader, many readers: the policy of daemons that share one index in PostgreSQL.

Exactly one of them holds the lease (`vaultd.store.postgres.lease`) and writes: it watches and
indexes the vault, fills in vectors, and runs the lifecycle, the flush and the `related:`
mirror. The others index nothing (what the leader indexed is in the database; a reader that
becomes leader reuses every vector whose content hash is already there) and answer search,
embeddings and MCP from the shared database. This replaces `[lifecycle] writer`'s host name
when the index is shared.

A thread renews the lease every `renew_seconds`; a reader's thread tries to take it as often.
A leader killed outright frees its lock at once, so a reader takes over at its next try; a
leader paused past `lease_seconds` is taken over once its lease has expired. A leader that
fails to renew, or wakes to find its lease expired, steps down before anything else: every
writing job asks `fence()` first, which checks the row on the server, and the leader's own
clock ends its lease a little before the server's does (it counts from before the renewal was
sent). The daemon is told through `on_gain` and `on_lose`, called on this thread.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from vaultd.daemon.discovery import read_info
from vaultd.errors import VaultdError
from vaultd.writer_role import WriterRole

log = logging.getLogger("vaultd.daemon")


@dataclass(frozen=True)
class Holder:
    """Who contends: a unique id, and the host and pid a reader shows of the leader."""

    id: str
    host: str
    pid: int


class LeaseState(Protocol):
    """The lease row as read (`lease.LeaseState`), with the server's clock at the reading."""

    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def expires_at(self) -> datetime: ...
    @property
    def live(self) -> bool: ...


class Lease(Protocol):
    """What the policy needs of the store's lease (`PgLease`)."""

    def acquire(self, seconds: float) -> LeaseState | None: ...
    def renew(self, seconds: float) -> LeaseState | None: ...
    def holds(self) -> bool: ...
    def current(self) -> LeaseState | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


def reader_line(leader: LeaseState) -> str:
    """A reader's line: who leads, and until when its lease holds unless renewed."""
    until = leader.expires_at.astimezone().strftime("%H:%M:%S")
    return f"reader (leader: {leader.host} pid {leader.pid}, lease until {until})"


def role_outside_a_daemon(root: Path, url: str, writer: str, host: str) -> WriterRole:
    """The part of a process that is not a daemon (the CLI working in-process) on a shared
    index. When this machine's daemon of the vault runs, it decides: the CLI's writing
    commands go through it, and it fences each job. Otherwise the lease row does: with a live
    leader elsewhere this process must not write; with none, it may (as a lone daemon would)."""
    if read_info(root) is not None:
        return WriterRole(writer, host, lease="this machine's daemon decides (it leads the "
                          "shared index or reads it)", leads=True)
    from vaultd.store.postgres.lease import PgLease

    lease = PgLease(url, "", host, os.getpid())
    try:
        state = lease.current()
    finally:
        lease.close()
    if state is not None and state.live:
        return WriterRole(writer, host, lease=reader_line(state))
    return WriterRole(writer, host, lease="no daemon leads the shared index: this process "
                      "writes", leads=True)


def this_holder() -> Holder:
    host, pid = socket.gethostname(), os.getpid()
    return Holder(f"{host}:{pid}:{secrets.token_hex(4)}", host, pid)


class Leadership:
    """The lease's policy for one daemon. `lease_seconds` and `renew_seconds` come from
    `[daemon] lease_seconds` and `lease_renew_seconds`: a lease outlives two missed renewals,
    so a slow server or one lost packet never hands the vault over."""

    def __init__(self, lease: Lease, holder: Holder, *, writer: str, lease_seconds: float,
                 renew_seconds: float,
                 on_gain: Callable[[], None] = lambda: None,
                 on_lose: Callable[[str], None] = lambda reason: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise VaultdError(f"[daemon] lease_renew_seconds ({renew_seconds}) must be above "
                              f"0 and below lease_seconds ({lease_seconds})")
        self.lease, self.holder, self.writer = lease, holder, writer
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self._on_gain, self._on_lose, self._clock = on_gain, on_lose, clock
        self._leads = False
        self._valid_until = 0.0  # this process's clock: the lease ends here at the latest
        self._renewed_at = 0.0
        self._other: LeaseState | None = None  # the leader, as last read, while a reader
        self._problem = ""  # why the last try failed (the server unreachable), once logged
        self._asked = False  # contended at least once
        self._turn = threading.RLock()  # one tick or fence at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread
    def start(self) -> None:
        """Contend once now (the daemon starts knowing its role), then keep at it."""
        self.tick()
        self._thread = threading.Thread(target=self._run, name="vaultd-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                self.tick()
            except Exception:  # the thread must outlive any one failure
                log.exception("the lease's renewal failed")

    def stop(self) -> None:
        """Stop contending; a leader gives the lease up, so a reader takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease_seconds)
        with self._turn:
            if self._leads:
                self._leads = False
                try:
                    self.lease.release()
                    log.info("released the lease of the shared index")
                except VaultdError as exc:
                    log.warning("could not release the lease (it expires by itself): %s", exc)
            self.lease.close()

    # -- the policy
    def tick(self) -> None:
        """Renew the lease (leader) or try to take it (reader)."""
        with self._turn:
            if self._leads:
                self._renew()
            else:
                self._contend()

    def _renew(self) -> None:
        if self._clock() >= self._valid_until:
            self._lose("its lease ran out before it could renew it (was the process paused?)")
            return
        sent = self._clock()
        try:
            state = self.lease.renew(self.lease_seconds)
        except VaultdError as exc:
            self._lose(f"it could not renew its lease: {exc}")
            return
        if state is None:
            self._lose("another daemon holds the lease now")
            return
        self._valid_until, self._renewed_at = sent + self.lease_seconds, sent

    def _contend(self) -> None:
        sent = self._clock()
        try:
            state = self.lease.acquire(self.lease_seconds)
            other = None if state is not None else self.lease.current()
        except VaultdError as exc:
            if str(exc) != self._problem:
                log.warning("cannot contend for the lease of the shared index: %s", exc)
            self._problem = str(exc)
            return
        self._problem, self._asked = "", True
        if state is None:
            self._other = other
            return
        self._leads, self._other = True, None
        self._valid_until, self._renewed_at = sent + self.lease_seconds, sent
        log.info("this daemon (%s pid %d) is now the leader of the shared index: it indexes "
                 "the vault and runs the lifecycle", self.holder.host, self.holder.pid)
        self._on_gain()

    def _lose(self, reason: str) -> None:
        self._leads = False
        log.warning("this daemon is no longer the leader of the shared index (%s): it stops "
                    "indexing and writing", reason)
        self._on_lose(reason)

    # -- what the daemon asks
    def leads(self) -> bool:
        """This process's own view, without asking the server: the work loop's cheap check
        (whether to fill in vectors now)."""
        return self._leads and self._clock() < self._valid_until

    def fence(self) -> bool:
        """Whether a writing job may run now: the lease is this daemon's on the server's
        clock too. A leader that finds it is not steps down first."""
        with self._turn:
            if not self._leads:
                return False
            if self._clock() >= self._valid_until:
                self._lose("its lease ran out before it could renew it (was the process "
                           "paused?)")
                return False
            try:
                held = self.lease.holds()
            except VaultdError as exc:
                self._lose(f"it could not check its lease: {exc}")
                return False
            if not held:
                self._lose("another daemon holds the lease now")
            return held

    def line(self) -> str:
        """The role in one line, as `vaultd status` shows it."""
        if self.leads():
            ago = max(0.0, self._clock() - self._renewed_at)
            return f"leader (lease renewed {ago:.0f}s ago)"
        other = self._other
        if not self._asked:
            return "reader (has not read the lease yet)"
        if other is None or not other.live:
            why = f": {self._problem}" if self._problem else ""
            return f"reader (no leader holds the lease yet{why})"
        return reader_line(other)

    def role(self, *, fence: bool = True) -> WriterRole:
        """This daemon's part as a `WriterRole`: a leader only if `fence()` says so (pass
        `fence=False` to describe it without asking the server)."""
        leads = self.fence() if fence else self.leads()
        return WriterRole(self.writer, self.holder.host, lease=self.line(), leads=leads)
