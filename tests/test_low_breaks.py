"""Issue 24, row 12 and point 8: the low-severity breaks, each as it was found.

A vault path that injects directives into the systemd unit; `hooks install` replacing a
symlinked settings.json with a copy, splitting a hard link, rewriting a read-only file, waiting
on a FIFO; a client hang-up logged as an ERROR with a traceback; a note made readable by `chmod`
indexed only at the next reconcile. Files outside the vault are written through
`edits.write_config`, whose own contract is tested here too.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import plistlib
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault, refuse_reads
from daemon_helpers import FAST_CONFIG, env_for, running_daemon, wait_for
from watchdog.events import DirAttribEvent, FileAttribEvent

from vaultd import hooks
from vaultd.config import ServerSettings
from vaultd.daemon import service
from vaultd.daemon.server import Server
from vaultd.daemon.watcher import EventQueue, Handler, RawEvent, coalesce
from vaultd.edits import ConflictError, RefusedError, read_config, remove_config, write_config
from vaultd.errors import VaultdError
from vaultd.layout import Ignore
from vaultd.store import Store

# -- the systemd unit, read back as systemd reads it ------------------------------------------

# systemd.syntax(7) "Quoting": the escapes allowed in a quoted or unquoted word
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"', "'": "'", "s": " "}


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: a line ending in a backslash goes on with the next,
    `#`/`;` start a comment, `Key=value` with blanks around the value dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current, pending = "", ""
    for raw in text.split("\n"):
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = stripped.partition("=")
        assert sep and current, f"not a Key=value line in a section: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def exec_words(value: str) -> list[str]:
    """ExecStart's words: split at blanks outside quotes, quotes removed, C escapes undone."""
    words: list[str] = []
    i = 0
    while True:
        while i < len(value) and value[i] in " \t":
            i += 1
        if i >= len(value):
            return words
        word: list[str] = []
        quote = ""
        while i < len(value):
            c = value[i]
            if c == "\\":
                nxt = value[i + 1]
                assert nxt in _C_ESCAPES, f"unknown escape \\{nxt} in {value!r}"
                word.append(_C_ESCAPES[nxt])
                i += 2
                continue
            if quote:
                if c == quote:
                    quote = ""
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            elif c in " \t":
                break
            else:
                word.append(c)
            i += 1
        assert not quote, f"unterminated quote in {value!r}"
        words.append("".join(word))


def unescape(value: str, marker: str) -> str:
    """`marker` doubled stands for itself; any other use of it would be expanded."""
    out, i = [], 0
    while i < len(value):
        if value[i] == marker:
            assert value[i + 1:i + 2] == marker, f"{marker}{value[i + 1:i + 2]} would be " \
                                                 f"expanded in {value!r}"
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def argv(exec_start: str) -> list[str]:
    """The argv systemd runs: specifiers (`%`) then environment variables (`$`) expanded."""
    return [unescape(unescape(w, "%"), "$") for w in exec_words(exec_start)]


UNIT_KEYS = {"Unit": ["Description", "After"],
             "Service": ["Type", "ExecStart", "WorkingDirectory", "Restart", "RestartSec",
                         "KillSignal", "TimeoutStopSec"],
             "Install": ["WantedBy"]}
HOSTILE_NAMES = ["my vault", "100% sure %n %%", "quote \" and ' apostrophe", "back\\slash",
                 "dollar $HOME ${USER} $$", "semi ; colon -- # not a comment", "é ü 日本"]


def linux_unit(tmp_path: Path, root: Path) -> service.ServiceFile:
    return service.describe(root, platform="linux", home=tmp_path / "home",
                            python=sys.executable)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_systemd_unit_carries_any_vault_path_faithfully(tmp_path: Path, name: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    root = tmp_path / name
    sections = unit_sections(linux_unit(tmp_path, root).text)
    assert {s: [k for k, _ in kv] for s, kv in sections.items()} == UNIT_KEYS
    values = {k: v for kv in sections.values() for k, v in kv}
    assert argv(values["ExecStart"]) == [sys.executable, "-m", "vaultd", "--vault", str(root),
                                         "run", "--quiet"]
    # these two take no quotes or escapes, only specifiers
    assert unescape(values["WorkingDirectory"], "%") == str(root)
    assert unescape(values["Description"], "%") == f"vaultd memory daemon for {root}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_itself_accepts_the_unit_for_hostile_vault_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for i, name in enumerate(HOSTILE_NAMES):
        root = tmp_path / str(i) / name
        root.mkdir(parents=True)
        spec = linux_unit(tmp_path / str(i), root)
        service.install(spec)
        done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(spec.path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr.strip(), (name, done.stderr)


@pytest.mark.parametrize("name", ["line\nExecStartPre=/bin/sh -c id", "carriage\rreturn",
                                  "tab\there", "ends with a backslash\\", "ends with a blank "])
def test_a_vault_path_a_unit_cannot_carry_is_refused_naming_it(tmp_path: Path,
                                                               name: str) -> None:
    root = tmp_path / name
    with pytest.raises(VaultdError, match="rename it") as caught:
        linux_unit(tmp_path, root)
    assert repr(str(root)) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["line\nbreak", "carriage\rreturn"])
def test_a_vault_path_with_a_control_character_gets_no_launchd_agent(tmp_path: Path,
                                                                     name: str) -> None:
    with pytest.raises(VaultdError, match="control character"):
        service.describe(tmp_path / name, platform="darwin", home=tmp_path, python="/py")


@pytest.mark.parametrize("name", ["a <b> & c", "]]> \"q\" 's'", "100% $HOME", "back\\slash"])
def test_the_launchd_plist_round_trips_the_vault_path(tmp_path: Path, name: str) -> None:
    root = tmp_path / name
    spec = service.describe(root, platform="darwin", home=tmp_path / "home", python="/py")
    plist = plistlib.loads(spec.text.encode())
    assert set(plist) == {"Label", "ProgramArguments", "WorkingDirectory", "RunAtLoad",
                          "KeepAlive", "StandardOutPath", "StandardErrorPath"}
    assert plist["ProgramArguments"] == ["/py", "-m", "vaultd", "--vault", str(root), "run",
                                         "--quiet"]
    assert plist["WorkingDirectory"] == str(root)


@pytest.mark.parametrize("python", ["-python3", "@python3", "/opt/$py/bin/python"])
def test_an_interpreter_systemd_would_misread_is_refused(tmp_path: Path, python: str) -> None:
    with pytest.raises(VaultdError, match="interpreter path"):
        service.describe(tmp_path / "v", platform="linux", home=tmp_path, python=python)


def test_service_install_writes_through_a_symlinked_unit(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    spec = linux_unit(tmp_path, tmp_path / "v")
    kept = tmp_path / "dotfiles" / "unit.service"
    kept.parent.mkdir()
    kept.write_text("[Unit]\nDescription=old\n", encoding="utf-8")
    spec.path.parent.mkdir(parents=True)
    spec.path.symlink_to(kept)
    service.install(spec)
    assert spec.path.is_symlink() and kept.read_text(encoding="utf-8") == spec.text
    with pytest.raises(RefusedError, match="symbolic link"):  # the user's link is kept
        service.uninstall(spec)
    assert spec.path.is_symlink()


# -- hooks install: the user's settings.json stays the user's ---------------------------------

SETTINGS = '{\n  "theme": "dark"\n}\n'


@pytest.fixture
def vault_root(tmp_path: Path) -> Path:
    return make_vault(tmp_path)


def settings_at(tmp_path: Path) -> Path:
    path = tmp_path / "home" / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    return path


def test_hooks_install_writes_through_a_symlinked_settings_file(tmp_path: Path,
                                                               vault_root: Path) -> None:
    kept = tmp_path / "dotfiles" / "claude-settings.json"
    kept.parent.mkdir()
    kept.write_text(SETTINGS, encoding="utf-8")
    settings = settings_at(tmp_path)
    settings.symlink_to(kept)
    hooks.install(settings, vault_root, command="vaultd")
    assert settings.is_symlink() and settings.resolve() == kept
    data = json.loads(kept.read_text(encoding="utf-8"))
    assert data["theme"] == "dark" and set(data["hooks"]) == set(hooks.EVENTS)
    hooks.uninstall(settings, vault_root)
    assert settings.is_symlink() and kept.read_text(encoding="utf-8") == SETTINGS


def test_hooks_install_keeps_a_hard_link_whole(tmp_path: Path, vault_root: Path) -> None:
    settings = settings_at(tmp_path)
    settings.write_text(SETTINGS, encoding="utf-8")
    other = tmp_path / "backup-settings.json"
    os.link(settings, other)
    inode = settings.stat().st_ino
    hooks.install(settings, vault_root, command="vaultd")
    assert settings.stat().st_ino == inode and settings.stat().st_nlink == 2
    assert "hooks" in json.loads(other.read_text(encoding="utf-8"))  # the other name too


def test_hooks_install_refuses_a_read_only_settings_file(tmp_path: Path, vault_root: Path) -> None:
    settings = settings_at(tmp_path)
    settings.write_text(SETTINGS, encoding="utf-8")
    settings.chmod(0o444)  # checked by mode: as root the write would otherwise succeed
    with pytest.raises(VaultdError, match="read-only") as caught:
        hooks.install(settings, vault_root, command="vaultd")
    assert str(settings) in str(caught.value)
    assert settings.read_text(encoding="utf-8") == SETTINGS


def test_hooks_install_refuses_a_fifo_without_waiting_on_it(tmp_path: Path,
                                                           vault_root: Path) -> None:
    settings = settings_at(tmp_path)
    os.mkfifo(settings)
    outcome: dict[str, BaseException] = {}

    def install() -> None:
        try:
            hooks.install(settings, vault_root, command="vaultd")
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=install, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # release the reader the old code left waiting, then fail
        os.close(os.open(settings, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("hooks install waited on a FIFO")
    assert isinstance(outcome.get("error"), RefusedError), outcome
    assert "not a regular file" in str(outcome["error"])


def test_hooks_uninstall_removes_the_file_and_folder_it_created(tmp_path: Path,
                                                                vault_root: Path) -> None:
    settings = tmp_path / "project" / ".claude" / "settings.json"
    hooks.install(settings, vault_root, command="vaultd")
    assert (vault_root / ".vaultd" / hooks.CREATED_NOTE).exists()
    hooks.uninstall(settings, vault_root)
    assert not settings.parent.exists() and (tmp_path / "project").is_dir()
    assert not (vault_root / ".vaultd" / hooks.CREATED_NOTE).exists()


# -- edits.write_config: its contract, on its own ---------------------------------------------


def test_write_config_leaves_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("theirs", encoding="utf-8")
    with pytest.raises(ConflictError, match="changed since"):
        write_config(path, "ours", expected=b"what vaultd read")
    with pytest.raises(ConflictError, match="created by someone else"):
        write_config(path, "ours", expected=None)
    assert path.read_text(encoding="utf-8") == "theirs"
    assert os.listdir(tmp_path) == ["settings.json"]  # no temp file left behind


def test_write_config_creates_a_new_file_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "unit.service"
    write_config(path, "new", expected=None)
    assert path.read_text(encoding="utf-8") == "new" and os.listdir(path.parent) == [path.name]
    with pytest.raises(ConflictError, match="removed since"):
        write_config(tmp_path / "gone.json", "x", expected=b"was here")


def test_write_config_puts_the_old_bytes_back_when_the_write_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.json"
    path.write_text("old text", encoding="utf-8")
    real = os.ftruncate
    calls: list[int] = []

    def full_disk(fd: int, length: int) -> None:  # the first truncate meets a full disk
        calls.append(length)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", full_disk)
    with pytest.raises(VaultdError, match="disk full") as caught:
        write_config(path, "a much longer new text", expected=b"old text")
    assert str(path) in str(caught.value)
    assert path.read_text(encoding="utf-8") == "old text"


def test_remove_config_removes_only_what_is_still_vaultds(tmp_path: Path) -> None:
    path = tmp_path / "unit.service"
    path.write_text("mine", encoding="utf-8")
    with pytest.raises(ConflictError, match="changed since"):
        remove_config(path, expected=b"other")
    assert remove_config(path, expected=b"mine") and not path.exists()
    assert not remove_config(path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x", encoding="utf-8")
    assert not remove_config(tmp_path / "full") and (tmp_path / "full").is_dir()
    assert read_config(tmp_path / "missing") is None


# -- a client hang-up is one debug line --------------------------------------------------------


class SlowApp:
    """Answers /embed only once the test lets it, so the client can hang up first."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def health(self) -> dict[str, Any]:
        return {"model": "m", "dims": 2}

    def embed(self, texts: list[str], kind: str) -> tuple[str, int, list[list[float]]]:
        self.entered.set()
        self.release.wait(10)
        return "m", 2, [[0.0, 1.0]] * len(texts)


def _hang_up(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a killed client's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("when", ["while the answer is computed", "mid-body"])
def test_a_client_hang_up_is_one_debug_line(caplog: pytest.LogCaptureFixture,
                                            when: str) -> None:
    caplog.set_level(logging.DEBUG, logger="vaultd")
    app = SlowApp()
    server = Server(app, ServerSettings(port=0), token="t")  # type: ignore[arg-type]
    server.start()
    try:
        body = b'{"texts": ["x"]}'
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = (b"POST /embed HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        if when == "mid-body":
            sock.sendall(head + body[:5])
            wait_for(lambda: server.httpd._conns and all(
                c.phase == "body" for c in server.httpd._conns.values()), "the body read")
            _hang_up(sock)
        else:
            sock.sendall(head + body)
            assert app.entered.wait(10)
            _hang_up(sock)
            app.release.set()
        wait_for(lambda: not server.httpd._conns, "the connection to be closed")
    finally:
        app.release.set()
        server.stop()
    ours = [r for r in caplog.records if r.name.startswith("vaultd")]
    assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info], \
        [r.getMessage() for r in ours]
    assert len([r for r in ours if "hung up" in r.getMessage()]) == 1, \
        [r.getMessage() for r in ours]


# -- a permission change is a change ----------------------------------------------------------


def test_a_permission_change_re_reads_the_note() -> None:
    changes = coalesce([RawEvent("attrib", "semantic/locked.md")], Ignore())
    assert changes.upserts == ["semantic/locked.md"] and not changes.deletes


def test_a_folder_permission_change_rescans_the_folder() -> None:
    changes = coalesce([RawEvent("attrib", "semantic", is_dir=True)], Ignore())
    assert changes.dirs == ["semantic"] and not changes.upserts


def test_the_handler_queues_watchdogs_attribute_events(tmp_path: Path) -> None:
    events = EventQueue()
    handler = Handler(tmp_path, events, Ignore())
    handler.dispatch(FileAttribEvent(str(tmp_path / "semantic" / "locked.md")))
    handler.dispatch(DirAttribEvent(str(tmp_path / "semantic")))
    queued = [events.get(0), events.get(0)]
    assert [(e.kind, e.path, e.is_dir) for e in queued if isinstance(e, RawEvent)] == [
        ("attrib", "semantic/locked.md", False), ("attrib", "semantic", True)]


def _refuse_unreadable_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads through chmod 000: make the read refuse by mode, as it would for anyone
    else."""
    if os.geteuid() != 0:
        return

    def by_mode(path: str) -> OSError | None:
        try:
            readable = os.stat(path).st_mode & 0o444
        except OSError:
            return None
        return None if readable else PermissionError(errno.EACCES, "Permission denied", path)

    refuse_reads(monkeypatch, by_mode)


@pytest.mark.slow
def test_a_note_made_readable_by_chmod_is_indexed_without_a_reconcile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_unreadable_as_root(monkeypatch)
    root = make_vault(tmp_path, {"semantic/other.md": "# Other\n\nplain\n"},
                      config=FAST_CONFIG)  # reconciles every 10 minutes: never in this test
    outside = tmp_path / "locked.md"
    outside.write_text("# Locked\n\nthe okapi note\n", encoding="utf-8")
    outside.chmod(0o000)
    with running_daemon(root, env_for(tmp_path)) as daemon:
        note = root / "semantic" / "locked.md"
        os.rename(outside, note)  # arrives unreadable in one event

        def skipped() -> list[tuple[str, str]]:
            store = Store(root / ".vaultd" / "index.db")
            try:
                return [s for s in store.skipped() if s[0] == "semantic/locked.md"]
            finally:
                store.close()

        [(_, reason)] = wait_for(skipped, "the unreadable note to be skipped")
        assert "cannot read" in reason
        assert "semantic/locked.md" not in daemon.paths("okapi")
        note.chmod(0o644)
        wait_for(lambda: "semantic/locked.md" in daemon.paths("okapi"),
                 "the note made readable to be indexed")
