"""One port per vault (issue 26, point 4): `vaultd init` picks a free loopback port and writes
it to the vault's config, so a second vault's daemon starts beside the first with no edit and a
port stays put across restarts; clients find it in `.vaultd/daemon.json`. A vault whose config
names no port keeps 52525, and a taken port is an error naming the key to set."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from daemon_helpers import call, env_for, start_daemon_thread, vaultd

from vaultd.config import DEFAULT_PORT, load_settings
from vaultd.daemon.client import DaemonClient
from vaultd.daemon.discovery import choose_port, read_info
from vaultd.errors import ConfigError, VaultdError

REPO = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def configured_port(root: Path) -> object:
    data = tomllib.loads((root / ".vaultd" / "config.toml").read_text(encoding="utf-8"))
    return data.get("server", {}).get("port")


def test_choose_port_passes_over_a_port_something_listens_on() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=r"no free port .* set \[server\] port"):
            choose_port(ports=range(taken, taken + 1))
        try:
            chosen = {choose_port(ports=range(taken, taken + 2)) for _ in range(20)}
        except ConfigError:
            pytest.skip("the port after the one taken here is in use too")
        assert chosen == {taken + 1}


@pytest.mark.slow
def test_two_vaults_made_by_init_get_ports_of_their_own_and_both_daemons_serve(
        tmp_path: Path) -> None:
    env = {k: v for k, v in env_for(tmp_path).items() if k != "VAULTD_SERVER_PORT"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    roots = [tmp_path / "work", tmp_path / "home"]
    for root in roots:
        made = vaultd(None, "init", str(root), env=env)
        assert made.returncode == 0, made.stderr
        assert f"port: {configured_port(root)}" in made.stdout  # init says which
    ports = [configured_port(root) for root in roots]
    assert all(isinstance(p, int) and p != DEFAULT_PORT for p in ports) and ports[0] != ports[1]
    try:
        for root in roots:
            started = vaultd(root, "start", env=env)
            assert started.returncode == 0, started.stderr
        for root, port in zip(roots, ports):
            info = read_info(root)
            assert info is not None and info["port"] == port  # the configured one
            assert call(port, "GET", "/health")[0] == 200
            client = DaemonClient.for_vault(root)  # what every vaultd client does
            assert client is not None and client.port == port
        stopped = vaultd(roots[0], "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        again = vaultd(roots[0], "start", env=env)  # a restart keeps the port clients know
        assert again.returncode == 0, again.stderr
        assert read_info(roots[0])["port"] == ports[0]  # type: ignore[index]
    finally:
        for root in roots:
            vaultd(root, "stop", env=env)


def test_a_vault_without_a_port_keeps_the_old_default(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / ".vaultd").mkdir(parents=True)
    (root / ".vaultd" / "config.toml").write_text("[server]\n# port = 52525\n", encoding="utf-8")
    assert load_settings(root, {}).server.port == DEFAULT_PORT


def test_a_taken_port_is_an_error_naming_the_key_to_set(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    from vaultd.vault import init_vault

    init_vault(root)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = env_for(tmp_path, VAULTD_SERVER_PORT=str(busy.getsockname()[1]))
        with pytest.raises(VaultdError, match=r"set \[server\] port in \.vaultd/config\.toml"):
            start_daemon_thread(root, env).stop()
