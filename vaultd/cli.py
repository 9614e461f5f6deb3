"""The `vaultd` command: each subcommand parses, makes one library call, prints.

Heavy imports (numpy, onnxruntime) happen inside the library only when a command needs them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vaultd.errors import VaultdError


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def _errors() -> Iterator[None]:
    """Typed library errors become one readable line and exit code 2."""
    try:
        yield
    except VaultdError as exc:
        click.echo(f"vaultd: {exc}", err=True)
        sys.exit(2)


def _open(ctx: click.Context) -> Any:
    from vaultd.vault import open_vault

    return open_vault(ctx.obj["vault"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--vault", "vault", type=click.Path(file_okay=False), default=None,
              help="Vault folder (default: $VAULTD_VAULT, else the nearest parent with .vaultd/).")
@click.version_option(package_name="vaultd")
@click.pass_context
def main(ctx: click.Context, vault: str | None) -> None:
    """vaultd: local memory for AI agents — a markdown vault with hybrid semantic search."""
    ctx.ensure_object(dict)
    ctx.obj["vault"] = vault


@main.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(path: Path) -> None:
    """Create a vault at PATH (or add what is missing to a folder of notes; never overwrites)."""
    from vaultd.vault import init_vault

    with _errors():
        created = init_vault(path)
    for rel in created:
        click.echo(f"created {rel}")
    click.echo(f"vault ready at {path.resolve()}" if created
               else f"nothing to do: {path.resolve()} is already a vault")


def _progress_bar(enabled: bool) -> tuple[Callable[[int, int, str], None] | None,
                                          Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    state: dict[str, Any] = {}

    def progress(done: int, total: int, _path: str) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label="indexing", file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(done - state.get("done", 0))
        state["done"] = done

    def finish() -> None:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)

    return progress, finish


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index(ctx: click.Context, as_json: bool) -> None:
    """Reconcile the vault with its index: embed what is new or changed, drop what is gone."""
    with _errors():
        vault = _open(ctx)
        progress, finish = _progress_bar(sys.stderr.isatty() and not as_json)
        try:
            report = vault.index(progress=progress)
        finally:
            finish()
    if as_json:
        _echo_json(report.to_dict())
        return
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for path, reason in report.skipped[:20]:
        click.echo(f"skipped {path}: {reason}", err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more skipped (vaultd status --json)",
                   err=True)
    if report.rebuilt:
        click.echo("the embedding model changed: the index was rebuilt", err=True)
    click.echo(report.summary())


@main.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", default=10, show_default=True, help="Number of hits.")
@click.option("--type", "types", multiple=True, help="Only notes of this type (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only chunks with this tag (repeatable).")
@click.option("--path", "path_glob", default=None, help="Only paths matching this glob.")
@click.option("--since", default=None, help="Only entries dated on or after YYYY-MM-DD.")
@click.option("--until", default=None, help="Only entries dated on or before YYYY-MM-DD.")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "bm25"]), default="hybrid",
              show_default=True)
@click.option("--archive", "include_archive", is_flag=True, help="Search archive/ too.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_context
def search(ctx: click.Context, query: tuple[str, ...], k: int, types: tuple[str, ...],
           tags: tuple[str, ...], path_glob: str | None, since: str | None, until: str | None,
           mode: str, include_archive: bool, as_json: bool) -> None:
    """Hybrid semantic + keyword search over the vault."""
    text = " ".join(query)
    with _errors():
        vault = _open(ctx)
        stale = vault.changed_since_index()
        hits = vault.search(text, k=k, types=list(types), tags=list(tags), path_glob=path_glob,
                            since=since, until=until, mode=mode,  # type: ignore[arg-type]
                            include_archive=include_archive)
    if stale:
        click.echo(f"warning: index is stale: {len(stale)} file(s) changed since the last index "
                   "(run `vaultd index`)", err=True)
    if as_json:
        _echo_json({"query": text, "mode": mode, "stale_files": len(stale),
                    "hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, start=1):
        where = f"{hit.path}:{hit.lines[0]}-{hit.lines[1]}"
        click.echo(click.style(f"{rank:>2}. {where}", bold=True)
                   + f"  [{hit.type}] {hit.score:.3f}")
        if hit.heading:
            click.echo(f"    {hit.heading}")
        for line in hit.text.strip().splitlines()[:3]:
            click.echo(f"    {line[:120]}")


@main.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["document", "query"]), default="document",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {model, dims, vectors} as JSON.")
@click.pass_context
def embed(ctx: click.Context, texts: tuple[str, ...], kind: str, as_json: bool) -> None:
    """Embed TEXTS with the vault's model."""
    with _errors():
        vault = _open(ctx)
        vectors = vault.embed(list(texts), kind=kind)  # type: ignore[arg-type]
    rows = [[round(float(x), 7) for x in row] for row in vectors]
    if as_json:
        _echo_json({"model": vault.profile.id, "dims": vault.profile.dims, "vectors": rows})
        return
    for text, row in zip(texts, rows):
        preview = ", ".join(f"{x:.4f}" for x in row[:4])
        click.echo(f"{text[:40]!r}: [{preview}, ...] ({len(row)} dims)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What is indexed, with which model and SQLite, and whether the index is stale."""
    with _errors():
        data = _open(ctx).status()
    if as_json:
        _echo_json(data)
        return
    click.echo(f"vault      {data['vault']}")
    click.echo(f"notes      {data['notes']} ({data['archived_notes']} archived), "
               f"entries {data['entries']}, chunks {data['chunks']}, vectors {data['vectors']}")
    click.echo(f"model      {data['model']['id']} ({data['model']['dims']} d)")
    click.echo(f"sqlite     {data['sqlite_module']} {data['sqlite']}, "
               f"sqlite-vec {data['sqlite_vec']}, schema v{data['schema_version']}")
    click.echo(f"indexed    {data['last_index_at'] or 'never'}")
    stale = data["changed_since_index"]
    click.echo(f"changed    {stale} file(s) on disk since the last index"
               + (" — run `vaultd index`" if stale else ""))
    if data["skipped_files"]:
        click.echo(f"skipped    {len(data['skipped_files'])} file(s)")
        for item in data["skipped_files"][:10]:
            click.echo(f"           {item['path']}: {item['reason']}")


@main.group()
def model() -> None:
    """Embedding model utilities."""


@model.command("quantize")
@click.pass_context
def model_quantize(ctx: click.Context) -> None:
    """Build the int8 per-channel quantised copy of the default model (once; cached)."""
    import os

    from vaultd.embedder import DEFAULT_MODEL, QUANTIZED_SUFFIX, builtin_profiles, quantize
    from vaultd.vault import cache_dir

    with _errors():
        profiles = builtin_profiles(cache_dir(dict(os.environ)))
        target = profiles[DEFAULT_MODEL + QUANTIZED_SUFFIX]
        path = quantize(profiles[DEFAULT_MODEL], target)
    click.echo(f"{target.id}: {path}")
    click.echo(f'use it with [embedding] model = "{target.id}" in .vaultd/config.toml')


if __name__ == "__main__":  # pragma: no cover
    main()
