"""How the CLI shows indexing progress on stderr: the in-process index's, and the daemon's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from vaultd.daemon.stats import Status

PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


class ProgressLine:
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



def index_line(daemon: Status) -> str | None:
    """What the daemon's indexing is doing, for `status` and `start --wait`; None when idle."""
    if daemon.progress is None:
        return (f"{daemon.pending_vectors} chunk(s) wait for their vector"
                if daemon.pending_vectors else None)
    line = daemon.progress.line()
    if daemon.progress.phase == "vectors":
        line += "; keyword search works, hybrid ranks the rest by BM25 alone"
    return line
