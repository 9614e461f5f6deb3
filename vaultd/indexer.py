"""Reconcile the vault with the index: new, changed, moved and deleted files, as a report.

Vectors are reused by chunk content hash, so unchanged chunks — also in renamed or moved files —
are never embedded again. Work is done in groups: parse and chunk files until enough chunks are
pending, embed the missing ones in length-sorted batches, then write the group in one
transaction. One bad file never stops a run: it is skipped with a one-line reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vaultd import notes
from vaultd.chunking import Chunk, chunk_note
from vaultd.embedder import Embedder
from vaultd.layout import FileStat, Ignore, Scan, scan, stat_paths
from vaultd.store import ChunkRecord, EntryRecord, FileRecord, Store

Progress = Callable[[int, int, str], None]
GROUP_CHUNKS = 256
RETRY_MTIME = -1  # a skipped file's recorded mtime that no file has: it is read again next time
KEEP_ORPHAN_VECTORS = 50_000


@dataclass
class IndexReport:
    files: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
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
            "chunks_reused": self.chunks_reused,
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
    def __init__(self, root: Path, store: Store, embedder: Embedder, *, ignore: Ignore,
                 max_file_bytes: int, chunk_tokens: int) -> None:
        self.root = root
        self.store = store
        self.embedder = embedder
        self.ignore = ignore
        self.max_file_bytes = max_file_bytes
        self.chunk_tokens = chunk_tokens

    # -- entry points
    def reconcile(self, progress: Progress | None = None) -> IndexReport:
        """Compare the whole vault with the index and apply the difference."""
        started = time.perf_counter()
        report = IndexReport()
        report.rebuilt = self.store.ensure_model(self.embedder.identity())
        on_disk = scan(self.root, self.ignore)
        known = self.store.file_states()
        gone = [p for p in known if p not in on_disk.files]
        self._apply(on_disk, known, gone, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def sync_paths(self, paths: Iterable[str], progress: Progress | None = None) -> IndexReport:
        """Apply changes for the named vault-relative paths only (created, changed or gone)."""
        started = time.perf_counter()
        report = IndexReport()
        report.rebuilt = self.store.ensure_model(self.embedder.identity())
        rels = list(dict.fromkeys(paths))
        on_disk = stat_paths(self.root, rels, self.ignore)
        known = self.store.file_states()
        gone = [p for p in rels if p in known and p not in on_disk.files]
        self._apply(on_disk, {p: known[p] for p in rels if p in known}, gone, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    # -- the work
    def _apply(self, on_disk: Scan, known: dict[str, tuple[int, int, str]], gone: list[str],
               report: IndexReport, progress: Progress | None) -> None:
        report.files = len(on_disk.files)
        for rel, reason in on_disk.skipped.items():
            report.skipped.append((rel, reason))
        todo = [(rel, st) for rel, st in sorted(on_disk.files.items())
                if rel not in known or known[rel][:2] != (st.size, st.mtime_ns)]
        report.unchanged = len(on_disk.files) - len(todo)
        gone_hashes = {known[p][2]: p for p in gone if known[p][2]}
        group: list[_Parsed] = []
        pending = 0
        for done, (rel, st) in enumerate(todo, start=1):
            parsed = self._read(rel, st, known.get(rel), gone_hashes, report)
            if parsed is not None:
                group.append(parsed)
                pending += len(parsed.chunks)
            if pending >= GROUP_CHUNKS:
                self._write_group(group, report)
                group, pending = [], 0
            if progress:
                progress(done, len(todo), rel)
        self._write_group(group, report)
        moved_from = {old for old, _ in report.moved}
        with self.store.transaction():
            for rel in gone:
                self.store.delete_file(rel)
                if rel not in moved_from:
                    report.deleted.append(rel)
            self.store.set_meta("last_index_at", f"{time.time():.3f}")
            self.store.prune_embeddings(KEEP_ORPHAN_VECTORS)

    def _read(self, rel: str, st: FileStat, before: tuple[int, int, str] | None,
              gone_hashes: dict[str, str], report: IndexReport) -> _Parsed | None:
        if st.size > self.max_file_bytes:
            reason = (f"too large ({st.size:,} bytes > limit {self.max_file_bytes:,}; "
                      "raise [index] max_file_bytes to include it)")
            return self._skip(rel, st, reason, report)
        try:
            raw = (self.root / rel).read_bytes()
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
            if before is not None and before[2]:  # indexed before: that version stays found
                report.skipped.append((rel, reason + " (its last indexed version stays "
                                            "searchable)"))
                return None
            return self._skip(rel, FileStat(st.size, RETRY_MTIME), reason, report)
        digest = hashlib.sha256(raw).hexdigest()
        if before is not None and before[2] == digest:
            with self.store.transaction():
                self.store.touch_file(rel, st.size, st.mtime_ns)
            report.unchanged += 1
            return None
        text = notes.decode(rel, raw, self.max_file_bytes)
        if isinstance(text, notes.Skip):
            return self._skip(rel, st, text.reason, report)
        note = notes.parse(rel, text)
        report.warnings.extend(note.warnings)
        if before is None and digest in gone_hashes:
            report.moved.append((gone_hashes.pop(digest), rel))
        elif before is None:
            report.new.append(rel)
        else:
            report.changed.append(rel)
        chunks = chunk_note(note, self.embedder.count_tokens, self.embedder.max_tokens,
                            self.chunk_tokens)
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
        if not group:
            return
        import numpy as np

        by_hash: dict[str, str] = {}
        for parsed in group:
            by_hash.update(parsed.texts)
        vectors = self.store.cached_vectors(by_hash)
        missing = [h for h in by_hash if h not in vectors]
        if missing:
            embedded = self.embedder.embed([by_hash[h] for h in missing], kind="document")
            for h, row in zip(missing, np.asarray(embedded, dtype=np.float32)):
                vectors[h] = row.tobytes()
        total = sum(len(p.chunks) for p in group)
        report.chunks_embedded += len(missing)
        report.chunks_reused += total - len(missing)
        with self.store.transaction():
            for parsed in group:
                self.store.write_file(parsed.record, parsed.entries, parsed.chunks, vectors)


def _chunk_record(c: Chunk, entries: dict[str, tuple[str | None, tuple[str, ...]]]
                  ) -> ChunkRecord:
    date, tags = entries.get(c.entry_id, (None, ()))
    return ChunkRecord(id=c.id, entry_id=c.entry_id, heading=c.heading,
                       start_line=c.start_line, end_line=c.end_line, text=c.text, hash=c.hash,
                       date=date, tags=tags)
