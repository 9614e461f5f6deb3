"""Helpers shared by the benchmarks in bench/quality, bench/speed and bench/soak: where their
data and output live, machine load, timing, and the daemon's API (no vaultd import here)."""

from __future__ import annotations

import functools
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
DEFAULT_DATA = BENCH.parents[1] / "shared" / "data"
WORKERS = BENCH / "speed" / "stack_workers.py"
CHROMA_PY = os.environ.get("BENCH_CHROMA_PYTHON", "/tmp/chromavenv/bin/python")
ST_PY = os.environ.get("BENCH_ST_PYTHON", "/tmp/stvenv/bin/python")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median and spread (min, max) of repeated runs."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "runs": [round(v, digits) for v in values]}


def latency(values_ms: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values_ms, 0.5), 3), "p95": round(pct(values_ms, 0.95), 3),
            "mean": round(sum(values_ms) / len(values_ms), 3), "n": len(values_ms)}


def mem_mb(pid: int | str = "self") -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    info: dict[str, Any] = {"cpus": os.cpu_count(), "cpu": cpu, "mem_gb": round(mem_kb / 2**20, 1),
                            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import onnxruntime
        import sqlite_vec  # noqa: F401

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        info["vaultd_git_head"] = head
        import vaultd

        info["vaultd_path"] = str(Path(vaultd.__file__).parent)
    except ImportError:
        pass
    return info


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def pids_cpu_seconds(pids: tuple[int, ...] | list[int]) -> float:
    """CPU seconds used so far by the processes `pids` (e.g. the daemon a bench queries)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Contention:
    """CPU used by other processes on the machine while a measurement ran (cores busy, on
    average): a run with much of it is disturbed and is flagged (and can be repeated). `pids`:
    processes that are part of the measurement (the daemon a bench queries), not others."""

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        self.pids = pids

    def __enter__(self) -> Contention:
        self.t, self.busy = time.perf_counter(), _busy_seconds()
        self.own = _own_cpu_seconds() + pids_cpu_seconds(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t
        own = _own_cpu_seconds() + pids_cpu_seconds(self.pids)
        other = (_busy_seconds() - self.busy) - (own - self.own)
        self.other_cores = round(max(other, 0.0) / max(wall, 1e-9), 3)


# On a machine shared for good, waiting does not help: BENCH_QUIET_TIMEOUT (seconds) and
# BENCH_TRIES shorten the waits and repeats; each result still records the load it ran under.
QUIET_TIMEOUT = float(os.environ.get("BENCH_QUIET_TIMEOUT", "900"))
TRIES = int(os.environ.get("BENCH_TRIES", "3"))


def wait_quiet(max_other_cores: float = 0.15, window: float = 5.0,
               timeout: float | None = None) -> float:
    """Wait until other processes use less than `max_other_cores` over `window` seconds."""
    timeout = QUIET_TIMEOUT if timeout is None else timeout
    started = time.perf_counter()
    while True:
        with Contention() as c:
            time.sleep(window)
        if c.other_cores <= max_other_cores or time.perf_counter() - started > timeout:
            return c.other_cores
        print(f"  (machine busy: {c.other_cores:.2f} cores used by others; waiting)",
              file=sys.stderr, flush=True)


MAX_OTHER_CORES = 0.2


def least_disturbed(measure: Callable[[], dict[str, Any]], tries: int | None = None
                    ) -> dict[str, Any]:
    """Run `measure` (which reports "other_cores") until other processes stayed under
    MAX_OTHER_CORES, at most `tries` times; return the least disturbed result."""
    best: dict[str, Any] | None = None
    for attempt in range(TRIES if tries is None else tries):
        result = measure()
        result["attempt"] = attempt + 1
        if best is None or result["other_cores"] < best["other_cores"]:
            best = result
        if result["other_cores"] <= MAX_OTHER_CORES:
            break
        print(f"  (disturbed: {result['other_cores']:.2f} cores used by others; again)",
              file=sys.stderr, flush=True)
    assert best is not None
    return best


def run_worker(python: str, stack: str, task: str, job: dict[str, Any], workdir: Path,
               env: dict[str, str] | None = None, timeout: float = 7200,
               tries: int | None = None) -> dict[str, Any]:
    """Run stack_workers.py in a fresh process (again if other processes disturbed it); return
    its JSON plus the process wall time and the CPU others used meanwhile."""
    return least_disturbed(lambda: _run_worker(python, stack, task, job, workdir, env, timeout),
                           tries)


def _run_worker(python: str, stack: str, task: str, job: dict[str, Any], workdir: Path,
                env: dict[str, str] | None, timeout: float) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    job_file = workdir / f"job-{stack}-{task}.json"
    out_file = workdir / f"result-{stack}-{task}.json"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    wait_quiet()
    started = time.perf_counter()
    with Contention() as contention:
        proc = subprocess.run([python, str(WORKERS), stack, task, "--job", str(job_file),
                               "--out", str(out_file)], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{stack} {task} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out_file.read_text())
    result["process_wall_s"] = round(wall, 4)
    result["other_cores"] = contention.other_cores
    return result


def bare_python_seconds(python: str, reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Timer:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.seconds = 0.0
        self.calls = 0
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


class TimedProxy:
    """Stands in for an object whose methods can't be patched (Rust/C types): times `method`."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._timer = Timer(getattr(inner, method))
        setattr(self, method, self._timer)

    @property
    def seconds(self) -> float:
        return self._timer.seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# A kept-alive connection can be closed by the daemon between two requests: its server times
# out a connection left idle, and a bench that waited meanwhile (for a quiet machine, for the
# daemon's start-up work, over an idle-CPU window) finds it closed at its next request — as a
# broken pipe on sending, a reset, or no answer at all.
DROPPED = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)


class DaemonApi:
    """The daemon's loopback API over one keep-alive connection (port, token from .vaultd/).

    A request that fails on a connection which already served one (the daemon closed it while
    idle) is sent once more on a new connection; `reconnects` counts those. A failure on a new
    connection, or a second one in a row, is the daemon's and is raised."""

    def __init__(self, root: Path, timeout: float = 120) -> None:
        info = json.loads((root / ".vaultd" / "daemon.json").read_text())
        self.port, self.pid = int(info["port"]), int(info["pid"])
        self.token = (root / ".vaultd" / "token").read_text().strip()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        self.reconnects = 0
        self._reused = False  # the connection has answered a request: the daemon may drop it

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            status, data = self._exchange(method, path, body)
        except DROPPED:
            if not self._reused:
                raise
            self.conn.close()  # the next request opens a new connection
            self._reused = False
            self.reconnects += 1
            status, data = self._exchange(method, path, body)
        if status != 200:
            raise RuntimeError(f"{path}: {status} {data}")
        return data

    def _exchange(self, method: str, path: str, body: dict[str, Any] | None
                  ) -> tuple[int, dict[str, Any]]:
        headers = {"Host": f"localhost:{self.port}", "Authorization": f"Bearer {self.token}",
                   "Content-Type": "application/json"}
        self.conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        response = self.conn.getresponse()
        data = json.loads(response.read())
        self._reused = True
        return response.status, data

    def wait_idle(self, timeout: float = 1800) -> None:
        started, quiet = time.perf_counter(), 0
        while time.perf_counter() - started < timeout:
            status = self.call("GET", "/status")
            busy = status["queue"] or status["indexing"] or status["index_lag"]
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                return
            time.sleep(0.2)
        raise TimeoutError("daemon never went idle")


def vaultd_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaultd", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, check=False)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def wait_for_idle(pid: int, limit: float = 300.0) -> float:
    """Seconds until the process used < 5 % of a core over 2 s (its start-up work done)."""
    started = time.perf_counter()
    while idle_cpu_percent(pid, 2.0) >= 5.0 and time.perf_counter() - started < limit:
        pass
    return round(time.perf_counter() - started, 1)


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """CPU the idle daemon used (user + system), in % of one core, over `seconds`."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    return round(100 * (cpu() - before) / seconds, 3)


def pg_database(folder: Path, database: str, *, fresh: bool = True) -> tuple[Any, str, bool]:
    """A pgserver (pip) whose data lives in `folder`, and the URL of `database` on it: dropped
    and made anew when `fresh`, else made only when missing. Returns (server, URL, whether the
    database was made now); the server stops when the process ends (`cleanup_mode="stop"`)."""
    import pgserver
    import psycopg

    folder.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    uri = str(server.get_uri())
    with psycopg.connect(uri, autocommit=True) as conn:
        if fresh:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        made = fresh or not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                         (database,)).fetchone()
        if made:
            conn.execute(f"CREATE DATABASE {database}")
    head, _, query = uri.partition("?")
    return server, f"{head.rsplit('/', 1)[0]}/{database}?{query}", made
