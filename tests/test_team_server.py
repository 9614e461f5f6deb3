"""A team server (issue 27, point 4): per-client tokens, named, revocable and stored hashed
(`vaultd token add|list|revoke`, `vaultd.daemon.client_tokens`); a daemon bound to a
non-loopback `[server] host` only with them, asking every network client for one, re-reading
the file so a revoked token is refused without a restart; the Host rule of `[server]
allowed_hosts`. Loopback mode is held unchanged by tests/test_server.py.

A wide bind in a test is 0.0.0.0 with port 0, reached through 127.0.0.1."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, call, env_for, running_daemon, start_daemon_thread, vaultd

from vaultd.cli import main
from vaultd.config import ServerSettings
from vaultd.daemon import guards
from vaultd.daemon.client_tokens import FILE, ClientTokens, digest
from vaultd.daemon.guards import ApiError
from vaultd.daemon.server import Server
from vaultd.errors import ConfigError, VaultdError

LOCAL_TOKEN = "the-daemons-own-local-token"


class FakeApp:
    """What the server's /health and /status need, and nothing else."""

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": "fake", "dims": 1, "uptime": 0.0}

    def status(self) -> dict[str, Any]:
        return {"pid": 1}


def state(tmp_path: Path) -> Path:
    (tmp_path / ".vaultd").mkdir(exist_ok=True)
    return tmp_path


# -- the tokens, through the library


def test_tokens_are_added_listed_and_revoked_through_the_library(tmp_path: Path) -> None:
    tokens = ClientTokens(state(tmp_path))
    assert tokens.entries() == [] and tokens.digests() == {}
    alice, alice_token = tokens.add("alice")
    _, bob_token = tokens.add("ci-runner.1")
    assert alice_token != bob_token and len(alice_token) >= 43  # 32 random bytes, base64url
    assert [c.name for c in tokens.entries()] == ["alice", "ci-runner.1"]
    assert alice.created.endswith("Z") and alice.sha256 == digest(alice_token)
    assert tokens.digests() == {"alice": digest(alice_token), "ci-runner.1": digest(bob_token)}
    gone = tokens.revoke("alice")
    assert gone.name == "alice"
    assert [c.name for c in ClientTokens(tmp_path).entries()] == ["ci-runner.1"]
    with pytest.raises(VaultdError, match="no client token named 'alice'.*ci-runner.1"):
        tokens.revoke("alice")


def test_the_file_holds_hashes_never_tokens_and_is_private(tmp_path: Path) -> None:
    tokens = ClientTokens(state(tmp_path))
    _, token = tokens.add("alice")
    path = tmp_path / ".vaultd" / FILE
    text = path.read_text(encoding="utf-8")
    assert token not in text and digest(token) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens.add("bob")  # a rewrite stays private too
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["", "bad name", "-dash-first", "a/b", "x" * 65, "ä"])
def test_a_bad_name_is_refused_with_the_rule(tmp_path: Path, name: str) -> None:
    with pytest.raises(VaultdError, match="letters, digits"):
        ClientTokens(state(tmp_path)).add(name)
    assert not (tmp_path / ".vaultd" / FILE).exists()


def test_a_taken_name_is_refused_and_the_first_token_kept(tmp_path: Path) -> None:
    tokens = ClientTokens(state(tmp_path))
    _, token = tokens.add("alice")
    with pytest.raises(VaultdError, match="'alice' exists already.*vaultd token revoke alice"):
        tokens.add("alice")
    assert tokens.digests() == {"alice": digest(token)}


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "not valid JSON"),
    ('{"version": 1}', "\"clients\" list"),
    ('{"version": 2, "clients": []}', "newer vaultd"),
    ('{"version": 1, "clients": [{"name": "a"}]}', "client 1 needs"),
    ('{"version": 1, "clients": [{"name": "a", "created": "x", "sha256": "abc"}]}', "bad name"),
])
def test_a_broken_or_newer_tokens_file_is_an_error_naming_it(tmp_path: Path, text: str,
                                                            problem: str) -> None:
    path = state(tmp_path) / ".vaultd" / FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as caught:
        ClientTokens(tmp_path).digests()
    assert str(path) in str(caught.value)
    with pytest.raises(ConfigError):  # and nothing is added on top of a file it cannot read
        ClientTokens(tmp_path).add("bob")
    assert path.read_text(encoding="utf-8") == text


def test_a_change_by_another_process_is_read_at_the_next_call(tmp_path: Path) -> None:
    daemon_view = ClientTokens(state(tmp_path))
    _, token = ClientTokens(tmp_path).add("alice")
    assert daemon_view.digests() == {"alice": digest(token)}
    ClientTokens(tmp_path).revoke("alice")  # within the same second: a new file, a new inode
    assert daemon_view.digests() == {}
    _, again = ClientTokens(tmp_path).add("alice")
    assert daemon_view.digests() == {"alice": digest(again)}
    (tmp_path / ".vaultd" / FILE).unlink()
    assert daemon_view.digests() == {}


# -- the tokens, through the CLI


def test_token_commands_add_list_and_revoke(tmp_path: Path) -> None:
    root = str(state(tmp_path))
    runner = CliRunner()
    added = runner.invoke(main, ["--vault", root, "token", "add", "alice"])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()  # stdout is the token alone: `TOKEN=$(vaultd token add x)`
    assert "\n" not in token and ClientTokens(tmp_path).digests() == {"alice": digest(token)}
    assert "shown once" in added.stderr

    listed = runner.invoke(main, ["--vault", root, "token", "list"])
    assert listed.exit_code == 0
    name, created = listed.stdout.strip().split("\t")
    assert name == "alice" and created == ClientTokens(tmp_path).entries()[0].created
    assert token not in listed.output and digest(token) not in listed.output

    twice = runner.invoke(main, ["--vault", root, "token", "add", "alice"])
    assert twice.exit_code == 2 and "exists already" in twice.stderr
    bad = runner.invoke(main, ["--vault", root, "token", "add", "no spaces"])
    assert bad.exit_code == 2 and "letters, digits" in bad.stderr

    revoked = runner.invoke(main, ["--vault", root, "token", "revoke", "alice"])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert ClientTokens(tmp_path).entries() == []
    unknown = runner.invoke(main, ["--vault", root, "token", "revoke", "alice"])
    assert unknown.exit_code == 2 and "no client token named 'alice'" in unknown.stderr
    empty = runner.invoke(main, ["--vault", root, "token", "list"])
    assert "no client tokens" in empty.stdout


# -- the checks, as pure functions


@pytest.mark.parametrize(("host", "ok"), [
    ("memory.example.com", True), ("MEMORY.example.com:8443", True), ("memory.example.com.", True),
    ("192.168.1.5:52525", True), ("10.0.0.7", True), ("[fd00::5]:80", True), ("[::1]", True),
    ("localhost:52525", True), ("127.0.0.1", True),
    ("evil.example", False), ("memory.example.com.evil.example", False), ("", False),
    ("memory.example.com:x", False), ("fd00::5", False), ("[memory.example.com]", False),
    ("a b", False),
])
def test_the_team_host_rule(host: str, ok: bool) -> None:
    allowed = frozenset({"memory.example.com"})
    if ok:
        guards.check_team_host(host, allowed)
    else:
        with pytest.raises(ApiError) as refused:
            guards.check_team_host(host, allowed)
        assert refused.value.status == 403 and "Host" in str(refused.value)


@pytest.mark.parametrize(("peer", "local", "is_local"), [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.9", "192.168.1.5", True), ("::1", "::1", True),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1", True), ("192.168.1.5", "192.168.1.5", True),
    ("::ffff:192.168.1.5", "192.168.1.5", True),
    ("192.168.1.9", "192.168.1.5", False), ("::ffff:10.0.0.2", "10.0.0.1", False),
    ("fd00::9", "fd00::5", False), ("not an address", "127.0.0.1", False),
])
def test_a_local_peer_is_one_on_this_machine(peer: str, local: str, is_local: bool) -> None:
    assert guards.is_local_peer(peer, local) is is_local


def test_the_client_check_takes_a_client_token_and_the_local_one_from_here_only() -> None:
    digests = {"alice": digest("alice-secret"), "bob": digest("bob-secret")}

    def who(header: str, local_peer: bool = False) -> str:
        return guards.check_client(header, digests=digests, local_token=LOCAL_TOKEN,
                                   local_peer=local_peer)

    assert who("Bearer alice-secret") == "alice" and who("Bearer bob-secret") == "bob"
    assert who(f"Bearer {LOCAL_TOKEN}", local_peer=True) == "local"
    for header, reason in [("", "missing bearer token"), ("Bearer ", "missing bearer token"),
                           ("Basic alice-secret", "missing bearer token"),
                           ("bearer alice-secret", "missing bearer token"),
                           ("Bearer alice-secre", "unknown or revoked"),
                           ("Bearer alice-secret ", "unknown or revoked"),
                           (f"Bearer {LOCAL_TOKEN}", "its own machine only")]:
        with pytest.raises(ApiError) as refused:
            who(header)
        assert refused.value.status == 401 and reason in str(refused.value), header
        assert "secret" not in str(refused.value) and LOCAL_TOKEN not in str(refused.value)


# -- the server


def wide(**changes: Any) -> ServerSettings:
    return ServerSettings(**{"host": "0.0.0.0", "port": 0, **changes})


def test_a_wide_server_refuses_to_start_without_client_tokens(tmp_path: Path) -> None:
    with pytest.raises(VaultdError, match="no(ne|t loopback).*`vaultd token add NAME`"):
        Server(FakeApp(), wide(), token=LOCAL_TOKEN, clients=ClientTokens(state(tmp_path)))
    with pytest.raises(VaultdError, match="`vaultd token add NAME`"):
        Server(FakeApp(), wide(), token=LOCAL_TOKEN)
    ClientTokens(tmp_path).add("alice")
    with pytest.raises(VaultdError, match="open_embeddings"):
        Server(FakeApp(), wide(open_embeddings=True), token=LOCAL_TOKEN,
               clients=ClientTokens(tmp_path))


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A server bound to 0.0.0.0 with one client, alice; yields it and her token."""
    _, token = ClientTokens(state(tmp_path)).add("alice")
    server = Server(FakeApp(), wide(allowed_hosts=("Memory.Example.com",)), token=LOCAL_TOKEN,
                    clients=ClientTokens(tmp_path))
    server.start()
    try:
        yield server, token
    finally:
        server.stop()


def test_a_team_server_asks_every_request_for_a_token_and_logs_refusals_without_it(
        team: tuple[Server, str], caplog: pytest.LogCaptureFixture) -> None:
    server, token = team
    port = server.port
    assert call(port, "GET", "/status", token=token)[0] == 200
    assert call(port, "GET", "/status", token=LOCAL_TOKEN)[0] == 200  # from this machine
    with caplog.at_level(logging.WARNING, logger="vaultd.daemon.server"):
        for sent in (None, "wrong", token[:-1], token + "x"):
            status, data = call(port, "GET", "/status", token=sent)
            assert status == 401, (sent, data)
        status, data = call(port, "POST", "/search", {"query": "x"}, token="wrong")
        assert status == 401
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refusals) == 5
    assert "GET /status from 127.0.0.1: missing bearer token" in refusals[0]
    assert all(token[:-1] not in line and "wrong" not in line for line in refusals)
    assert call(port, "GET", "/health")[0] == 200  # load balancers' health checks need none


def test_a_team_server_serves_listed_names_and_addresses_only(team: tuple[Server, str]) -> None:
    server, token = team
    port = server.port
    for host in ("memory.example.com", f"memory.example.com:{port}", f"127.0.0.1:{port}",
                 "192.0.2.10", "localhost"):
        assert call(port, "GET", "/status", token=token, host=host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", "memory.example.com.evil.example"):
        status, data = call(port, "GET", "/health", host=host)
        assert status == 403 and "allowed_hosts" in data["error"], host
        assert call(port, "GET", "/status", token=token, host=host)[0] == 403


def test_a_tokens_file_broken_under_a_running_team_server_lets_no_client_in(
        team: tuple[Server, str], tmp_path: Path) -> None:
    server, token = team
    (tmp_path / ".vaultd" / FILE).write_text("{broken", encoding="utf-8")
    status, data = call(server.port, "GET", "/status", token=token)
    assert status == 503 and "log says why" in data["error"]
    assert call(server.port, "GET", "/status", token=LOCAL_TOKEN)[0] == 200  # to look into it


def test_a_loopback_server_takes_its_own_token_only(tmp_path: Path) -> None:
    """Loopback mode is as it was: client tokens are for a team server, not accepted here."""
    _, client = ClientTokens(state(tmp_path)).add("alice")
    server = Server(FakeApp(), ServerSettings(port=0), token=LOCAL_TOKEN,
                    clients=ClientTokens(tmp_path))
    server.start()
    try:
        assert call(server.port, "GET", "/status", token=LOCAL_TOKEN)[0] == 200
        assert call(server.port, "GET", "/status", token=client)[0] == 401
        assert call(server.port, "GET", "/health", host="192.0.2.10")[0] == 403
    finally:
        server.stop()


# -- the daemon


def test_a_team_daemon_without_client_tokens_refuses_to_start(tmp_path: Path) -> None:
    root = make_vault(tmp_path, config=FAST_CONFIG)
    env = env_for(tmp_path, VAULTD_SERVER_HOST="0.0.0.0")
    with pytest.raises(VaultdError, match="'0.0.0.0' is not loopback.*vaultd token add NAME"):
        start_daemon_thread(root, env)


@pytest.mark.slow
def test_vaultd_run_bound_wide_without_client_tokens_says_how_to_add_one(tmp_path: Path) -> None:
    root = make_vault(tmp_path, config=FAST_CONFIG)
    done = vaultd(root, "run", "--quiet", env=env_for(tmp_path, VAULTD_SERVER_HOST="0.0.0.0"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "vaultd: [server] host = '0.0.0.0' is not loopback: a team server needs client tokens "
        "and has none; add one with `vaultd token add NAME` (or bind loopback: host = "
        "\"127.0.0.1\")"]


def test_a_team_daemon_serves_clients_and_refuses_a_revoked_token_without_a_restart(
        tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/deploy.md": "# Deploy\n\nroll back v41\n"},
                      config=FAST_CONFIG)
    tokens = ClientTokens(root)
    _, alice = tokens.add("alice")
    _, bob = tokens.add("bob")
    env = env_for(tmp_path, VAULTD_SERVER_HOST="0.0.0.0")
    with running_daemon(root, env) as running:
        assert running.daemon.server.team
        port = running.port
        for token in (alice, bob):
            status, data = call(port, "POST", "/search", {"query": "deploy", "mode": "bm25"},
                                token=token)
            assert status == 200 and data["hits"], data
        assert call(port, "GET", "/status", token=None)[0] == 401
        assert call(port, "GET", "/status", token="not-a-client")[0] == 401
        revoked = CliRunner().invoke(main, ["--vault", str(root), "token", "revoke", "alice"])
        assert revoked.exit_code == 0, revoked.output
        assert call(port, "GET", "/status", token=alice)[0] == 401  # no restart needed
        assert call(port, "GET", "/status", token=bob)[0] == 200
        assert call(port, "GET", "/status", token=running.token)[0] == 200  # from here
        assert call(port, "GET", "/status", token=bob, host="evil.example")[0] == 403
    log = (root / ".vaultd" / "daemon.log").read_text(encoding="utf-8")
    assert "refused GET /status from 127.0.0.1: unknown or revoked client token" in log
    assert alice not in log and bob not in log
