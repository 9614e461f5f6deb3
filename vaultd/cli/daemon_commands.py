"""Commands for the background daemon: run it, start and stop it, start it at boot, and the
client tokens of a team server."""

from __future__ import annotations

import sys
import time

import click

from vaultd.cli.base import expected_errors, main, vault_root
from vaultd.cli.progress import ProgressLine, index_line


@main.command()
@click.option("--quiet", is_flag=True, help="Log to .vaultd/daemon.log only, not stderr.")
@click.pass_context
def run(ctx: click.Context, quiet: bool) -> None:
    """Run the daemon in the foreground: watch, index, serve the warm model on loopback."""
    from vaultd.daemon.process import Daemon
    from vaultd.vault import open_vault

    with expected_errors():
        vault = open_vault(vault_root(ctx), daemon="never")
        code = Daemon(vault, log_to_stderr=not quiet).run()
    sys.exit(code)


@main.command()
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for the daemon to answer /health.")
@click.option("--wait", "wait", is_flag=True,
              help="Also wait until the first index is done (every file read, every chunk "
              "embedded), showing its progress.")
@click.pass_context
def start(ctx: click.Context, timeout: float, wait: bool) -> None:
    """Start the daemon in the background; returns once it answers (with --wait: once its
    first index is done), or fails with the reason."""
    from vaultd.daemon.client import DaemonClient
    from vaultd.daemon.control import BuildLines, start_daemon

    def show(line: str) -> None:
        click.echo(f"vaultd: {line}", err=True)

    with expected_errors():
        root = vault_root(ctx)
        build = BuildLines(root)
        info = start_daemon(root, timeout=timeout, show=show, build=build)
    click.echo(f"vaultd daemon running: pid {info['pid']}, http://127.0.0.1:{info['port']}")
    with expected_errors():
        client = DaemonClient.for_vault(root)
        status = client.status() if client is not None else None
        if wait and status is not None and client is not None:
            line, shown_at = ProgressLine(sys.stderr.isatty()), 0.0
            while not status.first_index_done:
                for built in build.new():
                    show(built)
                shown = index_line(status)
                if shown and time.monotonic() - shown_at >= line.every:
                    line.show(shown)
                    shown_at = time.monotonic()
                time.sleep(0.2)
                status = client.status()
            line.finish()
            click.echo("first index done: every file read, every chunk embedded")
        elif status is not None and not status.first_index_done:
            click.echo("indexing continues in the background (keyword search works as soon "
                       "as files are read; vectors follow): `vaultd status` shows its "
                       "progress, `vaultd start --wait` waits for it")


@main.command()
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait for the daemon to exit.")
@click.pass_context
def stop(ctx: click.Context, timeout: float) -> None:
    """Stop the vault's daemon (it finishes the batch in flight first)."""
    from vaultd.daemon.control import stop_daemon

    with expected_errors():
        pid = stop_daemon(vault_root(ctx), timeout=timeout)
    click.echo(f"vaultd daemon (pid {pid}) stopped" if pid else "no daemon running")


@main.group()
def service() -> None:
    """Start the daemon at boot (systemd user unit on Linux, launchd agent on macOS)."""


@service.command("install")
@click.option("--user/--system", "user", default=True, show_default=True,
              help="Per-user service (default) or a system-wide systemd unit.")
@click.pass_context
def service_install(ctx: click.Context, user: bool) -> None:
    """Write the service file for this vault and print how to enable it."""
    from vaultd.daemon import service as svc

    with expected_errors():
        spec = svc.describe(vault_root(ctx), user=user)
        svc.install(spec)
    click.echo(f"wrote {spec.path}")
    click.echo(f"enable it with: {spec.enable}")


@service.command("uninstall")
@click.option("--user/--system", "user", default=True, show_default=True,
              help="The per-user service (default) or the system-wide unit.")
@click.pass_context
def service_uninstall(ctx: click.Context, user: bool) -> None:
    """Remove this vault's service file (disable it first with the printed command)."""
    from vaultd.daemon import service as svc

    with expected_errors():
        spec = svc.describe(vault_root(ctx), user=user)
        removed = svc.uninstall(spec)
    if removed:
        click.echo(f"removed {spec.path}")
        click.echo(f"if it was enabled: {spec.disable}")
    else:
        click.echo(f"no service file at {spec.path}")


@main.group()
def token() -> None:
    """Client tokens of a team server (a daemon bound to a non-loopback [server] host): each
    client its own, named and revocable; vaultd keeps only their hashes."""


@token.command("add")
@click.argument("name")
@click.pass_context
def token_add(ctx: click.Context, name: str) -> None:
    """Make a token for client NAME and print it, once (stdout: the token alone)."""
    from vaultd.daemon.client_tokens import ClientTokens

    with expected_errors():
        entry, secret = ClientTokens(vault_root(ctx)).add(name)
    click.echo(f"client token for {entry.name!r} (shown once; only its hash is kept, in "
               ".vaultd/clients.json — copy that file to every daemon of the team):", err=True)
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List the clients: names and when their tokens were made (never a token or a hash)."""
    from vaultd.daemon.client_tokens import ClientTokens

    with expected_errors():
        clients = ClientTokens(vault_root(ctx)).entries()
    if not clients:
        click.echo("no client tokens (`vaultd token add NAME` makes one)")
    for client in clients:
        click.echo(f"{client.name}\t{client.created}")


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Remove client NAME: a running daemon refuses its token from the next request on."""
    from vaultd.daemon.client_tokens import ClientTokens

    with expected_errors():
        gone = ClientTokens(vault_root(ctx)).revoke(name)
    click.echo(f"revoked the client token {gone.name!r} (made {gone.created})")
