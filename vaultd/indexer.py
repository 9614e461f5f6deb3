"""Reconcile the vault with the index: new, changed, moved and deleted files, as a report.

Two phases, so that keyword search works seconds after a start on a new or much changed vault:

1. **files**: read, parse and chunk every changed file and write it — files, entries, chunks and
   the full-text (FTS5) rows — in groups of about GROUP_CHUNKS chunks, one transaction each. A
   chunk whose content hash has a cached vector gets it at once; the others are *pending*.
2. **vectors**: embed the pending chunks' texts in batches of VECTOR_BATCH distinct contents,
   each committed on its own (`embed_pending`). A crash in this phase leaves chunks without
   vectors, which the store counts exactly (`Store.pending_vectors`) and the next run embeds.

Hybrid search ranks a pending chunk by BM25 alone and says how many are pending. Vectors are
reused by chunk content hash, so unchanged chunks — also in renamed or moved files — are never
embedded again. One bad file never stops a run: it is skipped with a one-line reason.

A short chunk may be embedded with its neighbours (`chunking.Context`); its hash is of that
text, so an edit re-embeds the neighbours that take the edited chunk as context. The index
records the context policy its chunks were made with (meta `chunk_context`); when the policy
differs (an upgrade, a changed setting) every file is read and chunked again, whatever its
size and time say, so the index never holds vectors of two policies — the same as deleting it
and indexing anew, except that every vector whose text did not change is reused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vaultd import edits, notes
from vaultd.chunking import CONTEXTS, Chunk, Context, chunk_note, chunking_key, embed_text
from vaultd.embedder import Embedder
from vaultd.layout import FileStat, Ignore, Scan, scan, stat_paths
from vaultd.progress import IndexProgress
from vaultd.store import ChunkRecord, EntryRecord, FileRecord, FileState, IndexStore
from vaultd.vault_identity import check_vault

GROUP_CHUNKS = 256
VECTOR_BATCH = 256  # distinct chunk contents embedded, then committed, together
RETRY_MTIME = -1  # a skipped file's recorded mtime that no file has: it is read again next time
KEEP_ORPHAN_VECTORS = 50_000
CONTEXT_META = "chunk_context"  # chunking_key: the context policy and cutting rules of the chunks


class RateMeter:
    """Chunks per second of the vectors phase, measured from the end of its first batch: that
    one also pays for loading the model, which would make the ETA lie."""

    def __init__(self) -> None:
        self._first: tuple[float, int] | None = None

    def update(self, done: int) -> float | None:
        """The rate after `done` chunks in all, or None while there is none yet."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done)
            return None
        at, base = self._first
        return (done - base) / (now - at) if now > at and done > base else None


Progress = Callable[[IndexProgress], None]


@dataclass
class IndexReport:
    files: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0  # chunk contents the model embedded in this run
    chunks_reused: int = 0  # chunks that got a cached vector
    chunks_pending: int = 0  # chunks left without a vector when the run ended
    skipped: list[tuple[str, str]] = field(default_factory=list)  # skipped in this run
    warnings: list[str] = field(default_factory=list)
    rebuilt: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [
            f"{self.files} files",
            f"{len(self.new)} new, {len(self.changed)} changed, {len(self.moved)} moved, "
            f"{len(self.deleted)} deleted",
            f"{self.chunks_embedded} chunks embedded, {self.chunks_reused} reused",
            f"{len(self.skipped)} skipped",
        ]
        if self.chunks_pending:
            parts.insert(3, f"{self.chunks_pending} chunks waiting for vectors")
        if self.warnings:
            parts.append(f"{len(self.warnings)} warnings")
        return "; ".join(parts) + f" in {self.seconds:.2f}s"

    def messages(self) -> list[str]:
        """One line per problem, each naming its file (a newline in a name is escaped)."""
        return [*self.warnings,
                *(f"skipped {notes.shown(p)}: {r}" for p, r in self.skipped)]

    def to_dict(self) -> dict[str, object]:
        return {
            "files": self.files, "new": self.new, "changed": self.changed,
            "deleted": self.deleted, "moved": [list(m) for m in self.moved],
            "unchanged": self.unchanged, "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused, "chunks_pending": self.chunks_pending,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "warnings": self.warnings, "rebuilt": self.rebuilt,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Parsed:
    record: FileRecord
    entries: list[EntryRecord]
    chunks: list[ChunkRecord]
    texts: dict[str, str]  # chunk hash → the text to embed


class Indexer:
    def __init__(self, root: Path, store: IndexStore, embedder: Embedder, *, ignore: Ignore,
                 max_file_bytes: int, chunk_tokens: int,
                 context: Context = CONTEXTS["none"], index_url: str = "") -> None:
        self.root = root
        self.index_url = index_url  # "" for the SQLite file in the vault; else the database
        self.store = store
        self.embedder = embedder
        self.ignore = ignore
        self.max_file_bytes = max_file_bytes
        self.chunk_tokens = chunk_tokens
        self.context = context

    def context_changed(self) -> bool:
        """True when the index's chunks were made with another context policy or by older
        cutting rules (an index from before either was recorded made them with none)."""
        return (self.store.get_meta(CONTEXT_META) or "none") != chunking_key(self.context)

    # -- entry points
    def reconcile(self, progress: Progress | None = None, *, vectors: bool = True
                  ) -> IndexReport:
        """Compare the whole vault with the index and apply the difference. With `vectors`
        False only the files phase runs: what it leaves pending waits for `embed_pending`."""
        started = time.perf_counter()
        report = IndexReport()
        self._check_vault()
        report.rebuilt = self.store.ensure_model(self.embedder.identity())
        reread = self.context_changed()
        on_disk = scan(self.root, self.ignore)
        known = self.store.file_states()
        gone = [p for p in known if p not in on_disk.files]
        self._apply(on_disk, known, gone, report, progress, reread=reread)
        if reread:  # only once every file was chunked anew (a crash before reads them again)
            with self.store.transaction():
                self.store.set_meta(CONTEXT_META, chunking_key(self.context))
        self._finish(report, progress, vectors, started)
        return report

    def sync_paths(self, paths: Iterable[str], progress: Progress | None = None, *,
                   vectors: bool = True) -> IndexReport:
        """Apply changes for the named vault-relative paths only (created, changed or gone).
        With `vectors` (the default) every pending chunk of the index gets its vector. When the
        context policy changed, the whole vault is reconciled instead."""
        if self.context_changed():
            return self.reconcile(progress, vectors=vectors)
        started = time.perf_counter()
        report = IndexReport()
        self._check_vault()
        report.rebuilt = self.store.ensure_model(self.embedder.identity())
        rels = list(dict.fromkeys(paths))
        on_disk = stat_paths(self.root, rels, self.ignore)
        known = self.store.file_states()
        gone = [p for p in rels if p in known and p not in on_disk.files]
        self._apply(on_disk, {p: known[p] for p in rels if p in known}, gone, report, progress)
        self._finish(report, progress, vectors, started)
        return report

    def embed_pending(self, progress: Progress | None = None, *, limit: int | None = None,
                      report: IndexReport | None = None) -> int:
        """The vectors phase: embed chunks that wait for a vector, VECTOR_BATCH distinct
        contents at a time, each batch committed on its own (a crash loses at most one).
        At most `limit` contents when given (the daemon embeds a batch between file events).
        Returns how many chunk rows got their vector."""
        import numpy as np

        total = self.store.pending_vectors()
        done = embedded = 0
        meter = RateMeter()
        if total and progress:
            progress(IndexProgress("vectors", 0, total))
        while limit is None or embedded < limit:
            want = VECTOR_BATCH if limit is None else min(VECTOR_BATCH, limit - embedded)
            rows = self.store.pending_chunks(want)
            if not rows:
                break
            texts = [r.context or embed_text(r.heading, r.text) for r in rows]
            out = np.asarray(self.embedder.embed(texts, kind="document"), dtype=np.float32)
            with self.store.transaction():
                filled = self.store.add_vectors(
                    {r.hash: vector.tobytes() for r, vector in zip(rows, out)})
            embedded += len(rows)
            done += filled
            if report is not None:
                report.chunks_embedded += len(rows)
                report.chunks_reused += filled - len(rows)  # equal contents, embedded once
            rate = meter.update(done)
            if progress:
                progress(IndexProgress("vectors", done, max(total, done), rate))
        return done

    # -- the work
    def _check_vault(self) -> None:
        """Before anything is written (a changed model would wipe vectors, a reconcile delete
        notes): a database's index must be this vault's (`vault_identity`); the SQLite file
        lives in the vault itself and is not checked."""
        check_vault(self.root, self.store, self.index_url)

    def _finish(self, report: IndexReport, progress: Progress | None, vectors: bool,
                started: float) -> None:
        if vectors:
            self.embed_pending(progress, report=report)
        report.chunks_pending = self.store.pending_vectors()
        report.seconds = time.perf_counter() - started

    def _apply(self, on_disk: Scan, known: dict[str, FileState], gone: list[str],
               report: IndexReport, progress: Progress | None, *, reread: bool = False
               ) -> None:
        """Index what changed; with `reread`, every file, as if none had been indexed."""
        report.files = len(on_disk.files)
        for rel, reason in on_disk.skipped.items():
            report.skipped.append((rel, reason))
        todo = [(rel, st) for rel, st in sorted(on_disk.files.items())
                if reread or rel not in known
                or (known[rel].size, known[rel].mtime_ns) != (st.size, st.mtime_ns)]
        report.unchanged = len(on_disk.files) - len(todo)
        gone_hashes = {known[p].hash: p for p in gone if known[p].hash}
        group: list[_Parsed] = []
        pending = 0
        for done, (rel, st) in enumerate(todo, start=1):
            parsed = self._read(rel, st, known.get(rel), gone_hashes, report, reread)
            if parsed is not None:
                group.append(parsed)
                pending += len(parsed.chunks)
            if pending >= GROUP_CHUNKS:
                self._write_group(group, report)
                group, pending = [], 0
            if progress:
                progress(IndexProgress("files", done, len(todo)))
        self._write_group(group, report)
        moved_from = {old for old, _ in report.moved}
        with self.store.transaction():
            for rel in gone:
                self.store.delete_file(rel)
                if rel not in moved_from:
                    report.deleted.append(rel)
            self.store.set_meta("last_index_at", f"{time.time():.3f}")
            self.store.prune_embeddings(KEEP_ORPHAN_VECTORS)

    def _read(self, rel: str, st: FileStat, before: FileState | None,
              gone_hashes: dict[str, str], report: IndexReport, reread: bool = False
              ) -> _Parsed | None:
        if st.size > self.max_file_bytes:
            reason = (f"too large ({st.size:,} bytes > limit {self.max_file_bytes:,}; "
                      "raise [index] max_file_bytes to include it)")
            self._skip(rel, st, reason, report)
            return None
        try:
            # never waits: a FIFO swapped in for the note since the scan is refused, not read
            raw = edits.read(self.root / rel).data
        except FileNotFoundError:
            if before is not None:
                with self.store.transaction():
                    self.store.delete_file(rel)
                report.deleted.append(rel)
            else:  # listed, then gone before we read it: say so, remember nothing
                report.skipped.append((rel, "deleted before it could be read"))
            return None
        except OSError as exc:
            # A read error can pass (a permission fixed, file descriptors freed): it is never
            # remembered by size and mtime, so the next index, doctor or reconcile tries again.
            reason = f"cannot read: {exc.strerror or exc}; tried again at the next index"
            if before is not None and before.hash:  # indexed before: that version stays found
                report.skipped.append((rel, reason + " (its last indexed version stays "
                                            "searchable)"))
                return None
            self._skip(rel, FileStat(st.size, RETRY_MTIME), reason, report)
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if before is not None and before.hash == digest and not reread:
            with self.store.transaction():
                self.store.touch_file(rel, st.size, st.mtime_ns)
            report.unchanged += 1
            return None
        text = notes.decode(rel, raw, self.max_file_bytes)
        if isinstance(text, notes.Skip):
            self._skip(rel, st, text.reason, report)
            return None
        note = notes.parse(rel, text)
        report.warnings.extend(note.warnings)
        if before is None and digest in gone_hashes:
            report.moved.append((gone_hashes.pop(digest), rel))
        elif before is None:
            report.new.append(rel)
        else:
            report.changed.append(rel)
        chunks = chunk_note(note, self.embedder.count_tokens, self.embedder.max_tokens,
                            self.chunk_tokens, self.context)
        entry_dates = {e.id: (e.date, e.tags) for e in note.entries}
        record = FileRecord(
            path=rel, size=st.size, mtime_ns=st.mtime_ns, hash=digest, type=note.type,
            title=note.title, tags=note.tags, created=note.created,
            frontmatter=note.frontmatter, is_daily=note.is_daily,
            warnings=tuple(note.warnings))
        entries = [EntryRecord(e.id, e.ordinal, e.heading, e.start_line, e.end_line, e.date,
                               e.tags, key=e.key, hash=e.hash)
                   for e in note.entries]
        return _Parsed(record, entries, [_chunk_record(c, entry_dates) for c in chunks],
                       {c.hash: c.embed_text for c in chunks})

    def _skip(self, rel: str, st: FileStat, reason: str, report: IndexReport) -> None:
        with self.store.transaction():
            self.store.skip_file(rel, st.size, st.mtime_ns, reason)
        report.skipped.append((rel, reason))
        return None

    def _write_group(self, group: list[_Parsed], report: IndexReport) -> None:
        """Write a group of parsed files in one transaction: chunks whose content has a cached
        vector get it now, the others wait for the vectors phase."""
        if not group:
            return
        vectors = self.store.cached_vectors(h for p in group for h in p.texts)
        report.chunks_reused += sum(1 for p in group for c in p.chunks if c.hash in vectors)
        with self.store.transaction():
            for parsed in group:
                self.store.write_file(parsed.record, parsed.entries, parsed.chunks, vectors)


def _chunk_record(c: Chunk, entries: dict[str, tuple[str | None, tuple[str, ...]]]
                  ) -> ChunkRecord:
    date, tags = entries.get(c.entry_id, (None, ()))
    return ChunkRecord(id=c.id, entry_id=c.entry_id, heading=c.heading,
                       start_line=c.start_line, end_line=c.end_line, text=c.text, hash=c.hash,
                       date=c.date or date, tags=tags, context=c.context)
