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


async def _session(root: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", f"from pathlib import Path; from vaultd.mcp_server import run; "
                    f"run(Path({str(root)!r}))"],
        env=env, cwd=str(cwd))
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
