"""One leader, many readers: the lease on a shared PostgreSQL index (`store.postgres.lease`),
its policy (`daemon.leadership`), and daemons sharing one database, against a real server.

The lease's length is a parameter, so a leader "paused" past its lease is simulated by not
renewing a short lease (or by a clock that jumps), never by sleeping fifteen seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import FAST_CONFIG, call, env_for, wait_for

from vaultd.writer_role import NotWriterError, WriterRole

postgres = pytest.mark.postgres


# ------------------------------------------------------------------ the role as a value


def test_a_lease_role_writes_only_when_it_leads_whatever_the_host_name_says() -> None:
    leader = WriterRole("other-host", "here", lease="leader (lease renewed 1s ago)", leads=True)
    reader = WriterRole("here", "here", lease="reader (leader: a pid 1, lease until 10:00:00)")
    assert leader.writes and not reader.writes
    leader.check("flush")
    with pytest.raises(NotWriterError, match="only the leader of the shared index"):
        reader.check("flush")
    assert reader.summary() == "reader (leader: a pid 1, lease until 10:00:00)"
    for role in (leader, reader):
        assert WriterRole.from_dict(json.loads(json.dumps(role.to_dict()))) == role
    assert "lease" not in WriterRole("", "here").to_dict()  # the SQLite default's JSON as before


# ------------------------------------------------------------------ the lease, in SQL


def lease(url: str, name: str) -> Any:
    from vaultd.store.postgres.lease import PgLease

    return PgLease(url, f"{name}:1:abcd", name, 1)


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[Any, Any]]:
    a, b = lease(pg_url, "alpha"), lease(pg_url, "beta")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@postgres
def test_one_contender_holds_the_lease_and_a_second_is_refused(two: tuple[Any, Any]) -> None:
    a, b = two
    assert b.current() is None  # no daemon ever led
    state = a.acquire(30)
    assert state is not None and state.holder == "alpha:1:abcd" and state.live
    assert b.acquire(30) is None
    seen = b.current()
    assert seen is not None and (seen.host, seen.pid) == ("alpha", 1) and seen.live
    assert a.holds() and not b.holds()
    assert a.acquire(30) is not None  # asking again as the holder is a renewal, not a second lock


@postgres
def test_renewing_moves_the_expiry_and_only_the_holder_can(two: tuple[Any, Any]) -> None:
    a, b = two
    first = a.acquire(5)
    renewed = a.renew(30)
    assert first is not None and renewed is not None
    assert renewed.expires_at > first.expires_at and renewed.renewed_at >= first.renewed_at
    assert b.renew(30) is None  # not its lease
    assert a.holds()


@postgres
def test_a_paused_holder_fails_its_fencing_check_and_is_taken_over(
        two: tuple[Any, Any]) -> None:
    a, b = two
    assert a.acquire(0.4) is not None
    assert b.acquire(30) is None  # a live lease: refused
    time.sleep(0.6)  # a pauses (it does not renew) past its short lease
    assert not a.holds()  # waking, its fencing check fails before it writes anything
    state = b.acquire(30)  # the expired lease is taken over, the paused session ended
    assert state is not None and state.holder == "beta:1:abcd"
    assert b.holds()
    assert a.renew(30) is None  # its session was ended: the lock went with it
    assert not a.holds()
    assert a.acquire(30) is None  # back as a contender, it is refused: b leads


@postgres
def test_a_holder_whose_session_dies_is_taken_over_at_once_though_its_lease_lives(
        two: tuple[Any, Any]) -> None:
    a, b = two
    assert a.acquire(60) is not None
    assert b.acquire(60) is None
    a.close()  # as kill -9 does: the connection closes, the advisory lock frees
    state = wait_for(lambda: b.acquire(60), "b to take the lock the dead session freed", 10)
    assert state.holder == "beta:1:abcd"


@postgres
def test_a_released_lease_is_taken_at_the_next_try(two: tuple[Any, Any]) -> None:
    a, b = two
    assert a.acquire(60) is not None
    a.release()
    assert not a.holds()
    assert b.acquire(60) is not None and b.holds()


# ------------------------------------------------------------------ the policy


class Clock:
    """A monotonic clock a test moves by hand (a pause the process does not see)."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def leadership(url: str, name: str, clock: Any = time.monotonic,
               events: list[str] | None = None) -> Any:
    from vaultd.daemon.leadership import Holder, Leadership
    from vaultd.store.postgres.lease import PgLease

    log = events if events is not None else []
    holder = Holder(f"{name}:1:x", name, 1)
    return Leadership(PgLease(url, holder.id, name, 1), holder, writer="", lease_seconds=0.8,
                      renew_seconds=0.2, on_gain=lambda: log.append("gain"),
                      on_lose=lambda reason: log.append(f"lose: {reason}"), clock=clock)


@postgres
def test_the_policy_elects_one_leader_says_so_in_one_line_and_fences_a_paused_one(
        pg_url: str) -> None:
    clock, a_events, b_events = Clock(), [], []  # type: ignore[var-annotated]
    a = leadership(pg_url, "alpha", clock, a_events)
    b = leadership(pg_url, "beta", events=b_events)
    try:
        a.tick()  # contends first: leads
        b.tick()
        assert a.leads() and a.fence() and a_events == ["gain"]
        assert not b.leads() and not b.fence() and b_events == []
        assert a.line() == "leader (lease renewed 0s ago)"
        assert b.line().startswith("reader (leader: alpha pid 1, lease until ")
        assert a.role().writes and not b.role().writes
        clock.now += 5  # alpha is paused past its lease (its own clock says so on waking) …
        time.sleep(0.9)  # … and the server's row expires meanwhile
        assert not a.fence()  # it steps down before any write
        assert a_events[-1].startswith("lose: its lease ran out")
        b.tick()
        assert b.leads() and b.fence() and b_events == ["gain"]
        a.tick()  # back as a contender: refused
        assert not a.leads() and a.line().startswith("reader (leader: beta pid 1")
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
@postgres
def test_the_policy_renews_in_its_thread_and_a_stopped_leader_hands_over(pg_url: str) -> None:
    a, b = leadership(pg_url, "alpha"), leadership(pg_url, "beta")
    try:
        a.start()
        b.start()
        time.sleep(1.5)  # longer than the lease: only renewals keep it
        assert a.leads() and a.fence() and not b.leads()
        a.stop()  # a clean stop releases the lease
        wait_for(b.leads, "beta to take over from a stopped leader", 5)
        assert b.fence()
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------ two daemons, one database

NOTE = "# Deploy\n\n## Rollback\nfly releases rollback v41 zebracorn\n"
DAY = "# 2026-01-05\n\n## 09:00 — rollback\nzebracorn rollback rehearsed on staging\n"


class Subprocess:
    """A daemon in a process of its own, which the test can kill -9."""

    def __init__(self, root: Path, env: dict[str, str], out: Path) -> None:
        self.root = root
        with open(out, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vaultd", "--vault", str(root), "run", "--quiet"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.out = out

    def status(self) -> dict[str, Any] | None:
        from vaultd.daemon.discovery import read_info, read_token

        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}: "
                                 + self.out.read_text(errors="replace")[-2000:])
        info = read_info(self.root)
        if not info or int(info["pid"]) != self.proc.pid:
            return None
        try:
            code, data = call(int(info["port"]), "GET", "/status",
                              token=read_token(self.root), timeout=10)
        except OSError:
            return None
        return data if code == 200 else None

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        from vaultd.daemon.discovery import read_info, read_token

        info = read_info(self.root)
        assert info
        return call(int(info["port"]), "POST", path, body, token=read_token(self.root),
                    timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".vaultd" not in p.relative_to(root).parts}


@pytest.mark.slow
@postgres
def test_two_daemons_on_one_database_one_leads_and_a_reader_takes_over_a_killed_leader(
        tmp_path: Path, pg_url: str) -> None:
    from conftest import make_vault

    from vaultd.daemon.discovery import info_path
    from vaultd.daemon.process import Daemon
    from vaultd.vault import open_vault

    # two "machines": two copies of one small vault, both daemons on one database
    a_root = make_vault(tmp_path, {"semantic/deploy.md": NOTE, "episodic/2026-01-05.md": DAY},
                        name="a", config=FAST_CONFIG)
    b_root = tmp_path / "b"
    shutil.copytree(a_root, b_root, ignore=shutil.ignore_patterns(".vaultd"))
    (b_root / ".vaultd").mkdir()
    shutil.copy2(a_root / ".vaultd" / "config.toml", b_root / ".vaultd" / "config.toml")
    env = env_for(tmp_path, VAULTD_INDEX_URL=pg_url, VAULTD_DAEMON_LEASE_SECONDS="3",
                  VAULTD_DAEMON_LEASE_RENEW_SECONDS="0.5")

    a = Subprocess(a_root, env, tmp_path / "a.out")
    b_daemon: Daemon | None = None
    thread = None
    try:
        first = wait_for(lambda: (s := a.status()) and s["writer"]["leads"]
                         and s["first_index_done"] and s, "the first daemon to lead and index",
                         timeout=60)
        assert first["writer"]["summary"].startswith("leader (lease renewed ")

        # the second machine's daemon: a reader that indexes nothing
        vault = open_vault(b_root, env=env, daemon="never")
        embedded: list[str] = []
        embedder = vault.embedder
        real_embed = embedder.embed

        def counting(texts: list[str], kind: Any = "document") -> Any:
            if kind == "document":
                embedded.extend(texts)
            return real_embed(texts, kind=kind)

        embedder.embed = counting  # type: ignore[method-assign]
        b_daemon = Daemon(vault, log_to_stderr=False)
        import threading

        thread = threading.Thread(target=b_daemon.run, name="reader-daemon", daemon=True)
        thread.start()
        b = b_daemon
        wait_for(lambda: info_path(b_root).exists() and b.server is not None,
                 "the second daemon to serve")

        def b_call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            from vaultd.daemon.discovery import read_token

            return call(int(b.server.port), method, path, body, token=read_token(b_root),
                        timeout=60)

        def b_status() -> dict[str, Any]:
            code, data = b_call("GET", "/status")
            assert code == 200, data
            return data

        def b_finds(word: str) -> set[str]:
            code, data = b_call("POST", "/search", {"query": word, "k": 20, "mode": "bm25"})
            assert code == 200, data
            return {hit["path"] for hit in data["hits"]}

        # exactly one leader; the reader answers search from the shared database
        status_b = wait_for(lambda: (s := b_status())["writer"]["summary"] != "reader (has "
                            "not read the lease yet)" and s, "the second daemon to contend")

        assert not status_b["writer"]["leads"] and not status_b["writer"]["writes"]
        assert status_b["writer"]["summary"].startswith(
            f"reader (leader: {first['writer']['host']} pid {a.proc.pid}, lease until ")
        assert status_b["watcher"]["mode"] == "off" and b.watcher is None and b.scheduler is None
        assert status_b["first_index_done"]  # `vaultd start --wait` need not wait on a reader
        assert (s := a.status()) and s["writer"]["leads"]
        assert b_finds("zebracorn") == {"semantic/deploy.md", "episodic/2026-01-05.md"}
        assert b.stats.batches == 0 and embedded == []  # it indexed nothing twice

        # nothing written twice: a flush and a lifecycle run asked of both; only the leader's
        # copy changes
        b_before = files(b_root)
        code, answer = b_call("POST", "/flush", {})
        assert code == 400 and "only the leader of the shared index" in answer["error"]
        code, answer = b_call("POST", "/lifecycle", {"phases": ["connect", "age"]})
        assert code == 400 and "only the leader of the shared index" in answer["error"]
        assert files(b_root) == b_before
        code, answer = a.post("/flush", {})
        assert code == 200 and answer["memory_written"], answer
        assert "zebracorn" in (a_root / "MEMORY.md").read_text(encoding="utf-8")
        shutil.copy2(a_root / "MEMORY.md", b_root / "MEMORY.md")  # the sync tool's part

        # what the reader's machine gets meanwhile (an entry added to a log, a note renamed, a
        # new note whose text the index holds already) is not indexed while it reads
        with (b_root / "episodic" / "2026-01-05.md").open("a", encoding="utf-8") as log:
            log.write("\n## 10:00 — quokka\nquokka migration planned\n")
        (b_root / "semantic" / "deploy.md").rename(b_root / "semantic" / "deploy-notes.md")
        shutil.copy(b_root / "semantic" / "deploy-notes.md", b_root / "semantic" / "copy.md")
        time.sleep(1.0)
        assert b_finds("quokka") == set() and embedded == []

        # kill -9 the leader: the reader takes over within 30 s
        killed = time.monotonic()
        a.kill()
        wait_for(lambda: b_status()["writer"]["leads"], "the reader to take over", timeout=30)
        took = time.monotonic() - killed
        assert took < 30
        assert b_status()["writer"]["summary"].startswith("leader (lease renewed ")
        log = (b_root / ".vaultd" / "daemon.log").read_text(encoding="utf-8")
        assert "is now the leader of the shared index" in log

        # nothing lost: what changed meanwhile, and what changes now, is indexed by the new
        # leader, which embeds only that (every other content's vector is in the database)
        wait_for(lambda: b_finds("quokka") == {"episodic/2026-01-05.md"},
                 "the new leader's reconcile to index the entry it missed")
        assert b_finds("zebracorn") == {"semantic/deploy-notes.md", "semantic/copy.md",
                                        "episodic/2026-01-05.md"}
        (b_root / "semantic" / "wombat.md").write_text("# Wombat\nwombat burrow survey\n",
                                                       encoding="utf-8")
        wait_for(lambda: b_finds("wombat") == {"semantic/wombat.md"},
                 "the new leader's watcher to index a new note")
        assert embedded and all("quokka" in t or "wombat" in t for t in embedded), embedded

        # and it runs the writing jobs now
        code, answer = b_call("POST", "/flush", {})
        assert code == 200 and answer["memory_written"], answer
        assert "quokka" in (b_root / "MEMORY.md").read_text(encoding="utf-8")
    finally:
        a.kill()
        if b_daemon is not None and thread is not None:
            b_daemon.request_stop()
            thread.join(30)


@postgres
def test_a_process_without_a_daemon_writes_a_shared_index_only_while_no_daemon_leads(
        tmp_path: Path, pg_url: str) -> None:
    from conftest import fake_embedder, make_vault

    from vaultd.vault import open_vault

    root = make_vault(tmp_path, {"semantic/deploy.md": NOTE})
    other = lease(pg_url, "studio")
    try:
        with open_vault(root, env={"VAULTD_INDEX_URL": pg_url},
                        embedder=fake_embedder(tmp_path)) as vault:
            vault.index()
            assert other.acquire(60) is not None  # a daemon elsewhere leads
            role = vault.writer_role()
            assert not role.writes
            assert role.summary().startswith("reader (leader: studio pid 1, lease until ")
            memory = (root / "MEMORY.md").read_bytes()
            with pytest.raises(NotWriterError, match="only the leader of the shared index"):
                vault.flush()
            assert (root / "MEMORY.md").read_bytes() == memory
            other.release()
            assert vault.writer_role().writes
            assert vault.flush().memory_written
    finally:
        other.close()


@pytest.mark.slow
@postgres
def test_a_paused_leader_is_taken_over_and_on_waking_writes_nothing(tmp_path: Path,
                                                                   pg_url: str) -> None:
    from conftest import make_vault

    a_root = make_vault(tmp_path, {"semantic/deploy.md": NOTE}, name="a", config=FAST_CONFIG)
    b_root = tmp_path / "b"
    shutil.copytree(a_root, b_root, ignore=shutil.ignore_patterns(".vaultd"))
    (b_root / ".vaultd").mkdir()
    shutil.copy2(a_root / ".vaultd" / "config.toml", b_root / ".vaultd" / "config.toml")
    env = env_for(tmp_path, VAULTD_INDEX_URL=pg_url, VAULTD_DAEMON_LEASE_SECONDS="2",
                  VAULTD_DAEMON_LEASE_RENEW_SECONDS="0.3")
    a = Subprocess(a_root, env, tmp_path / "a.out")
    b: Subprocess | None = None
    try:
        wait_for(lambda: (s := a.status()) and s["writer"]["leads"] and s["first_index_done"],
                 "the first daemon to lead and index", timeout=60)
        b = Subprocess(b_root, env, tmp_path / "b.out")
        reader = b
        wait_for(lambda: (s := reader.status()) and s["writer"]["summary"].startswith(
            "reader (leader: "), "the second daemon to read", timeout=60)
        memory = (a_root / "MEMORY.md").read_bytes()

        os.killpg(a.proc.pid, signal.SIGSTOP)  # the leader pauses (a laptop's lid) …
        (a_root / "semantic" / "paused.md").write_text("# Paused\nplatypus while paused\n",
                                                       encoding="utf-8")
        wait_for(lambda: (s := reader.status()) and s["writer"]["leads"],
                 "the reader to take over the paused leader's lease", timeout=30)
        os.killpg(a.proc.pid, signal.SIGCONT)  # … and wakes: it must step down first
        wait_for(lambda: (s := a.status()) and not s["writer"]["leads"],
                 "the woken leader to say it reads")
        code, answer = a.post("/flush", {})
        assert code == 400 and "only the leader of the shared index" in answer["error"]
        time.sleep(1.0)  # the file event of the pause reaches its work loop meanwhile
        assert (a_root / "MEMORY.md").read_bytes() == memory
        code, found = b.post("/search", {"query": "platypus", "k": 5, "mode": "bm25"})
        assert code == 200 and found["hits"] == []  # its batch was dropped, not indexed
        log = (a_root / ".vaultd" / "daemon.log").read_text(encoding="utf-8")
        assert "is no longer the leader of the shared index" in log
    finally:
        for node in (a, b):
            if node is not None:
                node.kill()
