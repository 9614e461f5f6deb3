"""Commands that change the memory: remember, the lifecycle, flush, calibrate, restore, undo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from vaultd.cli.base import echo_json, expected_errors, main, vault_of
from vaultd.lifecycle import PHASE_NAMES

if TYPE_CHECKING:
    from vaultd.lifecycle.plans import FileChange


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
    with expected_errors():
        path, heading = vault_of(ctx).remember(" ".join(text), tags=all_tags)
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
    from vaultd.lifecycle.plans import LifecycleRun
    from vaultd.vault import lifecycle_anywhere

    phases = list(PHASES) if phase == "all" else [phase]
    with expected_errors():
        vault = vault_of(ctx)
        if dry_run:  # writes nothing: in-process is fine
            vault.index()
            result = LifecycleRun(vault.lifecycle(phases, dry_run=True), vault.states())
        else:  # through the daemon when it runs: it is the index's only writer
            result = lifecycle_anywhere(vault, phases)
    if as_json:
        echo_json(result.to_dict())
        return
    for report in result.phases:
        click.echo(click.style(f"[{report.phase}]", bold=True)
                   + (" (dry run)" if dry_run else ""))
        for note in report.notes:
            click.echo(f"  {note}")
        for action in report.acted:
            what = (", ".join(action.entries[:4]) or getattr(action, "target", "")
                    or getattr(action, "path", ""))
            click.echo(f"  {action.kind}: {what}" + (" …" if len(action.entries) > 4 else ""))
            click.echo(f"      because {action.reason}")
        if dry_run:
            _echo_files(report.files)
        for path in report.created:
            click.echo(f"  created {path}")
        for path in report.written:
            click.echo(f"  wrote {path}")
        for conflict in report.conflicts:
            click.echo(f"  skipped: {conflict}", err=True)


def _echo_files(files: list[FileChange]) -> None:
    """What a dry run would create, change or remove: every file, with a diff for changes."""
    for item in files:
        click.echo(f"  would {item.change} {item.path}")
        if item.diff:
            click.echo(item.diff.rstrip("\n"))


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

    with expected_errors():
        vault = vault_of(ctx)
        if transcript is not None and not dry_run:
            saved = vault.save_transcript(transcript)
            click.echo(f"saved the session to {saved[0]}: ## {saved[1]}" if saved else
                       "nothing new in the session since it was last saved", err=True)
        result = vault.flush(dry_run=True) if dry_run else flush_anywhere(vault)
    if as_json:
        echo_json(result.to_dict())
        return
    if dry_run:
        _echo_files(result.files)
        if not result.files:
            click.echo("no file would change")
    else:
        click.echo(("wrote MEMORY.md" if result.memory_written else "MEMORY.md unchanged")
                   + f" ({result.memory_chars:,} characters in its block)")


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the distribution and the suggested thresholds as JSON.")
@click.pass_context
def calibrate(ctx: click.Context, as_json: bool) -> None:
    """The vault's similarity distribution, what the active model's link and consolidate
    thresholds mean (link: related memories, not only same meaning), and values suggested for
    this vault."""
    with expected_errors():
        data = vault_of(ctx).calibrate()
    if as_json or "suggested" not in data:
        echo_json(data)
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
    with expected_errors():
        written = vault_of(ctx).restore(path)
    for rel in written:
        click.echo(f"restored into {rel}" if not rel.startswith("archive/") else
                   f"updated {rel}")


@main.command()
@click.argument("merge_id")
@click.pass_context
def undo(ctx: click.Context, merge_id: str) -> None:
    """Undo a consolidation: the merged note goes to archive/ (its sources never left their
    logs; ones an older vaultd moved to archive/ come back)."""
    with expected_errors():
        written = vault_of(ctx).undo(merge_id)
    for rel in written:
        click.echo(f"wrote {rel}")
