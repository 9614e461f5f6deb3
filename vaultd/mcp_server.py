"""The vault as Model Context Protocol tools and resources: over stdio (`vaultd mcp`) and over
streamable HTTP at the daemon's `/mcp` (`daemon/mcp_http`), the same tools either way.

An adapter only: `MemoryTools` holds the verbs — search, read, recent activity, similar notes,
append to the daily log, write or edit a note, flush — over one lazily opened `Vault`;
`build_server` registers them as MCP tools (each argument described, bounded, typed with its
choices; read tools marked read-only) and MEMORY.md and the notes as resources, and translates
`VaultdError` into tool errors the agent can read. Served by the daemon (`MemoryTools` over
its `InDaemon` parts), search and flush call the daemon's own warm model and index in-process.
Over stdio, search goes through the vault's daemon when one runs (its model is warm) and runs
in-process otherwise — `open_vault(daemon="auto")`.

What an agent may touch is what vaultd indexes: note files (`.md`, `.markdown`) inside the
vault, not ignored (`.vaultd/`, `.git/`, `.obsidian/`, … and `[index] ignore`), reached
without a symbolic link. Every write is checked and atomic (`vaultd.edits`): a note the user
changed meanwhile is not overwritten, and an existing note is never clobbered by a new one.

Register it with an MCP client as the URL `http://127.0.0.1:PORT/mcp` with the daemon's bearer
token (README, Agents), or as the command `vaultd mcp --vault PATH`.
"""

# No `from __future__ import annotations`: the SDK reads the tools' signatures at run time,
# and their argument types are built inside `_build` (pydantic and mcp load only there).
import datetime as dt
import os
import threading
import time
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Protocol

from vaultd import layout
from vaultd.errors import VaultdError
from vaultd.search_request import SearchRequest

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from vaultd.vault import Vault

SERVER_NAME = "vaultd"
MAX_K = 50
MAX_LINES = 1000
MAX_RECENT = 100
SIMILAR_QUERY_CHARS = 2000  # the note's opening: the model reads at most ~256 tokens anyway
RESOURCE_SCHEME = "vaultd"
INSTRUCTIONS = (
    "Long-term memory in a markdown vault. Search it with memory_search before answering from "
    "memory; read more of a hit's note with memory_get (path and lines come from the hit); "
    "see what changed lately with memory_recent and what relates to a note with "
    "memory_similar. Save an event or observation with memory_write (today's daily log); "
    "write lasting knowledge or a how-to as its own note with memory_write_note, and correct "
    "a note with memory_edit_note. Call memory_flush before your context is compacted or the "
    "session ends. MEMORY.md (resource vaultd://memory) is the vault's summary."
)


class PathError(VaultdError):
    """A path given to a memory tool is not a note the agent may read or write."""


def server_version() -> str:
    """vaultd's package version (what the MCP client is told in `serverInfo`)."""
    from importlib.metadata import PackageNotFoundError, version

    from vaultd import DISTRIBUTION, __version__

    try:
        return version(DISTRIBUTION)  # not "vaultd": on the index, an unrelated project
    except PackageNotFoundError:  # a source checkout that was never installed
        return __version__


class InDaemon(Protocol):
    """What the daemon gives the tools it serves at /mcp: its vault (files, settings) and the
    search and flush its HTTP API answers with (the warm model and index, the single writer)."""

    vault: "Vault"

    def search(self, request: SearchRequest) -> dict[str, Any]: ...
    def flush_now(self) -> dict[str, Any]: ...


class MemoryTools:
    """The memory verbs over one vault: opened on first use (stdio), or the daemon's own
    (`daemon`, served at /mcp). Thread-safe: the MCP SDK runs sync tools in worker threads,
    and a vault opened here has one SQLite connection."""

    def __init__(self, vault_path: Path | None, *, daemon: InDaemon | None = None) -> None:
        self.vault_path = vault_path
        self.daemon = daemon
        self._vault: Vault | None = None
        self._lock = threading.RLock()

    @property
    def vault(self) -> "Vault":
        if self.daemon is not None:
            return self.daemon.vault
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

    def _search(self, request: SearchRequest) -> list[dict[str, Any]]:
        """The hits as `/search` gives them: the daemon's reads, else the vault's search."""
        if self.daemon is not None:
            return list(self.daemon.search(request)["hits"])
        with self._lock:
            return [hit.to_dict() for hit in self.vault.search(request)]

    # -- reading
    def search(self, query: str, k: int = 5, type: str | None = None,
               since: str | None = None, until: str | None = None,
               full: bool = False) -> list[dict[str, Any]]:
        if not 1 <= k <= MAX_K:
            raise VaultdError(f"k must be between 1 and {MAX_K}, not {k}")
        request = SearchRequest(query, k, types=(type,) if type else (), since=since,
                                until=until, full=full, record=True)
        try:
            request.check()  # the same rules as the CLI and /search
        except ValueError as exc:
            raise VaultdError(str(exc)) from exc
        return self._search(request)

    def get(self, path: str, from_line: int = 1, lines: int = 40) -> str:
        if from_line < 1:
            raise VaultdError(f"from_line counts from 1, not {from_line}")
        if not 1 <= lines <= MAX_LINES:
            raise VaultdError(f"lines must be between 1 and {MAX_LINES}, not {lines}")
        text = self.read(path)
        selected = text.splitlines(keepends=True)[from_line - 1:from_line - 1 + lines]
        return "".join(selected)

    def read(self, path: str) -> str:
        """The whole text of a note the agent may read."""
        from vaultd.edits import read

        target = note_path(self.vault.root, path, self.vault.ignore)
        data = read(target).data  # never waits on a FIFO, never follows a link
        text = data.decode("utf-8-sig", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n")  # as a text-mode read gives it

    def memory(self) -> str:
        """MEMORY.md: what an agent reads at session start."""
        path = self.vault.root / layout.MEMORY_FILE
        if not path.is_file() or path.is_symlink():
            return ""
        return path.read_text(encoding="utf-8-sig", errors="replace")

    def recent(self, days: int = 7, limit: int = 20,
               type: str | None = None) -> list[dict[str, Any]]:
        """Notes changed in the last `days` days, newest first: path, type, title, when, and
        for a daily log the headings of its latest entries."""
        from vaultd.notes import parse

        if not 1 <= days <= 3650:
            raise VaultdError(f"days must be between 1 and 3650, not {days}")
        if not 1 <= limit <= MAX_RECENT:
            raise VaultdError(f"limit must be between 1 and {MAX_RECENT}, not {limit}")
        root, ignore = self.vault.root, self.vault.ignore
        cutoff = time.time_ns() - days * 86_400 * 10**9
        files = sorted(((st.mtime_ns, rel) for rel, st in layout.scan(root, ignore).files.items()
                        if st.mtime_ns >= cutoff and not layout.is_archived(rel)), reverse=True)
        out: list[dict[str, Any]] = []
        for mtime_ns, rel in files:
            try:
                note = parse(rel, (root / rel).read_text(encoding="utf-8-sig", errors="replace"))
            except OSError:
                continue  # gone or unreadable since the scan
            if type and note.type != type:
                continue
            item: dict[str, Any] = {
                "path": rel, "type": note.type, "title": note.title,
                "modified": dt.datetime.fromtimestamp(mtime_ns / 1e9).isoformat(
                    timespec="seconds")}
            if note.is_daily:
                item["latest_entries"] = [e.heading for e in note.entries[-5:]][::-1]
            out.append(item)
            if len(out) == limit:
                break
        return out

    def similar(self, path: str, k: int = 5) -> list[dict[str, Any]]:
        """The notes nearest in meaning to the note at `path` (itself left out), best first."""
        from vaultd.notes import parse

        if not 1 <= k <= MAX_K:
            raise VaultdError(f"k must be between 1 and {MAX_K}, not {k}")
        text = self.read(path)
        rel = note_rel(path)
        note = parse(rel, text)
        body = "\n".join(note.lines[note.body_start - 1:]).strip()
        query = f"{note.title}\n{body}"[:SIMILAR_QUERY_CHARS]
        if not body:
            raise VaultdError(f"{rel!r} has no text to compare")
        hits = self._search(SearchRequest(query, min(1000, 5 * k + 10), mode="vector",
                                          archive="none"))
        out: list[dict[str, Any]] = []
        for hit in hits:
            if hit["path"] == rel or any(o["path"] == hit["path"] for o in out):
                continue
            out.append({"path": hit["path"], "score": round(hit["score"], 4),
                        "type": hit["type"], "heading": hit["heading"],
                        "lines": list(hit["lines"]), "text": hit["text"]})
            if len(out) == k:
                break
        return out

    # -- writing: checked and atomic (vaultd.edits), inside the vault
    def write(self, text: str, type: str | None = None,
              tags: list[str] | None = None) -> dict[str, str]:
        self._check_text(text)  # redacted by `Vault.remember`, the one way into the daily log
        all_tags = list(tags or [])
        if type and type != "episodic" and type not in all_tags:
            all_tags.append(type)
        with self._lock:
            path, heading = self.vault.remember(text, tags=all_tags)
        self._index([path])
        return {"path": path, "heading": heading}

    def write_note(self, title: str, content: str, type: str = "semantic",
                   tags: list[str] | None = None) -> dict[str, Any]:
        """A new note `TYPE/slug-of-title.md`; refused if that file exists (edit it instead)."""
        from vaultd.agent_edits import new_note, slug
        from vaultd.edits import ConflictError, create_new

        self._check_text(content)
        title, content = self._redact(title), self._redact(content)
        rel = f"{type}/{slug(title)}.md"
        target = note_path(self.vault.root, rel, self.vault.ignore, must_exist=False)
        text = new_note(title, content, type, list(tags or []), dt.date.today().isoformat())
        try:
            create_new(target, text, root=self.vault.root)
        except ConflictError as exc:
            raise VaultdError(f"{rel!r} exists already: read it with memory_get and change "
                              "it with memory_edit_note, or choose another title") from exc
        self._index([rel])
        return {"path": rel, "created": True}

    def edit_note(self, path: str, operation: str, content: str, find_text: str | None = None,
                  section: str | None = None, expected_replacements: int = 1) -> dict[str, Any]:
        """One edit of an existing note, written only if the note did not change meanwhile."""
        from vaultd.agent_edits import apply_edit
        from vaultd.edits import read, replace_checked

        self._check_text(content)
        content = self._redact(content)  # the agent's text only: the note's own stays as it is
        target = note_path(self.vault.root, path, self.vault.ignore)
        snapshot = read(target)
        new = apply_edit(snapshot.text, operation, content, find_text=find_text,
                         section=section, expected_replacements=expected_replacements)
        self._check_text(new)
        # ConflictError: the user changed it
        written = replace_checked(snapshot, new, root=self.vault.root)
        rel = note_rel(path)
        if written:
            self._index([rel])
        return {"path": rel, "written": written}

    def _redact(self, text: str) -> str:
        """The agent's text with credentials redacted, unless `[privacy] redact = false`."""
        from vaultd.redact import redact_if

        return redact_if(text, self.vault.settings.privacy.redact)

    def flush(self) -> dict[str, Any]:
        from vaultd.vault import flush_anywhere

        if self.daemon is not None:  # the daemon's own flush, on its main thread
            from vaultd.lifecycle.flush import FlushReport

            result = FlushReport.from_dict(self.daemon.flush_now())
        else:
            with self._lock:
                result = flush_anywhere(self.vault)
        return {"indexed": result.indexed, "memory_written": result.memory_written,
                "memory_chars": result.memory_chars}

    def _check_text(self, text: str) -> None:
        """Text vaultd can index: no NUL (the file would be skipped as binary), within
        `[index] max_file_bytes`."""
        if "\x00" in text:
            raise VaultdError("the text holds a NUL character; vaultd would skip the file as "
                              "binary")
        limit = self.vault.settings.index.max_file_bytes
        if len(text.encode("utf-8", "surrogatepass")) > limit:
            raise VaultdError(f"the text is over {limit:,} bytes ([index] max_file_bytes); "
                              "split it into several notes")

    def _index(self, rels: list[str]) -> None:
        """Make a write searchable now: the daemon's watcher does it when a daemon runs (it is
        the index's only writer); otherwise index the written file here."""
        from vaultd.daemon.client import DaemonOrLocal

        if self.daemon is not None:  # served by the daemon: its watcher has the event
            return

        def local() -> None:
            with self._lock:
                self.vault.indexer().sync_paths(rels)

        DaemonOrLocal(self.vault.root).run(lambda _daemon: None, local)


def note_rel(rel: str) -> str:
    """A vault-relative path as vaultd stores it (posix, no `./`)."""
    return PurePosixPath(rel.replace("\\", "/")).as_posix()


def note_path(root: Path, rel: str, ignore: layout.Ignore, *, must_exist: bool = True) -> Path:
    """The note `rel` names inside the vault `root`, if an agent may read or write it: what
    vaultd indexes — a `.md`/`.markdown` file, not ignored (`.vaultd/`, `.git/`, `.obsidian/`,
    … and `[index] ignore`) — and what the write gate allows (`resolve_inside`). PathError
    otherwise, saying why."""
    _plain(rel)
    clean = note_rel(rel)
    if ignore.ignored(clean):
        raise PathError(f"{rel!r}: vaultd ignores this path (.vaultd/, .git/, .obsidian/, "
                        "... and [index] ignore); it is not readable or writable here")
    if not clean.lower().endswith(layout.NOTE_SUFFIXES):
        raise PathError(f"{rel!r}: only notes ({', '.join(layout.NOTE_SUFFIXES)}) are "
                        "readable and writable here")
    return resolve_inside(root, rel, must_exist=must_exist)


def _plain(rel: str) -> None:
    """PathError for an empty, absolute or `..` path (the agent gets told which)."""
    if not rel or not rel.strip() or "\x00" in rel:
        raise PathError("give a vault-relative path such as 'semantic/deploys.md'")
    if (PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive):
        raise PathError(f"{rel!r}: absolute paths are refused; give a path relative to the vault")
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        raise PathError(f"{rel!r}: '..' is refused; the path must stay inside the vault")


def resolve_inside(root: Path, rel: str, *, must_exist: bool = True) -> Path:
    """The file `rel` names inside the vault `root`, if the write gate lets an agent reach it
    (`gate.vault_path`, for reads and writes alike: no symbolic link on the way, not in
    `.git/`, `.vaultd/`, … nor in a nested vault, no name too long for the file system, not a
    FIFO or device, not a hard link to vaultd's own files). PathError otherwise, saying why;
    also (`must_exist`) when it is not a file."""
    from vaultd import gate
    from vaultd.errors import ConflictError

    _plain(rel)
    try:
        target = gate.vault_path(root, rel, reading=True)
        exists = os.path.lexists(target)
    except ConflictError as exc:
        raise PathError(str(exc)) from None
    except OSError as exc:  # the file system's own refusal (a name it cannot hold, …)
        raise PathError(f"{rel!r}: {exc.strerror or exc}") from None
    if must_exist and not exists:
        raise PathError(f"{rel!r}: no such file in the vault")
    return target


def _build(vault_path: Path | None,
           daemon: InDaemon | None = None) -> "tuple[MCPServer, MemoryTools]":
    from typing import Annotated, Literal

    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError
    from mcp.types import ToolAnnotations
    from pydantic import Field

    tools = MemoryTools(vault_path, daemon=daemon)
    server: MCPServer = MCPServer(SERVER_NAME, title="vaultd memory", version=server_version(),
                                  instructions=INSTRUCTIONS)
    reading = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                              idempotent_hint=True, open_world_hint=False)
    adding = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                             idempotent_hint=False, open_world_hint=False)
    changing = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                               idempotent_hint=False, open_world_hint=False)

    NoteType = Literal["episodic", "semantic", "procedural", "note"]  # search_request.TYPES
    Path_ = Annotated[str, Field(description="A note's path relative to the vault, as "
                                 "memory_search returns it, e.g. 'semantic/deploys.md'.")]
    Date = Annotated[str | None, Field(
        description="A date YYYY-MM-DD (inclusive); omit for no bound.",
        pattern=r"^\d{4}-\d{2}-\d{2}$")]
    Tags = Annotated[list[str] | None, Field(description="Tags for it, without '#'.")]

    def call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except VaultdError as exc:  # typed errors become messages only here, at the edge
            raise ToolError(str(exc)) from exc

    @server.tool(annotations=reading)
    def memory_search(
            query: Annotated[str, Field(min_length=1, description=(
                "What to look for, in words: a question or keywords."))],
            k: Annotated[int, Field(ge=1, le=MAX_K, description="How many hits, at most.")] = 5,
            type: Annotated[NoteType | None, Field(description=(
                "Only notes of this type: episodic (what happened), semantic (what is "
                "known), procedural (how to do things), note (anything else)."))] = None,
            since: Date = None, until: Date = None,
            full: Annotated[bool, Field(description=(
                "Each hit's whole chunk as its text, not only the lines that best match "
                "the query."))] = False) -> list[dict[str, Any]]:
        """Search the memory vault (hybrid: meaning and keywords). Returns up to k hits, best
        first, each with path, lines, heading, type, date, score, the matching text (the
        lines of the hit that best match the query, a few hundred characters; `lines` spans
        the whole, which `full` or memory_get returns) and `archived` (true for a faded or
        merged entry kept under archive/: still found, ranked below live notes of similar
        relevance)."""
        return call(tools.search, query, k, type, since, until, full)

    @server.tool(annotations=reading)
    def memory_get(
            path: Path_,
            from_line: Annotated[int, Field(ge=1, description="First line, from 1.")] = 1,
            lines: Annotated[int, Field(ge=1, le=MAX_LINES,
                                        description="How many lines.")] = 40) -> str:
        """Read a note: `lines` lines from line `from_line`. Only notes vaultd indexes are
        readable (not .vaultd/, .git/, .obsidian/ or other ignored paths)."""
        return call(tools.get, path, from_line, lines)

    @server.tool(annotations=reading)
    def memory_recent(
            days: Annotated[int, Field(ge=1, le=3650, description=(
                "How far back, in days."))] = 7,
            limit: Annotated[int, Field(ge=1, le=MAX_RECENT, description=(
                "How many notes, at most."))] = 20,
            type: Annotated[NoteType | None, Field(description=(
                "Only notes of this type."))] = None) -> list[dict[str, Any]]:
        """Recent activity: the notes changed in the last `days` days, newest first, with
        type, title and time; for a daily log, its latest entries' headings."""
        return call(tools.recent, days, limit, type)

    @server.tool(annotations=reading)
    def memory_similar(
            path: Path_,
            k: Annotated[int, Field(ge=1, le=MAX_K, description=(
                "How many notes, at most."))] = 5) -> list[dict[str, Any]]:
        """Notes nearest in meaning to the note at `path` (itself left out), best first: to
        build context around a note, or to find where new knowledge belongs."""
        return call(tools.similar, path, k)

    @server.tool(annotations=adding)
    def memory_write(
            text: Annotated[str, Field(min_length=1, description="What to remember.")],
            type: Annotated[Literal["episodic", "semantic", "procedural"] | None, Field(
                description="What kind of memory it is; kept as a tag for the lifecycle's "
                "review.")] = None,
            tags: Tags = None) -> dict[str, str]:
        """Remember something that happened: append a timestamped entry to today's daily log
        (episodic/YYYY-MM-DD.md). Returns its path and heading."""
        return call(tools.write, text, type, tags)

    @server.tool(annotations=adding)
    def memory_write_note(
            title: Annotated[str, Field(min_length=1, description=(
                "The note's title; it also names the file (TYPE/title-in-lower-case.md)."))],
            content: Annotated[str, Field(min_length=1, description="The note, in markdown.")],
            type: Annotated[Literal["semantic", "procedural"], Field(description=(
                "semantic: what is known (facts, decisions); procedural: how to do "
                "something."))] = "semantic",
            tags: Tags = None) -> dict[str, Any]:
        """Write lasting knowledge or a how-to as a new note. Never overwrites: if the note
        exists, change it with memory_edit_note."""
        return call(tools.write_note, title, content, type, tags)

    @server.tool(annotations=changing)
    def memory_edit_note(
            path: Path_,
            operation: Annotated[Literal["append", "prepend", "find_replace",
                                         "replace_section"], Field(description=(
                "append / prepend: add content at the end / after the frontmatter; "
                "find_replace: replace find_text with content; replace_section: replace the "
                "body of the section headed `section` (added at the end if there is none)."))],
            content: Annotated[str, Field(description="The new text.")],
            find_text: Annotated[str | None, Field(description=(
                "find_replace: the exact text to replace."))] = None,
            section: Annotated[str | None, Field(description=(
                "replace_section: the heading, e.g. 'Rollback'."))] = None,
            expected_replacements: Annotated[int, Field(ge=1, le=1000, description=(
                "find_replace: how many times find_text must occur."))] = 1,
    ) -> dict[str, Any]:
        """Edit an existing note. Checked and atomic: if the note changed since it was read,
        nothing is written and the error says so (read it again and retry)."""
        return call(tools.edit_note, path, operation, content, find_text, section,
                    expected_replacements)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def memory_flush() -> dict[str, Any]:
        """Index what changed, connect new entries and rewrite MEMORY.md's managed block. Call
        before your context is compacted or the session ends."""
        return call(tools.flush)

    def resource(fn: Any, *args: Any) -> str:
        try:
            return fn(*args)
        except VaultdError as exc:
            raise ResourceError(str(exc)) from exc

    @server.resource(f"{RESOURCE_SCHEME}://memory", name=layout.MEMORY_FILE,
                     mime_type="text/markdown",
                     description="What an agent reads at session start: the vault's summary "
                     "(key facts, procedures, recent episodes, open threads).")
    def memory_resource() -> str:
        return resource(tools.memory)

    @server.resource(f"{RESOURCE_SCHEME}://note/{{+path}}", name="note",
                     mime_type="text/markdown",
                     description="A note of the vault by its vault-relative path.")
    def note_resource(path: str) -> str:
        return resource(tools.read, path)

    return server, tools


def build_server(vault_path: Path | None) -> "MCPServer":
    """An MCP server with the memory tools over the vault at `vault_path` (None: `VAULTD_VAULT`,
    else the nearest parent holding `.vaultd/`). The vault is opened on the first tool call."""
    return _build(vault_path)[0]


def daemon_server(daemon: InDaemon) -> "MCPServer":
    """The MCP server the daemon serves at /mcp: the same tools over its own vault, search and
    flush (`daemon/mcp_http` runs it)."""
    return _build(None, daemon)[0]


def run(vault_path: Path | None) -> None:
    """Serve the memory tools on stdin/stdout until the client disconnects."""
    server, tools = _build(vault_path)
    try:
        server.run("stdio")
    finally:
        tools.close()
