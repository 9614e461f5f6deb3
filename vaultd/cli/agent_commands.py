"""Commands an agent's setup uses: the MCP server, installing hooks, and the hooks' own entry."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vaultd.cli.base import expected_errors, main, vault_of, vault_root

F = TypeVar("F", bound=Callable[..., Any])


@main.command()
@click.pass_context
def mcp(ctx: click.Context) -> None:
    """Serve the vault to MCP clients over stdio: memory_search, memory_get, memory_write,
    memory_flush, … (for clients that cannot use the daemon's http://127.0.0.1:PORT/mcp).
    Relayed to the daemon when it runs; in-process otherwise."""
    from vaultd.daemon.client import DaemonClient, DaemonDown

    with expected_errors():
        root = vault_root(ctx)
        client = DaemonClient.for_vault(root)
        if client is not None:
            try:
                client.health()
            except DaemonDown:
                client = None
        if client is not None:
            from vaultd.mcp_relay import relay

            click.echo(f"vaultd mcp: relaying to the daemon on {client.host}:{client.port}",
                       err=True)
            relay(client, sys.stdin.buffer, sys.stdout.buffer)
            return
        from vaultd.mcp_server import run as run_mcp

        run_mcp(root)


@main.group()
def hooks() -> None:
    """Set up an agent: install or uninstall vaultd's hooks in its settings (you run this
    once). What the hooks then run is `vaultd hook EVENT`."""


def _which_settings(command: F) -> F:
    """The agent and which settings.json: what `hooks install` and `uninstall` both take."""
    for option in reversed((
            click.argument("agent", type=click.Choice(["claude-code"])),
            click.option("--user", is_flag=True, help="~/.claude/settings.json (the default)."),
            click.option("--project", type=click.Path(file_okay=False, path_type=Path),
                         default=None, help="DIR/.claude/settings.json instead."))):
        command = option(command)
    return command


def _settings(user: bool, project: Path | None) -> Path:
    from vaultd.hooks import settings_path

    return settings_path(user or project is None, project, Path.home())


@hooks.command("install")
@_which_settings
@click.pass_context
def hooks_install(ctx: click.Context, agent: str, user: bool, project: Path | None) -> None:
    """Merge SessionStart (start the daemon, print MEMORY.md), PreCompact (save the transcript
    and flush) and SessionEnd (flush) hooks into settings.json, keeping every other hook."""
    from vaultd.hooks import install

    with expected_errors():
        result = install(_settings(user, project), vault_root(ctx))
    click.echo(f"{'updated' if result['written'] else 'unchanged'}: {result['path']}")
    click.echo(f"the hooks run {result['command']} (this vaultd, by absolute path: no PATH "
               "needed)")


@hooks.command("uninstall")
@_which_settings
@click.pass_context
def hooks_uninstall(ctx: click.Context, agent: str, user: bool, project: Path | None) -> None:
    """Remove only vaultd's hooks for this vault from settings.json."""
    from vaultd.hooks import uninstall

    with expected_errors():
        result = uninstall(_settings(user, project), vault_root(ctx))
    removed = result["removed"]
    count = len(removed) if isinstance(removed, list) else removed
    click.echo(f"removed {count} hook(s) from {result['path']}"
               + (" and the file, which vaultd had created" if result.get("deleted") else ""))


@main.command()
@click.argument("event", type=click.Choice(["session-start", "pre-compact", "session-end"]))
@click.pass_context
def hook(ctx: click.Context, event: str) -> None:
    """Run by the agent, not by you: what an installed hook (`vaultd hooks install`) calls on
    EVENT; reads the hook's JSON on stdin."""
    from vaultd.hooks import read_hook_input, transcript_of
    from vaultd.layout import MEMORY_FILE

    with expected_errors():
        root = vault_root(ctx)
        if event == "session-start":
            from vaultd.daemon.control import start_daemon

            try:
                start_daemon(root, timeout=60)
            except Exception as exc:  # memory still loads without the daemon
                click.echo(f"vaultd: daemon not started: {exc}", err=True)
            memory = root / MEMORY_FILE
            if memory.is_file():
                click.echo(memory.read_text(encoding="utf-8"))
            return
        from vaultd.vault import flush_anywhere

        vault = vault_of(ctx)
        if event == "pre-compact":
            transcript = transcript_of(read_hook_input(sys.stdin))
            if transcript is not None:
                vault.save_transcript(transcript)
        from vaultd.writer_role import NotWriterError

        try:
            flush_anywhere(vault)
        except NotWriterError as exc:  # a shared vault: the writer's daemon flushes
            click.echo(f"vaultd: flush skipped: {exc}", err=True)
