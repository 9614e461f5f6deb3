"""A mistake is never answered with silence (issue 16, point 5; issue 12, point 14): a wrong
date, `k`, type or phase is an error naming the valid values (exit 2) in the CLI, the library
and the `/search` JSON; a folder that is not a vault is refused with the `vaultd init` hint; an
index that is broken, a folder, or not writable gives one line naming the file and the fix —
never a traceback. Commands run in real subprocesses where the traceback question is asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from daemon_helpers import env_for

from vaultd.cli import main
from vaultd.search_request import SearchRequest
from vaultd.vault import init_vault

REPO = Path(__file__).resolve().parent.parent

BAD_SEARCHES = [
    (["--since", "yesterday"], "'since' must be a date YYYY-MM-DD"),
    (["--since", "2026-13-45"], "'since' must be a date YYYY-MM-DD"),
    (["--until", "2026-02-30"], "'until' must be a date YYYY-MM-DD"),
    (["--since", "2026-02-01", "--until", "2026-01-01"], "'since' (2026-02-01) is after"),
    (["-k", "0"], "'k' must be an integer from 1"),
    (["-k", "-3"], "'k' must be an integer from 1"),
    (["--type", "procedures"], "'episodic', 'semantic', 'procedural', 'note'"),
]


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache"),
                          "VAULTD_EMBEDDING_MODEL": "hash-256"})


@pytest.fixture
def vault_root(tmp_path: Path) -> Path:
    root = tmp_path / "v"
    init_vault(root)
    (root / "semantic" / "deploy.md").write_text("# Deploy\nfly releases rollback v41\n",
                                                 encoding="utf-8")
    return root


def vaultd(*args: str, env: dict[str, str], cwd: Path,
           stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`vaultd ARGS` in a subprocess, on this checkout's code."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "vaultd", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, input=stdin)


@pytest.mark.parametrize(("args", "message"), BAD_SEARCHES)
def test_a_wrong_search_option_is_an_error_naming_the_valid_values(
        vault_root: Path, runner: CliRunner, args: list[str], message: str) -> None:
    out = runner.invoke(main, ["--vault", str(vault_root), "search", "rollback", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert "no hits" not in out.output


@pytest.mark.parametrize("body", [
    {"query": "q", "since": "yesterday"}, {"query": "q", "until": "2026-13-45"},
    {"query": "q", "k": 0}, {"query": "q", "type": "procedures"},
    {"query": "q", "type": ["semantic", "bogus"]}, {"query": " "},
])
def test_the_search_json_refuses_the_same_mistakes(body: dict[str, object]) -> None:
    """`POST /search` parses with `SearchRequest.from_json`: a ValueError there is its 400."""
    with pytest.raises(ValueError, match="must be|is after"):
        SearchRequest.from_json(body)
    ok = SearchRequest.from_json({"query": "q", "k": 1, "type": "procedural",
                                  "since": "2026-02-28", "until": "2026-03-01"})
    assert ok.types == ("procedural",)


def test_the_daemons_search_answers_those_mistakes_with_400(tmp_path: Path) -> None:
    """The real `/search` of a running daemon: a 400 naming the field, not 200 with no hits."""
    from conftest import make_vault
    from daemon_helpers import FAST_CONFIG, running_daemon

    root = make_vault(tmp_path, {"semantic/a.md": "# A\nrollback steps\n"}, config=FAST_CONFIG)
    with running_daemon(root, env_for(tmp_path)) as up:
        for body, field in (({"query": "q", "since": "yesterday"}, "since"),
                            ({"query": "q", "until": "2026-13-45"}, "until"),
                            ({"query": "q", "k": 0}, "'k'"),
                            ({"query": "q", "type": "procedures"}, "procedural")):
            status, data = up.call("POST", "/search", body)
            assert status == 400 and field in json.dumps(data), (body, status, data)
        status, data = up.call("POST", "/search", {"query": "rollback", "type": "semantic"})
        assert status == 200 and data["hits"]


def test_an_unknown_phase_is_an_error_naming_the_phases(vault_root: Path,
                                                        runner: CliRunner) -> None:
    out = runner.invoke(main, ["--vault", str(vault_root), "lifecycle", "--phase", "consolidation"])
    assert out.exit_code == 2
    assert "'connect', 'promote', 'consolidate'" in out.output


def test_global_options_are_accepted_after_the_subcommand(vault_root: Path, runner: CliRunner,
                                                          tmp_path: Path) -> None:
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    out = runner.invoke(main, ["search", "rollback", "--vault", str(vault_root), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["hits"][0]["path"] == "semantic/deploy.md"
    status = runner.invoke(main, ["status", "--json", "--vault", str(vault_root)])
    assert json.loads(status.stdout)["vault"] == str(vault_root.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    start = runner.invoke(main, ["start", "--vault", str(elsewhere)])  # parsed, then refused
    assert start.exit_code == 2 and "vaultd init" in start.output
    hooks = runner.invoke(main, ["hooks", "install", "claude-code", "--vault", str(elsewhere)])
    assert hooks.exit_code == 2 and "is not a vault" in hooks.output


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_option_has_help_text() -> None:
    bare = [f"vaultd {' '.join(path)} {'/'.join(p.opts)}" for path, cmd in _commands(main)
            for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert bare == []


def test_hook_and_hooks_say_who_runs_them(runner: CliRunner) -> None:
    assert "install or uninstall" in runner.invoke(main, ["hooks", "--help"]).output
    assert "Run by the agent, not by you" in runner.invoke(main, ["hook", "--help"]).output


# Every command that works on a vault, with the arguments it needs.
ON_A_VAULT = [
    ["index"], ["search", "q"], ["embed", "t"], ["status"], ["doctor"], ["doctor", "--fix"],
    ["run"], ["start"], ["stop"], ["eval", "--queries", "q.jsonl"], ["remember", "t"],
    ["lifecycle"], ["lifecycle", "--dry-run"], ["flush"], ["calibrate"],
    ["restore", "archive/x.md"], ["undo", "abc"], ["mcp"],
    ["hooks", "install", "claude-code"], ["hooks", "uninstall", "claude-code"],
    ["hook", "session-start"], ["hook", "pre-compact"], ["hook", "session-end"],
    ["service", "install"], ["service", "uninstall"],
    ["token", "add", "alice"], ["token", "list"], ["token", "revoke", "alice"],
]


def test_the_list_above_covers_every_command() -> None:
    missing = [path for path, _ in _commands(main)
               if not any(tuple(args[:len(path)]) == path for args in ON_A_VAULT)]
    assert missing == [("init",), ("model", "quantize")]  # neither works on a vault


@pytest.mark.slow
def test_every_command_refuses_a_folder_that_is_not_a_vault(tmp_path: Path) -> None:
    """The folder stays untouched (no `.vaultd/index.db` made behind the user's back), the
    answer is one line with the `vaultd init` hint, exit 2, and never a traceback."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\nsome note\n", encoding="utf-8")
    (tmp_path / "q.jsonl").write_text('{"id": "1", "query": "q", "gold_notes": ["a.md"]}\n')
    env = {**env_for(tmp_path), "HOME": str(tmp_path / "home")}
    for args in ON_A_VAULT:
        for where in (["--vault", str(folder), *args], [*args, "--vault", str(folder)]):
            out = vaultd(*where, env=env, cwd=tmp_path)
            said = out.stdout + out.stderr
            assert "Traceback" not in said, (where, said)
            assert out.returncode == 2, (where, said)
            assert "is not a vault" in said and f"vaultd init {folder}" in said, (where, said)
        assert sorted(p.name for p in folder.iterdir()) == ["a.md"], args
    no_vault = vaultd("status", env=env, cwd=folder)  # nothing named: discovery finds none
    assert no_vault.returncode == 2 and "vaultd init" in no_vault.stderr


# -------------------------------------------------------------------- an index that cannot serve

def _break_with_garbage(index: Path) -> None:
    index.write_bytes(b"this is not a SQLite database\n" * 100)


def _break_with_a_folder(index: Path) -> None:
    index.mkdir()


@pytest.mark.parametrize("breaking", [_break_with_garbage, _break_with_a_folder])
@pytest.mark.slow
def test_a_broken_index_is_one_line_naming_the_file_and_the_fix(
        tmp_path: Path, vault_root: Path, breaking: object) -> None:
    env = env_for(tmp_path)
    breaking(vault_root / ".vaultd" / "index.db")  # type: ignore[operator]
    for args in (["search", "rollback"], ["status"], ["index"], ["start", "--timeout", "60"]):
        out = vaultd("--vault", str(vault_root), *args, env=env, cwd=tmp_path)
        said = out.stdout + out.stderr
        assert "Traceback" not in said, (args, said)
        assert out.returncode == 2, (args, said)
        assert ".vaultd/index.db" in said and ("vaultd doctor --fix" in said
                                               or "move it away" in said), (args, said)
    doctor = vaultd("--vault", str(vault_root), "doctor", "--json", env=env, cwd=tmp_path)
    assert [f["kind"] for f in json.loads(doctor.stdout)["findings"]] == ["corrupt"]
    fixed = vaultd("--vault", str(vault_root), "doctor", "--fix", env=env, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def _immutable(path: Path, on: bool) -> bool:
    """`chattr +i`: not writable even by root (the suite may run as root, where chmod does
    not stop anyone). False when the file system or the container does not allow it."""
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("target", [".vaultd", ".vaultd/index.db"])
@pytest.mark.slow
def test_an_index_vaultd_may_not_write_is_a_permission_problem(
        tmp_path: Path, vault_root: Path, target: str) -> None:
    """A read-only `.vaultd/` or an index owned by someone else: one line naming the file and
    the fix (permissions, not a rebuild); doctor says "permission", not "corrupt", and
    `doctor --fix` reports it instead of crashing."""
    env = env_for(tmp_path)
    assert vaultd("--vault", str(vault_root), "index", env=env, cwd=tmp_path).returncode == 0
    locked = vault_root / target
    try:
        if not _immutable(locked, True):
            pytest.skip("chattr +i is not available here")
        for args in (["index"], ["status"], ["search", "rollback"],
                     ["start", "--timeout", "60"]):
            out = vaultd("--vault", str(vault_root), *args, env=env, cwd=tmp_path)
            said = out.stdout + out.stderr
            assert "Traceback" not in said, (args, said)
            assert out.returncode == 2, (args, said)
            assert "permission denied" in said or "not permitted" in said, (args, said)
        for args in (["doctor", "--json"], ["doctor", "--fix", "--json"]):
            out = vaultd("--vault", str(vault_root), *args, env=env, cwd=tmp_path)
            assert "Traceback" not in out.stderr, out.stderr
            assert out.returncode == 1, out.stdout + out.stderr
            report = json.loads(out.stdout)
            assert [f["kind"] for f in report["findings"]] == ["permission"]
            assert "chown" in report["findings"][0]["message"] and report["fixed"] == []
    finally:
        _immutable(locked, False)
