"""The `vaultd` group and what every command shares: finding the vault, opening it, the
daemon-or-local policy, and typed errors turned into one line and exit code 2.

Heavy imports (numpy, onnxruntime) happen inside the library only when a command needs them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vaultd import __version__
from vaultd.errors import VaultdError

if TYPE_CHECKING:
    from vaultd.vault import Vault


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def expected_errors() -> Iterator[None]:
    """Expected errors become one readable line and exit code 2: typed library errors, a
    SQLite error from the index, and a file vaultd may not read or write. Anything else is a
    bug and keeps its traceback."""
    try:
        yield
    except VaultdError as exc:
        fail(str(exc))
    except Exception as exc:
        message = _expected(exc)
        if message is None:
            raise
        fail(message)


def fail(message: str) -> None:
    click.echo(f"vaultd: {message}", err=True)
    sys.exit(2)


def _expected(exc: Exception) -> str | None:
    """The one-line message for an error a person can fix, or None for a bug."""
    import errno

    if type(exc).__module__.split(".")[0] in ("sqlite3", "sqlean"):  # the index misbehaves
        from vaultd.layout import index_path
        from vaultd.store import unusable

        ctx = click.get_current_context(silent=True)
        root = _vault_arg(ctx) if ctx is not None else None
        return str(unusable(index_path(root or Path(".")), exc))
    if not isinstance(exc, OSError):
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # not a permission problem: say what it is
        return (f"{exc.filename or 'a file'}: disk full ({exc.strerror}): free some space "
                "and try again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{exc.filename or 'a file'}: {exc.strerror}: vaultd must be able to write "
                "the vault and its .vaultd/ folder (check owner and mode)")
    return None


def _vault_arg(ctx: click.Context) -> Path | None:
    try:
        return vault_root(ctx)
    except VaultdError:
        return None


def vault_of(ctx: click.Context) -> Vault:
    from vaultd.vault import open_vault

    return open_vault(vault_root(ctx), daemon="never")


def vault_root(ctx: click.Context) -> Path:
    """The vault folder, found without importing the heavy parts of vaultd. A folder named
    with `--vault` or `$VAULTD_VAULT` must be a vault (hold `.vaultd/`): anything else would
    quietly make it one and answer "no hits"."""
    import os

    from vaultd.errors import VaultNotFoundError
    from vaultd.layout import STATE_DIR, find_vault

    root = find_vault(ctx.obj["vault"], dict(os.environ), Path.cwd())
    if not (root / STATE_DIR).is_dir():
        raise VaultNotFoundError(f"{root} is not a vault (it has no {STATE_DIR}/ folder): "
                                 f"create one there with `vaultd init {root}`, or pass "
                                 "--vault PATH of an existing vault")
    return root


def daemon_or_local(ctx: click.Context, local: bool = False, quiet: bool = False) -> Any:
    """The daemon-or-local policy for this vault; `--local` skips the daemon. Unless `quiet`,
    falling back in-process is said once, on stderr."""
    from vaultd.daemon.client import DaemonOrLocal

    def note(message: str) -> None:
        click.echo(f"vaultd: {message}", err=True)

    return DaemonOrLocal(vault_root(ctx), use_daemon=not local, on_local=None if quiet else note)


VAULT_HELP = "Vault folder (default: $VAULTD_VAULT, else the nearest parent with .vaultd/)."


def _vault_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """`vaultd search q --vault X` means `vaultd --vault X search q` (as `llm` and most CLIs)."""
    if value is not None:
        ctx.ensure_object(dict)["vault"] = value


def accept_vault_after_subcommand(group: click.Group) -> None:
    """Give every command that works on a vault a `--vault` option of its own."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            accept_vault_after_subcommand(command)
        elif name != "init":  # init takes the folder as its argument
            command.params.append(click.Option(
                ["--vault"], type=click.Path(file_okay=False), default=None,
                expose_value=False, callback=_vault_after, help=VAULT_HELP))


class _OnStderr(logging.Handler):
    """A log record as one `vaultd: ...` line on stderr (the stream of the command running,
    as click gives it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"vaultd: {record.getMessage()}", err=True)


def announce_model_build() -> None:
    """Show the one-time model build on stderr: seconds in which a command would otherwise sit
    silent (or at "embedding 0/167"). Not for `run`: the daemon logs it, once."""
    logger = logging.getLogger("vaultd.model_build")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _OnStderr) for h in logger.handlers):  # main runs once a command
        logger.addHandler(_OnStderr())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--vault", "vault", type=click.Path(file_okay=False), default=None,
              help=VAULT_HELP)
@click.version_option(version=__version__, prog_name="vaultd")
@click.pass_context
def main(ctx: click.Context, vault: str | None) -> None:
    """vaultd: local memory for AI agents — a markdown vault with hybrid semantic search."""
    ctx.ensure_object(dict)
    ctx.obj["vault"] = vault
    if ctx.invoked_subcommand != "run":
        announce_model_build()
