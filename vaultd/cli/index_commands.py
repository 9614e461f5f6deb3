"""Commands over the index: make a vault, index it, search and embed, its status and health,
retrieval quality, and the model vaultd builds."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vaultd.cli.base import (
    daemon_or_local,
    echo_json,
    expected_errors,
    main,
    vault_of,
)
from vaultd.cli.progress import ProgressLine, index_line
from vaultd.errors import IndexUnavailableError
from vaultd.search_request import MODES, TYPES, Archive

if TYPE_CHECKING:
    from vaultd.daemon.stats import Status
    from vaultd.search_request import SearchAnswer, SearchRequest

# `--archive/--no-archive` (unset: None) as the request's archive tier
ARCHIVE_TIER: dict[bool | None, Archive] = {None: "lower", True: "equal", False: "none"}


@main.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--example", is_flag=True,
              help="Make PATH (new or empty) a copy of the bundled sample vault, to try vaultd "
                   "on without changing the original.")
def init(path: Path, example: bool) -> None:
    """Create a vault at PATH (or add what is missing to a folder of notes; never overwrites)."""
    from vaultd.config import load_settings
    from vaultd.layout import MEMORY_FILE, STATE_DIR
    from vaultd.vault import init_vault, scope_line

    with expected_errors():
        copied: list[str] = []
        if example and not (path / STATE_DIR).is_dir():  # again on the copy: nothing to copy
            from vaultd.example import copy_example

            copied = copy_example(path)
        created = init_vault(path)
        settings = load_settings(path.resolve())
    if copied:
        click.echo(f"copied the example vault ({len(copied)} notes) to {path.resolve()}")
    for rel in created:
        click.echo(f"created {rel}" + (" (yours to edit; vaultd writes only between its "
                                       "vaultd:begin and vaultd:end markers)"
                                       if rel == MEMORY_FILE else ""))
    click.echo(f"vault ready at {path.resolve()}" if created or copied
               else f"nothing to do: {path.resolve()} is already a vault"
               + (" (the example is copied only into a new or empty folder)" if example else ""))
    click.echo(f"its daemon's port: {settings.server.port} ([server] port in "
               f"{STATE_DIR}/config.toml)")
    click.echo(scope_line(settings))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index(ctx: click.Context, as_json: bool) -> None:
    """Reconcile the vault with its index: read what is new or changed into the full-text
    index, then embed its chunks, drop what is gone. Progress goes to stderr (chunks, with the
    rate and time left once the model is loaded): in place on a terminal, a line every 10 s
    otherwise."""
    with expected_errors():
        vault = vault_of(ctx)
        line = None if as_json else ProgressLine(sys.stderr.isatty())
        try:
            report = vault.index(progress=line)
        finally:
            if line is not None:
                line.finish()
    if as_json:
        echo_json(report.to_dict())
        return
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for message in report.messages()[len(report.warnings):][:20]:  # one line each, escaped
        click.echo(message, err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more skipped (vaultd status --json)",
                   err=True)
    if report.rebuilt:
        click.echo("the embedding model changed: the index was rebuilt", err=True)
    click.echo(report.summary())


@main.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", default=10, show_default=True, help="Number of hits (at least 1).")
@click.option("--type", "types", multiple=True, type=click.Choice(TYPES),
              help="Only notes of this type (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only chunks with this tag (repeatable).")
@click.option("--path", "path_glob", default=None, help="Only paths matching this glob.")
@click.option("--since", default=None, help="Only entries dated on or after YYYY-MM-DD.")
@click.option("--until", default=None, help="Only entries dated on or before YYYY-MM-DD.")
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True,
              help="Meaning and keywords fused, or one of them alone.")
@click.option("--archive/--no-archive", "archive", default=None,
              help="Archived (faded or merged) notes are found by default, ranked below live "
                   "notes of similar relevance; --archive ranks them like live notes, "
                   "--no-archive leaves them out.")
@click.option("--full", is_flag=True,
              help="Each hit's whole chunk, not only the lines that best match the query.")
@click.option("--local", is_flag=True, help="Work in-process even when the daemon runs.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_context
def search(ctx: click.Context, query: tuple[str, ...], k: int, types: tuple[str, ...],
           tags: tuple[str, ...], path_glob: str | None, since: str | None, until: str | None,
           mode: str, archive: bool | None, full: bool, local: bool, as_json: bool) -> None:
    """Hybrid semantic + keyword search over the vault (through the daemon when it runs).
    Each hit shows the lines of its chunk that best match the query; --full, the whole."""
    from vaultd.search_request import SearchRequest

    request = SearchRequest(" ".join(query), k, types=types, tags=tags, path_glob=path_glob,
                            since=since, until=until, mode=mode,  # type: ignore[arg-type]
                            archive=ARCHIVE_TIER[archive], full=full,
                            record=True)
    try:
        request.check()
    except ValueError as exc:  # exit 2, naming the valid values
        raise click.BadParameter(str(exc)) from exc
    with expected_errors():
        route = daemon_or_local(ctx, local)
        answer = route.run(lambda daemon: daemon.search(request),
                           lambda: _search_local(ctx, request))
    via_daemon = route.route == "daemon"
    if answer.pending_vectors:
        click.echo(f"note: {answer.pending_vectors} chunk(s) have no vector yet (indexing "
                   "continues): " + ("ranked by keywords (BM25) alone" if answer.mode == "hybrid"
                                     else "a vector search cannot find them yet"), err=True)
    stale = answer.stale_files
    if stale and via_daemon:
        click.echo(f"note: {stale} file change(s) are still being indexed by the daemon",
                   err=True)
    elif stale:
        click.echo(f"warning: index is stale: {stale} file(s) changed since the last index "
                   "(run `vaultd index`)", err=True)
    if as_json:
        echo_json(answer.to_dict())
        return
    if not answer.hits:
        click.echo("no hits")
    for rank, hit in enumerate(answer.hits, start=1):
        where = f"{hit.path}:{hit.lines[0]}-{hit.lines[1]}"
        click.echo(click.style(f"{rank:>2}. {where}", bold=True)
                   + f"  [{hit.type}{', archived' if hit.archived else ''}] {hit.score:.3f}")
        if hit.heading:
            click.echo(f"    {hit.heading}")
        # the passage (bounded) whole; with --full, the chunk whole
        for line in hit.text.strip().splitlines():
            click.echo(f"    {line}")


def _status_while_down(ctx: click.Context, daemon: Status, as_json: bool) -> None:
    """`vaultd status` while the daemon's database cannot be used: the daemon's line of why."""
    root = str(vault_of(ctx).root)
    if as_json:
        echo_json({"vault": root, "daemon": {"running": True, **daemon.to_dict()},
                   "pid": daemon.pid})
        return
    click.echo(f"vault      {root}")
    click.echo(f"index      {daemon.index_fault}")
    click.echo(f"daemon     pid {daemon.pid}, port {daemon.port}, up "
               f"{daemon.health.uptime:.0f}s")


def _search_local(ctx: click.Context, request: SearchRequest) -> SearchAnswer:
    vault = vault_of(ctx)
    stale = vault.changed_since_index()
    hits = vault.search(request)
    return request.answer(hits, stale_files=len(stale))


@main.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["document", "query"]), default="document",
              show_default=True, help="Embed as a note, or as a search query (some models "
              "prefix queries).")
@click.option("--local", is_flag=True, help="Work in-process even when the daemon runs.")
@click.option("--json", "as_json", is_flag=True, help="Print {model, dims, vectors} as JSON.")
@click.pass_context
def embed(ctx: click.Context, texts: tuple[str, ...], kind: str, local: bool,
          as_json: bool) -> None:
    """Embed TEXTS with the vault's model (through the daemon when it runs)."""
    def in_process() -> dict[str, Any]:
        vault = vault_of(ctx)
        vectors = vault.embed(list(texts), kind=kind)  # type: ignore[arg-type]
        return {"model": vault.profile.id, "dims": vault.profile.dims,
                "vectors": [[round(float(x), 7) for x in row] for row in vectors]}

    with expected_errors():
        data = daemon_or_local(ctx, local).run(lambda daemon: daemon.embed(list(texts), kind),
                                                in_process)
    rows = data["vectors"]
    if as_json:
        echo_json(data)
        return
    for text, row in zip(texts, rows):
        preview = ", ".join(f"{x:.4f}" for x in row[:4])
        click.echo(f"{text[:40]!r}: [{preview}, ...] ({len(row)} dims)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What is indexed, with which model and SQLite, whether the index is stale, and the
    daemon's state when it runs."""
    with expected_errors():
        daemon = daemon_or_local(ctx, quiet=True).run(lambda client: client.status(),
                                                      lambda: None)
        try:
            data = vault_of(ctx).status()
        except IndexUnavailableError:
            if daemon is None or not daemon.index_fault:
                raise
            _status_while_down(ctx, daemon, as_json)  # the daemon says why, and waits
            return
    if as_json:
        running = {"running": True, **daemon.to_dict()} if daemon else {"running": False}
        echo_json({**data.to_dict(), "daemon": running, "pid": daemon.pid if daemon else None})
        return
    counts = data.counts
    click.echo(f"vault      {data.vault}")
    click.echo(f"notes      {counts['notes']} ({counts['archived_notes']} archived), "
               f"entries {counts['entries']}, chunks {counts['chunks']}, "
               f"vectors {counts['vectors']}")
    click.echo(f"model      {data.model.id} ({data.model.dims} d)")
    click.echo(f"sqlite     {data.backend_line()}")
    click.echo(f"indexed    {data.last_index_at or 'never'}")
    stale = data.changed_since_index
    hint = " (the daemon will pick them up)" if daemon else " — run `vaultd index`"
    click.echo(f"changed    {stale} file(s) on disk since the last index" + (hint if stale else ""))
    if daemon:
        mode = f"{daemon.watcher_mode}" + (f" ({daemon.watcher_reason})"
                                           if daemon.watcher_reason else "")
        last = daemon.last_event_at
        line = index_line(daemon)
        health = daemon.health
        # while it indexes, its progress says more than "queue 0, index lag 0.00s"
        queue = (f"queue {health.queue}, index lag {health.index_lag:.2f}s, "
                 if line is None or health.queue else "")
        click.echo(f"daemon     pid {daemon.pid}, port {daemon.port}, up "
                   f"{health.uptime:.0f}s, {queue}watcher {mode}")
        if line:
            click.echo(f"indexing   {line}")
        click.echo("last event " + (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(last))
                                    if last else "none"))
        if daemon.index_fault:
            click.echo(f"index      {daemon.index_fault}")
    else:
        click.echo("daemon     not running (`vaultd start`)")
        if data.pending_vectors:
            click.echo(f"vectors    {data.pending_vectors} chunk(s) wait for their vector "
                       "(`vaultd index` embeds them; keyword search finds them already)")
    writer = daemon.writer if daemon else data.writer  # the running daemon's view first
    skips = daemon.skipped_jobs if daemon else []
    click.echo(f"writer     {writer.summary()}" + (f" (skips {', '.join(skips)})" if skips else ""))
    if data.skipped_files:
        click.echo(f"skipped    {len(data.skipped_files)} file(s)")
        for item in data.skipped_files[:10]:
            click.echo(f"           {item.path}: {item.reason}")


@main.command()
@click.option("--fix", is_flag=True, help="Repair: index again, resync, or rebuild the index "
              "(refused while the daemon runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool, as_json: bool) -> None:
    """Check the index against the vault (missing, extra, stale files; vectors, full-text,
    model, schema; token, lock and temp files). Exit 1 when something is off."""
    with expected_errors():
        report = vault_of(ctx).doctor(fix=fix)
    if as_json:
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.clean else 1)


@main.command("eval")
@click.option("--queries", "queries", type=click.Path(exists=True, dir_okay=False),
              required=True, help="JSONL: {id, query, gold_notes: [vault-relative paths]}.")
@click.option("--mode", type=click.Choice([*MODES, "all"]), default="all",
              show_default=True, help="The search mode to measure, or all three.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.pass_context
def eval_(ctx: click.Context, queries: str, mode: str, as_json: bool) -> None:
    """Retrieval quality on a query set: R@1, R@5, R@10, MRR, nDCG@10 per mode."""
    from vaultd.evaluation import evaluate

    modes = ["hybrid", "vector", "bm25"] if mode == "all" else [mode]
    with expected_errors():
        vault = vault_of(ctx)
        result = evaluate(vault, queries, modes)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.markdown())


@main.group()
def model() -> None:
    """Embedding model utilities."""


@model.command("quantize")
@click.pass_context
def model_quantize(ctx: click.Context) -> None:
    """Build the default int8 model now (vaultd otherwise builds it when first needed)."""
    import os

    from vaultd.model_build import quantize
    from vaultd.model_profiles import DEFAULT_MODEL, SHIPPED_MODEL, builtin_profiles
    from vaultd.vault import cache_dir

    with expected_errors():
        profiles = builtin_profiles(cache_dir(dict(os.environ)))
        target = profiles[DEFAULT_MODEL]
        path = quantize(profiles[SHIPPED_MODEL], target)
    click.echo(f"{target.id}: {path}")
