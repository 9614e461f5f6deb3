"""The daemon's clock: the periodic reconcile, the watcher's health check and the lifecycle's
cron jobs (`[lifecycle] <phase>_cron`).

Jobs only enqueue a command: the work runs on the main thread, so no two phases (nor a phase
and an index batch) ever overlap, and a queued phase is not queued twice. A vault shared
between machines: only the writer's daemon schedules the writing jobs; the others are listed
as skipped. On an index shared in PostgreSQL the whole schedule runs in the lease's leader
alone: started when a daemon becomes leader, shut down when it stops (`daemon.leadership`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vaultd.config import Settings
from vaultd.daemon.commands import Command, Flush, Reconcile, RunPhase
from vaultd.daemon.watcher import EventQueue
from vaultd.errors import VaultdError
from vaultd.lifecycle import PHASE_NAMES

SCHEDULED_PHASES = (*PHASE_NAMES, "flush")
WATCHER_CHECK_SECONDS = 30
MISFIRE_GRACE = 3600  # seconds: a job missed while the machine slept still runs on waking


def job_command(phase: str) -> Command:
    """The command a scheduled job of `phase` queues."""
    return Flush() if phase == "flush" else RunPhase(phase)


def start_scheduler(settings: Settings, events: EventQueue[Command], *, writes: bool,
                    check_watcher: Callable[[], None], skipped: list[str]) -> Any:
    """A started APScheduler BackgroundScheduler with every job; `skipped` gets the phases
    left to the writer machine. A cron expression that does not parse is a VaultdError."""
    from apscheduler.schedulers.background import (
        BackgroundScheduler,
    )

    scheduler = BackgroundScheduler(daemon=True)
    minutes = settings.daemon.reconcile_minutes
    if minutes > 0:
        scheduler.add_job(events.put_command, "interval", args=[Reconcile()],
                          minutes=minutes, id="reconcile", max_instances=1, coalesce=True)
    scheduler.add_job(check_watcher, "interval", seconds=WATCHER_CHECK_SECONDS,
                      id="watcher-health", max_instances=1, coalesce=True)
    for phase in SCHEDULED_PHASES:
        expr = getattr(settings.lifecycle, f"{phase}_cron").strip()
        if not expr:
            continue
        if not writes:  # another machine's daemon writes this shared vault
            skipped.append(phase)
            continue
        scheduler.add_job(events.put_command, _cron(phase, expr), args=[job_command(phase)],
                          id=f"lifecycle-{phase}", max_instances=1, coalesce=True,
                          misfire_grace_time=MISFIRE_GRACE)
    scheduler.start()
    return scheduler


def _cron(phase: str, expr: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expr)
    except ValueError as exc:
        raise VaultdError(f"[lifecycle] {phase}_cron = {expr!r}: {exc}") from exc
