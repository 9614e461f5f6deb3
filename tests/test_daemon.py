"""The daemon end to end: a real watchdog observer on a tmp vault (daemon in a thread), the
process commands (start/stop/status/run in subprocesses) and the CLI's client fallback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault
from daemon_helpers import (
    DEADLINE,
    FAST_CONFIG,
    Running,
    call,
    env_for,
    running_daemon,
    start_daemon_thread,
    vaultd,
    wait_for,
)

from vaultd import layout
from vaultd.daemon.client import DaemonError
from vaultd.daemon.discovery import (
    Lock,
    ensure_token,
    info_path,
    pid_alive,
    read_info,
    read_token,
)
from vaultd.errors import VaultdError
from vaultd.store import Store
from vaultd.vault import open_vault


def save(path: Path, text: str) -> None:
    """Save a note the way an editor does: the whole file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


NOTES = {
    "semantic/alpha.md": "# Alpha\n\nthe aardvark note\n",
    "semantic/beta.md": "# Beta\n\nthe bobcat note\n",
    "procedural/gamma.md": "# Gamma\n\nthe caracal note\n",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return env_for(tmp_path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_vault(tmp_path, NOTES, config=FAST_CONFIG)


@pytest.fixture
def daemon(root: Path, env: dict[str, str]) -> Iterator[Running]:
    with running_daemon(root, env) as running:
        yield running


def indexed_paths(root: Path) -> set[str]:
    store = Store(root / ".vaultd" / "index.db")
    try:
        return set(store.file_states())
    finally:
        store.close()


def lock_is_free(root: Path) -> bool:
    lock = Lock(root)
    try:
        lock.acquire()
    except VaultdError:
        return False
    lock.release()
    return True


# -- the watcher, with the daemon in a thread


def test_changes_made_while_down_are_reconciled_at_start(root: Path, env: dict[str, str]) -> None:
    with open_vault(root, env=env, daemon="never") as vault:
        vault.index()
    save(root / "semantic" / "alpha.md", "# Alpha\n\nthe axolotl note\n")
    (root / "semantic" / "beta.md").unlink()
    save(root / "episodic" / "2026-01-02.md", "# 2026-01-02\n\n## 10:00\nthe dingo arrived\n")
    os.rename(root / "procedural" / "gamma.md", root / "procedural" / "gamma2.md")
    with running_daemon(root, env) as d:  # ready = the reconcile at start is done
        assert d.paths("axolotl") == {"semantic/alpha.md"}
        assert d.paths("aardvark") == set()
        assert d.paths("bobcat") == set()
        assert d.paths("dingo") == {"episodic/2026-01-02.md"}
        assert d.paths("caracal") == {"procedural/gamma2.md"}
        assert d.daemon.stats.drift == 0  # catching up at start is not drift


def test_create_edit_delete_and_move_are_followed(daemon: Running) -> None:
    root = daemon.root
    save(root / "semantic" / "new.md", "# New\n\nthe ocelot note\n")
    wait_for(lambda: daemon.paths("ocelot") == {"semantic/new.md"}, "a created note")
    with open(root / "semantic" / "new.md", "a", encoding="utf-8") as fh:
        fh.write("\nand now a pangolin too\n")
    wait_for(lambda: daemon.paths("pangolin") == {"semantic/new.md"}, "an edited note")
    save(root / "semantic" / "new.md", "# New\n\nonly the quetzal now\n")
    wait_for(lambda: daemon.paths("quetzal") and not daemon.paths("ocelot"), "a rewritten note")
    os.rename(root / "semantic" / "new.md", root / "procedural" / "moved.md")
    wait_for(lambda: daemon.paths("quetzal") == {"procedural/moved.md"}, "a moved note")
    (root / "procedural" / "moved.md").unlink()
    wait_for(lambda: not daemon.paths("quetzal"), "a deleted note")
    assert "procedural/moved.md" not in indexed_paths(root)
    status = daemon.daemon.status()
    assert status["last_event_at"] is not None and status["errors"] == 0


TEMP_NAMES = ("note.md.tmp", "4913", "note.md~", ".note.md.swp", "note.md___jb_tmp___")


def test_atomic_saves_are_followed(daemon: Running) -> None:
    """Write a temp file, then `os.replace` it onto the note: each editor's temp name."""
    root, note = daemon.root, daemon.root / "semantic" / "note.md"
    save(note, "# Note\n\nfirst the lemur\n")
    wait_for(lambda: daemon.paths("lemur") == {"semantic/note.md"}, "the first version")
    for i, temp_name in enumerate(TEMP_NAMES):
        temp = note.with_name(temp_name)
        save(temp, f"# Note\n\nsave number{i} via {temp_name}\n")
        os.replace(temp, note)
        wait_for(lambda i=i: daemon.paths(f"number{i}") == {"semantic/note.md"},
                 f"an atomic save through {temp_name}")
        assert not daemon.paths(f"number{i - 1}" if i else "lemur")
    assert {p for p in indexed_paths(root) if p.startswith("semantic/")} == {
        "semantic/alpha.md", "semantic/beta.md", "semantic/note.md"}
    assert daemon.daemon.stats.errors == 0


def test_vim_style_save_with_backup_is_followed(daemon: Running) -> None:
    root, note = daemon.root, daemon.root / "semantic" / "alpha.md"
    probe = note.with_name("4913")
    save(probe, "")
    probe.unlink()
    os.rename(note, note.with_name("alpha.md~"))
    save(note, "# Alpha\n\nthe okapi note\n")
    note.with_name("alpha.md~").unlink()
    wait_for(lambda: daemon.paths("okapi") == {"semantic/alpha.md"}, "a vim save")
    assert not daemon.paths("aardvark")
    assert "semantic/alpha.md" in indexed_paths(root)


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")  # watchdog's own
def test_directory_moves_are_followed(daemon: Running, tmp_path: Path) -> None:
    root = daemon.root
    for i in range(3):
        save(root / "semantic" / "proj" / f"n{i}.md", f"# N{i}\n\nthe wombat number {i}\n")
    wait_for(lambda: len(daemon.paths("wombat")) == 3, "a new folder's notes")
    os.rename(root / "semantic" / "proj", root / "procedural" / "proj2")
    want = {f"procedural/proj2/n{i}.md" for i in range(3)}
    wait_for(lambda: daemon.paths("wombat") == want, "a moved folder")
    os.rename(root / "procedural" / "proj2", tmp_path / "outside")
    wait_for(lambda: not daemon.paths("wombat"), "a folder moved out of the vault")
    os.rename(tmp_path / "outside", root / "episodic" / "back")
    want = {f"episodic/back/n{i}.md" for i in range(3)}
    wait_for(lambda: daemon.paths("wombat") == want, "a folder moved into the vault")
    shutil.rmtree(root / "episodic" / "back")
    wait_for(lambda: not daemon.paths("wombat"), "a deleted folder")
    assert not any(p.startswith("episodic/back/") for p in indexed_paths(root))


def test_a_burst_of_500_files_is_indexed_completely(daemon: Running) -> None:
    folder = daemon.root / "semantic" / "burst"
    folder.mkdir()
    for i in range(500):
        (folder / f"n{i:03}.md").write_text(f"# N{i}\n\nburstword item{i}\n", encoding="utf-8")
    want = {f"semantic/burst/n{i:03}.md" for i in range(500)}
    wait_for(lambda: daemon.paths("burstword", k=1000) == want, "all 500 files", timeout=60)
    assert daemon.paths("item499") == {"semantic/burst/n499.md"}
    shutil.rmtree(folder)
    wait_for(lambda: not daemon.paths("burstword", k=1000), "all 500 gone", timeout=60)
    assert daemon.daemon.stats.errors == 0


def test_polling_mode(tmp_path: Path, env: dict[str, str]) -> None:
    root = make_vault(tmp_path, NOTES, config=FAST_CONFIG + "polling = true\n")
    with running_daemon(root, env) as d:
        status, data = d.call("GET", "/status")
        assert status == 200
        assert data["watcher"] == {"mode": "polling", "reason": "configured"}
        save(root / "semantic" / "polled.md", "# Polled\n\nthe tapir note\n")
        wait_for(lambda: d.paths("tapir") == {"semantic/polled.md"}, "a note seen by polling")
        (root / "semantic" / "alpha.md").unlink()
        wait_for(lambda: not d.paths("aardvark"), "a delete seen by polling")


def test_a_dead_observer_is_replaced_by_polling(daemon: Running) -> None:
    watcher = daemon.daemon.watcher
    assert watcher is not None and watcher.mode == "native"
    observer = watcher._observer
    for emitter in list(observer.emitters):  # the inotify thread dies; the observer lives on
        emitter.stop()
        emitter.join(DEADLINE)
    watcher.check()  # what the scheduler runs every 30 s
    assert watcher.mode == "polling" and "stopped" in watcher.reason
    assert daemon.call("GET", "/status")[1]["watcher"]["mode"] == "polling"
    save(daemon.root / "semantic" / "late.md", "# Late\n\nthe vicuna note\n")
    wait_for(lambda: daemon.paths("vicuna") == {"semantic/late.md"}, "a note after fallback")


def test_the_periodic_reconcile_catches_missed_events(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    config = FAST_CONFIG + "reconcile_minutes = 0.005\n"  # every 0.3 s
    root = make_vault(tmp_path, NOTES, config=config)
    with running_daemon(root, env) as d:
        assert d.daemon.watcher is not None
        d.daemon.watcher.stop()  # from now on, no event announces anything
        save(root / "semantic" / "missed.md", "# Missed\n\nthe jerboa note\n")
        wait_for(lambda: d.paths("jerboa") == {"semantic/missed.md"}, "the periodic reconcile")
        assert d.daemon.stats.drift >= 1


def test_a_second_daemon_on_the_same_vault_is_refused(daemon: Running,
                                                      env: dict[str, str]) -> None:
    with pytest.raises(VaultdError, match=rf"another vaultd daemon \(pid {os.getpid()}\)"):
        start_daemon_thread(daemon.root, env)
    assert daemon.call("GET", "/health", token=None)[0] == 200
    assert read_info(daemon.root)["port"] == daemon.port  # type: ignore[index]


@pytest.mark.slow
def test_stop_during_a_burst_commits_the_batch_and_releases_everything(
        root: Path, env: dict[str, str]) -> None:
    folder = root / "semantic" / "burst"
    folder.mkdir()  # before the start: the batch in flight holds file events, not a folder's
    d = start_daemon_thread(root, env)

    def burst() -> None:
        for i in range(300):
            (folder / f"n{i:03}.md").write_text(f"# N{i}\n\nstopword{i} gnu\n", encoding="utf-8")

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        wait_for(lambda: d.daemon.stats.pending_since is not None, "a batch in flight")
        assert d.stop() == 0
    finally:
        writer.join()
    assert not info_path(root).exists()
    assert lock_is_free(root)
    committed = {p for p in indexed_paths(root) if p.startswith("semantic/burst/")}
    assert committed, "the batch in flight was dropped"
    assert all((root / p).is_file() for p in committed)
    with running_daemon(root, env) as again:  # the rest is caught up at start
        want = {f"semantic/burst/n{i:03}.md" for i in range(300)}
        assert again.paths("gnu", k=1000) == want
    assert not info_path(root).exists() and lock_is_free(root)


# -- the process commands, in subprocesses


def daemon_pids(root: Path) -> set[int]:
    """Live `vaultd --vault ROOT run` processes (Linux: read from /proc)."""
    wanted = ["--vault", str(root), "run"]
    pids = set()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if any(argv[i:i + 3] == wanted for i in range(len(argv))) and pid_alive(
                    int(proc.name)):
                pids.add(int(proc.name))
    return pids


@pytest.fixture
def no_daemon_left(root: Path) -> Iterator[None]:
    yield
    for pid in daemon_pids(root):  # only this test's daemons: the vault path is unique
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def dead_or_zombie(pid: int) -> bool:
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel the usual way
        return not pid_alive(pid)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def status_json(root: Path, env: dict[str, str]) -> dict[str, Any]:
    result = vaultd(root, "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.usefixtures("no_daemon_left")
def test_start_status_run_and_stop(root: Path, env: dict[str, str]) -> None:
    started = vaultd(root, "start", env=env)
    assert started.returncode == 0, started.stderr
    info = read_info(root)
    assert info is not None and f"pid {info['pid']}" in started.stdout
    pid, port = int(info["pid"]), int(info["port"])
    assert port != 52525
    status, health = call(port, "GET", "/health")  # answers as soon as start returned
    assert status == 200 and health["model"] == "hash-256"

    data = status_json(root, env)
    daemon = data["daemon"]
    assert data["pid"] == pid and daemon["running"] and daemon["pid"] == pid
    assert daemon["port"] == port
    for key in ("queue", "index_lag", "uptime", "last_event_at"):
        assert key in daemon
    assert daemon["watcher"]["mode"] == "native"

    again = vaultd(root, "start", env=env)
    assert again.returncode == 0 and f"pid {pid}" in again.stdout
    assert int(read_info(root)["pid"]) == pid  # type: ignore[index]
    if Path("/proc/self/cmdline").exists():
        assert daemon_pids(root) == {pid}

    run = vaultd(root, "run", env=env)
    assert run.returncode == 2
    assert f"another vaultd daemon (pid {pid}) is running" in run.stderr

    stopped = vaultd(root, "stop", env=env)
    assert stopped.returncode == 0 and f"(pid {pid}) stopped" in stopped.stdout
    assert not pid_alive(pid)
    assert not info_path(root).exists() and lock_is_free(root)
    assert status_json(root, env)["daemon"] == {"running": False}
    assert "no daemon running" in vaultd(root, "stop", env=env).stdout


@pytest.mark.slow
@pytest.mark.usefixtures("no_daemon_left")
def test_a_stale_lock_from_a_killed_daemon_is_recovered(root: Path, env: dict[str, str]) -> None:
    assert vaultd(root, "start", env=env).returncode == 0
    old = int(read_info(root)["pid"])  # type: ignore[index]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: dead_or_zombie(old), "the killed daemon to die")
    # Nobody may have reaped it yet (init in a container often never does): a zombie is no
    # daemon, and must not pass for one.
    assert not pid_alive(old)
    assert info_path(root).exists() and (root / ".vaultd" / "daemon.lock").exists()
    started = vaultd(root, "start", env=env)
    assert started.returncode == 0, started.stderr
    new = int(read_info(root)["pid"])  # type: ignore[index]
    assert new != old and f"pid {new}" in started.stdout
    assert status_json(root, env)["daemon"]["pid"] == new
    assert vaultd(root, "stop", env=env).returncode == 0
    assert lock_is_free(root)


@pytest.mark.slow
def test_start_fails_with_the_reason(root: Path, env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = vaultd(root, "start", env={**env, "VAULTD_SERVER_PORT": str(port)})
    assert result.returncode == 2
    assert "the daemon exited at start" in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert read_info(root) is None and lock_is_free(root)


def test_the_token_is_private_and_never_empty(root: Path) -> None:
    path = root / ".vaultd" / "token"
    token = ensure_token(root)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(root) == token
    path.chmod(0o644)
    assert ensure_token(root) == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n", encoding="utf-8")
    fresh = ensure_token(root)
    assert len(fresh) >= 32 and read_token(root) == fresh
    assert sorted(p.name for p in path.parent.glob("token*")) == ["token"]


@pytest.mark.slow
def test_sigterm_exits_0_and_cleans_up(root: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root), "run",
                             "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: read_info(root) or proc.poll() is not None, "the daemon to start")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not info_path(root).exists() and lock_is_free(root)
    log = (root / ".vaultd" / "daemon.log").read_text(encoding="utf-8")
    assert f"pid {proc.pid} stopped" in log


NUMPY_WATCH = """\
import os, sys

class Watch:
    \"\"\"Notes OPENBLAS_NUM_THREADS when numpy is first imported (OpenBLAS reads it then).\"\"\"
    seen = False

    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not self.seen:
            self.seen = True
            with open(sys.argv[1], "w") as fh:
                fh.write(os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
        return None

sys.meta_path.insert(0, Watch())
from vaultd.cli import main
main(sys.argv[2:])
"""


def test_the_daemon_limits_openblas_to_one_thread_before_numpy_loads(
        root: Path, env: dict[str, str], tmp_path: Path) -> None:
    """`vaultd run` sets OPENBLAS_NUM_THREADS=1 before anything imports numpy: OpenBLAS reads
    it once, when numpy loads, and its spinning threads took the core the query embedding
    needs (10k chunks: /search p50 7.0-8.3 -> 5.5-5.7 ms). The real entry point, in a process
    of its own, with an import hook noting the variable when numpy loads."""
    env = {k: v for k, v in env.items() if k != "OPENBLAS_NUM_THREADS"}
    note = tmp_path / "openblas.txt"
    proc = subprocess.Popen([sys.executable, "-c", NUMPY_WATCH, str(note), "--vault", str(root),
                             "run", "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: read_info(root) or proc.poll() is not None, "the daemon to start")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert note.read_text() == "1"


# -- the client: fallback and no second model


PROBE = """\
import json, sys
from vaultd.cli import main
code = 0
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code
print("@@" + json.dumps({"code": code, "numpy": "numpy" in sys.modules,
                         "onnxruntime": "onnxruntime" in sys.modules}))
"""


def probe(root: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], str, str]:
    """Run the CLI in a fresh interpreter; report which heavy modules it imported."""
    result = subprocess.run([sys.executable, "-c", PROBE, "--vault", str(root), *args],
                            env=env, capture_output=True, text=True, timeout=120)
    out, _, marker = result.stdout.rpartition("@@")
    assert marker, result.stderr
    return json.loads(marker), out, result.stderr


@pytest.mark.slow
def test_daemon_down_searches_in_process_and_says_so_once(root: Path,
                                                          env: dict[str, str]) -> None:
    assert vaultd(root, "index", env=env).returncode == 0
    result = vaultd(root, "search", "--json", "bobcat", env=env)
    assert result.returncode == 0, result.stderr
    assert [h["path"] for h in json.loads(result.stdout)["hits"]][0] == "semantic/beta.md"
    assert result.stderr.count("no daemon running; loading the model in-process") == 1
    embed = vaultd(root, "embed", "--json", "bobcat", env=env)
    assert embed.returncode == 0 and json.loads(embed.stdout)["dims"] == 256
    assert embed.stderr.count("no daemon running") == 1


def test_daemon_up_answers_without_numpy_or_onnxruntime(daemon: Running,
                                                        env: dict[str, str]) -> None:
    modules, out, err = probe(daemon.root, env, "search", "--json", "bobcat")
    assert modules == {"code": 0, "numpy": False, "onnxruntime": False}, err
    assert "no daemon running" not in err
    via_daemon = json.loads(out)
    assert via_daemon == daemon.search("bobcat", k=10, mode="hybrid")
    assert via_daemon["hits"][0]["path"] == "semantic/beta.md"
    modules, out, err = probe(daemon.root, env, "embed", "--json", "bobcat")
    assert modules == {"code": 0, "numpy": False, "onnxruntime": False}, err
    assert json.loads(out)["model"] == "hash-256"


def test_the_library_routes_through_the_daemon(daemon: Running, env: dict[str, str]) -> None:
    with open_vault(daemon.root, env=env) as vault:
        hits = vault.search("caracal", k=3)
        assert vault.route == "daemon" and hits[0].path == "procedural/gamma.md"
        assert vault.embed(["caracal"]).shape == (1, 256) and vault.route == "daemon"


class _Failing(BaseHTTPRequestHandler):
    requests: list[str]
    json_body = True

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self) -> None:
        self.requests.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (json.dumps({"error": "model on fire"}).encode() if self.json_body
                else b"<html>Internal Server Error</html>")
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - stdlib naming


@pytest.fixture(params=["json", "html"])
def failing_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """A vault on the real default model whose daemon.json points at a live pid (ours) and a
    server that answers every request with 500."""
    root = make_vault(tmp_path, NOTES, name="failing", config="[server]\nport = 0\n")
    seen: list[str] = []
    handler = type("H", (_Failing,), {"requests": seen, "json_body": request.param == "json"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ensure_token(root)
    info_path(root).write_text(json.dumps({"pid": os.getpid(), "host": "127.0.0.1",
                                           "port": server.server_address[1]}), encoding="utf-8")
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_failing_daemon_is_retried_once_then_a_clear_error(
        failing_daemon: list[str], tmp_path: Path) -> None:
    root = tmp_path / "failing"
    env = env_for(tmp_path)
    del env["VAULTD_EMBEDDING_MODEL"]  # the real model: a fallback would import onnxruntime
    modules, out, err = probe(root, env, "search", "--json", "bobcat")
    assert modules == {"code": 2, "numpy": False, "onnxruntime": False}, err
    assert failing_daemon == ["/search", "/search"]
    assert "running but failing" in err and "--local" in err and out.strip() == ""
    modules, _, err = probe(root, env, "embed", "bobcat")
    assert modules["code"] == 2 and not modules["onnxruntime"]
    assert failing_daemon[2:] == ["/embed", "/embed"] and "running but failing" in err
    with pytest.raises(DaemonError, match="running but failing"):
        open_vault(root, env=env).search("bobcat")


@pytest.mark.slow
def test_local_forces_in_process(failing_daemon: list[str], tmp_path: Path) -> None:
    root = tmp_path / "failing"
    env = env_for(tmp_path)
    assert vaultd(root, "index", env=env).returncode == 0
    result = vaultd(root, "search", "--local", "--json", "bobcat", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hits"][0]["path"] == "semantic/beta.md"
    assert "no daemon running" not in result.stderr
    assert failing_daemon == []


def test_searches_are_recorded_as_recalls_without_waiting_for_the_writer(
        daemon: Running) -> None:
    """Recall promotion still counts searches made through the daemon; the recalls are written
    by a thread of their own, so a search is answered even while the index is write-locked."""
    store = Store(layout.index_path(daemon.root))
    try:
        with store.transaction():  # holds the write lock, as a long batch would
            started = time.monotonic()
            answer = daemon.search("caracal", k=3, mode="hybrid")
            assert answer["hits"] and time.monotonic() - started < 5.0
        wait_for(lambda: store.conn.execute(
            "SELECT count(*) FROM recalls WHERE query = 'caracal'").fetchone()[0] > 0,
            "the search's recalls")
    finally:
        store.close()


def test_new_entries_are_connected_once_the_vault_is_quiet(daemon: Running) -> None:
    """Connect runs after indexing, but only once events stop (it reads every entry): a burst
    of edits is indexed batch after batch without waiting for it, then linked."""
    store = Store(layout.index_path(daemon.root))
    try:
        def edges() -> int:
            return sum(1 for _ in store.links())

        before = edges()
        text = "# Twin\n\nThe okapi grazes beside the river at dawn.\n"
        for name in ("okapi-a.md", "okapi-b.md"):
            save(daemon.root / "semantic" / name, text)
        wait_for(lambda: edges() > before, "the twins linked by the post-batch connect")
        wait_for(lambda: daemon.call("GET", "/health")[1]["connect_pending"] is False,
                 "/health to say no connect is pending")
        path = dict(store.conn.execute("SELECT id, path FROM entries").fetchall())
        linked = [(path[a], path[b]) for a, b, _ in store.links()
                  if {path[a], path[b]} == {"semantic/okapi-a.md", "semantic/okapi-b.md"}]
        assert sorted(linked) == [("semantic/okapi-a.md", "semantic/okapi-b.md"),
                                  ("semantic/okapi-b.md", "semantic/okapi-a.md")]
    finally:
        store.close()


@pytest.mark.slow
def test_the_heap_is_trimmed_once_searches_pause(tmp_path: Path, env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What a burst of searches freed goes back to the system once they pause (glibc keeps
    it otherwise: ~17 MB at 100k chunks); not while they go on, and only once per pause."""
    from vaultd.daemon import reads

    trims: list[float] = []
    monkeypatch.setattr(reads, "TRIM_AFTER", 0.3)
    monkeypatch.setattr(reads, "trim_heap", lambda: trims.append(time.monotonic()))
    root = make_vault(tmp_path, {"semantic/a.md": "# A\n\nrestic backups every night.\n"},
                      config=FAST_CONFIG)
    with running_daemon(root, env) as up:
        wait_for(lambda: up.call("GET", "/status")[1]["indexing"] is False, "index done")
        time.sleep(0.8)
        before = len(trims)
        searched = time.monotonic()
        assert up.call("POST", "/search", {"query": "restic"})[0] == 200
        wait_for(lambda: len(trims) > before, "a trim after the search")
        assert trims[-1] - searched >= 0.3
        time.sleep(1.0)
        assert len(trims) == before + 1  # no search since: nothing more to give back


def test_the_recall_writer_survives_an_index_it_cannot_open_yet(tmp_path: Path) -> None:
    """The recalls thread opens the index on its first item: when that fails (the index was
    deleted or replaced that moment), one recall is lost, not every later one."""
    from conftest import fake_embedder

    from vaultd.daemon.recalls import RecallWriter
    from vaultd.vault import open_vault

    root = make_vault(tmp_path, {"semantic/kiln.md": "# Kiln\n\nThe kiln thermocouple "
                                 "reads 40 degrees low above 1000 C.\n"})
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        hits = vault.search("kiln thermocouple", k=3)
    index = layout.index_path(root)
    moved = index.with_name("index.db.away")
    index.rename(moved)
    index.mkdir()  # a directory where the index should be: opening it fails
    writer = RecallWriter(root)
    try:
        writer.put((list(hits), "kiln thermocouple", time.time()))
        deadline = time.monotonic() + 10
        while not writer._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # the first item's open has failed by now
        index.rmdir()
        moved.rename(index)
        writer.put((list(hits), "thermocouple offset", time.time()))
    finally:
        writer.close()
    assert writer._thread is not None and not writer._thread.is_alive()
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        counts = vault.store.recall_counts()
    assert counts.get(("semantic/kiln.md", "Kiln")) == 1  # the second query's; the first lost


def test_recalls_are_written_once_searches_pause(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Written right after each search, a search's recalls took the GIL and a core while its
    response went out and the next query was embedded. Now they wait until searches pause (or
    RECALL_WAIT passes), and none is lost, closing included."""
    from conftest import fake_embedder

    from vaultd.daemon import recalls
    from vaultd.lifecycle import promote
    from vaultd.vault import open_vault

    root = make_vault(tmp_path, {"semantic/kiln.md": "# Kiln\n\nThe kiln thermocouple "
                                 "reads 40 degrees low above 1000 C.\n"})
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        hits = vault.search("kiln thermocouple", k=3)
    written: list[tuple[str, float]] = []
    real = promote.record_recalls

    def record(store: object, found: list[object], query: str, now: float) -> None:
        written.append((query, time.monotonic()))
        real(store, found, query, now)  # type: ignore[arg-type]

    monkeypatch.setattr(promote, "record_recalls", record)
    monkeypatch.setattr(recalls, "RECALL_QUIET", 0.5)
    writer = recalls.RecallWriter(root)
    try:
        for i in range(5):  # a burst: 20 ms apart
            writer.put((list(hits), f"kiln query {i}", time.time()))
            time.sleep(0.02)
        last = time.monotonic()
        wait_for(lambda: len(written) == 5, "the burst's recalls")
        assert min(t for _, t in written) >= last + 0.4  # none while the burst went on
        writer.put((list(hits), "thermocouple at close", time.time()))
    finally:
        writer.close()  # closing writes what waits
    assert [q for q, _ in written] == [f"kiln query {i}" for i in range(5)] + [
        "thermocouple at close"]
    with open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path)) as vault:
        assert vault.store.recall_counts().get(("semantic/kiln.md", "Kiln")) == 6
