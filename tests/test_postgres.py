"""The index on either backend gives the same answers: the store contract exercised on the
SQLite file and on a real PostgreSQL with pgvector (`backend_store` runs each test on both),
the two compared row for row on one set of notes, and the PostgreSQL backend's own edges:
its migrations, a newer schema refused in SQLite's words, a clear line when its client or
server is missing, and `vaultd index` + `vaultd search` through `VAULTD_INDEX_URL`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_vault

from vaultd.errors import VaultdError
from vaultd.store import (
    ChunkRecord,
    EntryRecord,
    FileRecord,
    Filters,
    IndexStore,
    Store,
    open_index,
)

DIMS = 8


def vec(*values: float) -> bytes:
    v = np.zeros(DIMS, dtype=np.float32)
    v[:len(values)] = values
    return (v / np.linalg.norm(v)).astype(np.float32).tobytes()


def chunk(cid: str, entry: str, heading: str, text: str, line: int, *, date: str | None = None,
          tags: tuple[str, ...] = ()) -> ChunkRecord:
    return ChunkRecord(cid, entry, heading, line, line + 1, text, f"h-{cid}", date, tags)


def fill(store: IndexStore, with_vectors: bool = True) -> None:
    """Three notes (one archived), five chunks; vectors for all but `c5` unless told."""
    store.ensure_model({"id": "test", "dims": DIMS})
    notes = {
        "notes/foxes.md": [chunk("c1", "e1", "Foxes", "the quick brown fox jumps over dogs", 1,
                                 date="2024-03-01", tags=("animals",)),
                           chunk("c2", "e1", "Foxes", "foxes run; a fox runs far", 5,
                                 date="2024-05-01")],
        "notes/db.md": [chunk("c3", "e2", "Databases", "postgres and sqlite store rows", 1),
                        chunk("c4", "e2", "Vectors", "pgvector keeps a fox vector", 4)],
        "archive/old.md": [chunk("c5", "e3", "Old", "an archived fox note", 1)],
    }
    vectors = {"h-c1": vec(1, 0), "h-c2": vec(1, 0.2), "h-c3": vec(0, 1), "h-c4": vec(0.5, 1)}
    if not with_vectors:
        vectors = {}
    with store.transaction():
        for n, (path, chunks) in enumerate(notes.items()):
            entry = chunks[0].entry_id
            store.write_file(
                FileRecord(path, 100 + n, 1000 + n, f"file-{n}", title=path, tags=("t",),
                           frontmatter={"n": n}),
                [EntryRecord(entry, 0, chunks[0].heading, 1, 9, chunks[0].date, (), f"k-{entry}",
                             f"eh-{entry}")],
                chunks, vectors)


def test_a_file_written_reads_back(backend_store: IndexStore) -> None:
    fill(backend_store)
    s = backend_store
    assert s.file_states()["notes/foxes.md"] == (100, 1000, "file-0")
    assert s.counts() == {"notes": 3, "entries": 3, "chunks": 5, "vectors": 4, "skipped": 0,
                          "archived_notes": 1}
    assert s.pending_vectors() == 1
    assert [p.hash for p in s.pending_chunks(10)] == ["h-c5"]
    rows = s.chunks_by_rowid(s.chunk_keys(embedded_only=False).rowids)
    assert sorted(r.id for r in rows.values()) == ["c1", "c2", "c3", "c4", "c5"]
    # undated first (by path), then by date
    assert [e.id for e in s.entry_rows()] == ["e3", "e2", "e1"]
    assert s.file_frontmatters()["notes/db.md"].frontmatter == {"n": 1}
    assert sorted(s.entry_keys(["e1", "e2"])) == [("notes/db.md", "k-e2"),
                                                   ("notes/foxes.md", "k-e1")]
    assert s.integrity_problems() == [] and s.orphan_paths() == []
    assert s.paths_out_of_fts() == [] and s.fts_without_chunks() == 0
    assert s.paths_without_vectors() == [] and s.vectors_without_chunks() == 0
    s.touch_file("notes/db.md", 7, 8)
    assert s.file_states()["notes/db.md"] == (7, 8, "file-1")


def test_vectors_added_later_make_a_chunk_searchable(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    before = s.vectors_generation()
    with s.transaction():
        assert s.add_vectors({"h-c5": vec(1, 0.1)}) == 1
    assert s.vectors_generation() != before and s.pending_vectors() == 0
    assert s.cached_vectors(["h-c5", "nope"]) == {"h-c5": vec(1, 0.1)}
    archived = s.knn(vec(1, 0.1), 5, Filters(include_archive=True))
    assert s.chunks_by_rowid([archived[0].rowid])[archived[0].rowid].id == "c5"


def ids(store: IndexStore, hits: list[Any]) -> list[str]:
    rows = store.chunks_by_rowid([h.rowid for h in hits])
    return [rows[h.rowid].id for h in hits]


def test_knn_ranks_by_cosine_and_filters(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    hits = s.knn(vec(1, 0), 3, Filters())
    assert ids(s, hits) == ["c1", "c2", "c4"]
    assert math.isclose(hits[0].score, 1.0, abs_tol=1e-6)
    assert ids(s, s.knn(vec(1, 0), 5, Filters(since="2024-04-01"))) == ["c2"]
    assert ids(s, s.knn(vec(1, 0), 5, Filters(tags=("#Animals",)))) == ["c1"]
    assert ids(s, s.knn(vec(1, 0), 5, Filters(path_glob="notes/d*.md"))) == ["c4", "c3"]
    assert ids(s, s.knn(vec(1, 0), 5, Filters(types=("nothing",)))) == []


def test_fts_ranks_by_bm25_with_stemming_and_filters(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    hits = s.fts('"fox" OR "runs"', 5, Filters())
    assert ids(s, hits)[0] == "c2" and set(ids(s, hits)) == {"c1", "c2", "c4"}
    assert all(h.score > 0 for h in hits)
    assert ids(s, s.fts('"fox"', 5, Filters(include_archive=True)))[-1:] != []
    assert "c5" in ids(s, s.fts('"fox"', 5, Filters(include_archive=True)))
    assert ids(s, s.fts('"fox"', 5, Filters(until="2024-04-01"))) == ["c1"]
    assert ids(s, s.fts('"quick brown"', 5, Filters())) == ["c1"]  # a phrase
    assert s.fts('"brown quick"', 5, Filters()) == []
    tokens = s.fts_tokens([(1, "", "Running Foxes")])
    assert [(t.term, t.occurrences) for t in tokens] == [("fox", 1), ("run", 1)]
    occurrences = list(s.fts_occurrences())
    assert occurrences == sorted(occurrences)
    assert s.fts_totals() == (5, len(occurrences))


def test_delete_and_skip_take_everything_of_a_file(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    with s.transaction():
        s.delete_file("notes/foxes.md")
    assert s.counts()["chunks"] == 3 and s.counts()["vectors"] == 2
    assert "c1" not in ids(s, s.fts('"fox"', 5, Filters(include_archive=True)))
    assert len(list(s.fts_occurrences())) == s.fts_totals().tokens
    with s.transaction():
        s.skip_file("notes/db.md", 5, 6, "too big")
    assert s.skipped() == [("notes/db.md", "too big")]
    assert s.file_states()["notes/db.md"] == (5, 6, "")
    assert s.knn(vec(0, 1), 5, Filters()) == []
    assert s.prune_embeddings(keep_orphans=1) == 3  # four cached, one chunk left unembedded


def test_links_recalls_and_meta(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    s.save_links([("e1", [("e2", 0.8), ("gone", 0.9)], "eh-e1"), ("e2", [], "eh-e2")], 5.0)
    assert sorted(s.links()) == [("e1", "e2", pytest.approx(0.8)),
                                 ("e2", "e1", pytest.approx(0.8))]
    assert s.link_degrees() == {"e1": 1, "e2": 1}
    assert s.connected() == {"e1": "eh-e1", "e2": "eh-e2"}
    assert s.add_recalls([("notes/db.md", "k-e2")], "q1", 1.0)
    assert s.add_recalls([("notes/db.md", "k-e2")], "q2", 1.0)
    assert s.add_recalls([("notes/db.md", "k-e2")], "q2", 2.0)
    assert s.recall_counts() == {("notes/db.md", "k-e2"): 2}
    s.set_meta("x", "1")
    s.set_meta("x", "2")
    assert s.get_meta("x") == "2" and s.get_meta("none") is None
    assert s.model_identity() == {"id": "test", "dims": DIMS}
    assert s.ensure_model({"id": "test", "dims": DIMS}) is False
    assert s.ensure_model({"id": "other", "dims": DIMS}) is True
    assert s.counts()["chunks"] == 0 and s.schema_version >= 1


def test_repairs_refill_the_derived_tables(backend_store: IndexStore) -> None:
    s = backend_store
    fill(s)
    before = s.fts('"fox" OR "rows"', 5, Filters())
    with s.transaction():
        s.rebuild_fts()
        s.rebuild_vectors()
    assert s.fts('"fox" OR "rows"', 5, Filters()) == before
    assert s.counts()["vectors"] == 4 and s.integrity_problems() == []


@pytest.mark.postgres
def test_both_backends_rank_alike(tmp_path: Path, pg_url: str) -> None:
    """One set of notes in both: the same hits, in the same order, with the same scores."""
    sqlite = open_index(tmp_path / "a" / "index.db", "")
    pg = open_index(tmp_path / "b" / "index.db", pg_url)
    try:
        for store in (sqlite, pg):
            fill(store)
        for query in ('"fox" OR "runs"', '"pgvector" OR "rows" OR "fox"', '"the"'):
            a, b = sqlite.fts(query, 5, Filters()), pg.fts(query, 5, Filters())
            assert ids(sqlite, a) == ids(pg, b)
            assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-9)
        for q in (vec(1, 0), vec(0.3, 1), vec(1, 1)):
            a, b = sqlite.knn(q, 4, Filters()), pg.knn(q, 4, Filters())
            assert ids(sqlite, a) == ids(pg, b)
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
        assert list(sqlite.fts_occurrences()) == list(pg.fts_occurrences())
        assert sqlite.fts_totals() == pg.fts_totals()
    finally:
        sqlite.close()
        pg.close()


@pytest.mark.postgres
def test_hnsw_index_past_the_threshold_still_finds_the_nearest(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vaultd.store.postgres import files

    monkeypatch.setattr(files, "HNSW_ROWS", 50)
    s = open_index(tmp_path / "index.db", pg_url)
    rng = np.random.default_rng(1)
    try:
        s.ensure_model({"id": "test", "dims": DIMS})
        vectors = rng.normal(size=(200, DIMS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with s.transaction():
            s.write_file(FileRecord("notes/many.md", 1, 1, "f"), [],
                         [chunk(f"c{i}", "e", "H", f"text {i}", i) for i in range(200)],
                         {f"h-c{i}": vectors[i].tobytes() for i in range(200)})
        assert s.counts()["vectors"] == 200
        import psycopg

        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                "'chunk_vectors_hnsw'").fetchone() is not None
        hits = s.knn(vectors[7].tobytes(), 10, Filters())
        assert ids(s, hits)[0] == "c7" and len(hits) == 10
    finally:
        s.close()


@pytest.mark.postgres
def test_a_newer_schema_is_refused_in_sqlites_words(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    open_index(tmp_path / "index.db", pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE vaultd_schema SET version = 99")
    with pytest.raises(VaultdError) as pg_error:
        open_index(tmp_path / "index.db", pg_url)
    sqlite_path = tmp_path / "sqlite" / "index.db"
    Store(sqlite_path).close()
    import sqlite3

    with sqlite3.connect(sqlite_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(VaultdError) as sqlite_error:
        Store(sqlite_path)
    assert (str(sqlite_error.value).replace(str(sqlite_path), "INDEX")
            == str(pg_error.value).replace(pg_url, "INDEX").replace("'s 1:", "'s 4:"))
    assert "newer than this vaultd's 1" in str(pg_error.value)


def test_an_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:secret@/vaultd?host={tmp_path}"
    with pytest.raises(VaultdError) as error:
        open_index(tmp_path / "index.db", url)
    message = str(error.value)
    assert "cannot use the PostgreSQL index at" in message and "secret" not in message
    assert "\n" not in message


def test_a_url_without_the_client_names_the_extra(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "vaultd.store.postgres", raising=False)
    with pytest.raises(VaultdError, match=r"pip install .vaultd-memory\[postgres\]."):
        open_index(tmp_path / "index.db", "postgresql://x@/y?host=/nowhere")


def test_the_sqlite_default_never_imports_psycopg(tmp_path: Path) -> None:
    code = ("import sys; from vaultd.store import open_index; "
            f"open_index(__import__('pathlib').Path({str(tmp_path / 'i.db')!r}), '').close(); "
            "import vaultd.cli; print('psycopg' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "False"


def _cli(vault: Path, env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "vaultd.cli", "--vault", str(vault), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


NOTES = {
    "notes/foxes.md": "# Foxes\n\nThe red fox hunts at dawn in the forest.\n",
    "notes/postgres.md": "# Postgres\n\nPostgreSQL stores the index with pgvector.\n",
    "notes/cooking.md": "# Cooking\n\nBake the bread for forty minutes at 220 degrees.\n",
    "notes/sleep.md": "# Sleep\n\nFoxes sleep in dens during the day.\n",
}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.model
def test_index_and_search_through_a_url_match_sqlite(tmp_path: Path, pg_url: str) -> None:
    """`vaultd index` + `vaultd search` with VAULTD_INDEX_URL: the same top hits as the
    SQLite file, with the real default model, in every mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    pg_env = {**env, "VAULTD_INDEX_URL": pg_url}
    answers = []
    for name, run_env in (("lite", env), ("pg", pg_env)):
        vault = make_vault(tmp_path, NOTES, name=name)
        _cli(vault, run_env, "index", "--json")
        answers.append({mode: [(h["path"], round(h["score"], 4)) for h in _cli(
            vault, run_env, "search", "--json", "--mode", mode, "fox dens at dawn")["hits"]]
            for mode in ("hybrid", "vector", "bm25")})
        if name == "lite":
            assert (vault / ".vaultd" / "index.db").exists()
        else:
            assert not (vault / ".vaultd" / "index.db").exists()
    assert answers[0] == answers[1]
    assert answers[0]["hybrid"][0][0] in ("notes/foxes.md", "notes/sleep.md")


def test_an_index_reopened_by_its_path_stays_on_its_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What reopens an index by its path alone (the BM25 copy's loader, the recall writer)
    gets the backend the vault chose, not whatever the environment says."""
    from vaultd.store.backend import index_url

    monkeypatch.setenv("VAULTD_INDEX_URL", "postgresql://elsewhere@/db")
    lite, pg = tmp_path / "a" / "index.db", tmp_path / "b" / "index.db"
    assert index_url(lite, "") == "" and index_url(lite, None) == ""
    assert index_url(pg, "postgresql://x@/y") == "postgresql://x@/y"
    assert index_url(pg, None) == "postgresql://x@/y"
    assert index_url(tmp_path / "c" / "index.db", None) == "postgresql://elsewhere@/db"
    with pytest.raises(VaultdError, match="must be a postgresql:// URL"):
        index_url(lite, "mysql://nope")
