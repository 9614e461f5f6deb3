"""Start at boot: a systemd unit (Linux) or a launchd agent (macOS) that runs `vaultd run`."""

from __future__ import annotations

import getpass
import hashlib
import os
import plistlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vaultd.errors import VaultdError
from vaultd.layout import state_dir


@dataclass(frozen=True)
class ServiceFile:
    path: Path
    text: str
    enable: str  # the commands that turn it on
    disable: str


def service_name(root: Path) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", root.name).strip("-").lower() or "vault"
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return f"vaultd-{slug}-{digest}"


def _command(root: Path, python: str) -> list[str]:
    return [python, "-m", "vaultd", "--vault", str(root), "run", "--quiet"]


def describe(root: Path, *, user: bool = True, platform: str | None = None,
             home: Path | None = None, python: str | None = None) -> ServiceFile:
    """The unit/agent file for this vault, where it goes, and how to enable it."""
    platform = platform or sys.platform
    home = home or Path.home()
    python = python or sys.executable
    name = service_name(root)
    command = _command(root, python)
    if platform.startswith("linux"):
        if user:
            config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
            path = config / "systemd" / "user" / f"{name}.service"
            ctl, wanted, user_line = "systemctl --user", "default.target", ""
        else:
            path = Path("/etc/systemd/system") / f"{name}.service"
            ctl, wanted, user_line = "sudo systemctl", "multi-user.target", \
                f"User={getpass.getuser()}\n"
        quoted = " ".join(_systemd_quote(c) for c in command)
        text = (
            "[Unit]\n"
            f"Description=vaultd memory daemon for {root}\n"
            "After=network.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"{user_line}"
            f"ExecStart={quoted}\n"
            f"WorkingDirectory={_systemd_quote(str(root))}\n"
            "Restart=on-failure\n"
            "RestartSec=5\n"
            "KillSignal=SIGTERM\n"
            "TimeoutStopSec=30\n\n"
            "[Install]\n"
            f"WantedBy={wanted}\n")
        return ServiceFile(path, text,
                           enable=f"{ctl} daemon-reload && {ctl} enable --now {name}.service",
                           disable=f"{ctl} disable --now {name}.service")
    if platform == "darwin":
        if not user:
            raise VaultdError("on macOS vaultd installs a per-user launchd agent; use --user")
        label = f"dev.{name}"
        path = home / "Library" / "LaunchAgents" / f"{label}.plist"
        text = plistlib.dumps({
            "Label": label,
            "ProgramArguments": command,
            "WorkingDirectory": str(root),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "StandardOutPath": str(state_dir(root) / "daemon.out"),
            "StandardErrorPath": str(state_dir(root) / "daemon.out"),
        }).decode()
        return ServiceFile(path, text, enable=f"launchctl load -w {path}",
                           disable=f"launchctl unload -w {path}")
    raise VaultdError(f"no service manager support for platform {platform!r}; "
                      "run `vaultd start` from your login scripts instead")


def _systemd_quote(arg: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def install(service: ServiceFile) -> None:
    service.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = service.path.with_name(service.path.name + ".tmp")
    tmp.write_text(service.text, encoding="utf-8")
    os.replace(tmp, service.path)


def uninstall(service: ServiceFile) -> bool:
    try:
        service.path.unlink()
    except FileNotFoundError:
        return False
    return True
