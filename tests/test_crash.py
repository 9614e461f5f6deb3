"""Crash safety (issue #7, point 2): SIGKILL a real daemon at random moments while it indexes,
runs the lifecycle and flushes; restart it and check that nothing was lost or torn.

One iteration: write a burst of new and edited notes and a new daily log (the manifest keeps
the exact body of each note and the exact words of each entry), start the phase's work — the
daemon indexes the burst (`index`), `POST /flush` (`flush`) or `POST /lifecycle` with every
phase (`lifecycle`) — then SIGKILL the daemon after a delay drawn from a seeded RNG within that
work's busy window. The daily logs give the lifecycle real work: groups of entries that say
nearly the same thing (consolidated into a merged note; the members stay in their logs),
near-duplicates (pruned), one-offs (reprieved, then faded to archive/). Restart, wait until the
daemon is idle, and check:

- every note the test wrote is there with exactly its body (vaultd may only add frontmatter
  keys such as `related:`), and every file's frontmatter still parses;
- no entry's words are lost: each entry the test wrote is, word for word, in its daily log or
  in the same-named archive/ file (a move cut short may leave it in both, never twice in one);
  no entry is a source of two merged notes, and every source of a merged note still exists;
- after a lifecycle kill, the lifecycle runs again to its end and then each entry exists
  exactly once across the live and archived files (an interrupted fade converges), and every
  merged note's sources still exist;
- no temporary file of an interrupted write is left in the vault;
- MEMORY.md holds one balanced managed block, with the user's text around it unchanged;
- `vaultd doctor` is clean.

`bench/soak/crash_soak.py` runs the same loop for 100+ iterations.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, call, env_for, vaultd, wait_for

from vaultd.blocks import BEGIN, END
from vaultd.daemon.discovery import read_info, read_token
from vaultd.doctor import TEMP_SUFFIX
from vaultd.edits import split_frontmatter
from vaultd.vault import open_vault

PHASES = ("index", "flush", "lifecycle")
# Delay before the kill, in seconds, per phase: the window in which that work is in flight
# on this machine with the fake embedder. The lifecycle's grows with the vault (its `related:`
# mirror, fades and merges write files), so its window is the last uninterrupted run's time,
# with a margin: the kills spread over all seven phases.
WINDOWS = {"index": (0.02, 0.15), "flush": (0.0, 0.6), "lifecycle": (0.0, 0.5)}
LIFECYCLE_MARGIN = 1.3
NO_CRON = "".join(f'{p}_cron = ""\n' for p in (
    "connect", "promote", "consolidate", "route", "age", "heartbeat", "prune", "flush"))
# only the harness decides when work runs; one-offs start fading after a few newer entries
CONFIG = FAST_CONFIG + "\n[lifecycle]\nnewer_entries = 6\n" + NO_CRON
WORDS = ("deploy", "rollback", "postgres", "pool", "webhook", "refund", "retry", "queue",
         "cache", "index", "schema", "token", "latency", "budget", "release", "canary", "alert",
         "metric", "backup", "restore", "vault", "search")


@dataclass
class Outcome:
    iteration: int
    phase: str
    delay: float
    busy: bool  # the phase's work was still in flight at the kill
    failures: list[str] = field(default_factory=list)
    half_done: int = 0  # entries the kill left mid-move (in the log and in archive/)

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "phase": self.phase, "delay": round(self.delay, 3),
                "busy": self.busy, "half_done": self.half_done, "failures": self.failures}


class CrashHarness:
    """A vault, a daemon subprocess we may SIGKILL, and what the test wrote."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.root = make_vault(workdir, name="crash", config=CONFIG)
        self.env = env_for(workdir)
        self.manifest: dict[str, str] = {}  # vault path → the exact body the test wrote
        self.entries: dict[str, tuple[str, str]] = {}  # entry block → (daily log, heading key)
        self.days = 0
        self.lifecycle_seconds = 0.0  # how long the last uninterrupted POST /lifecycle took
        self.actions = {"merge": 0, "fade": 0, "reprieve": 0}  # done by the lifecycle re-runs
        memory = (self.root / "MEMORY.md").read_text(encoding="utf-8")
        self.memory_head, rest = memory.split(BEGIN, 1)
        self.memory_tail = rest.split(END, 1)[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0

    # -- the daemon
    def start(self) -> None:
        log = open(self.workdir / "daemon.out", "ab")  # noqa: SIM115 - handed to the child
        with log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vaultd", "--vault", str(self.root), "run", "--quiet"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode} at start: "
                                     + self._tail())
            info = read_info(self.root)
            return bool(info and int(info["pid"]) == proc.pid and self._get("/health"))

        wait_for(up, "the daemon to answer /health", timeout=60)

    def _tail(self) -> str:
        text = (self.workdir / "daemon.out").read_text(encoding="utf-8", errors="replace")
        return " / ".join(text.strip().splitlines()[-3:])

    def _get(self, path: str) -> dict[str, Any] | None:
        info = read_info(self.root)
        if not info:
            return None
        try:
            status, data = call(int(info["port"]), "GET", path, token=read_token(self.root),
                                timeout=10)
        except OSError:
            return None
        return data if status == 200 else None

    def wait_idle(self) -> None:
        """Until two looks 0.2 s apart find the daemon past its start-up reconcile, with an
        empty queue and no batch in flight."""
        def idle() -> bool:
            status = self._get("/status")
            return bool(status and status["batches"] >= 1 and status["queue"] == 0
                        and not status["indexing"] and status["index_lag"] == 0)

        def twice() -> bool:
            if not idle():
                return False
            time.sleep(0.2)
            return idle()

        wait_for(twice, "the daemon to be idle", timeout=60, interval=0.1)

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    # -- work
    def burst(self) -> None:
        """New notes and edits of earlier ones, written the way an editor would (in place)."""
        for _ in range(self.rng.randint(3, 12)):
            self.count += 1
            self._write(f"semantic/crash-{self.count:04d}.md")
        for rel in self.rng.sample(sorted(self.manifest), min(len(self.manifest),
                                                              self.rng.randint(0, 5))):
            self._write(rel)
        self._daily_log()

    def _daily_log(self) -> None:
        """A new day's log: two entries of the current consolidation group (a group gets four
        members over two days: nearly the same words, each with a few of its own), one-offs of
        words nobody else uses, and now and then a near-duplicate of the last one-off."""
        self.days += 1
        day = f"2026-{1 + (self.days - 1) // 28:02d}-{1 + (self.days - 1) % 28:02d}"
        group = (self.days - 1) // 2
        texts = []
        shared = " ".join(f"{w}{group}" for w in WORDS[group % 7:group % 7 + 14])
        texts = [(self._unique(), f"{shared} {self._unique()} {self._unique()}")
                 for _ in range(2)]
        for _ in range(self.rng.randint(1, 3)):  # 40 words: nothing else shares them
            texts.append((self._unique(), " ".join(self._unique() for _ in range(40))))
        if self.rng.random() < 0.5:  # the same words again a little later: pruned
            texts.append(texts[-1])
        body = ""
        for i, (title, text) in enumerate(texts):
            self.count += 1
            key = f"{9 + i // 6:02d}:{i % 6 * 10:02d} — {title}"
            block = f"## {key}\n{text} m{self.count:05d}"
            body += f"\n{block}\n"
            self.entries[block] = (f"episodic/{day}.md", key)
        path = self.root / "episodic" / f"{day}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\ntype: episodic\ncreated: {day}\ntags: [daily]\n---\n# {day}\n"
                        + body, encoding="utf-8")

    def _unique(self) -> str:
        return f"u{self.rng.randrange(16**6):06x}"

    def _write(self, rel: str) -> None:
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(20, 120))]
        lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
        body = f"# {rel}\n\n" + "\n".join(lines) + f"\n\nend of {rel} v{self.rng.random():.6f}\n"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\ntitle: {Path(rel).stem}\n---\n{body}", encoding="utf-8")
        self.manifest[rel] = body

    def iteration(self, number: int, phase: str) -> Outcome:
        assert self.proc is not None
        self.burst()
        low, high = WINDOWS[phase]
        if phase == "lifecycle":
            high = max(high, self.lifecycle_seconds * LIFECYCLE_MARGIN)
        delay = self.rng.uniform(low, high)
        worker: Any = None
        if phase == "flush":
            info = read_info(self.root) or {}
            worker = threading.Thread(target=self._post_flush, args=(int(info["port"]),),
                                      daemon=True)
            worker.start()
        elif phase == "lifecycle":
            info = read_info(self.root) or {}
            worker = threading.Thread(target=self._post_lifecycle, args=(int(info["port"]),),
                                      daemon=True)
            worker.start()
        time.sleep(delay)
        busy = self._busy(worker)
        self.kill()
        if worker is not None:
            worker.join(30)
        outcome = Outcome(number, phase, delay, busy)
        self.start()
        self.wait_idle()
        outcome.failures = self.verify()
        outcome.half_done = self.half_done
        if phase == "lifecycle":  # what the kill cut short must converge when it runs again
            info = read_info(self.root) or {}
            started = time.perf_counter()
            status, data = call(int(info["port"]), "POST", "/lifecycle", {"phases": "all"},
                                token=read_token(self.root), timeout=120)
            self.lifecycle_seconds = time.perf_counter() - started
            if status != 200:
                outcome.failures.append(f"the lifecycle after the restart failed: {data}")
            for report in data.get("phases", []):
                for kind in ("merge", "fade", "reprieve"):
                    self.actions[kind] += sum(a["kind"] == kind for a in report["actions"])
            self.wait_idle()
            outcome.failures += [f"after the lifecycle ran again: {f}"
                                 for f in self.verify(converged=True)]
        return outcome

    def _post_lifecycle(self, port: int) -> None:
        with contextlib.suppress(Exception):  # the kill cuts the answer off
            call(port, "POST", "/lifecycle", {"phases": "all"}, token=read_token(self.root),
                 timeout=60)

    def _post_flush(self, port: int) -> None:
        with contextlib.suppress(Exception):  # the kill cuts the answer off
            call(port, "POST", "/flush", {}, token=read_token(self.root), timeout=60)

    def _busy(self, worker: Any) -> bool:
        if isinstance(worker, threading.Thread):
            return worker.is_alive()
        health = self._get("/health")
        return bool(health is None or health["queue"] or health["index_lag"])

    # -- checks
    def verify(self, converged: bool = False) -> list[str]:
        failures = self._check_entries(converged)
        for rel, body in sorted(self.manifest.items()):
            path = self.root / rel
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                failures.append(f"{rel}: lost")
                continue
            fm, lines = split_frontmatter(text)
            if "\n".join(lines) != body:
                failures.append(f"{rel}: body differs from what was written "
                                f"({len(text)} characters on disk)")
            meta = self.meta.get(rel)
            if not isinstance(meta, dict) or meta.get("title") != Path(rel).stem:
                failures.append(f"{rel}: frontmatter lost its title: {meta!r}")
        temps = [p.relative_to(self.root).as_posix() for p in self.root.rglob(f"*{TEMP_SUFFIX}")]
        if temps:
            failures.append(f"temporary files left behind: {temps}")
        failures.extend(self._check_memory())
        with open_vault(self.root, env=self.env, daemon="never") as vault:
            report = vault.doctor()
        failures.extend(f"doctor: {f.message}" for f in report.findings)
        return failures

    def _check_entries(self, converged: bool) -> list[str]:
        """Every entry the harness wrote, word for word, across the live and archived files
        (a merged note copies sentences: it is checked through its sources instead)."""
        failures: list[str] = []
        self.half_done = 0
        self.meta: dict[str, Any] = {}
        live: dict[str, str] = {}
        archived: dict[str, str] = {}
        merged: dict[str, list[str]] = {}
        for path in sorted(self.root.rglob("*.md")):
            rel = path.relative_to(self.root).as_posix()
            if rel.startswith(".vaultd/"):
                continue
            text = path.read_text(encoding="utf-8")
            fm, _ = split_frontmatter(text)
            try:
                meta = yaml.safe_load("\n".join(fm or [])) or {}
            except yaml.YAMLError as exc:
                failures.append(f"{rel}: frontmatter no longer parses: {exc}")
                continue
            self.meta[rel] = meta
            if isinstance(meta, dict) and meta.get("consolidation"):
                merged[rel] = [str(s) for s in meta.get("consolidated_from") or []]
            elif rel.startswith("archive/"):
                archived[rel.removeprefix("archive/")] = text
            else:
                live[rel] = text
        for block, (rel, _key) in self.entries.items():
            here = live.get(rel, "").count(block + "\n")
            there = archived.get(rel, "").count(block + "\n")
            where = f"{rel}: entry {block.splitlines()[0]!r}"
            if here + there == 0:
                failures.append(f"{where} lost")
            elif here > 1 or there > 1 or (converged and here + there != 1):
                failures.append(f"{where} is {here} time(s) in the log and {there} in archive/")
            elif here + there == 2:
                self.half_done += 1
        sources: dict[str, str] = {}
        for rel, members in merged.items():
            for source in members:
                if source in sources:
                    failures.append(f"{source} merged into both {sources[source]} and {rel}")
                sources[source] = rel
                file_part, _, key = source.partition("#")
                heading = f"## {key}\n"
                here = heading in live.get(file_part, "")
                there = heading in archived.get(file_part, "")
                if not (here or there):
                    failures.append(f"{rel}: its source {source} is gone")
        return failures

    def _check_memory(self) -> list[str]:
        text = (self.root / "MEMORY.md").read_text(encoding="utf-8")
        if text.count(BEGIN) != 1 or text.count(END) != 1:
            return [f"MEMORY.md: {text.count(BEGIN)} begin and {text.count(END)} end markers"]
        head, rest = text.split(BEGIN, 1)
        block, tail = rest.split(END, 1)
        failures = []
        if head != self.memory_head or tail != self.memory_tail:
            failures.append("MEMORY.md: the user's text around the block changed")
        if block.strip() and "## " not in block:
            failures.append(f"MEMORY.md: the block is not a rendered block: {block[:200]!r}")
        return failures


def run_soak(workdir: Path, iterations: int, seed: int) -> dict[str, Any]:
    """The loop shared by the test and `bench/soak/crash_soak.py`."""
    harness = CrashHarness(workdir, seed)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    harness.start()
    try:
        harness.wait_idle()
        for number in range(iterations):
            outcomes.append(harness.iteration(number, PHASES[number % len(PHASES)]))
    finally:
        harness.stop()
    merged = [p for p in harness.root.rglob("semantic/*.md")
              if "consolidation:" in p.read_text(encoding="utf-8")]
    kills = {p: sum(o.phase == p for o in outcomes) for p in PHASES}
    busy = {p: sum(o.phase == p and o.busy for o in outcomes) for p in PHASES}
    failed = [o.to_dict() for o in outcomes if o.failures]
    half_done = sum(o.half_done > 0 for o in outcomes)
    return {"iterations": len(outcomes), "seed": seed, "kills": kills, "kills_while_busy": busy,
            "notes_written": len(harness.manifest), "entries_written": len(harness.entries),
            "merged_notes": len(merged), "kills_leaving_moves_half_done": half_done,
            "lifecycle_reruns": harness.actions, "failures": failed,
            "seconds": round(time.perf_counter() - started, 1), "root": str(harness.root)}


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    summary = run_soak(tmp_path, iterations=9, seed=7)
    assert summary["failures"] == [], json.dumps(summary["failures"], indent=1)
    assert summary["kills"] == {"index": 3, "flush": 3, "lifecycle": 3}
    assert sum(summary["kills_while_busy"].values()) >= 1  # the kills did land mid-work
    assert summary["kills_while_busy"]["lifecycle"] >= 1
    # the lifecycle had real work: entries were merged, reprieved or faded
    assert summary["merged_notes"] >= 1 and summary["lifecycle_reruns"]["reprieve"] >= 1
    root = Path(summary["root"])
    result = vaultd(root, "doctor", "--json", env=env_for(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["clean"] is True


@pytest.mark.slow
def test_a_restarted_daemon_removes_temp_files_of_killed_writers(tmp_path: Path) -> None:
    """Regression (found by the soak): a writer SIGKILLed between creating its temporary file
    and `os.replace` left `.NAME.PID.RANDOM.vaultd-tmp` files in the vault for good."""
    from daemon_helpers import running_daemon

    root = make_vault(tmp_path, {"semantic/a.md": "# A\nalpha\n"}, config=CONFIG)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = root / "semantic" / f".a.md.{gone.pid}.k2j4h5g6{TEMP_SUFFIX}"
    dead.write_text("# A\nalp", encoding="utf-8")
    live = root / "semantic" / f".a.md.{os.getpid()}.x7y8z9w0{TEMP_SUFFIX}"
    live.write_text("# A\nalpha, bet", encoding="utf-8")
    with running_daemon(root, env_for(tmp_path)):
        assert not dead.exists()
        assert live.exists()  # its writer still runs: the write is in progress
    assert (root / "semantic" / "a.md").read_text(encoding="utf-8") == "# A\nalpha\n"
