"""Faults of a shared PostgreSQL index as a user meets them, against a real server: the server
down at the daemon's start, restarted under a running daemon, refusing writes, and two vaults
pointed at one database by mistake. Each is one line in `vaultd status` and the log, retried
where waiting helps, and what changed meanwhile is indexed once the database is back.

The server here is one of the module's own (pgserver, in a tmp dir), so that a test can stop
and start it without disturbing the session's server that other tests use."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import FAST_CONFIG, call, env_for, vaultd, wait_for
from pg_server import started_server

postgres = pytest.mark.postgres

NOTE = "# Deploy\n\n## Rollback\nfly releases rollback v41 zebracorn\n"
LATER = "# Outage\n\n## Written while the database was down\nquokkafish survived the outage\n"


class OwnServer:
    """A PostgreSQL of this module's own, which a test may stop and start again."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.uri = str(server.get_uri())

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata,
               user=self.server.system_user)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def database(self, name: str) -> str:
        import psycopg

        self.start()
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        head, _, query = self.uri.partition("?")
        return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    with started_server("vaultd-pgfaults-") as server:
        yield OwnServer(server)


@pytest.fixture
def own_url(own_server: OwnServer, request: pytest.FixtureRequest) -> Iterator[str]:
    url = own_server.database(f"faults_{request.node.name[5:40].lower()}")
    yield url
    own_server.start()  # the next test finds it running
    from vaultd.store.postgres.pool import drop_pools

    drop_pools()


class Threaded:
    """A `Daemon` running in a thread, started without waiting for its first index."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        from vaultd.daemon.process import Daemon
        from vaultd.vault import open_vault

        self.root = root
        self.daemon = Daemon(open_vault(root, env=env, daemon="never"), log_to_stderr=False)
        self.thread = threading.Thread(target=self.daemon.run, name="faults-daemon",
                                       daemon=True)
        self.thread.start()
        wait_for(lambda: self.daemon.server is not None, "the daemon to serve")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from vaultd.daemon.discovery import read_token

        return call(int(self.daemon.server.port), method, path, body,
                    token=read_token(self.root), timeout=60)

    def status(self) -> dict[str, Any]:
        code, data = self.call("GET", "/status")
        assert code == 200, data
        return data

    def search(self, word: str) -> tuple[int, Any]:
        return self.call("POST", "/search", {"query": word, "k": 10, "mode": "bm25"})

    def finds(self, word: str) -> set[str]:
        code, data = self.search(word)
        return {hit["path"] for hit in data["hits"]} if code == 200 else set()

    def log(self) -> str:
        return (self.root / ".vaultd" / "daemon.log").read_text(encoding="utf-8")

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the daemon did not stop"


def a_vault(tmp_path: Path, name: str = "vault") -> Path:
    from conftest import make_vault

    return make_vault(tmp_path, {"semantic/deploy.md": NOTE}, name=name, config=FAST_CONFIG)


# ------------------------------------------------------------------ 1. down at the start


@postgres
@pytest.mark.slow
def test_a_daemon_started_while_the_server_is_down_waits_says_why_and_indexes_once_up(
        tmp_path: Path, own_server: OwnServer, own_url: str) -> None:
    root = a_vault(tmp_path)
    env = env_for(tmp_path, VAULTD_INDEX_URL=own_url, VAULTD_DAEMON_LEASE_SECONDS="3",
                  VAULTD_DAEMON_LEASE_RENEW_SECONDS="0.5")
    own_server.stop()
    daemon = Threaded(root, env)
    try:
        fault = wait_for(lambda: daemon.status()["index_fault"], "the status to say why")
        assert " unreachable since " in fault and "retrying (next in " in fault, fault
        assert fault.startswith("postgresql://") and "faults_" in fault, fault
        code, answer = daemon.search("zebracorn")
        assert code == 503, answer  # not a 500, and not an empty answer
        assert "unreachable since" in str(answer), answer
        shown = vaultd(root, "status", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "index      postgresql://" in shown.stdout and "unreachable" in shown.stdout
        assert daemon.thread.is_alive()
        # written while the database is down: no watcher runs yet; the reconcile finds it
        (root / "semantic" / "outage.md").write_text(LATER, encoding="utf-8")

        own_server.start()
        wait_for(lambda: daemon.finds("quokkafish") == {"semantic/outage.md"},
                 "the note written meanwhile to be indexed", timeout=90)
        assert daemon.finds("zebracorn") == {"semantic/deploy.md"}
        assert daemon.status()["index_fault"] is None
        log = daemon.log()
        assert log.count("unreachable since") == 1, log  # one line, not one per retry
        assert "answers again after" in log and "Traceback" not in log, log
    finally:
        daemon.stop()


# ------------------------------------------------------------------ 2. restarted mid-run


@postgres
@pytest.mark.slow
def test_a_server_restarted_under_a_running_daemon_is_503_briefly_then_catches_up(
        tmp_path: Path, own_server: OwnServer, own_url: str) -> None:
    root = a_vault(tmp_path)
    env = env_for(tmp_path, VAULTD_INDEX_URL=own_url, VAULTD_DAEMON_LEASE_SECONDS="3",
                  VAULTD_DAEMON_LEASE_RENEW_SECONDS="0.5")
    daemon = Threaded(root, env)
    try:
        wait_for(lambda: daemon.finds("zebracorn") == {"semantic/deploy.md"},
                 "the first index", timeout=60)
        wait_for(lambda: daemon.status()["writer"]["leads"], "the daemon to lead")
        memory = root / "MEMORY.md"
        before = memory.read_bytes()

        own_server.stop()
        # the watcher sees this edit while the database is down: its batch fails
        (root / "semantic" / "outage.md").write_text(LATER, encoding="utf-8")
        code, answer = wait_for(lambda: (r := daemon.search("zebracorn"))[0] != 200 and r,
                                "a search to meet the outage")
        assert code == 503 and "unreachable" in str(answer), answer
        fault = wait_for(lambda: daemon.status()["index_fault"], "the status to say why")
        assert "unreachable since" in fault, fault
        wait_for(lambda: not daemon.status()["writer"]["leads"],
                 "the leader to step down: it cannot renew its lease")

        own_server.start()
        wait_for(lambda: daemon.finds("quokkafish") == {"semantic/outage.md"},
                 "the edit of the outage to be indexed", timeout=90)
        status = wait_for(lambda: (s := daemon.status())["writer"]["leads"] and s,
                          "the lease re-taken (not assumed)")
        assert status["index_fault"] is None
        assert "is now the leader" in daemon.log().split("unreachable since")[-1]
        assert memory.read_bytes() == before  # nothing written twice meanwhile
        assert "Traceback" not in daemon.log(), daemon.log()
    finally:
        daemon.stop()


# ------------------------------------------------------------------ 3. writes refused


def read_only(server_uri: str, database: str, on: str) -> None:
    """Make the database refuse writes (or take them again), as a full disk would: its pooled
    sessions are ended so that new ones take the setting. The lease's own session is left,
    so the daemon stays the leader and its index writes are what fails."""
    import psycopg

    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = {on}")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                     "%s AND application_name <> 'vaultd-lease'", (database,))



@postgres
@pytest.mark.slow
def test_a_database_that_refuses_writes_is_said_searched_and_indexed_once_it_takes_them(
        tmp_path: Path, own_server: OwnServer, own_url: str) -> None:
    root = a_vault(tmp_path)
    env = env_for(tmp_path, VAULTD_INDEX_URL=own_url)
    database = own_url.partition("?")[0].rsplit("/", 1)[-1]
    daemon = Threaded(root, env)
    try:
        wait_for(lambda: daemon.finds("zebracorn") == {"semantic/deploy.md"},
                 "the first index", timeout=60)
        read_only(own_server.uri, database, "on")
        (root / "semantic" / "outage.md").write_text(LATER, encoding="utf-8")
        fault = wait_for(lambda: daemon.status()["index_fault"], "the status to say why")
        assert "refuses writes since" in fault and database in fault, fault
        assert daemon.finds("zebracorn") == {"semantic/deploy.md"}  # search still answers
        assert "refuses writes" in daemon.log()

        read_only(own_server.uri, database, "off")
        wait_for(lambda: daemon.finds("quokkafish") == {"semantic/outage.md"},
                 "the note to be indexed once writes work", timeout=90)
        # the reconcile that wrote it clears the line (the search may see its commit first)
        wait_for(lambda: daemon.status()["index_fault"] is None, "the line to clear",
                 timeout=10)
    finally:
        daemon.stop()


# ------------------------------------------------------------------ 4. two vaults, one database


@postgres
@pytest.mark.slow
def test_a_second_vault_on_the_same_database_is_refused_and_deletes_nothing(
        tmp_path: Path, own_url: str) -> None:
    from conftest import make_vault

    first = a_vault(tmp_path, "first")
    other = make_vault(tmp_path, {"semantic/recipes.md": "# Bread\n\nflour water salt\n"},
                       name="other", config=FAST_CONFIG)
    env = env_for(tmp_path, VAULTD_INDEX_URL=own_url)
    done = vaultd(first, "index", env=env)
    assert done.returncode == 0, done.stderr

    refused = vaultd(other, "index", env=env)
    # exit 2: every refusal of vaultd's CLI is one line and 2 (cli.base.expected_errors)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip()
    assert str(first) in line and str(other) in line, line  # names both
    assert "another vault" in line and "nothing was written" in line, line
    # the first vault's rows are all there, and the other's never went in
    found = vaultd(first, "search", "zebracorn", "--local", "--mode", "bm25", env=env)
    assert "semantic/deploy.md" in found.stdout, found.stdout + found.stderr
    again = vaultd(first, "index", env=env)
    assert again.returncode == 0 and "deleted" not in again.stdout.replace("0 deleted", ""), (
        again.stdout)

    # its daemon says so in one line too, and keeps refusing without deleting anything
    daemon = Threaded(other, env)
    try:
        fault = wait_for(lambda: daemon.status()["index_fault"], "the status to say why")
        assert str(first) in fault and str(other) in fault, fault
        assert daemon.log().count("holds another vault's notes") == 1
        code, answer = daemon.search("zebracorn")  # never the other vault's notes as its own
        assert code == 503 and "another vault" in str(answer), answer
        # it does not contend for the lease: leading, it would run the lifecycle and flush
        # from the other vault's index into this vault's files
        assert not daemon.status()["writer"]["leads"]
        assert "is now the leader" not in daemon.log()
    finally:
        daemon.stop()
    assert "semantic/deploy.md" in vaultd(first, "search", "zebracorn", "--local", "--mode",
                                          "bm25", env=env).stdout


@postgres
def test_clones_of_one_vault_share_the_database_and_keep_being_recognised(
        tmp_path: Path, own_url: str) -> None:
    from vaultd.indexer import Indexer  # noqa: F401 - the check runs in its reconcile
    from vaultd.vault import open_vault
    from vaultd.vault_identity import ID_META, LOCAL_FILE

    first = a_vault(tmp_path, "first")
    clone = tmp_path / "clone"  # a teammate's clone of the vault repository
    shutil.copytree(first, clone, ignore=shutil.ignore_patterns(".vaultd"))
    (clone / ".vaultd").mkdir()
    shutil.copy2(first / ".vaultd" / "config.toml", clone / ".vaultd" / "config.toml")
    env = env_for(tmp_path, VAULTD_INDEX_URL=own_url)

    vault = open_vault(first, env=env, daemon="never")
    vault.index()
    held = vault.store.get_meta(ID_META)
    assert held and (first / ".vaultd" / LOCAL_FILE).read_text().strip() == held
    vault.close()

    teammate = open_vault(clone, env=env, daemon="never")
    teammate.index()  # recognised by its notes the first time, then by the id
    assert (clone / ".vaultd" / LOCAL_FILE).read_text().strip() == held
    # the notes moved wholesale later: still the same vault (no second look at the paths)
    (clone / "semantic").rename(clone / "facts")
    report = teammate.index()
    assert report.moved or report.new, report.summary()
    teammate.close()
