"""The `vaultd` command: each subcommand parses, makes one library call, prints.

Heavy imports (numpy, onnxruntime) happen inside the library only when a command needs them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vaultd.errors import VaultdError
from vaultd.lifecycle import PHASE_NAMES
from vaultd.search_request import MODES, TYPES


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def _errors() -> Iterator[None]:
    """Expected errors become one readable line and exit code 2: typed library errors, a
    SQLite error from the index, and a file vaultd may not read or write. Anything else is a
    bug and keeps its traceback."""
    try:
        yield
    except VaultdError as exc:
        _fail(str(exc))
    except Exception as exc:
        message = _expected(exc)
        if message is None:
            raise
        _fail(message)


def _fail(message: str) -> None:
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
        return _root(ctx)
    except VaultdError:
        return None


def _open(ctx: click.Context) -> Any:
    from vaultd.vault import open_vault

    return open_vault(_root(ctx), daemon="never")


def _root(ctx: click.Context) -> Path:
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


def _daemon_or_local(ctx: click.Context, local: bool = False, quiet: bool = False) -> Any:
    """The daemon-or-local policy for this vault; `--local` skips the daemon. Unless `quiet`,
    falling back in-process is said once, on stderr."""
    from vaultd.daemon.client import DaemonOrLocal

    def note(message: str) -> None:
        click.echo(f"vaultd: {message}", err=True)

    return DaemonOrLocal(_root(ctx), use_daemon=not local, on_local=None if quiet else note)


VAULT_HELP = "Vault folder (default: $VAULTD_VAULT, else the nearest parent with .vaultd/)."


def _vault_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """`vaultd search q --vault X` means `vaultd --vault X search q` (as `llm` and most CLIs)."""
    if value is not None:
        ctx.ensure_object(dict)["vault"] = value


def _accept_vault_after_subcommand(group: click.Group) -> None:
    """Give every command that works on a vault a `--vault` option of its own."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            _accept_vault_after_subcommand(command)
        elif name != "init":  # init takes the folder as its argument
            command.params.append(click.Option(
                ["--vault"], type=click.Path(file_okay=False), default=None,
                expose_value=False, callback=_vault_after, help=VAULT_HELP))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--vault", "vault", type=click.Path(file_okay=False), default=None,
              help=VAULT_HELP)
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
    from vaultd.config import load_settings
    from vaultd.vault import init_vault, scope_line

    with _errors():
        created = init_vault(path)
        settings = load_settings(path.resolve())
    for rel in created:
        click.echo(f"created {rel}")
    click.echo(f"vault ready at {path.resolve()}" if created
               else f"nothing to do: {path.resolve()} is already a vault")
    click.echo(scope_line(settings))


PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


class _ProgressLine:
    """Index progress on stderr: on a terminal one line rewritten in place (at most 10 times a
    second); otherwise (a log, CI, an agent's tool call) a line every PROGRESS_EVERY seconds
    and when a phase ends."""

    def __init__(self, tty: bool, every: float = PROGRESS_EVERY) -> None:
        self.tty = tty
        self.every = 0.1 if tty else every
        self.shown = 0.0
        self.last = ""
        self.phase = ""

    def __call__(self, progress: Any) -> None:  # an indexer.IndexProgress
        now = time.monotonic()
        if progress.phase != self.phase and self.phase:
            self.show(self.last, end=True)  # the phase that ended, at its last count
        ended = progress.done >= progress.total
        if progress.phase != self.phase or ended or now - self.shown >= self.every:
            self.phase, self.shown = progress.phase, now
            self.show(progress.line(), end=ended)
        self.last = progress.line()

    def show(self, line: str, end: bool = False) -> None:
        if self.tty:
            click.echo(f"\r{line}\x1b[K" + ("\n" if end else ""), err=True, nl=False)
        else:
            click.echo(line, err=True)
        if end:
            self.phase = ""

    def finish(self) -> None:
        if self.tty and self.phase:
            click.echo("", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def index(ctx: click.Context, as_json: bool) -> None:
    """Reconcile the vault with its index: read what is new or changed into the full-text
    index, then embed its chunks, drop what is gone. Progress goes to stderr (chunks, with the
    rate and time left once the model is loaded): in place on a terminal, a line every 10 s
    otherwise."""
    with _errors():
        vault = _open(ctx)
        line = None if as_json else _ProgressLine(sys.stderr.isatty())
        try:
            report = vault.index(progress=line)
        finally:
            if line is not None:
                line.finish()
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
@click.option("--local", is_flag=True, help="Work in-process even when the daemon runs.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.pass_context
def search(ctx: click.Context, query: tuple[str, ...], k: int, types: tuple[str, ...],
           tags: tuple[str, ...], path_glob: str | None, since: str | None, until: str | None,
           mode: str, archive: bool | None, local: bool, as_json: bool) -> None:
    """Hybrid semantic + keyword search over the vault (through the daemon when it runs)."""
    from vaultd.search_request import SearchRequest

    request = SearchRequest(" ".join(query), k, types=types, tags=tags, path_glob=path_glob,
                            since=since, until=until, mode=mode,  # type: ignore[arg-type]
                            archive={None: "lower", True: "equal", False: "none"}[archive],
                            record=True)
    try:
        request.check()
    except ValueError as exc:  # exit 2, naming the valid values
        raise click.BadParameter(str(exc)) from exc
    with _errors():
        route = _daemon_or_local(ctx, local)
        data = route.run(lambda daemon: daemon.search(request),
                         lambda: _search_local(ctx, request))
    via_daemon = route.route == "daemon"
    waiting = data.get("pending_vectors", 0)
    if waiting:
        click.echo(f"note: {waiting} chunk(s) have no vector yet (indexing continues): "
                   + ("ranked by keywords (BM25) alone" if data["mode"] == "hybrid"
                      else "a vector search cannot find them yet"), err=True)
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
                   + f"  [{hit['type']}{', archived' if hit.get('archived') else ''}] "
                   f"{hit['score']:.3f}")
        if hit["heading"]:
            click.echo(f"    {hit['heading']}")
        for line in hit["text"].strip().splitlines()[:3]:
            click.echo(f"    {line[:120]}")


def _search_local(ctx: click.Context, request: Any) -> dict[str, Any]:
    vault = _open(ctx)
    stale = vault.changed_since_index()
    hits = vault.search(request)
    return request.response(hits, stale_files=len(stale))


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
        vault = _open(ctx)
        vectors = vault.embed(list(texts), kind=kind)  # type: ignore[arg-type]
        return {"model": vault.profile.id, "dims": vault.profile.dims,
                "vectors": [[round(float(x), 7) for x in row] for row in vectors]}

    with _errors():
        data = _daemon_or_local(ctx, local).run(lambda daemon: daemon.embed(list(texts), kind),
                                                in_process)
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
    with _errors():
        data = _open(ctx).status()
        daemon: dict[str, Any] = _daemon_or_local(ctx, quiet=True).run(
            lambda client: {"running": True, **client.status()}, lambda: {"running": False})
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
        line = _index_line(daemon)
        # while it indexes, its progress says more than "queue 0, index lag 0.00s"
        queue = (f"queue {daemon['queue']}, index lag {daemon['index_lag']:.2f}s, "
                 if line is None or daemon["queue"] else "")
        click.echo(f"daemon     pid {daemon['pid']}, port {daemon['port']}, up "
                   f"{daemon['uptime']:.0f}s, {queue}watcher {mode}")
        if line:
            click.echo(f"indexing   {line}")
        click.echo("last event " + (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(last))
                                    if last else "none"))
    else:
        click.echo("daemon     not running (`vaultd start`)")
        if data.get("pending_vectors"):
            click.echo(f"vectors    {data['pending_vectors']} chunk(s) wait for their vector "
                       "(`vaultd index` embeds them; keyword search finds them already)")
    writer = daemon.get("writer") or data["writer"]  # the running daemon's view first
    click.echo(f"writer     {writer['summary']}" + (
        f" (skips {', '.join(writer['skipped_jobs'])})" if writer.get("skipped_jobs") else ""))
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
    from vaultd.daemon.process import Daemon
    from vaultd.vault import open_vault

    with _errors():
        vault = open_vault(_root(ctx), daemon="never")
        code = Daemon(vault, log_to_stderr=not quiet).run()
    sys.exit(code)


def _index_line(daemon: dict[str, Any]) -> str | None:
    """What the daemon's indexing is doing, for `status` and `start --wait`; None when idle."""
    progress, waiting = daemon.get("progress"), daemon.get("pending_vectors", 0)
    if progress is None and not waiting:
        return None
    from vaultd.indexer import IndexProgress

    if progress is None:
        return f"{waiting} chunk(s) wait for their vector"
    line = IndexProgress(progress["phase"], progress["done"], progress["total"],
                         progress["rate"]).line()
    if progress["phase"] == "vectors":
        line += "; keyword search works, hybrid ranks the rest by BM25 alone"
    return line


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
    from vaultd.daemon.control import start_daemon

    with _errors():
        root = _root(ctx)
        info = start_daemon(root, timeout=timeout)
    click.echo(f"vaultd daemon running: pid {info['pid']}, http://127.0.0.1:{info['port']}")
    with _errors():
        client = DaemonClient.for_vault(root)
        status = client.status() if client is not None else {"first_index_done": True}
        if wait and client is not None:
            line, shown_at = _ProgressLine(sys.stderr.isatty()), 0.0
            while not status.get("first_index_done", True):
                shown = _index_line(status)
                if shown and time.monotonic() - shown_at >= line.every:
                    line.show(shown)
                    shown_at = time.monotonic()
                time.sleep(0.2)
                status = client.status()
            line.finish()
            click.echo("first index done: every file read, every chunk embedded")
        elif not status.get("first_index_done", True):
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

    with _errors():
        pid = stop_daemon(_root(ctx), timeout=timeout)
    click.echo(f"vaultd daemon (pid {pid}) stopped" if pid else "no daemon running")


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
    """Append a timestamped entry to today's episodic log (safe with concurrent writers);
    credentials in TEXT are redacted unless `[privacy] redact = false`."""
    all_tags = list(tags) + ([note_type] if note_type and note_type != "episodic" else [])
    with _errors():
        path, heading = _open(ctx).remember(" ".join(text), tags=all_tags)
    click.echo(f"{path}: ## {heading}")


PHASES = PHASE_NAMES


@main.command()
@click.option("--phase", type=click.Choice([*PHASES, "all"]), default="all", show_default=True,
              help="One phase, or all of them in order.")
@click.option("--dry-run", is_flag=True, help="Show the plan; write nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the phases' plans and the entries' states as JSON.")
@click.pass_context
def lifecycle(ctx: click.Context, phase: str, dry_run: bool, as_json: bool) -> None:
    """Run the memory lifecycle on demand and print the plan with reasons: links, promotions,
    merges of connected groups, reprieves and fades of isolated entries."""
    from vaultd.lifecycle.plans import PhaseReport
    from vaultd.vault import lifecycle_anywhere

    phases = list(PHASES) if phase == "all" else [phase]
    with _errors():
        vault = _open(ctx)
        if dry_run:  # writes nothing: in-process is fine
            vault.index()
            result = {"phases": [r.to_dict() for r in vault.lifecycle(phases, dry_run=True)],
                      "states": vault.states()}
        else:  # through the daemon when it runs: it is the index's only writer
            result = lifecycle_anywhere(vault, phases)
    if as_json:
        _echo_json(result)
        return
    for report in map(PhaseReport.from_dict, result["phases"]):
        click.echo(click.style(f"[{report.phase}]", bold=True)
                   + (" (dry run)" if dry_run else ""))
        for note in report.notes:
            click.echo(f"  {note}")
        for action in report.acted:
            what = ", ".join(action["entries"][:4]) or action.get("target") or action.get(
                "path", "")
            click.echo(f"  {action['kind']}: {what}"
                       + (" …" if len(action["entries"]) > 4 else ""))
            click.echo(f"      because {action['reason']}")
        if dry_run:
            _echo_files(report.files)
        for path in report.created:
            click.echo(f"  created {path}")
        for path in report.written:
            click.echo(f"  wrote {path}")
        for conflict in report.conflicts:
            click.echo(f"  skipped: {conflict}", err=True)


def _echo_files(files: list[dict[str, str]]) -> None:
    """What a dry run would create, change or remove: every file, with a diff for changes."""
    for item in files:
        click.echo(f"  would {item['change']} {item['path']}")
        if item.get("diff"):
            click.echo(item["diff"].rstrip("\n"))


@main.command()
@click.option("--dry-run", is_flag=True,
              help="List every file a flush would write, with diffs; write nothing.")
@click.option("--transcript", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A Claude Code JSONL transcript: its salient lines are saved "
              "as one entry in today's daily log first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what was indexed and written (and the diff with --dry-run) as JSON.")
@click.pass_context
def flush(ctx: click.Context, dry_run: bool, transcript: Path | None, as_json: bool) -> None:
    """Index, connect and route, then write MEMORY.md's managed block (within its budget).
    Idempotent: with nothing new, no file changes."""
    from vaultd.vault import flush_anywhere

    with _errors():
        vault = _open(ctx)
        if transcript is not None and not dry_run:
            from vaultd.transcript import capture

            path, heading = capture(vault.root, transcript,
                                    redact_secrets=vault.settings.privacy.redact)
            click.echo(f"saved the session to {path}: ## {heading}", err=True)
        result = vault.flush(dry_run=True).to_dict() if dry_run else flush_anywhere(vault)
    if as_json:
        _echo_json(result)
        return
    if dry_run:
        _echo_files(result["files"])
        if not result["files"]:
            click.echo("no file would change")
    else:
        click.echo(("wrote MEMORY.md" if result["memory_written"] else "MEMORY.md unchanged")
                   + f" ({result['memory_chars']:,} characters in its block)")


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the distribution and the suggested thresholds as JSON.")
@click.pass_context
def calibrate(ctx: click.Context, as_json: bool) -> None:
    """The vault's similarity distribution, what the active model's link and consolidate
    thresholds mean (link: related memories, not only same meaning), and values suggested for
    this vault."""
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
    cur, sug, why = data["current"], data["suggested"], data["criteria"]
    click.echo(f"link threshold     current {cur['link']:.2f} "
               f"({data['linked_at_current']:.1%} of pairs linked, "
               f"{data['isolated_at_current']:.1%} of entries isolated), "
               f"suggested {sug['link']:.2f}")
    click.echo(f"  criterion: {why['link']}")
    click.echo(f"consolidate        current {cur['consolidate']:.2f}, "
               f"suggested {sug['consolidate']:.2f}")
    click.echo(f"  criterion: {why['consolidate']}")
    click.echo(f"suggested by {data['suggested_by']}")
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
    """Set up an agent: install or uninstall vaultd's hooks in its settings (you run this
    once). What the hooks then run is `vaultd hook EVENT`."""


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
    click.echo(f"the hooks run {result['command']} (this vaultd, by absolute path: no PATH "
               "needed)")


@hooks.command("uninstall")
@click.argument("agent", type=click.Choice(["claude-code"]))
@click.option("--user", is_flag=True, help="~/.claude/settings.json (the default).")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="DIR/.claude/settings.json instead.")
@click.pass_context
def hooks_uninstall(ctx: click.Context, agent: str, user: bool, project: Path | None) -> None:
    """Remove only vaultd's hooks for this vault from settings.json."""
    from vaultd.hooks import uninstall

    with _errors():
        result = uninstall(_settings(user, project), _root(ctx))
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

    with _errors():
        root = _root(ctx)
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

        vault = _open(ctx)
        if event == "pre-compact":
            transcript = transcript_of(read_hook_input(sys.stdin))
            if transcript is not None:
                from vaultd.transcript import capture

                capture(root, transcript, redact_secrets=vault.settings.privacy.redact)
        from vaultd.writer import NotWriterError

        try:
            flush_anywhere(vault)
        except NotWriterError as exc:  # a shared vault: the writer's daemon flushes
            click.echo(f"vaultd: flush skipped: {exc}", err=True)


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

    with _errors():
        spec = svc.describe(_root(ctx), user=user)
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


_accept_vault_after_subcommand(main)


if __name__ == "__main__":  # pragma: no cover
    main()
