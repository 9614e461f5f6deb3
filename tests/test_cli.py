"""The CLI, end to end through click, on a vault configured with the fake embedder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from vaultd.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache"),
                          "VAULTD_EMBEDDING_MODEL": "hash-256"})


@pytest.fixture
def vault_root(tmp_path: Path, runner: CliRunner) -> Path:
    root = tmp_path / "v"
    result = runner.invoke(main, ["init", str(root)])
    assert result.exit_code == 0, result.output
    (root / "semantic" / "deploy.md").write_text(
        "---\ntags: [ops]\n---\n# Deploy\n\n## Rollback\nfly releases rollback v41\n",
        encoding="utf-8")
    (root / "episodic" / "2026-11-20.md").write_text(
        "# 2026-11-20\n\n## 09:00 — pool\npostgres pool exhausted #incident\n", encoding="utf-8")
    return root


def test_init_creates_the_layout_and_never_overwrites(tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "MEMORY.md").write_text("my own memory file\n", encoding="utf-8")
    result = runner.invoke(main, ["init", str(root)])
    assert result.exit_code == 0
    assert "created .vaultd/config.toml" in result.output
    assert "created MEMORY.md" not in result.output
    assert (root / "MEMORY.md").read_text(encoding="utf-8") == "my own memory file\n"
    for folder in ("episodic", "semantic", "procedural"):
        assert not (root / folder).exists()  # a folder of notes: made by the first note there
    config = (root / ".vaultd" / "config.toml").read_text(encoding="utf-8")
    assert "[embedding]" in config and "# model =" in config
    again = runner.invoke(main, ["init", str(root)])
    assert "nothing to do" in again.output


def test_index_prints_a_summary_and_is_idempotent(vault_root: Path, runner: CliRunner) -> None:
    first = runner.invoke(main, ["--vault", str(vault_root), "index"])
    assert first.exit_code == 0, first.output
    summary = r"3 files; 3 new, .* \d+ chunks embedded, 0 reused; 0 skipped in"
    assert re.search(summary, first.output)
    second = runner.invoke(main, ["--vault", str(vault_root), "index", "--json"])
    report = json.loads(second.stdout)
    assert report["chunks_embedded"] == 0 and report["unchanged"] == 3


def test_index_reports_skips_and_warnings(vault_root: Path, runner: CliRunner) -> None:
    (vault_root / "semantic" / "bin.md").write_bytes(b"\x00\x01\x02binary")
    (vault_root / "semantic" / "yaml.md").write_text(
        "---\ntitle: [unclosed\n---\n# T\nbody words\n", encoding="utf-8")
    result = runner.invoke(main, ["--vault", str(vault_root), "index"])
    assert result.exit_code == 0
    assert "skipped semantic/bin.md: binary file" in result.output
    assert "warning: semantic/yaml.md:" in result.output and "broken YAML" in result.output
    hits = json.loads(runner.invoke(main, ["--vault", str(vault_root), "search", "body words",
                                           "--json"]).stdout)["hits"]
    assert hits[0]["path"] == "semantic/yaml.md"


def test_search_json_and_filters(vault_root: Path, runner: CliRunner) -> None:
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    out = runner.invoke(main, ["--vault", str(vault_root), "search", "rollback", "releases",
                               "-k", "2", "--json"])
    data = json.loads(out.stdout)
    assert data["query"] == "rollback releases" and data["stale_files"] == 0
    assert data["hits"][0]["path"] == "semantic/deploy.md"
    assert data["hits"][0]["lines"] == [7, 7]
    typed = json.loads(runner.invoke(main, ["--vault", str(vault_root), "search", "pool", "--type",
                                            "episodic", "--json"]).stdout)
    assert {h["type"] for h in typed["hits"]} == {"episodic"}
    human = runner.invoke(main, ["--vault", str(vault_root), "search", "rollback"])
    assert "semantic/deploy.md:7-7" in human.output


def test_search_finds_archived_entries_marked_and_can_leave_them_out(vault_root: Path,
                                                                     runner: CliRunner) -> None:
    (vault_root / "archive" / "episodic").mkdir(parents=True)
    (vault_root / "archive" / "episodic" / "2026-10-01.md").write_text(
        "# 2026-10-01\n\n## 08:00 — kiln\nthe kiln thermocouple reads low\n", encoding="utf-8")
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    args = ["--vault", str(vault_root), "search", "kiln", "thermocouple"]
    human = runner.invoke(main, args)
    assert "archive/episodic/2026-10-01.md:4-4" in human.output
    assert "[episodic, archived]" in human.output
    for flag, found in (("--archive", True), ("--no-archive", False)):
        data = json.loads(runner.invoke(main, [*args, flag, "--json"]).stdout)
        assert any(h["archived"] for h in data["hits"]) is found, flag


def test_search_warns_when_the_index_is_stale(vault_root: Path, runner: CliRunner) -> None:
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    (vault_root / "semantic" / "new.md").write_text("# New\nfresh\n", encoding="utf-8")
    out = runner.invoke(main, ["--vault", str(vault_root), "search", "fresh", "--json"])
    assert "index is stale: 1 file(s) changed" in out.output


def test_embed_json(vault_root: Path, runner: CliRunner) -> None:
    out = runner.invoke(main, ["--vault", str(vault_root), "embed", "hello", "world", "--json"])
    data = json.loads(out.stdout)
    assert data["model"] == "hash-256" and data["dims"] == 256
    assert len(data["vectors"]) == 2 and len(data["vectors"][0]) == 256


def test_status_json(vault_root: Path, runner: CliRunner) -> None:
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    data = json.loads(runner.invoke(main, ["--vault", str(vault_root), "status", "--json"]).stdout)
    assert data["notes"] == 3 and data["chunks"] == data["vectors"]
    assert data["model"]["id"] == "hash-256" and data["model"]["dims"] == 256
    assert data["sqlite_module"] in ("sqlite3", "sqlean") and data["sqlite_vec"]
    assert data["changed_since_index"] == 0 and data["last_index_at"]
    text = runner.invoke(main, ["--vault", str(vault_root), "status"]).output
    assert "sqlite-vec" in text and "hash-256 (256 d)" in text


def test_vault_discovery_from_a_subfolder(vault_root: Path, runner: CliRunner,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(vault_root / "semantic")
    out = runner.invoke(main, ["status", "--json"])
    assert json.loads(out.stdout)["vault"] == str(vault_root.resolve())


def test_errors_are_one_line_with_a_fix(tmp_path: Path, runner: CliRunner,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(main, ["status"])
    assert out.exit_code == 2
    assert "no vault found" in out.output and "vaultd init" in out.output
    root = tmp_path / "v2"
    runner.invoke(main, ["init", str(root)])
    (root / ".vaultd" / "config.toml").write_text("[embedding]\nmodel = 'nope'\n")
    out = runner.invoke(main, ["--vault", str(root), "status"],
                        env={"VAULTD_EMBEDDING_MODEL": None})
    assert out.exit_code == 2 and "unknown embedding model 'nope'" in out.output


def test_every_command_has_help_and_is_in_the_readme(runner: CliRunner) -> None:
    readme = README.read_text(encoding="utf-8")
    commands = sorted(main.commands)
    assert {"init", "index", "search", "embed", "status"} <= set(commands)
    for name in commands:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
        assert f"vaultd {name}" in readme, f"`vaultd {name}` is not documented in README.md"


def test_search_before_any_index_says_so(vault_root: Path, runner: CliRunner) -> None:
    out = runner.invoke(main, ["--vault", str(vault_root), "search", "rollback", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["hits"] == []
    assert "index is stale: 3 file(s) changed" in out.stderr


def test_eval_smoke(vault_root: Path, runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(main, ["--vault", str(vault_root), "index"])
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "1", "query": "fly releases rollback",
                                   "gold_notes": ["semantic/deploy.md"], "extra": 1}) + "\n"
                       + json.dumps({"id": "2", "query": "postgres pool exhausted",
                                     "gold_notes": ["episodic/2026-11-20.md"]}) + "\n")
    out = runner.invoke(main, ["--vault", str(vault_root), "eval", "--queries", str(queries),
                               "--mode", "bm25", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["queries"] == 2 and data["modes"]["bm25"]["r@1"] == 1.0
    table = runner.invoke(main, ["--vault", str(vault_root), "eval", "--queries", str(queries)])
    assert "nDCG@10" in table.output and "hybrid" in table.output


def test_daemon_lock_works_in_a_folder_never_initialised(tmp_path: Path) -> None:
    from vaultd.daemon.discovery import Lock

    lock = Lock(tmp_path / "notes")  # `vaultd --vault notes run` before any `vaultd init`
    lock.acquire()
    lock_file = tmp_path / "notes" / ".vaultd" / "daemon.lock"
    assert lock_file.read_text() == str(os.getpid())
    lock.release()


def test_flush_with_transcript_and_the_hooks(vault_root: Path, runner: CliRunner,
                                             tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "transcript.jsonl"
    out = runner.invoke(main, ["--vault", str(vault_root), "flush", "--transcript", str(fixture)])
    assert out.exit_code == 0, out.output
    assert "saved the session to episodic/" in out.output and "wrote MEMORY.md" in out.output
    logs = "".join(p.read_text() for p in (vault_root / "episodic").glob("*.md"))
    entries = logs.count("— Session transcript")
    assert entries == 1
    settings = tmp_path / "proj" / ".claude" / "settings.json"
    out = runner.invoke(main, ["--vault", str(vault_root), "hooks", "install", "claude-code",
                               "--project", str(tmp_path / "proj")])
    assert out.exit_code == 0 and "hook pre-compact" in settings.read_text()
    payload = json.dumps({"transcript_path": str(fixture), "hook_event_name": "PreCompact"})
    out = runner.invoke(main, ["--vault", str(vault_root), "hook", "pre-compact"], input=payload)
    assert out.exit_code == 0, out.output
    logs = "".join(p.read_text() for p in (vault_root / "episodic").glob("*.md"))
    assert logs.count("— Session transcript") == 1  # the hook finds every turn saved already
    out = runner.invoke(main, ["--vault", str(vault_root), "hooks", "uninstall", "claude-code",
                               "--project", str(tmp_path / "proj")])
    assert "removed 3 hook(s)" in out.output
