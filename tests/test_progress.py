"""Searchable seconds after start, and progress you can trust (issue 15 points 3 and 4).

The index is built in two phases: files (parse, chunk, full-text) first, vectors after. These
tests hold what that promises: keyword search works after the first phase, a search says how
many chunks it ranked by BM25 alone, the pending count is exact, a vectors phase cut short is
finished by the next run (and doctor calls it pending, not broken), the result equals a full
build, and the daemon, `vaultd index`, `start` and `status` report progress.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_vault
from daemon_helpers import (
    FAST_CONFIG,
    Running,
    call,
    env_for,
    running_daemon,
    vaultd,
    wait_for,
)

from vaultd import layout
from vaultd.cli import main
from vaultd.cli.progress import ProgressLine
from vaultd.daemon import vector_fill
from vaultd.daemon.commands import RunPhase
from vaultd.daemon.discovery import read_info, read_token
from vaultd.daemon.process import Daemon
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.indexer import RateMeter
from vaultd.progress import IndexProgress, duration
from vaultd.store import Store
from vaultd.vault import Vault, open_vault

NOTES = {
    "semantic/deploy.md": "# Deploy\n\n## Rollback\nfly releases rollback v41 when the "
                          "canary fails\n\n## Secrets\nrotate the stripe key quarterly\n",
    "semantic/pool.md": "# Pool\n\npostgres pool exhausted under the nightly batch load\n",
    "procedural/gamma.md": "# Gamma\n\nthe caracal note about wildcats\n",
    "procedural/copy.md": "# Gamma\n\nthe caracal note about wildcats\n",  # same chunk text
    "episodic/2026-11-20.md": "# 2026-11-20\n\n## 09:00 — pool\npostgres pool exhausted "
                              "#incident\n\n## 10:00 — deploy\nrolled back v41 again\n",
}


def open_with(root: Path, embedder: HashEmbedder) -> Vault:
    return open_vault(root, env={}, embedder=embedder)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_vault(tmp_path, NOTES, config=FAST_CONFIG)


@pytest.fixture
def embedder(tmp_path: Path) -> HashEmbedder:
    return HashEmbedder(builtin_profiles(tmp_path)["hash-256"])


def chunk_count(vault: Vault) -> int:
    return vault.store.counts()["chunks"]


def ranking(vault: Vault, query: str, mode: str = "hybrid") -> list[tuple[str, int, float]]:
    return [(h.path, h.lines[0], round(h.score, 6))
            for h in vault.search(query, k=20, mode=mode)]


# ---------------------------------------------------------------------------- the library


def test_keyword_search_works_after_the_files_phase_and_says_what_is_pending(
        root: Path, embedder: HashEmbedder) -> None:
    with open_with(root, embedder) as vault:
        report = vault.index(vectors=False)
        chunks = chunk_count(vault)
        assert chunks > 0 and embedder.texts_embedded == 0  # no model call at all
        assert report.chunks_pending == chunks == vault.pending_vectors()
        assert "waiting for vectors" in report.summary()
        bm25 = vault.search("caracal wildcats", mode="bm25")
        assert {h.path for h in bm25} == {"procedural/gamma.md", "procedural/copy.md"}
        assert bm25.pending_vectors == 0  # a keyword search needs no vector
        hybrid = vault.search("caracal wildcats")
        assert {h.path for h in hybrid} == {"procedural/gamma.md", "procedural/copy.md"}
        assert hybrid.pending_vectors == chunks  # said, never silent
        vector = vault.search("caracal wildcats", mode="vector")
        assert list(vector) == [] and vector.pending_vectors == chunks
        assert vault.status().pending_vectors == chunks


def test_pending_count_is_exact_and_equal_contents_are_embedded_once(
        root: Path, embedder: HashEmbedder) -> None:
    with open_with(root, embedder) as vault:
        vault.index(vectors=False)
        pending = vault.pending_vectors()
        contents = len({h for _, _, h in vault.store.conn.execute(
            "SELECT rowid, path, hash FROM chunks")})  # a test may read the index directly
        assert contents == pending - 1  # gamma.md and copy.md share their one chunk
        filled = vault.embed_pending(limit=2)
        assert vault.pending_vectors() == pending - filled and filled >= 2
        rest = vault.embed_pending()
        assert filled + rest == pending and vault.pending_vectors() == 0
        assert embedder.texts_embedded == contents  # each content once
        counts = vault.store.counts()
        assert counts["vectors"] == counts["chunks"] == pending


def test_two_phases_give_the_same_index_as_a_rebuild(root: Path, tmp_path: Path,
                                                     embedder: HashEmbedder) -> None:
    other = tmp_path / "other"
    shutil.copytree(root, other)
    queries = ["rollback canary", "postgres pool exhausted", "caracal", "stripe key"]
    with open_with(root, embedder) as phased:
        phased.index(vectors=False)
        phased.embed_pending(limit=1)
        phased.embed_pending()
        got = {q: ranking(phased, q, m) for q in queries for m in ("hybrid", "vector")}
    with open_with(other, embedder) as whole:
        report = whole.index()
        assert report.chunks_pending == 0
        want = {q: ranking(whole, q, m) for q in queries for m in ("hybrid", "vector")}
    assert got == want and all(got.values())


def test_a_vectors_phase_cut_short_is_finished_by_the_next_index(
        root: Path, embedder: HashEmbedder) -> None:
    """What a SIGKILL between two vector batches leaves: every file and its full-text rows,
    some vectors. Doctor calls the rest pending (not broken); the next index embeds only them."""
    with open_with(root, embedder) as vault:
        vault.index(vectors=False)
        vault.embed_pending(limit=2)
        left = vault.pending_vectors()
        assert left > 0
    with open_with(root, embedder) as vault:
        report = vault.doctor()
        assert report.clean, report.lines()
        assert report.pending_vectors == left
        assert any(line.startswith("pending: ") for line in report.lines())
        before = embedder.texts_embedded
        again = vault.index()
        assert again.chunks_pending == 0 and vault.pending_vectors() == 0
        assert again.new == again.changed == []  # the files were whole: none read again
        assert embedder.texts_embedded - before == again.chunks_embedded <= left
        after = vault.doctor()
        assert after.clean and after.pending_vectors == 0


def test_doctor_fix_embeds_what_is_pending(root: Path, embedder: HashEmbedder) -> None:
    with open_with(root, embedder) as vault:
        vault.index(vectors=False)
        report = vault.doctor(fix=True)
        assert report.clean and report.pending_vectors == 0
        assert any("pending chunk" in line for line in report.fixed)


def test_damage_is_still_damage_next_to_pending_work(root: Path,
                                                     embedder: HashEmbedder) -> None:
    """A chunk whose cached vector vanished while its vec0 row stayed is broken, not pending."""
    with open_with(root, embedder) as vault:
        vault.index()
        path = vault.store.path
    store = Store(path)
    store.conn.execute("DELETE FROM embeddings WHERE hash IN "
                       "(SELECT hash FROM chunks WHERE path = 'semantic/pool.md')")
    store.close()
    with open_with(root, embedder) as vault:
        report = vault.doctor()
        assert ("embeddings", "semantic/pool.md") in {(f.kind, f.path)
                                                      for f in report.findings}
        assert report.pending_vectors == 0


def test_a_moved_file_waits_for_nothing(root: Path, embedder: HashEmbedder) -> None:
    with open_with(root, embedder) as vault:
        vault.index()
        (root / "semantic" / "pool.md").rename(root / "semantic" / "pool-moved.md")
        report = vault.index(vectors=False)
        assert report.moved and report.chunks_pending == 0 and report.chunks_reused > 0


def test_lifecycle_plans_from_complete_vectors(root: Path, embedder: HashEmbedder) -> None:
    with open_with(root, embedder) as vault:
        vault.index(vectors=False)
        vault.lifecycle_context(dry_run=True)
        assert vault.pending_vectors() == 0


# ---------------------------------------------------------------------------- progress


def test_progress_lines_and_eta() -> None:
    assert IndexProgress("files", 3, 12).line() == "reading 3/12 files (25%)"
    early = IndexProgress("vectors", 100, 1000)
    assert early.eta is None and "left" not in early.line()
    late = IndexProgress("vectors", 400, 1000, rate=20.0)
    assert late.eta == 30.0
    assert late.line() == "embedding 400/1,000 chunks (40%), 20.0 chunks/s, about 30s left"
    assert late.to_dict() == {"phase": "vectors", "done": 400, "total": 1000, "rate": 20.0,
                              "eta_seconds": 30.0}
    assert [duration(s) for s in (5, 185, 7320)] == ["5s", "3m05s", "2h02m"]


def test_the_rate_leaves_out_the_first_batch() -> None:
    meter = RateMeter()
    assert meter.update(256) is None  # the batch that loaded the model
    rate = wait_for(lambda: meter.update(512), "a measurable interval")
    assert rate > 0


def test_progress_lines_off_a_terminal_are_periodic(capsys: pytest.CaptureFixture[str]) -> None:
    line = ProgressLine(tty=False, every=3600)
    for done in range(1, 101):
        line(IndexProgress("files", done, 100))
    for done in (10, 20, 30):
        line(IndexProgress("vectors", done, 30))
    line.finish()
    out = capsys.readouterr().err.splitlines()
    assert out == ["reading 1/100 files (1%)", "reading 100/100 files (100%)",
                   "embedding 10/30 chunks (33%)", "embedding 30/30 chunks (100%)"]


def test_vaultd_index_reports_both_phases(root: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    result = runner.invoke(main, ["--vault", str(root), "index"])
    assert result.exit_code == 0, result.output
    assert "reading 6/6 files (100%)" in result.stderr  # and MEMORY.md
    assert "embedding" in result.stderr and "chunks (100%)" in result.stderr
    assert "chunks embedded" in result.stdout


def test_vaultd_search_says_when_chunks_were_ranked_by_keywords_alone(
        root: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    with open_vault(root, env={"VAULTD_CACHE_DIR": str(tmp_path / "cache")}) as vault:
        vault.index(vectors=False)
        pending = vault.pending_vectors()
    result = runner.invoke(main, ["--vault", str(root), "search", "caracal", "--local"])
    assert result.exit_code == 0, result.output
    assert (f"note: {pending} chunk(s) have no vector yet (indexing continues): ranked by "
            "keywords (BM25) alone") in result.stderr
    assert "procedural/gamma.md" in result.stdout
    status = runner.invoke(main, ["--vault", str(root), "status"])
    assert f"vectors    {pending} chunk(s) wait for their vector" in status.stdout
    bm25 = runner.invoke(main, ["--vault", str(root), "search", "caracal", "--local",
                                "--mode", "bm25"])
    assert "no vector yet" not in bm25.stderr


# ---------------------------------------------------------------------------- the daemon


class GatedEmbedder(HashEmbedder):
    """Each call embedding documents takes one of `permits`: the daemon's vectors phase holds
    still while the test looks at it (query embeddings pass)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.permits = threading.Semaphore(0)

    def open(self) -> None:
        self.permits.release(10_000)

    def embed(self, texts: list[str], kind: str = "document") -> np.ndarray:  # type: ignore[override]
        if kind == "document" and texts:
            assert self.permits.acquire(timeout=60), "the test never let the embedder run"
        return super().embed(texts, kind=kind)  # type: ignore[arg-type]


@pytest.fixture
def gated(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[Running, GatedEmbedder]]:
    monkeypatch.setattr(vector_fill, "VECTOR_STEP", 1)  # one chunk content per step
    embedder = GatedEmbedder(builtin_profiles(tmp_path)["hash-256"])
    daemon = Daemon(open_with(root, embedder), log_to_stderr=False)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["code"] = daemon.run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test-daemon", daemon=True)
    thread.start()
    running = Running(daemon, thread, outcome)
    try:
        wait_for(lambda: "error" in outcome or (daemon.fill.progress is not None
                                                and daemon.fill.progress.phase == "vectors"),
                 "the files phase to end")
        yield running, embedder
    finally:
        embedder.open()
        running.stop()


def test_the_daemon_answers_keyword_search_while_vectors_fill_in(
        gated: tuple[Running, GatedEmbedder]) -> None:
    running, embedder = gated
    _, status = running.call("GET", "/status")
    chunks = running.daemon.vault.store.counts()["chunks"]
    assert status["pending_vectors"] == chunks > 0
    assert status["first_index_done"] is False and status["indexing"] is True
    assert status["progress"]["phase"] == "vectors"
    assert status["progress"]["total"] == chunks
    bm25 = running.search("caracal wildcats", mode="bm25")
    assert {h["path"] for h in bm25["hits"]} == {"procedural/gamma.md", "procedural/copy.md"}
    hybrid = running.search("caracal wildcats", mode="hybrid")
    assert hybrid["pending_vectors"] == chunks
    assert {h["path"] for h in hybrid["hits"]} == {"procedural/gamma.md", "procedural/copy.md"}
    # a lifecycle phase waits for the vectors (an entry's vector is the mean of its chunks'):
    # queued while the first step runs, it is taken up between steps and put aside
    running.daemon.events.put_command(RunPhase("connect"))
    embedder.permits.release(1)
    wait_for(lambda: RunPhase("connect") in running.daemon.fill.held, "connect to wait")
    assert "connect" not in running.daemon.stats.lifecycle
    step = wait_for(lambda: (s := running.call("GET", "/status")[1])["progress"]["done"] and s,
                    "the first step")
    assert step["progress"] == {"phase": "vectors", "done": 1, "total": chunks, "rate": None,
                                "eta_seconds": None}  # no rate before a second step
    assert step["pending_vectors"] == chunks - 1
    between = running.search("caracal wildcats", mode="hybrid")  # filling is no file change
    assert between["stale_files"] == 0 and between["pending_vectors"] == chunks - 1

    embedder.open()
    done = wait_for(lambda: (s := running.call("GET", "/status")[1])["first_index_done"] and s,
                    "the vectors phase to end")
    assert done["pending_vectors"] == 0 and done["progress"] is None
    assert done["indexing"] is False
    assert running.search("caracal wildcats", mode="hybrid")["pending_vectors"] == 0
    wait_for(lambda: "connect" in running.daemon.stats.lifecycle, "the deferred connect")


def test_status_never_says_the_first_index_is_done_with_chunks_pending(
        gated: tuple[Running, GatedEmbedder], monkeypatch: pytest.MonkeyPatch) -> None:
    """/status read the index's pending count, then the main thread's "first index done": the
    last step landing in between gave "done" with a chunk pending (seen once under load)."""
    running, embedder = gated
    daemon = running.daemon
    reader = daemon.reads.reader

    class LastStepLandsNow:
        """The index's count, then the rest of the vectors phase before status goes on."""

        def pending_vectors(self) -> int:
            count = reader().pending_vectors()
            embedder.open()
            wait_for(lambda: daemon.fill.first_index_done, "the vectors phase to end")
            return count

    monkeypatch.setattr(daemon.reads, "reader", LastStepLandsNow)
    status = daemon.status()
    assert status["pending_vectors"] > 0
    assert status["first_index_done"] is False and status["progress"]["phase"] == "vectors"


def test_vaultd_status_shows_the_progress_of_the_first_index(
        gated: tuple[Running, GatedEmbedder], tmp_path: Path) -> None:
    running, _ = gated
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache")})
    result = runner.invoke(main, ["--vault", str(running.root), "status"])
    assert result.exit_code == 0, result.output
    assert "indexing   embedding 0/" in result.stdout
    assert "keyword search works" in result.stdout
    assert "index lag" not in result.stdout  # not "queue 0, index lag 0.00s" while it indexes


@pytest.mark.slow
def test_a_sigkill_in_the_vectors_phase_is_finished_by_the_next_start(tmp_path: Path) -> None:
    """A real daemon killed with SIGKILL while it fills vectors: every file is in the index,
    some chunks lack a vector (pending, which doctor does not call damage), and the next start
    embeds exactly those; the result equals a fresh build."""
    notes = {f"semantic/n{i:04d}.md": f"# Note {i}\n\n" + "\n\n".join(
        f"## Part {j}\nword{i} caracal{j} topic{(i * j) % 17} fell on the {j}th day"
        for j in range(6)) + "\n" for i in range(600)}
    root = make_vault(tmp_path, notes, config=FAST_CONFIG)
    fresh = tmp_path / "fresh"
    shutil.copytree(root, fresh)
    env = env_for(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root), "run",
                             "--quiet"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def filling() -> bool:
            assert proc.poll() is None, "the daemon exited"
            info = read_info(root)
            if not info:
                return False
            try:
                _, status = call(int(info["port"]), "GET", "/status", token=read_token(root),
                                 timeout=10)
            except OSError:
                return False
            progress = status.get("progress") or {}
            return progress.get("phase") == "vectors" and progress.get("done", 0) > 0

        wait_for(filling, "the vectors phase to be under way", timeout=60, interval=0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    store = Store(layout.index_path(root))
    counts, pending = store.counts(), store.pending_vectors()
    store.close()
    assert counts["notes"] == len(notes) + 1  # every file made it (and MEMORY.md)
    assert 0 < pending < counts["chunks"], "killed too late or too early to tell"
    with open_vault(root, env=env) as vault:
        report = vault.doctor()  # the dead daemon's daemon.json, and nothing else, is off
        assert report.kinds() == {"lock"}, report.lines()
        assert report.pending_vectors == pending
    with running_daemon(root, env) as running:
        wait_for(lambda: running.call("GET", "/status")[1]["first_index_done"],
                 "the next start to finish the vectors")
    with open_vault(root, env=env) as vault, open_vault(fresh, env=env) as other:
        assert vault.doctor().clean and vault.pending_vectors() == 0
        other.index()
        for query in ("caracal3 topic5", "word17 fell", "the 2th day"):
            assert ranking(vault, query, "vector") == ranking(other, query, "vector")
            assert ranking(vault, query) == ranking(other, query)


@pytest.mark.slow
def test_vaultd_start_wait_returns_once_the_first_index_is_done(tmp_path: Path) -> None:
    notes = {f"semantic/n{i:03d}.md": f"# Note {i}\n\nword{i} caracal wildcats\n"
             for i in range(300)}
    root = make_vault(tmp_path, notes, config=FAST_CONFIG)
    env = env_for(tmp_path)
    try:
        started = vaultd(root, "start", "--wait", env=env, timeout=120)
        assert started.returncode == 0, started.stderr
        assert "first index done: every file read, every chunk embedded" in started.stdout
        status = vaultd(root, "status", "--json", env=env)
        data = json.loads(status.stdout)
        assert data["pending_vectors"] == 0 and data["daemon"]["first_index_done"] is True
        assert data["vectors"] == data["chunks"] >= 300  # a chunk a note (MEMORY.md has none)
        again = vaultd(root, "start", env=env)  # already running and indexed: nothing to add
        assert again.returncode == 0 and "indexing continues" not in again.stdout
    finally:
        vaultd(root, "stop", env=env)
