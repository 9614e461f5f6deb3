"""`vaultd mcp`: the vault as Model Context Protocol tools over stdio.

An adapter only: `MemoryTools` holds the verbs (search, get, write, flush) over one lazily
opened `Vault`; `build_server` registers them as MCP tools and translates `VaultdError` into
tool errors the agent can read. Search goes through the vault's daemon when one runs (its model
is warm) and runs in-process otherwise — `open_vault(daemon="auto")` decides.

Register it with an MCP client as the command `vaultd mcp --vault PATH`.
"""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from vaultd.errors import VaultdError
from vaultd.search_request import SearchRequest

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from vaultd.vault import Vault

SERVER_NAME = "vaultd"
MAX_K = 50
MAX_LINES = 1000
INSTRUCTIONS = (
    "Long-term memory in a markdown vault. Search it with memory_search before answering from "
    "memory; read more of a hit's file with memory_get (path and lines come from the hit); save "
    "what is worth keeping with memory_write; call memory_flush before your context is "
    "compacted or the session ends."
)


class PathError(VaultdError):
    """A path given to memory_get is not a readable file inside the vault."""


class MemoryTools:
    """The four memory verbs over one vault, opened on first use. Thread-safe: the MCP SDK runs
    sync tools in worker threads, and the vault's store is one SQLite connection."""

    def __init__(self, vault_path: Path | None) -> None:
        self.vault_path = vault_path
        self._vault: Vault | None = None
        self._lock = threading.RLock()

    @property
    def vault(self) -> Vault:
        with self._lock:
            if self._vault is None:
                from vaultd.vault import open_vault

                self._vault = open_vault(self.vault_path, daemon="auto")
            return self._vault

    def close(self) -> None:
        with self._lock:
            if self._vault is not None:
                self._vault.close()
                self._vault = None

    def search(self, query: str, k: int = 5, type: str | None = None) -> list[dict[str, Any]]:
        if not query.strip():
            raise VaultdError("the query is empty")
        if not 1 <= k <= MAX_K:
            raise VaultdError(f"k must be between 1 and {MAX_K}, not {k}")
        with self._lock:
            hits = self.vault.search(SearchRequest(query, k, types=(type,) if type else (),
                                                   record=True))
        return [hit.to_dict() for hit in hits]

    def get(self, path: str, from_line: int = 1, lines: int = 40) -> str:
        if from_line < 1:
            raise VaultdError(f"from_line counts from 1, not {from_line}")
        if not 1 <= lines <= MAX_LINES:
            raise VaultdError(f"lines must be between 1 and {MAX_LINES}, not {lines}")
        target = resolve_inside(self.vault.root, path)
        text = target.read_text(encoding="utf-8-sig", errors="replace")
        selected = text.splitlines(keepends=True)[from_line - 1:from_line - 1 + lines]
        return "".join(selected)

    def write(self, text: str, type: str | None = None,
              tags: list[str] | None = None) -> dict[str, str]:
        all_tags = list(tags or [])
        if type and type != "episodic" and type not in all_tags:
            all_tags.append(type)
        with self._lock:
            path, heading = self.vault.remember(text, tags=all_tags)
        return {"path": path, "heading": heading}

    def flush(self) -> dict[str, Any]:
        from vaultd.vault import flush_anywhere

        with self._lock:
            result = flush_anywhere(self.vault)
        return {"indexed": result["indexed"], "memory_written": result["memory_written"],
                "memory_chars": result["memory_chars"]}


def resolve_inside(root: Path, rel: str) -> Path:
    """The file `rel` names inside the vault `root`; PathError for an empty, absolute or `..`
    path, one that leads outside the vault through a symlink, or one that is not a file."""
    if not rel or not rel.strip() or "\x00" in rel:
        raise PathError("give a vault-relative path such as 'semantic/deploys.md'")
    if (PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive):
        raise PathError(f"{rel!r}: absolute paths are refused; give a path relative to the vault")
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        raise PathError(f"{rel!r}: '..' is refused; the path must stay inside the vault")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise PathError(f"{rel!r}: a symlink leads outside the vault; refused")
    if not target.is_file():
        raise PathError(f"{rel!r}: no such file in the vault")
    return target


def _build(vault_path: Path | None) -> tuple[MCPServer, MemoryTools]:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    tools = MemoryTools(vault_path)
    server: MCPServer = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS)

    def call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except VaultdError as exc:  # typed errors become messages only here, at the edge
            raise ToolError(str(exc)) from exc

    @server.tool()
    def memory_search(query: str, k: int = 5, type: str | None = None) -> list[dict[str, Any]]:
        """Search the memory vault (hybrid: meaning and keywords). Returns up to k hits, best
        first, each with path, lines, heading, type, date, score and the matching text. `type`
        keeps one kind of note: episodic, semantic or procedural."""
        return call(tools.search, query, k, type)

    @server.tool()
    def memory_get(path: str, from_line: int = 1, lines: int = 40) -> str:
        """Read `lines` lines of a vault file from line `from_line` (1-based). `path` is
        relative to the vault, as memory_search returns it."""
        return call(tools.get, path, from_line, lines)

    @server.tool()
    def memory_write(text: str, type: str | None = None,
                     tags: list[str] | None = None) -> dict[str, str]:
        """Remember something: append a timestamped entry to today's daily log. `type`
        (semantic, procedural) and `tags` become tags on the entry. Returns its path and
        heading."""
        return call(tools.write, text, type, tags)

    @server.tool()
    def memory_flush() -> dict[str, Any]:
        """Index what changed, connect new entries and rewrite MEMORY.md. Call before your
        context is compacted or the session ends."""
        return call(tools.flush)

    return server, tools


def build_server(vault_path: Path | None) -> MCPServer:
    """An MCP server with the memory tools over the vault at `vault_path` (None: `VAULTD_VAULT`,
    else the nearest parent holding `.vaultd/`). The vault is opened on the first tool call."""
    return _build(vault_path)[0]


def run(vault_path: Path | None) -> None:
    """Serve the memory tools on stdin/stdout until the client disconnects."""
    server, tools = _build(vault_path)
    try:
        server.run("stdio")
    finally:
        tools.close()
