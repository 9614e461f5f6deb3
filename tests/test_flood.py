"""Local denial of service (issue 12, point 13): slowly trickling sockets and file-descriptor
exhaustion must not take the daemon down. A real daemon process with the common 1,024
descriptor limit, flooded from this process over loopback only, for a bounded time."""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_vault, write
from daemon_helpers import DEADLINE, FAST_CONFIG, call, env_for, wait_for

from vaultd.daemon.discovery import info_path, read_token

pytestmark = pytest.mark.slow

TRICKLERS = 1_100
REPO = Path(__file__).resolve().parent.parent


def _limit_fds(soft: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(autouse=True)
def enough_fds_here() -> Iterator[None]:
    """This process holds every trickling socket: it needs more than the daemon gets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = TRICKLERS + 400
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"this process may open only {hard} files; the flood needs {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _env(tmp_path: Path) -> dict[str, str]:
    env = env_for(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Trickle:
    """Sockets that send a request one byte at a time and never finish it; dropped ones are
    opened again, so the count stays up for the whole flood."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = [self._open() for _ in range(count)]
        self.dropped = 0

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        return sock

    def round(self) -> None:
        for i, sock in enumerate(self.socks):
            try:
                sock.send(b"G" if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                          else b"")
            except BlockingIOError:
                pass  # still connecting (the backlog is full): the kernel retries
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise
                sock.close()
                self.socks[i] = self._open()
                self.dropped += 1

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _timed(port: int, method: str, path: str, body: object = None,
           token: str | None = None) -> tuple[float, int, object]:
    started = time.monotonic()
    status, data = call(port, method, path, body, token=token, timeout=10)
    return time.monotonic() - started, status, data


def test_a_flood_of_trickling_sockets_does_not_exhaust_the_daemon(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/base.md": "# Base\n\nrestic backups\n"},
                      config=FAST_CONFIG)
    daemon = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root), "run"],
                              env=_env(tmp_path), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, preexec_fn=lambda: _limit_fds(1024))
    trickle = None
    try:
        wait_for(lambda: info_path(root).exists() or daemon.poll() is not None,
                 "the daemon to listen")
        assert daemon.poll() is None, daemon.stderr.read().decode()[-2000:]  # type: ignore
        port = int(json.loads(info_path(root).read_text())["port"])
        token = read_token(root)
        assert token
        assert _timed(port, "GET", "/health")[1] == 200

        trickle = Trickle(port, TRICKLERS)
        flood_ends = time.monotonic() + 6.0
        probes = []
        written = False
        while time.monotonic() < flood_ends:
            trickle.round()
            time.sleep(0.3)
            if not written:  # a note saved during the flood must still get indexed
                write(root, "semantic/flood.md", "# Flood\n\nzebracorn survives the flood\n")
                written = True
            if flood_ends - time.monotonic() < 4.0 and len(probes) < 2:
                probes.append(_timed(port, "GET", "/health"))
        for seconds, status, _ in probes:
            assert status == 200 and seconds < 3.0, probes
        seconds, status, data = _timed(port, "POST", "/embed", {"texts": ["x"]}, token=token)
        assert status == 200 and seconds < 3.0, (seconds, data)
        assert trickle.dropped > 0  # slow senders were hung up on, not served for ever
        assert daemon.poll() is None

        def found() -> bool:
            _, status, data = _timed(port, "POST", "/search",
                                     {"query": "zebracorn", "mode": "bm25"}, token=token)
            return status == 200 and any(h["path"] == "semantic/flood.md"
                                         for h in data["hits"])  # type: ignore[index]

        wait_for(found, "the note written during the flood to be searchable")
    finally:
        if trickle is not None:
            trickle.close()
        daemon.terminate()
        try:
            daemon.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


EXHAUST = textwrap.dedent("""
    import os, sys
    from vaultd.config import ServerSettings
    from vaultd.daemon.server import Server

    class App:
        def health(self):
            return {"status": "ok", "model": "m", "dims": 1, "uptime": 0.0}

    server = Server(App(), ServerSettings(port=0), token="t")
    server.start()
    hog = []
    try:  # what a leak, the indexer or the watcher may do: every descriptor taken
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print(server.port, flush=True)
    sys.stdin.readline()
    for fd in hog:
        os.close(fd)
    print("freed", flush=True)
    sys.stdin.readline()
""")


def test_out_of_descriptors_the_accept_loop_backs_off_and_recovers(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", EXHAUST], env=_env(tmp_path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: _limit_fds(64))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        # a client waits in the listen backlog: accept() fails with EMFILE for as long as
        # every descriptor is taken, and the listening socket stays readable
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(f"GET /health HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        time.sleep(0.5)
        before = _cpu_seconds(proc.pid)
        time.sleep(3.0)
        spent = _cpu_seconds(proc.pid) - before
        assert spent < 0.5, f"the accept loop used {spent:.2f} s of CPU in 3 s (spinning)"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "freed"
        answer = client.recv(65536).decode("latin-1")  # served once descriptors are back
        assert answer.startswith("HTTP/1.1 200"), answer
        client.close()
    finally:
        proc.kill()
        proc.wait()
