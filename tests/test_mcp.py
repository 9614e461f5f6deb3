"""`vaultd mcp`: a real MCP client session over stdio against the server in a subprocess, on a
tmp vault embedded with the fake `hash-256` model."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault

from vaultd.mcp_server import PathError, resolve_inside
from vaultd.vault import open_vault

pytest.importorskip("mcp")

DEPLOYS = """---
type: procedural
---
# Rolling back a deploy
1. Find the last green build.
2. Run the rollback job with its id.
3. Watch the error rate for ten minutes.
"""

NOTES = {
    "procedural/rollback.md": DEPLOYS,
    "semantic/database.md": "# Database\nWe run Postgres 16 on the primary cluster.\n",
}
TOOLS = {"memory_search", "memory_get", "memory_write", "memory_flush"}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update(VAULTD_EMBEDDING_MODEL="hash-256", VAULTD_CACHE_DIR=str(tmp_path / "cache"))
    return env


def _structured(result: Any) -> Any:
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


def _error_text(result: Any) -> str:
    assert result.is_error
    return " ".join(getattr(block, "text", "") for block in result.content)


def _server_params(root: Path, env: dict[str, str], cwd: Path) -> Any:
    """`vaultd mcp` for `root` as the official SDK's stdio client starts it."""
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-c", f"from pathlib import Path; from vaultd.mcp_server import run; "
                    f"run(Path({str(root)!r}))"],
        env=env, cwd=str(cwd))


async def _session(root: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    from mcp import ClientSession, stdio_client

    params = _server_params(root, env, cwd)
    out: dict[str, Any] = {}
    with open(cwd / "server-stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            out["tools"] = {t.name for t in (await session.list_tools()).tools}
            out["write"] = _structured(await session.call_tool(
                "memory_write", {"text": "The quokka migration finished on Tuesday.",
                                 "type": "semantic", "tags": ["zoo"]}))
            out["flush"] = _structured(await session.call_tool("memory_flush", {}))
            out["search"] = _structured(await session.call_tool(
                "memory_search", {"query": "quokka migration", "k": 5}))
            out["typed"] = _structured(await session.call_tool(
                "memory_search", {"query": "rollback job", "k": 3, "type": "procedural"}))
            out["get"] = _structured(await session.call_tool(
                "memory_get", {"path": "procedural/rollback.md", "from_line": 5, "lines": 2}))
            out["escape"] = _error_text(await session.call_tool("memory_get", {"path": "../x"}))
            out["absolute"] = _error_text(await session.call_tool(
                "memory_get", {"path": str(root / "semantic/database.md")}))
            out["link"] = _error_text(await session.call_tool(
                "memory_get", {"path": "semantic/outside.md"}))
    return out


@pytest.mark.slow
def test_mcp_session_exercises_every_tool(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES)
    outside = tmp_path / "secret.md"
    outside.write_text("not for agents\n", encoding="utf-8")
    (root / "semantic" / "outside.md").symlink_to(outside)
    env = _env(tmp_path)
    with open_vault(root, env=env, daemon="never") as vault:
        assert vault.profile.id == "hash-256"
        vault.index()

    out = asyncio.run(asyncio.wait_for(_session(root, env, tmp_path), timeout=60))

    assert out["tools"] >= TOOLS
    path = out["write"]["path"]
    assert path.startswith("episodic/") and "quokka" in out["write"]["heading"]
    written = (root / path).read_text(encoding="utf-8")
    assert "The quokka migration finished on Tuesday." in written and "#zoo #semantic" in written
    assert isinstance(out["flush"]["memory_written"], bool) and out["flush"]["memory_chars"] > 0
    assert any(h["path"] == path and "quokka" in h["text"] for h in out["search"])
    assert {"path", "lines", "score", "text", "type", "heading"} <= set(out["search"][0])
    assert out["typed"] and all(h["type"] == "procedural" for h in out["typed"])
    assert out["get"] == "1. Find the last green build.\n2. Run the rollback job with its id.\n"
    assert "'..' is refused" in out["escape"]
    assert "absolute paths are refused" in out["absolute"]
    assert "outside the vault" in out["link"]


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "..\\x", "", "C:\\x"])
def test_resolve_inside_refuses_escapes(tmp_path: Path, rel: str) -> None:
    root = make_vault(tmp_path)
    with pytest.raises(PathError):
        resolve_inside(root, rel)


def test_resolve_inside_accepts_vault_files(tmp_path: Path) -> None:
    root = make_vault(tmp_path, NOTES)
    assert resolve_inside(root, "semantic/database.md") == \
        (root / "semantic/database.md").resolve()


# ------------------------------------------------------------ the full surface (issue 16.4, 12.12)

SECRETS = {
    ".vaultd/token": "s3cret-token\n",
    ".git/config": "[remote]\nurl = https://user:pw@example.com\n",
    ".git/notes.md": "# in .git\n",
    ".obsidian/plugins/sync/data.json": '{"apiKey": "sk-123"}\n',
    ".obsidian/plugins/sync/README.md": "# plugin readme\n",
    "private/diary.md": "# diary\nignored by [index] ignore\n",
    "semantic/config.txt": "not a note\n",
}
READ_ONLY = {"memory_search", "memory_get", "memory_recent", "memory_similar"}
WRITES = {"memory_write", "memory_write_note", "memory_edit_note", "memory_flush"}


async def _full_session(root: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    from mcp import ClientSession, stdio_client

    params = _server_params(root, env, cwd)
    out: dict[str, Any] = {}

    async def call(name: str, args: dict[str, Any]) -> Any:
        return await session.call_tool(name, args)

    with open(cwd / "server-stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            init = await session.initialize()
            out["server"] = init.server_info
            out["tools"] = {t.name: t for t in (await session.list_tools()).tools}
            out["resources"] = [str(r.uri) for r in (await session.list_resources()).resources]
            out["templates"] = [t.uri_template for t in
                                (await session.list_resource_templates()).resource_templates]
            out["memory"] = (await session.read_resource("vaultd://memory")).contents[0].text
            out["note"] = (await session.read_resource(
                "vaultd://note/procedural/rollback.md")).contents[0].text
            out["secret_resources"] = {}
            for rel in SECRETS:
                try:
                    await session.read_resource(f"vaultd://note/{rel}")
                    out["secret_resources"][rel] = "read"
                except Exception as exc:  # the SDK raises the server's error
                    out["secret_resources"][rel] = str(exc)
            out["secret_tools"] = {
                (tool, rel): await call(tool, {"path": rel, **extra})
                for rel in SECRETS for tool, extra in (
                    ("memory_get", {}), ("memory_similar", {}),
                    ("memory_edit_note", {"operation": "append", "content": "x"}))}
            out["bad"] = {
                "type": await call("memory_search", {"query": "q", "type": "bogus"}),
                "k": await call("memory_search", {"query": "q", "k": 0}),
                "since": await call("memory_search", {"query": "q", "since": "2026-13-45"}),
                "until": await call("memory_search", {"query": "q", "until": "2026-02-30"}),
                "op": await call("memory_edit_note", {"path": "semantic/database.md",
                                                      "operation": "delete", "content": ""}),
            }
            out["created"] = _structured(await call("memory_write_note", {
                "title": "Blue-green deploys", "type": "procedural", "tags": ["ops"],
                "content": "Switch the router to the idle colour, then drain the old one."}))
            out["created_text"] = (root / out["created"]["path"]).read_text(encoding="utf-8")
            out["again"] = await call("memory_write_note", {
                "title": "Blue-green deploys", "type": "procedural", "content": "clobber?"})
            out["found"] = _structured(await call("memory_search", {
                "query": "switch the router to the idle colour", "k": 3}))
            out["edit_append"] = _structured(await call("memory_edit_note", {
                "path": "semantic/database.md", "operation": "append",
                "content": "Replicas: two, in another zone."}))
            out["edit_section"] = _structured(await call("memory_edit_note", {
                "path": "procedural/blue-green-deploys.md", "operation": "replace_section",
                "section": "Rollback", "content": "Switch the router back."}))
            out["edit_ambiguous"] = await call("memory_edit_note", {
                "path": "semantic/database.md", "operation": "find_replace",
                "find_text": "no such words", "content": "x"})
            out["recent"] = _structured(await call("memory_recent", {"days": 1, "limit": 10}))
            out["recent_typed"] = _structured(await call("memory_recent", {
                "type": "procedural"}))
            out["similar"] = _structured(await call("memory_similar", {
                "path": "procedural/rollback.md", "k": 3}))
    return out


@pytest.mark.slow
def test_mcp_server_has_the_full_memory_surface(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {
        **NOTES, **SECRETS,
        "procedural/rollback-again.md": "# Rolling back twice\nRun the rollback job again "
                                        "with the previous build id; watch the error rate.\n",
    })
    env = {**_env(tmp_path), "VAULTD_INDEX_IGNORE": "private"}
    with open_vault(root, env=env, daemon="never") as vault:
        vault.index()
    before = {rel: (root / rel).read_bytes() for rel in SECRETS}

    out = asyncio.run(asyncio.wait_for(_full_session(root, env, tmp_path), timeout=90))

    # the server says who it is; every tool is described, typed, bounded and annotated
    from vaultd import __version__

    assert out["server"].name == "vaultd" and out["server"].version == __version__
    tools = out["tools"]
    assert set(tools) >= READ_ONLY | WRITES
    for name, tool in tools.items():
        assert tool.description, name
        for arg, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{name}({arg}) has no description"
        assert tool.annotations.read_only_hint is (name in READ_ONLY), name
    search = tools["memory_search"].input_schema["properties"]
    assert search["k"]["minimum"] == 1 and search["k"]["maximum"] == 50
    assert search["type"]["anyOf"][0]["enum"] == ["episodic", "semantic", "procedural", "note"]
    edit = tools["memory_edit_note"].input_schema["properties"]
    assert edit["operation"]["enum"] == ["append", "prepend", "find_replace",
                                         "replace_section"]

    # MEMORY.md and notes are resources
    assert out["resources"] == ["vaultd://memory"]
    assert out["templates"] == ["vaultd://note/{+path}"]
    assert out["memory"] == (root / "MEMORY.md").read_text(encoding="utf-8")
    assert out["note"] == DEPLOYS

    # ignored paths, non-notes and what the user ignores are unreachable through every tool
    # and resource — and unchanged
    for rel, said in out["secret_resources"].items():
        assert said != "read", rel
    for (tool, rel), result in out["secret_tools"].items():
        assert result.is_error, (tool, rel)
        text = _error_text(result)
        assert "ignores this path" in text or "only notes" in text, (tool, rel, text)
        assert "s3cret" not in text and "sk-123" not in text
    assert {rel: (root / rel).read_bytes() for rel in SECRETS} == before

    # mistakes are errors naming the valid values, never an empty answer
    bad = {key: _error_text(result) for key, result in out["bad"].items()}
    assert "episodic" in bad["type"] and "procedural" in bad["type"]
    assert "greater than or equal to 1" in bad["k"]
    assert "YYYY-MM-DD" in bad["since"] or "pattern" in bad["since"]
    assert "'until' must be a date YYYY-MM-DD" in bad["until"]
    assert "find_replace" in bad["op"]

    # writing and editing notes, checked and atomic, then found
    assert out["created"] == {"path": "procedural/blue-green-deploys.md", "created": True}
    created = out["created_text"]
    assert created.startswith("---\ntype: procedural\n") and "tags: [ops]" in created
    assert "# Blue-green deploys\n\nSwitch the router" in created
    assert "exists already" in _error_text(out["again"])
    assert out["found"][0]["path"] == "procedural/blue-green-deploys.md"
    assert out["edit_append"] == {"path": "semantic/database.md", "written": True}
    assert (root / "semantic/database.md").read_text(encoding="utf-8").endswith(
        "primary cluster.\nReplicas: two, in another zone.\n")
    assert created.rstrip("\n") + "\n\n## Rollback\nSwitch the router back.\n" == \
        (root / "procedural/blue-green-deploys.md").read_text(encoding="utf-8")
    assert "occurs 0 time(s)" in _error_text(out["edit_ambiguous"])

    # recent activity and similar notes
    recent = [item["path"] for item in out["recent"]]
    assert recent[:2] == ["procedural/blue-green-deploys.md", "semantic/database.md"]
    assert not any(p.startswith((".git", ".obsidian", "private")) for p in recent)
    assert {item["type"] for item in out["recent_typed"]} == {"procedural"}
    similar = [item["path"] for item in out["similar"]]
    assert "procedural/rollback.md" not in similar
    assert similar[0] == "procedural/rollback-again.md"


def test_agent_edits_refuse_to_touch_the_managed_block() -> None:
    from vaultd.agent_edits import EditError, apply_edit

    text = "# Memory\nmine\n<!-- vaultd:begin -->\n- a fact\n<!-- vaultd:end -->\n"
    with pytest.raises(EditError, match="managed block"):
        apply_edit(text, "find_replace", "- another", find_text="- a fact")
    assert apply_edit(text, "find_replace", "ours", find_text="mine").startswith("# Memory\nours")


@pytest.mark.parametrize("rel", [".vaultd/token", ".git/config", ".git/notes.md",
                                 ".obsidian/plugins/sync/data.json", "private/diary.md",
                                 "semantic/config.txt", "semantic/link.md", "linked/a.md"])
def test_note_path_refuses_what_vaultd_does_not_index(tmp_path: Path, rel: str) -> None:
    from vaultd.layout import Ignore
    from vaultd.mcp_server import note_path

    root = make_vault(tmp_path, {**SECRETS, "semantic/real.md": "# real\n",
                                 "elsewhere/a.md": "# a\n"})
    (root / "semantic/link.md").symlink_to(root / ".git/notes.md")  # inside, but ignored
    (root / "linked").symlink_to(root / "elsewhere")
    with pytest.raises(PathError):
        note_path(root, rel, Ignore(("private",)))
    assert note_path(root, "semantic/real.md", Ignore(("private",))).is_file()


@pytest.mark.parametrize("rel", list(SECRETS))
def test_memory_get_refuses_what_vaultd_ignores(tmp_path: Path, rel: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12.12: memory_get returned .vaultd/token, .git/config and Obsidian plugin
    settings (API keys) — files vaultd itself never indexes."""
    from vaultd.mcp_server import MemoryTools

    root = make_vault(tmp_path, SECRETS)
    monkeypatch.setenv("VAULTD_INDEX_IGNORE", "private")
    tools = MemoryTools(root)
    try:
        with pytest.raises(PathError):
            tools.get(rel)
    finally:
        tools.close()
