"""`vaultd status` and the daemon's /status as typed values: what one side serialises the other
reads back field for field, so the JSON's keys have one home."""

from __future__ import annotations

import json

from vaultd.daemon.stats import Health, PhaseRun, Stats, Status
from vaultd.progress import IndexProgress
from vaultd.status import ModelInfo, SkippedFile, VaultStatus
from vaultd.writer_role import WriterRole


def status(progress: IndexProgress | None) -> Status:
    stats = Stats(started_at=1.5, last_batch_at=2.5, last_batch="3 new", drift=1, batches=4,
                  errors=0, lifecycle={"connect": PhaseRun(3.0, "2 links")})
    return Status(health=Health("all-MiniLM-L6-v2", 384, "mean", 12.0, 2, 0.25, False),
                  pending_vectors=7, progress=progress, first_index_done=progress is None,
                  pid=123, port=52525, last_event_at=None, indexing=True,
                  watcher_mode="inotify", watcher_reason="", stats=stats,
                  writer=WriterRole("studio", "laptop"), skipped_jobs=["consolidate"])


def test_the_daemon_status_reads_back_what_it_sent() -> None:
    for progress in (None, IndexProgress("vectors", 10, 40, 12.5)):
        sent = status(progress)
        assert Status.from_dict(json.loads(json.dumps(sent.to_dict()))) == sent


def test_the_status_json_keeps_its_keys() -> None:
    data = status(IndexProgress("files", 3, 9)).to_dict()
    assert data["writer"] == {"writer": "studio", "host": "laptop", "writes": False,
                              "summary": WriterRole("studio", "laptop").summary(),
                              "skipped_jobs": ["consolidate"]}
    assert data["progress"] == {"phase": "files", "done": 3, "total": 9, "rate": None,
                                "eta_seconds": None}
    assert data["watcher"] == {"mode": "inotify", "reason": ""}


def vault_status(versions: dict[str, str]) -> VaultStatus:
    counts = {"notes": 3, "entries": 5, "chunks": 6, "vectors": 6, "skipped": 1,
              "archived_notes": 0}
    return VaultStatus(vault="/v", index="/v/.vaultd/index.db", counts=counts,  # type: ignore[arg-type]
                       pending_vectors=0, model=ModelInfo("m", 384, None), versions=versions,
                       schema_version=3, last_index_at=None, changed_since_index=0,
                       changed_paths=[], skipped_files=[SkippedFile("x.md", "a FIFO")],
                       writer=WriterRole("", "laptop"))


def test_vault_status_flattens_counts_and_versions_as_the_json_always_had_them() -> None:
    data = vault_status({"sqlite_module": "sqlean", "sqlite": "3.45.1",
                         "sqlite_vec": "v0.1.6"}).to_dict()
    assert data["notes"] == 3 and data["sqlite_vec"] == "v0.1.6"
    assert data["skipped_files"] == [{"path": "x.md", "reason": "a FIFO"}]
    assert data["writer"]["writes"] is True


def test_the_backend_line_names_any_backend_s_components() -> None:
    sqlite = vault_status({"sqlite_module": "sqlean", "sqlite": "3.45.1", "sqlite_vec": "v0.1.6"})
    assert sqlite.backend_line() == "sqlean 3.45.1, sqlite-vec v0.1.6, schema v3"
    other = vault_status({"postgresql": "16.4", "pgvector": "0.7.4"})
    assert other.backend_line() == "pgvector 0.7.4, postgresql 16.4, schema v3"
