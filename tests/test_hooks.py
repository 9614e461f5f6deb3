"""Claude Code hooks in settings.json: merged without losing foreign hooks, removed exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vaultd import hooks
from vaultd.errors import VaultdError

FOREIGN = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "hooks": {
        "SessionStart": [{"matcher": "startup",
                          "hooks": [{"type": "command", "command": "echo hello"}]}],
        "PreToolUse": [{"matcher": "Bash",
                        "hooks": [{"type": "command", "command": "./check.sh"}]}],
    },
}


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def commands(data: dict, event: str) -> list[str]:
    return [h["command"] for g in data["hooks"].get(event, []) for h in g["hooks"]]


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    path = tmp_path / "proj" / ".claude" / "settings.json"
    write(path, FOREIGN)
    return path


def test_settings_path(tmp_path: Path) -> None:
    assert hooks.settings_path(True, None, tmp_path) == tmp_path / ".claude" / "settings.json"
    proj = tmp_path / "p"
    assert hooks.settings_path(False, proj, tmp_path) == proj / ".claude" / "settings.json"
    with pytest.raises(VaultdError):
        hooks.settings_path(False, None, tmp_path)


def test_install_keeps_foreign_hooks_and_keys(settings: Path, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    report = hooks.install(settings, vault)
    assert report["added"] == ["SessionStart", "PreCompact", "SessionEnd"]
    data = json.loads(settings.read_text())
    assert data["model"] == "opus" and data["permissions"] == FOREIGN["permissions"]
    assert data["hooks"]["PreToolUse"] == FOREIGN["hooks"]["PreToolUse"]
    start = commands(data, "SessionStart")
    assert start[0] == "echo hello"
    assert start[1] == f"vaultd --vault {vault.resolve()} hook session-start"
    assert commands(data, "PreCompact") == [f"vaultd --vault {vault.resolve()} hook pre-compact"]
    assert commands(data, "SessionEnd") == [f"vaultd --vault {vault.resolve()} hook session-end"]
    assert settings.read_text().startswith('{\n  "model"')  # 2-space indent, order kept


def test_install_creates_missing_file(tmp_path: Path) -> None:
    path = hooks.settings_path(True, None, tmp_path / "home")
    hooks.install(path, tmp_path / "v", command="/opt/bin/vaultd")
    data = json.loads(path.read_text())
    assert set(data["hooks"]) == {"SessionStart", "PreCompact", "SessionEnd"}
    assert commands(data, "SessionEnd")[0].startswith("/opt/bin/vaultd --vault ")


def test_install_twice_is_idempotent(settings: Path, tmp_path: Path) -> None:
    hooks.install(settings, tmp_path / "vault")
    before = settings.read_bytes()
    mtime = settings.stat().st_mtime_ns
    report = hooks.install(settings, tmp_path / "vault")
    assert report["added"] == [] and not report["written"]
    assert settings.read_bytes() == before and settings.stat().st_mtime_ns == mtime


def test_install_with_new_command_replaces_ours(settings: Path, tmp_path: Path) -> None:
    hooks.install(settings, tmp_path / "vault")
    hooks.install(settings, tmp_path / "vault", command="/usr/local/bin/vaultd")
    data = json.loads(settings.read_text())
    assert commands(data, "SessionStart") == [
        "echo hello", f"/usr/local/bin/vaultd --vault {(tmp_path / 'vault').resolve()} "
                      "hook session-start"]


def test_uninstall_removes_only_ours(settings: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-vault"
    hooks.install(settings, other)
    hooks.install(settings, tmp_path / "vault")
    report = hooks.uninstall(settings, tmp_path / "vault")
    assert report["removed"] == ["SessionStart", "PreCompact", "SessionEnd"]
    data = json.loads(settings.read_text())
    assert commands(data, "SessionStart") == [
        "echo hello", f"vaultd --vault {other.resolve()} hook session-start"]
    hooks.uninstall(settings, other)
    assert json.loads(settings.read_text()) == FOREIGN


def test_uninstall_all_and_nothing_to_remove(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    assert hooks.uninstall(path, None)["written"] is False  # missing file: untouched
    assert not path.exists()
    hooks.install(path, tmp_path / "a")
    hooks.install(path, tmp_path / "b")
    hooks.uninstall(path, None)
    assert json.loads(path.read_text()) == {}


@pytest.mark.parametrize("text", ['{"hooks": {', "[1, 2]", '{"hooks": []}'])
def test_invalid_settings_refused_and_unchanged(tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VaultdError, match="settings.json"):
        hooks.install(path, tmp_path / "vault")
    with pytest.raises(VaultdError, match="settings.json"):
        hooks.uninstall(path, tmp_path / "vault")
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(("stdin", "expected"), [
    ('{"session_id": "s", "transcript_path": "/t.jsonl", "trigger": "auto"}',
     {"session_id": "s", "transcript_path": "/t.jsonl", "trigger": "auto"}),
    ("", {}), ("not json", {}), ("[1]", {}),
])
def test_read_hook_input(stdin: str, expected: dict) -> None:
    assert hooks.read_hook_input(io.StringIO(stdin)) == expected
    assert hooks.read_hook_input(None) == {}


def test_transcript_of(tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text("{}\n")
    assert hooks.transcript_of({"transcript_path": str(t)}) == t
    assert hooks.transcript_of({"transcript_path": str(tmp_path / "missing")}) is None
    assert hooks.transcript_of({}) is None
