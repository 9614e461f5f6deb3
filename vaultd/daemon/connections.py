"""Connections with limits: the HTTP server under the API, so local processes cannot starve it.

A thread per connection, at most `max_connections` at once. At the cap, a newcomer whose
request has arrived takes the place of the connection that has waited longest for its own; one
whose request has not arrived waits in a lobby, without a thread, for at most LOBBY_SECONDS.
The request line and headers must arrive within `head_seconds`, the body within `body_seconds`
(a slow trickle extends neither: the handler marks each phase, `reap` hangs up on the late).
Out of file descriptors, the accept loop frees one or backs off instead of spinning.
tests/test_flood.py and test_server.py's deadline tests hold all of it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger("vaultd.daemon.server")

_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
LOBBY_SECONDS = 2.0  # at the cap, how long a connection may take to send its request
ACCEPT_BACKOFF = (0.05, 1.0)  # seconds: first and longest pause when accept() has no fd


@dataclass
class _Conn:
    """One open connection: what it is doing and since when (see `LimitedHTTPServer.reap`)."""

    sock: socket.socket
    phase: str  # "head" (waiting for a request), "body" (reading one), "work" (answering)
    since: float
    timed_out: bool = False


class LimitedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that limits connections and cuts off slow senders. Its handler
    calls `mark(sock, phase)` as a request moves from head to body to work."""

    daemon_threads = True
    # The listen backlog (the kernel caps it at net.core.somaxconn). The default 5 resets bursts
    # of parallel clients; 128 left a client's connect() retrying for seconds while 1,100
    # trickling sockets held the queue; with room for them all it is accepted in a moment.
    request_queue_size = 2048

    def __init__(self, address: tuple[str, int], handler: type, *, max_connections: int,
                 head_seconds: float, body_seconds: float) -> None:
        self.max_connections = max(1, max_connections)
        self.head_seconds = head_seconds
        self.body_seconds = body_seconds
        self._conns: dict[socket.socket, _Conn] = {}
        self._conns_lock = threading.Lock()
        self._backoff = ACCEPT_BACKOFF[0]
        self._last_reap = 0.0
        # connections accepted at the cap whose request has not arrived (serving thread only)
        self._lobby: dict[socket.socket, tuple[float, Any]] = {}
        self._lobby_selector = selectors.DefaultSelector()
        super().__init__(address, handler)

    # -- bookkeeping, called by the handler threads
    def mark(self, sock: socket.socket, phase: str) -> None:
        with self._conns_lock:
            conn = self._conns.get(sock)
            if conn is not None:
                conn.phase, conn.since = phase, time.monotonic()

    def timed_out(self, sock: socket.socket) -> bool:
        with self._conns_lock:
            conn = self._conns.get(sock)
            return conn is not None and conn.timed_out

    # -- the accept loop
    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as exc:
            if exc.errno in _OUT_OF_FDS:
                # The listening socket stays readable: returning at once would spin the loop.
                # Free a descriptor held by a client still sending its request, or wait.
                if self._lobby:
                    self._refuse_oldest_in_lobby()
                elif self._drop_oldest_waiting():
                    time.sleep(0.01)
                else:
                    if self._backoff == ACCEPT_BACKOFF[0]:
                        log.warning("out of file descriptors (%s): accepting again in a "
                                    "moment", exc.strerror)
                    time.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, ACCEPT_BACKOFF[1])
            raise
        self._backoff = ACCEPT_BACKOFF[0]
        return request

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            full = len(self._conns) >= self.max_connections
        if full:
            # At the cap, a connection whose request has arrived whole (real clients send it
            # at once) takes the place of the one waiting longest for its own. One whose request
            # has not arrived waits in the lobby, without a thread, until it has (then the same)
            # or LOBBY_SECONDS pass (503). Why: under a flood of trickling sockets, giving
            # every newcomer a thread kept /health waiting behind the churn, and refusing every
            # newcomer without its request refused honest /health calls accepted before they
            # had sent (bench/RESULTS.md has the figures).
            if not _request_arrived(request):
                self._park(request, client_address)
                return
            if not self._drop_oldest_waiting():
                self._refuse(request)
                return
        self._serve(request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns[request] = _Conn(request, "head", time.monotonic())
        super().process_request(request, client_address)

    def _park(self, request: socket.socket, client_address: Any) -> None:
        if len(self._lobby) >= self.max_connections:
            self._refuse_oldest_in_lobby()
        self._lobby[request] = (time.monotonic(), client_address)
        self._lobby_selector.register(request, selectors.EVENT_READ)

    def _refuse_oldest_in_lobby(self) -> None:
        oldest = min(self._lobby, key=lambda s: self._lobby[s][0])
        self._leave_lobby(oldest)
        self._refuse(oldest)

    def _leave_lobby(self, sock: socket.socket) -> Any:
        self._lobby_selector.unregister(sock)
        return self._lobby.pop(sock)[1]

    def _check_lobby(self, now: float) -> None:
        for key, _ in self._lobby_selector.select(0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if _request_arrived(sock):
                address = self._leave_lobby(sock)
                if self._drop_oldest_waiting():
                    self._serve(sock, address)
                else:
                    self._refuse(sock)
        for sock in [s for s, (since, _) in self._lobby.items() if now - since > LOBBY_SECONDS]:
            self._leave_lobby(sock)
            self._refuse(sock)

    def server_close(self) -> None:
        for sock in list(self._lobby):
            self._leave_lobby(sock)
            sock.close()
        self._lobby_selector.close()
        super().server_close()

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is not an error worth a traceback (the stdlib prints one)."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("client %s hung up", client_address)
            return
        log.exception("error serving a connection from %s", client_address)

    def service_actions(self) -> None:
        """Called by serve_forever between requests (at least every poll interval)."""
        now = time.monotonic()
        if self._lobby:
            self._check_lobby(now)
        if now - self._last_reap >= 0.25:
            self._last_reap = now
            self.reap(now)

    def reap(self, now: float) -> None:
        """Hang up on connections past their deadline. `shutdown` wakes the thread blocked in
        recv (it then sees the end of the stream and finishes); close stays with that thread."""
        with self._conns_lock:
            late = [c for c in self._conns.values()
                    if (c.phase == "head" and now - c.since > self.head_seconds)
                    or (c.phase == "body" and now - c.since > self.body_seconds)]
            hangups = []
            for conn in late:
                conn.timed_out = True
                if conn.phase == "head":
                    self._conns.pop(conn.sock, None)
                # a late body still gets its 408 (writes stay open); a late head gets nothing
                hangups.append((conn.sock, socket.SHUT_RD if conn.phase == "body"
                                else socket.SHUT_RDWR))
        for sock, how in hangups:
            with contextlib.suppress(OSError):
                sock.shutdown(how)

    def _drop_oldest_waiting(self) -> bool:
        """Drop the connection that has waited longest for its request to arrive (a slow sender
        or an idle keep-alive); False when every connection is busy being answered."""
        with self._conns_lock:
            waiting = [c for c in self._conns.values() if c.phase == "head"]
            if not waiting:
                return False
            victim = min(waiting, key=lambda c: c.since)
            self._conns.pop(victim.sock, None)
        with contextlib.suppress(OSError):
            victim.sock.shutdown(socket.SHUT_RDWR)
        return True

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": f"too many connections (limit {self.max_connections}); "
                                    "try again"}).encode()
        try:
            request.setblocking(False)
            request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                         b"\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        super().shutdown_request(request)


def _request_arrived(sock: socket.socket) -> bool:
    """Whether the request line and headers are already waiting in the socket's buffer."""
    try:
        sock.setblocking(False)
        try:
            waiting = sock.recv(65536, socket.MSG_PEEK)
        finally:
            sock.setblocking(True)
    except OSError:  # nothing yet (BlockingIOError), or the client is gone
        return False
    return b"\r\n\r\n" in waiting or b"\n\n" in waiting


def fd_limit() -> int | None:
    """The process's soft limit on open files (None: unlimited, or no such limit here)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)
