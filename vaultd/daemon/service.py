"""Start at boot: a systemd unit (Linux) or a launchd agent (macOS) that runs `vaultd run`.

The vault's path goes into the service file, and a path can hold anything a file name can, so
each value is written the way its reader reads it. systemd (systemd.syntax(7),
systemd.unit(5), systemd.service(5)): every `%` is doubled (a specifier otherwise); an
ExecStart word that is not plain is double-quoted with its backslashes and double quotes
escaped, and its `$` is doubled (environment substitution otherwise). `Description=`,
`WorkingDirectory=` and `User=` take no quotes and no escapes, so a value there is written as
is and must survive that: one ending in a blank (stripped) or a backslash (continues the line)
is refused. launchd: plistlib escapes XML. A control character, a line break above all, is
refused for both: in a systemd value without escapes it would start a new directive, and XML
reads a carriage return back as a line feed. Refusals name the path: such a vault must be
renamed to run as a service. (systemd could carry a line break as a C escape inside a quoted
ExecStart word, but not in `WorkingDirectory=`: one rule for all values is the safer one.)

The file is written and removed through `edits.write_config`/`remove_config`: a unit that is
a symbolic link is written through to its target, a read-only one is refused.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import plistlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vaultd.edits import read_config, remove_config, write_config
from vaultd.errors import VaultdError
from vaultd.layout import state_dir

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")  # an ExecStart word needing no quotes
_EXEC_PREFIXES = "@-:+!"  # an ExecStart command starting with one of these is read as flags


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
    for value, what in ((str(root), "vault path"), (python, "interpreter path")):
        _check_expressible(value, what)
    command = _command(root, python)
    if platform.startswith("linux"):
        if user:
            config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
            path = config / "systemd" / "user" / f"{name}.service"
            ctl, wanted, user_line = "systemctl --user", "default.target", ""
        else:
            path = Path("/etc/systemd/system") / f"{name}.service"
            ctl, wanted, user_line = "sudo systemctl", "multi-user.target", \
                f"User={_systemd_raw(getpass.getuser(), 'user name')}\n"
        quoted = " ".join(_systemd_word(c) for c in _checked_command(command))
        text = (
            "[Unit]\n"
            f"Description=vaultd memory daemon for {_systemd_raw(str(root), 'vault path')}\n"
            "After=network.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"{user_line}"
            f"ExecStart={quoted}\n"
            f"WorkingDirectory={_systemd_raw(str(root), 'vault path')}\n"
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


def _check_expressible(value: str, what: str) -> None:
    """VaultdError naming `value` when no service file can carry it faithfully (see above)."""
    if _CONTROL.search(value):
        raise VaultdError(f"{what} {value!r} holds a control character (a line break?): a "
                          "service file cannot carry it safely; rename it to install a service")


def _checked_command(command: list[str]) -> list[str]:
    """`command`, refused when systemd would not run it as written: its first word is read
    for flags after unquoting (`-` ignores failure, `@` changes argv[0], ...), and a `$` in it
    cannot be escaped (`$$` is undone in the arguments only)."""
    executable = command[0]
    if executable[:1] in _EXEC_PREFIXES or "$" in executable:
        raise VaultdError(f"interpreter path {executable!r}: systemd would read its first "
                          f"character ({_EXEC_PREFIXES}) or a `$` in it specially; run vaultd "
                          "from a Python whose path has neither")
    return command


def _systemd_word(arg: str) -> str:
    """One ExecStart word: `%` and `$` doubled, quoted with C escapes unless plain."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_WORD.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_raw(value: str, what: str) -> str:
    """A value for a setting that takes no quotes or escapes, only specifiers (`%%`)."""
    _check_expressible(value, what)
    if value != value.strip() or value.endswith("\\"):
        raise VaultdError(f"{what} {value!r} ends with a blank or a backslash, which a systemd "
                          "unit drops or reads as a line continuation; rename it to install a "
                          "service")
    return value.replace("%", "%%")


def install(service: ServiceFile) -> None:
    """Write the service file (replacing vaultd's earlier one), creating its folder."""
    write_config(service.path, service.text, expected=read_config(service.path))


def uninstall(service: ServiceFile) -> bool:
    """Remove the service file; False when there was none."""
    return remove_config(service.path)
