"""Claude Code hooks in settings.json: merged without losing foreign hooks, removed exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import make_vault
from daemon_helpers import env_for

from vaultd import hooks
from vaultd.errors import VaultdError

CMD = hooks.installed_command()  # what `vaultd hooks install` writes: this vaultd, absolute

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
    assert start[1] == f"{CMD} --vault {vault.resolve()} hook session-start"
    assert commands(data, "PreCompact") == [f"{CMD} --vault {vault.resolve()} hook pre-compact"]
    assert commands(data, "SessionEnd") == [f"{CMD} --vault {vault.resolve()} hook session-end"]
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
        "echo hello", f"{CMD} --vault {other.resolve()} hook session-start"]
    hooks.uninstall(settings, other)
    assert json.loads(settings.read_text()) == FOREIGN


def test_uninstall_all_and_nothing_to_remove(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    assert hooks.uninstall(path, None)["written"] is False  # missing file: untouched
    assert not path.exists()
    hooks.install(path, make_vault(tmp_path, name="a"))
    hooks.install(path, make_vault(tmp_path, name="b"))
    report = hooks.uninstall(path, None)
    assert report["deleted"] and not path.exists()  # vaultd created it: no `{}` left behind


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


# -- the hooks run the vaultd that installed them (issue 13, point 6) -------------------------

def test_installed_command_is_this_vaultd_by_absolute_path(tmp_path: Path) -> None:
    words = CMD.split()
    assert Path(words[0]).is_absolute()
    assert words[1:] in ([], ["-m", "vaultd"])
    bare = tmp_path / "bin"  # an interpreter with no console script beside it
    bare.mkdir()
    assert hooks.installed_command(str(bare / "python3")) == f"{bare / 'python3'} -m vaultd"
    spaced = tmp_path / "my env" / "bin"
    spaced.mkdir(parents=True)
    (spaced / "vaultd").write_text("#!/bin/sh\n")
    (spaced / "vaultd").chmod(0o755)
    assert hooks.installed_command(str(spaced / "python")) == f"'{spaced / 'vaultd'}'"


def test_installed_hook_runs_with_a_path_that_lacks_vaultd(tmp_path: Path) -> None:
    """An agent started with a bare PATH (no venv on it) still runs the hook."""
    import os
    import subprocess

    vault = make_vault(tmp_path, {"episodic/2026-01-05.md": "# 2026-01-05\n\n"
                                  "## 09:00 — a note\nsomething worth remembering\n"})
    settings = tmp_path / "proj" / ".claude" / "settings.json"
    hooks.install(settings, vault)
    [command] = commands(json.loads(settings.read_text()), "SessionEnd")
    env = env_for(tmp_path, PATH=os.defpath)  # /bin:/usr/bin: no vaultd there
    assert subprocess.run(["sh", "-c", "command -v vaultd"], env=env,
                          capture_output=True).returncode != 0
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "something worth remembering" in (vault / "MEMORY.md").read_text()


HAND_WRITTEN = """{
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)", "Bash(git status)"], "deny": []},
    "env": {"GREETING": "grüß dich"},
    "hooks": {
        "SessionStart": [
            {"matcher": "startup", "hooks": [{"type": "command", "command": "echo hello"}]}
        ]
    },
    "statusLine": {"type": "command", "command": "~/bin/line"}
}
"""


@pytest.mark.parametrize("text", [
    HAND_WRITTEN,
    HAND_WRITTEN.replace("    ", "\t").rstrip("\n"),  # tabs, no final newline
    '{"model": "opus", "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": '
    '[{"type": "command", "command": "./check.sh"}]}]}}',  # one line
    '{\n  "model": "opus"\n}\n',  # no hooks key at all
    "{}",
])
def test_install_then_uninstall_gives_back_the_users_bytes(tmp_path: Path, text: str) -> None:
    vault = make_vault(tmp_path)
    path = tmp_path / "proj" / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    report = hooks.install(path, vault)
    assert report["written"] and not report["created"]
    installed = path.read_text(encoding="utf-8")
    data = json.loads(installed)
    assert commands(data, "PreCompact") == [f"{CMD} --vault {vault} hook pre-compact"]
    for line in text.splitlines():  # the user's lines are all still there, as they were
        if "hooks" not in line and line.strip() not in ("{", "}", "]", "},", "],", "{}"):
            assert line in installed
    assert list(data) == list(json.loads(text)) + ([] if "hooks" in text else ["hooks"])
    report = hooks.uninstall(path, vault)
    assert report["removed"] == ["SessionStart", "PreCompact", "SessionEnd"]
    assert not report["deleted"]
    assert path.read_text(encoding="utf-8") == text  # the file the user had, byte for byte


def test_uninstall_keeps_formatting_around_what_it_removes(tmp_path: Path) -> None:
    """A file the user edited after the install: only our entries go, their lines stay."""
    vault = make_vault(tmp_path)
    path = tmp_path / "settings.json"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    hooks.install(path, vault)
    edited = path.read_text().replace('"model": "opus"', '"model": "sonnet"')
    path.write_text(edited)
    hooks.uninstall(path, vault)
    assert path.read_text() == HAND_WRITTEN.replace('"model": "opus"', '"model": "sonnet"')


def test_uninstall_removes_the_file_vaultd_created(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    project = tmp_path / "proj"
    project.mkdir()
    path = hooks.settings_path(False, project, tmp_path)
    report = hooks.install(path, vault)
    assert report["created"] and path.is_file()
    report = hooks.uninstall(path, vault)
    assert report["deleted"]
    assert not path.exists() and not path.parent.exists()  # nor the .claude/ vaultd made
    assert list(project.iterdir()) == []
    assert not (vault / ".vaultd" / hooks.CREATED_NOTE).exists()


def test_uninstall_keeps_a_created_file_the_user_added_to(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    path = tmp_path / "home" / ".claude" / "settings.json"
    hooks.install(path, vault)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({"model": "opus", **data}, indent=2) + "\n")
    hooks.uninstall(path, vault)
    assert path.read_text() == '{\n  "model": "opus"\n}\n'


def test_uninstall_keeps_the_file_the_user_had(settings: Path, tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    before = settings.read_bytes()
    hooks.install(settings, vault)
    report = hooks.uninstall(settings, vault)
    assert not report["deleted"] and settings.read_bytes() == before


def test_uninstall_from_a_group_the_user_shares_with_ours(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    ours = hooks.hook_command(vault, "SessionEnd", CMD)
    text = ('{\n  "hooks": {\n    "SessionEnd": [\n      {"hooks": [\n        {"type": "command",'
            ' "command": "echo bye"},\n        {"type": "command", "command": ' + json.dumps(ours)
            + '}\n      ]}\n    ]\n  }\n}\n')
    path = tmp_path / "settings.json"
    path.write_text(text)
    hooks.uninstall(path, vault)
    assert path.read_text() == ('{\n  "hooks": {\n    "SessionEnd": [\n      {"hooks": [\n'
                                '        {"type": "command", "command": "echo bye"}\n      ]}\n'
                                '    ]\n  }\n}\n')


def test_cli_says_which_vaultd_the_hooks_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vaultd.cli import main

    vault, project = make_vault(tmp_path), tmp_path / "proj"
    runner = CliRunner(env={"VAULTD_VAULT": None})
    out = runner.invoke(main, ["--vault", str(vault), "hooks", "install", "claude-code",
                               "--project", str(project)])
    assert out.exit_code == 0 and f"the hooks run {CMD} " in out.output
    out = runner.invoke(main, ["--vault", str(vault), "hooks", "uninstall", "claude-code",
                               "--project", str(project)])
    assert "removed 3 hook(s)" in out.output and "which vaultd had created" in out.output
    assert not (project / ".claude").exists()


# -- issue 26, point 7: PreCompact saves each turn once, and no compaction summary


def turn(role: str, text: str, **extra: object) -> str:
    return json.dumps({"type": role, "sessionId": "s1", **extra,
                       "message": {"role": role, "content": [{"type": "text", "text": text}]
                                   if role == "assistant" else text}}) + "\n"


SUMMARY = ("This session is being continued from a previous conversation that ran out of "
           "context. The conversation is summarized below: the user asked to fix the "
           "topicparse date bug; we decided to use a regex.")


@pytest.mark.slow
def test_pre_compact_saves_each_turn_once_and_never_a_compaction_summary(
        tmp_path: Path) -> None:
    import subprocess

    from daemon_helpers import FAST_CONFIG

    vault = make_vault(tmp_path, config=FAST_CONFIG)
    settings = tmp_path / "proj" / ".claude" / "settings.json"
    hooks.install(settings, vault)
    [command] = commands(json.loads(settings.read_text()), "PreCompact")
    transcript = tmp_path / "session.jsonl"
    stdin = json.dumps({"hook_event_name": "PreCompact", "trigger": "auto",
                        "transcript_path": str(transcript), "session_id": "s1"})

    def pre_compact() -> str:
        done = subprocess.run(["sh", "-c", command], input=stdin, env=env_for(tmp_path),
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return "".join(p.read_text(encoding="utf-8")
                       for p in sorted((vault / "episodic").glob("*.md")))

    transcript.write_text(turn("user", "Fix the topicparse date bug in notes.py please.")
                          + turn("assistant", "We decided to parse with a small regex."),
                          encoding="utf-8")
    first = pre_compact()
    assert first.count("\n## ") == 1  # one entry
    assert "Fix the topicparse date bug" in first
    # Claude Code compacts: the same file grows by its summary, then the session goes on
    with transcript.open("a", encoding="utf-8") as fh:
        fh.write(turn("user", SUMMARY, isCompactSummary=True))
        fh.write(turn("user", SUMMARY.replace("summarized", "summarised")))  # no flag
        fh.write(turn("user", "Now add a test for 2024-12-31."))
        fh.write(turn("assistant", "Going with one parametrized test."))
    second = pre_compact()
    assert second.count("\n## ") == 2 and second.startswith(first.rstrip("\n"))
    added = second[len(first.rstrip("\n")):]  # the second entry: only the new turns
    assert "Session transcript: Now add a test for 2024-12-31." in added
    assert "Going with one parametrized test." in added
    assert "topicparse" not in added and "regex" not in added  # saved the first time
    assert "being continued" not in second
    # nothing new: nothing appended
    assert pre_compact() == second
