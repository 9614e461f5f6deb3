"""The lifecycle work the daemon's main thread runs: a scheduled phase, the scheduled flush,
and the flush and phases HTTP threads ask for. On the main thread because it is the index's
only writer: no two phases, nor a phase and an index batch, ever overlap.

A scheduled job that fails is logged and counted, and simply runs again at its next time; a
job on request answers its caller with the reason (`VaultdError`, one line at the edge).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from vaultd import edits
from vaultd.daemon.commands import Answer
from vaultd.daemon.stats import PhaseRun, Stats
from vaultd.errors import VaultdError
from vaultd.lifecycle.plans import LifecycleRun
from vaultd.vault import Vault
from vaultd.writer_role import WriterRole

log = logging.getLogger("vaultd.daemon")

QUIET_SECONDS = 60.0  # files changed this recently are likely being edited: no mirroring there


class Jobs:
    def __init__(self, vault: Vault, stats: Stats, role: Callable[[], WriterRole],
                 warm: Callable[[], None]) -> None:
        self.vault = vault
        self.stats = stats
        # asked before each job: on a shared index, the lease's fencing check
        self.role = role
        self._warm = warm  # after phases on request: their changes show in the next search

    def phase(self, name: str, *, mirror: bool = True) -> None:
        """One scheduled lifecycle phase. Files changed in the last QUIET_SECONDS are left
        alone by `vaultd_related:` mirroring (someone is likely editing them)."""
        role = self.role()
        if role.lease and not role.leads:  # queued before this daemon lost the lease
            log.info("lifecycle %s skipped: this daemon is a %s", name, role.summary())
            return
        started = time.perf_counter()
        try:
            [report] = self.vault.lifecycle([name], mirror=mirror, quiet_seconds=QUIET_SECONDS)
        except Exception:
            self.stats.errors += 1
            log.exception("lifecycle %s failed; it runs again at its next scheduled time", name)
            return
        line = (f"{len(report.acted)} action(s), {len(report.written)} written, "
                f"{len(report.created)} created, {len(report.conflicts)} conflict(s) "
                f"in {time.perf_counter() - started:.2f}s")
        self.stats.lifecycle[name] = PhaseRun(time.time(), line)
        if report.acted or report.conflicts:
            log.info("lifecycle %s: %s", name, line)
        for conflict in report.conflicts:
            log.warning("lifecycle %s: %s", name, conflict)

    def flush(self) -> Answer:
        """Drain pending index work, connect, route, write MEMORY.md."""
        self.role().check("flush")
        try:
            report = self.vault.flush()
        except edits.ConflictError as exc:  # a file vaultd must not or cannot write now: said
            log.warning("flush: %s", exc)   # in one line (it names the file and why)
            raise VaultdError(f"flush failed: {exc}") from exc
        except Exception as exc:
            self.stats.errors += 1
            log.exception("flush failed")
            raise VaultdError(f"flush failed: {exc}") from exc
        self.stats.lifecycle["flush"] = PhaseRun(time.time(),
                                                 f"memory_written={report.memory_written}")
        return report.to_dict()

    def on_request(self, phases: list[str], dry_run: bool) -> Answer:
        """Index what changed, then run the phases exactly as `vaultd lifecycle` does
        in-process, and answer what `vaultd lifecycle --json` prints."""
        if not dry_run:
            self.role().check("the lifecycle")
        started = time.perf_counter()
        result = self._run(phases, dry_run)
        if not dry_run:
            self._warm()
            line = f"{len(phases)} phase(s) on request in {time.perf_counter() - started:.2f}s"
            for phase in phases:
                self.stats.lifecycle[phase] = PhaseRun(time.time(), line)
            log.info("lifecycle %s: %s", ",".join(phases), line)
        return result

    def _run(self, phases: list[str], dry_run: bool) -> dict[str, Any]:
        try:
            self.vault.index()
            return LifecycleRun(self.vault.lifecycle(phases, dry_run=dry_run),
                                self.vault.states()).to_dict()
        except Exception as exc:
            self.stats.errors += 1
            log.exception("lifecycle %s on request failed", ",".join(phases))
            raise VaultdError(f"lifecycle failed: {exc}") from exc
