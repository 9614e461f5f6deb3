"""Service files for starting the daemon at boot."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from vaultd.cli import main
from vaultd.daemon import service
from vaultd.errors import VaultdError
from vaultd.vault import init_vault


def test_systemd_user_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    root = tmp_path / "my vault"
    spec = service.describe(root, platform="linux", home=tmp_path / "home", python="/py/bin/python")
    assert spec.path.parent == tmp_path / "home" / ".config" / "systemd" / "user"
    assert spec.path.name.startswith("vaultd-my-vault-") and spec.path.suffix == ".service"
    assert f'ExecStart=/py/bin/python -m vaultd --vault "{root}" run --quiet' in spec.text
    assert "WantedBy=default.target" in spec.text and "KillSignal=SIGTERM" in spec.text
    assert spec.enable.startswith("systemctl --user daemon-reload")
    service.install(spec)
    assert spec.path.read_text(encoding="utf-8") == spec.text
    assert service.uninstall(spec) and not spec.path.exists()
    assert not service.uninstall(spec)


def test_systemd_system_unit_names_the_user(tmp_path: Path) -> None:
    spec = service.describe(tmp_path, user=False, platform="linux", python="python3")
    assert str(spec.path).startswith("/etc/systemd/system/")
    assert "User=" in spec.text and "multi-user.target" in spec.text


def test_launchd_agent(tmp_path: Path) -> None:
    root = tmp_path / "v"
    spec = service.describe(root, platform="darwin", home=tmp_path / "home", python="/py")
    assert spec.path.parent == tmp_path / "home" / "Library" / "LaunchAgents"
    plist = plistlib.loads(spec.text.encode())
    assert plist["ProgramArguments"] == ["/py", "-m", "vaultd", "--vault", str(root), "run",
                                         "--quiet"]
    assert plist["RunAtLoad"] is True and spec.enable.startswith("launchctl load -w")


def test_unknown_platform_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VaultdError, match="vaultd start"):
        service.describe(tmp_path, platform="win32")


def test_distinct_vaults_get_distinct_services(tmp_path: Path) -> None:
    a = service.describe(tmp_path / "a" / "notes", platform="linux", home=tmp_path)
    b = service.describe(tmp_path / "b" / "notes", platform="linux", home=tmp_path)
    assert a.path != b.path


def test_cli_install_and_uninstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    root = tmp_path / "v"
    init_vault(root)
    runner = CliRunner(env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    out = runner.invoke(main, ["--vault", str(root), "service", "install"])
    assert out.exit_code == 0, out.output
    units = list((tmp_path / "cfg" / "systemd" / "user").glob("vaultd-v-*.service"))
    assert len(units) == 1 and "enable it with: systemctl --user" in out.output
    out = runner.invoke(main, ["--vault", str(root), "service", "uninstall"])
    assert "removed" in out.output and not units[0].exists()
