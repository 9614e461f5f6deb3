"""The `vaultd` command: each subcommand parses, makes one library call, prints.

Heavy imports (numpy, onnxruntime) happen inside the library only when a command needs them.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vaultd.config import LIFECYCLE_PHASES
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

    return open_vault(ctx.obj["vault"], daemon="never")


def _root(ctx: click.Context) -> Path:
    """The vault folder, found without importing the heavy parts of vaultd."""
    import os

    from vaultd.layout import find_vault

    return find_vault(ctx.obj["vault"], dict(os.environ), Path.cwd())


def _daemon(ctx: click.Context, local: bool) -> Any:
    """A client for the running daemon, or None (then say once that we work in-process)."""
    from vaultd.client import DaemonClient

    client = None if local else DaemonClient.for_vault(_root(ctx))
    return client


def _note_local(local: bool) -> None:
    if not local:
        click.echo("vaultd: no daemon running; loading the model in-process "
                   "(`vaultd start` keeps it warm)", err=True)


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
    for line in report.messages()[len(report.warnings):][:20]:  # one line each, names escaped
        click.echo(line, err=True)
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
@click.option("--local", is_flag=True, help="Work in-process even when the daemon runs.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_context
def search(ctx: click.Context, query: tuple[str, ...], k: int, types: tuple[str, ...],
           tags: tuple[str, ...], path_glob: str | None, since: str | None, until: str | None,
           mode: str, include_archive: bool, local: bool, as_json: bool) -> None:
    """Hybrid semantic + keyword search over the vault (through the daemon when it runs)."""
    text = " ".join(query)
    body = {"query": text, "k": k, "type": list(types), "tags": list(tags), "path": path_glob,
            "since": since, "until": until, "mode": mode, "archive": include_archive}
    with _errors():
        data = _search_daemon(ctx, local, body)
        via_daemon = data is not None
        if data is None:
            data = _search_local(ctx, body, local)
    stale = data["stale_files"]
    if stale and via_daemon:
        click.echo(f"note: {stale} file change(s) are still being indexed by the daemon",
                   err=True)
    elif stale:
        click.echo(f"warning: index is stale: {stale} file(s) changed since the last index "
                   "(run `vaultd index`)", err=True)
    if as_json:
        _echo_json(data)
        return
    if not data["hits"]:
        click.echo("no hits")
    for rank, hit in enumerate(data["hits"], start=1):
        where = f"{hit['path']}:{hit['lines'][0]}-{hit['lines'][1]}"
        click.echo(click.style(f"{rank:>2}. {where}", bold=True)
                   + f"  [{hit['type']}] {hit['score']:.3f}")
        if hit["heading"]:
            click.echo(f"    {hit['heading']}")
        for line in hit["text"].strip().splitlines()[:3]:
            click.echo(f"    {line[:120]}")


def _search_daemon(ctx: click.Context, local: bool, body: dict[str, Any]) -> Any:
    from vaultd.client import DaemonDown

    client = _daemon(ctx, local)
    if client is None:
        return None
    try:
        return client.search(body)
    except DaemonDown:
        return None


def _search_local(ctx: click.Context, body: dict[str, Any], local: bool) -> dict[str, Any]:
    from vaultd.search import search_request, search_response

    _note_local(local)
    vault = _open(ctx)
    try:
        kwargs = search_request(body)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stale = vault.changed_since_index()
    hits = vault.search(**kwargs, record=True)
    return search_response(kwargs["query"], kwargs["mode"], hits, stale_files=len(stale))


@main.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["document", "query"]), default="document",
              show_default=True)
@click.option("--local", is_flag=True, help="Work in-process even when the daemon runs.")
@click.option("--json", "as_json", is_flag=True, help="Print {model, dims, vectors} as JSON.")
@click.pass_context
def embed(ctx: click.Context, texts: tuple[str, ...], kind: str, local: bool,
          as_json: bool) -> None:
    """Embed TEXTS with the vault's model (through the daemon when it runs)."""
    from vaultd.client import DaemonDown

    with _errors():
        data = None
        client = _daemon(ctx, local)
        if client is not None:
            try:
                data = client.embed(list(texts), kind)
            except DaemonDown:
                data = None
        if data is None:
            _note_local(local)
            vault = _open(ctx)
            vectors = vault.embed(list(texts), kind=kind)  # type: ignore[arg-type]
            data = {"model": vault.profile.id, "dims": vault.profile.dims,
                    "vectors": [[round(float(x), 7) for x in row] for row in vectors]}
    rows = data["vectors"]
    if as_json:
        _echo_json(data)
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
    from vaultd.client import DaemonDown

    with _errors():
        data = _open(ctx).status()
        client = _daemon(ctx, local=False)
        daemon: dict[str, Any] = {"running": False}
        if client is not None:
            with contextlib.suppress(DaemonDown):
                daemon = {"running": True, **client.status()}
    data["daemon"] = daemon
    data["pid"] = daemon.get("pid")
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
    hint = " (the daemon will pick them up)" if daemon["running"] else " — run `vaultd index`"
    click.echo(f"changed    {stale} file(s) on disk since the last index" + (hint if stale else ""))
    if daemon["running"]:
        watcher = daemon["watcher"]
        mode = watcher["mode"] + (f" ({watcher['reason']})" if watcher["reason"] else "")
        last = daemon["last_event_at"]
        click.echo(f"daemon     pid {daemon['pid']}, port {daemon['port']}, up "
                   f"{daemon['uptime']:.0f}s, queue {daemon['queue']}, index lag "
                   f"{daemon['index_lag']:.2f}s, watcher {mode}")
        click.echo("last event " + (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(last))
                                    if last else "none"))
    else:
        click.echo("daemon     not running (`vaultd start`)")
    if data["skipped_files"]:
        click.echo(f"skipped    {len(data['skipped_files'])} file(s)")
        for item in data["skipped_files"][:10]:
            click.echo(f"           {item['path']}: {item['reason']}")


@main.command()
@click.option("--fix", is_flag=True, help="Repair: index again, resync, or rebuild the index "
              "(refused while the daemon runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool, as_json: bool) -> None:
    """Check the index against the vault (missing, extra, stale files; vectors, full-text,
    model, schema; token, lock and temp files). Exit 1 when something is off."""
    with _errors():
        report = _open(ctx).doctor(fix=fix)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.clean else 1)


@main.command()
@click.option("--quiet", is_flag=True, help="Log to .vaultd/daemon.log only, not stderr.")
@click.pass_context
def run(ctx: click.Context, quiet: bool) -> None:
    """Run the daemon in the foreground: watch, index, serve the warm model on loopback."""
    from vaultd.daemon import Daemon
    from vaultd.vault import open_vault

    with _errors():
        vault = open_vault(ctx.obj["vault"], daemon="never")
        code = Daemon(vault, log_to_stderr=not quiet).run()
    sys.exit(code)


@main.command()
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for the daemon to answer /health.")
@click.pass_context
def start(ctx: click.Context, timeout: float) -> None:
    """Start the daemon in the background; returns once it answers, or fails with the reason."""
    from vaultd.daemon_control import start_daemon

    with _errors():
        info = start_daemon(_root(ctx), timeout=timeout)
    click.echo(f"vaultd daemon running: pid {info['pid']}, http://127.0.0.1:{info['port']}")


@main.command()
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait for the daemon to exit.")
@click.pass_context
def stop(ctx: click.Context, timeout: float) -> None:
    """Stop the vault's daemon (it finishes the batch in flight first)."""
    from vaultd.daemon_control import stop_daemon

    with _errors():
        pid = stop_daemon(_root(ctx), timeout=timeout)
    click.echo(f"vaultd daemon (pid {pid}) stopped" if pid else "no daemon running")


@main.command("eval")
@click.option("--queries", "queries", type=click.Path(exists=True, dir_okay=False),
              required=True, help="JSONL: {id, query, gold_notes: [vault-relative paths]}.")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "bm25", "all"]), default="all",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.pass_context
def eval_(ctx: click.Context, queries: str, mode: str, as_json: bool) -> None:
    """Retrieval quality on a query set: R@1, R@5, R@10, MRR, nDCG@10 per mode."""
    from vaultd.evaluation import evaluate

    modes = ["hybrid", "vector", "bm25"] if mode == "all" else [mode]
    with _errors():
        vault = _open(ctx)
        result = evaluate(vault, queries, modes)  # type: ignore[arg-type]
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(result.markdown())


@main.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--type", "note_type", type=click.Choice(["episodic", "semantic", "procedural"]),
              default=None, help="What kind of memory this is (kept as a tag for the review).")
@click.option("--tag", "tags", multiple=True, help="A tag for the entry (repeatable).")
@click.pass_context
def remember(ctx: click.Context, text: tuple[str, ...], note_type: str | None,
             tags: tuple[str, ...]) -> None:
    """Append a timestamped entry to today's episodic log (safe with concurrent writers)."""
    from vaultd.edits import append_entry

    all_tags = list(tags) + ([note_type] if note_type and note_type != "episodic" else [])
    with _errors():
        path, heading = append_entry(_root(ctx), " ".join(text), tags=all_tags)
    click.echo(f"{path}: ## {heading}")


PHASES = LIFECYCLE_PHASES


@main.command()
@click.option("--phase", type=click.Choice([*PHASES, "all"]), default="all", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show the plan; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lifecycle(ctx: click.Context, phase: str, dry_run: bool, as_json: bool) -> None:
    """Run the memory lifecycle on demand and print the plan with reasons: links, promotions,
    merges of connected groups, reprieves and fades of isolated entries."""
    from vaultd.vault import lifecycle_anywhere

    phases = list(PHASES) if phase == "all" else [phase]
    with _errors():
        vault = _open(ctx)
        if dry_run:  # writes nothing: in-process is fine
            vault.index()
            result = {"phases": vault.lifecycle(phases, dry_run=True), "states": vault.states()}
        else:  # through the daemon when it runs: it is the index's only writer
            result = lifecycle_anywhere(vault, phases)
        reports = result["phases"]
    if as_json:
        _echo_json(result)
        return
    for report in reports:
        click.echo(click.style(f"[{report['phase']}]", bold=True)
                   + (" (dry run)" if dry_run else ""))
        for note in report["notes"]:
            click.echo(f"  {note}")
        for action in report["actions"]:
            if action["kind"] == "link" and not action.get("scores"):
                continue
            what = ", ".join(action["entries"][:4]) or action.get("target", "")
            click.echo(f"  {action['kind']}: {what}"
                       + (" …" if len(action["entries"]) > 4 else ""))
            click.echo(f"      because {action['reason']}")
            if action.get("diff") and dry_run:
                click.echo(action["diff"].rstrip("\n"))
        for path in report["created"]:
            click.echo(f"  created {path}")
        for path in report["written"]:
            click.echo(f"  wrote {path}")
        for conflict in report["conflicts"]:
            click.echo(f"  skipped: {conflict}", err=True)


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the diff of MEMORY.md; write nothing.")
@click.option("--transcript", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A Claude Code JSONL transcript: its salient lines are saved "
              "as one entry in today's daily log first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def flush(ctx: click.Context, dry_run: bool, transcript: Path | None, as_json: bool) -> None:
    """Index, connect and route, then write MEMORY.md's managed block (within its budget).
    Idempotent: with nothing new, no file changes."""
    from vaultd.vault import flush_anywhere, flush_vault

    with _errors():
        if transcript is not None and not dry_run:
            from vaultd.transcript import capture

            path, heading = capture(_root(ctx), transcript)
            click.echo(f"saved the session to {path}: ## {heading}", err=True)
        vault = _open(ctx)
        result = flush_vault(vault, dry_run=True) if dry_run else flush_anywhere(vault)
    if as_json:
        _echo_json(result)
        return
    if dry_run:
        click.echo(result["memory_diff"] or "MEMORY.md: no change")
    else:
        click.echo(("wrote MEMORY.md" if result["memory_written"] else "MEMORY.md unchanged")
                   + f" ({result['memory_chars']:,} characters in its block)")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def calibrate(ctx: click.Context, as_json: bool) -> None:
    """The vault's nearest-neighbour similarity distribution, and link / consolidate
    thresholds suggested for the active model."""
    with _errors():
        data = _open(ctx).calibrate()
    if as_json or "suggested" not in data:
        _echo_json(data)
        return
    click.echo(f"model {data['model']}: {data['entries']} entries, {data['pairs']} pairs")
    click.echo("nearest neighbour  " + "  ".join(f"{k} {v:.3f}"
                                                 for k, v in data["nearest_neighbour"].items()))
    click.echo("all pairs          " + "  ".join(f"{k} {v:.3f}"
                                                 for k, v in data["all_pairs"].items()))
    cur, sug = data["current"], data["suggested"]
    click.echo(f"link threshold     current {cur['link']:.2f} "
               f"({data['linked_at_current']:.1%} of pairs), suggested {sug['link']:.2f}")
    click.echo(f"consolidate        current {cur['consolidate']:.2f}, "
               f"suggested {sug['consolidate']:.2f}")
    click.echo("set them in a [models.<id>] profile (link_threshold, consolidate_threshold)")


@main.command()
@click.argument("path")
@click.pass_context
def restore(ctx: click.Context, path: str) -> None:
    """Bring an archived note (or an archived daily log's entries) back where it came from."""
    with _errors():
        written = _open(ctx).restore(path)
    for rel in written:
        click.echo(f"restored into {rel}" if not rel.startswith("archive/") else
                   f"updated {rel}")


@main.command()
@click.argument("merge_id")
@click.pass_context
def undo(ctx: click.Context, merge_id: str) -> None:
    """Undo a consolidation: the originals come back, the merged note goes to archive/."""
    with _errors():
        written = _open(ctx).undo(merge_id)
    for rel in written:
        click.echo(f"wrote {rel}")


@main.command()
@click.pass_context
def mcp(ctx: click.Context) -> None:
    """Serve the vault to MCP clients over stdio: memory_search, memory_get, memory_write,
    memory_flush (needs `pip install 'vaultd[mcp]'`)."""
    from vaultd.mcp_server import run as run_mcp

    with _errors():
        try:
            run_mcp(_root(ctx))
        except ModuleNotFoundError as exc:  # the optional SDK is missing
            if exc.name != "mcp" and not str(exc.name).startswith("mcp."):
                raise
            click.echo("vaultd: the MCP server needs the mcp SDK: pip install 'vaultd[mcp]'",
                       err=True)
            sys.exit(2)


@main.group()
def hooks() -> None:
    """Agent integrations: install vaultd's hooks into an agent's settings."""


def _settings(user: bool, project: Path | None) -> Path:
    from vaultd.hooks import settings_path

    return settings_path(user or project is None, project, Path.home())


@hooks.command("install")
@click.argument("agent", type=click.Choice(["claude-code"]))
@click.option("--user", is_flag=True, help="~/.claude/settings.json (the default).")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR/.claude/settings.json instead.")
@click.pass_context
def hooks_install(ctx: click.Context, agent: str, user: bool, project: Path | None) -> None:
    """Merge SessionStart (start the daemon, print MEMORY.md), PreCompact (save the transcript
    and flush) and SessionEnd (flush) hooks into settings.json, keeping every other hook."""
    from vaultd.hooks import install

    with _errors():
        result = install(_settings(user, project), _root(ctx))
    click.echo(f"{'updated' if result['written'] else 'unchanged'}: {result['path']}")


@hooks.command("uninstall")
@click.argument("agent", type=click.Choice(["claude-code"]))
@click.option("--user", is_flag=True)
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.pass_context
def hooks_uninstall(ctx: click.Context, agent: str, user: bool, project: Path | None) -> None:
    """Remove only vaultd's hooks for this vault from settings.json."""
    from vaultd.hooks import uninstall

    with _errors():
        result = uninstall(_settings(user, project), _root(ctx))
    removed = result["removed"]
    count = len(removed) if isinstance(removed, list) else removed
    click.echo(f"removed {count} hook(s) from {result['path']}")


@main.command()
@click.argument("event", type=click.Choice(["session-start", "pre-compact", "session-end"]))
@click.pass_context
def hook(ctx: click.Context, event: str) -> None:
    """What the installed agent hooks run (reads the hook's JSON on stdin)."""
    from vaultd.hooks import read_hook_input, transcript_of

    root = _root(ctx)
    with _errors():
        if event == "session-start":
            from vaultd.daemon_control import start_daemon

            try:
                start_daemon(root, timeout=60)
            except Exception as exc:  # memory still loads without the daemon
                click.echo(f"vaultd: daemon not started: {exc}", err=True)
            memory = root / "MEMORY.md"
            if memory.is_file():
                click.echo(memory.read_text(encoding="utf-8"))
            return
        from vaultd.vault import flush_anywhere

        if event == "pre-compact":
            transcript = transcript_of(read_hook_input(sys.stdin))
            if transcript is not None:
                from vaultd.transcript import capture

                capture(root, transcript)
        flush_anywhere(_open(ctx))


@main.group()
def service() -> None:
    """Start the daemon at boot (systemd user unit on Linux, launchd agent on macOS)."""


@service.command("install")
@click.option("--user/--system", "user", default=True, show_default=True,
              help="Per-user service (default) or a system-wide systemd unit.")
@click.pass_context
def service_install(ctx: click.Context, user: bool) -> None:
    """Write the service file for this vault and print how to enable it."""
    from vaultd import service as svc

    with _errors():
        spec = svc.describe(_root(ctx), user=user)
        svc.install(spec)
    click.echo(f"wrote {spec.path}")
    click.echo(f"enable it with: {spec.enable}")


@service.command("uninstall")
@click.option("--user/--system", "user", default=True, show_default=True)
@click.pass_context
def service_uninstall(ctx: click.Context, user: bool) -> None:
    """Remove this vault's service file (disable it first with the printed command)."""
    from vaultd import service as svc

    with _errors():
        spec = svc.describe(_root(ctx), user=user)
        removed = svc.uninstall(spec)
    if removed:
        click.echo(f"removed {spec.path}")
        click.echo(f"if it was enabled: {spec.disable}")
    else:
        click.echo(f"no service file at {spec.path}")


@main.group()
def model() -> None:
    """Embedding model utilities."""


@model.command("quantize")
@click.pass_context
def model_quantize(ctx: click.Context) -> None:
    """Build the default int8 model now (vaultd otherwise builds it when first needed)."""
    import os

    from vaultd.embedder import DEFAULT_MODEL, FP32_MODEL, builtin_profiles, quantize
    from vaultd.vault import cache_dir

    with _errors():
        profiles = builtin_profiles(cache_dir(dict(os.environ)))
        target = profiles[DEFAULT_MODEL]
        path = quantize(profiles[FP32_MODEL], target)
    click.echo(f"{target.id}: {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
