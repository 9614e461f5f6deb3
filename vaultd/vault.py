"""The library API and composition root: `open_vault(path) -> Vault`.

    import vaultd
    vault = vaultd.open_vault("~/notes")
    report = vault.index()
    for hit in vault.search("how do we roll back a deploy", k=5, types=["procedural"]):
        print(hit.path, hit.lines, hit.score)
"""

from __future__ import annotations

import datetime as dt
import os
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vaultd import gate, layout
from vaultd.config import Settings, load_settings, set_default
from vaultd.daemon.client import DaemonClient, DaemonOrLocal
from vaultd.daemon.discovery import choose_port
from vaultd.embedder import Embedder, Kind, ModelProfile, make_embedder, resolve_profile
from vaultd.errors import VaultdError
from vaultd.provenance import Seals
from vaultd.search import (
    ARCHIVE_WEIGHT,
    NEIGHBOUR_SHARE,
    REPEAT_STEP,
    Hits,
    MergedHint,
    Searcher,
    SearchOptions,
)
from vaultd.search_request import SearchRequest
from vaultd.store import Filters, Store, open_index
from vaultd.vectors import VectorIndex
from vaultd.writer_role import WriterRole, config_with_writer, role, this_host

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from vaultd.bm25 import Bm25Index

    # imported where used: a search or an embed needs neither (cold start, CLI wall time)
    from vaultd.indexer import Indexer, IndexReport, Progress
    from vaultd.lifecycle.entries import Thresholds
    from vaultd.lifecycle.flush import FlushReport
    from vaultd.lifecycle.plans import Context, LifecycleRun, PhaseReport
    from vaultd.status import VaultStatus

VAULT_FOLDERS = ("episodic", "semantic", "procedural")
DaemonMode = Literal["auto", "never"]


def cache_dir(env: dict[str, str]) -> Path:
    if env.get("VAULTD_CACHE_DIR"):
        return Path(env["VAULTD_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaultd"


def templates_dir() -> Path:
    """`templates/` ships inside the wheel as `vaultd/templates`; in a source checkout it is
    the repository's top-level folder."""
    packaged = Path(str(resources.files("vaultd"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def memory_layout(path: Path) -> tuple[str, ...] | None:
    """The lifecycle's scope an existing folder's layout asks for, or None for the default
    (`episodic/`). An OpenClaw-style `memory/` folder — daily logs `YYYY-MM-DD.md` at its top —
    is all agent memory; so is a `memory/` folder of daily logs inside the vault."""
    from vaultd.notes import DAILY_RE

    def dailies(folder: Path) -> bool:
        return folder.is_dir() and any(DAILY_RE.match(p.name) for p in folder.iterdir())

    if (path / "episodic").is_dir():
        return None
    if dailies(path):
        return (".",)
    if dailies(path / "memory"):
        return ("memory",)
    return None


def scope_line(settings: Settings) -> str:
    """One line on what vaultd may change in this vault (`vaultd init` says it)."""
    folders = ", ".join("the whole vault" if f.strip("/") in ("", ".") else f.strip("/") + "/"
                        for f in settings.lifecycle.scope)
    return (f"vaultd moves, merges and archives only the agent's memory ({folders}: "
            "[lifecycle] scope in .vaultd/config.toml); your other notes are indexed and "
            "searched, never changed")


# Files only an OpenClaw workspace has at its top (its persona and identity bootstrap files).
OPENCLAW_MARKERS = ("SOUL.md", "IDENTITY.md")


def init_vault(path: Path) -> list[str]:
    """Create a vault at `path`, or add what is missing to an existing folder of notes.
    Never overwrites a file. Returns the vault-relative paths it created. An OpenClaw
    workspace's `memory/` folder is refused: OpenClaw reads MEMORY.md at the workspace's top,
    so the vault is the workspace (its `memory/` becomes the scope)."""
    from vaultd import edits

    absolute = path.resolve()
    if absolute.name == layout.AGENT_MEMORY_DIR and not layout.state_dir(absolute).exists() \
            and any((absolute.parent / m).is_file() for m in OPENCLAW_MARKERS):
        raise VaultdError(
            f"{absolute} is the memory/ folder of an OpenClaw workspace, which reads MEMORY.md "
            f"at its top, not in memory/: run `vaultd init {absolute.parent}` (the lifecycle's "
            "scope is then memory/, and every fact vaultd keeps stays where OpenClaw reads it)")
    # A new vault gets the type folders to put notes in; a folder of notes gets none (Obsidian
    # would show three empty folders): there each is made by the first note vaultd writes in
    # it (`edits` creates parent folders).
    new = not path.exists() or not any(path.iterdir())
    path.mkdir(parents=True, exist_ok=True)
    scope = memory_layout(path)
    created: list[str] = []
    for folder in VAULT_FOLDERS if new else ():
        (path / folder).mkdir()
        created.append(folder + "/")
    state = layout.state_dir(path)
    if not state.exists():
        state.mkdir()
        created.append(layout.STATE_DIR + "/")
    ignore = state / ".gitignore"
    if not ignore.exists():  # a git-synced vault (obsidian-git) must not commit the token
        edits.create_own(path, ignore.name,
                         "# vaultd's index, token, seal key and daemon files: local to this "
                         "machine\n*\n")
        created.append(f"{layout.STATE_DIR}/.gitignore")
    source = templates_dir()
    for src, dest in ((source / layout.MEMORY_FILE, path / layout.MEMORY_FILE),
                      (source / "config.toml", state / "config.toml")):
        if not dest.exists():
            text = src.read_text(encoding="utf-8")
            if scope is not None and dest.name == "config.toml":
                text = set_default(text, "scope", list(scope))
            if dest.parent == state:
                # a port of its own, so a second vault's daemon starts beside the first
                text = set_default(text, "port", choose_port())
                edits.create_own(path, dest.name, config_with_writer(text))
            else:
                edits.create_new(dest, text, root=path)  # never clobbers a racing writer
            created.append(dest.relative_to(path).as_posix())
    return created


def open_vault(path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None,
               embedder: Embedder | None = None, daemon: DaemonMode = "auto") -> Vault:
    """Open the vault at `path` (else `VAULTD_VAULT`, else the nearest parent with `.vaultd/`).

    `daemon="auto"`: `search` and `embed` go through the vault's daemon when one runs (its model
    is warm; no second copy is loaded here) and run in-process otherwise; `"never"`: always
    in-process. An explicit `embedder` implies in-process.
    """
    env = dict(os.environ if env is None else env)
    root = layout.find_vault(path, env, Path.cwd())
    settings = load_settings(root, env)
    if embedder is None:
        profile = resolve_profile(settings.embedding.model, settings.models, root,
                                  cache_dir(env))
    else:
        profile = embedder.profile
    return Vault(root, settings, profile, embedder=embedder,
                 daemon="never" if embedder is not None else daemon)


class Vault:
    def __init__(self, root: Path, settings: Settings, profile: ModelProfile, *,
                 embedder: Embedder | None = None, daemon: DaemonMode = "never") -> None:
        self.root = root
        self.daemon = daemon
        self.route = "local"  # where the last search/embed ran: "daemon" or "local"
        self.settings = settings
        self.profile = profile
        self.ignore = layout.Ignore(settings.index.ignore)
        gate.register(root, self.ignore)  # what the index ignores, vaultd never writes
        self.host = this_host()  # for `[lifecycle] writer`: a vault is opened on one machine
        # A daemon on an index shared in PostgreSQL sets this: its lease, not the host name,
        # says whether it writes (vaultd.daemon.leadership).
        self.role_source: Callable[[], WriterRole] | None = None
        self._embedder = embedder
        self._store: Store | None = None
        self._seals: Seals | None = None
        # A warm in-memory copy of the vectors for exact KNN: the daemon keeps one
        # (`keep_vectors_warm`); a one-shot process would pay more to load it than it saves.
        self.vectors: VectorIndex | None = None
        self.bm25: Bm25Index | None = None  # and of the FTS5 postings, for BM25
        self._executor: ThreadPoolExecutor | None = None  # overlaps a query's embed and FTS
        self.merged_hint = MergedHint()  # whether searches meet merged facts (search.py)

    # -- parts, built on first use
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_index(layout.index_path(self.root), self.settings.index.url)
        return self._store

    @property
    def seals(self) -> Seals:
        """The vault's MACs over vaultd's own claims (`provenance`; the key is made on first
        use)."""
        if self._seals is None:
            self._seals = Seals.of_vault(self.root)
        return self._seals

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            emb = self.settings.embedding
            self._embedder = make_embedder(self.profile, threads=emb.threads,
                                           batch_size=emb.batch_size)
        return self._embedder

    def keep_vectors_warm(self) -> None:
        """For long-lived processes such as the daemon: answer vector queries from an
        in-memory copy of the index, loaded now and reloaded whenever the index's vectors
        change; and embed a hybrid query on a worker thread while the FTS query runs."""
        if self.vectors is None:
            from concurrent.futures import ThreadPoolExecutor

            from vaultd.bm25 import Bm25Index

            self.vectors = VectorIndex()
            self.bm25 = Bm25Index()
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vaultd-query")
        self.vectors.refresh(self.store)
        if self.bm25 is not None:
            self.bm25.load(self.store, background=True)

    def reopen_index(self) -> None:
        """Open the index file anew: it was deleted or replaced under this process (the
        README's `rm .vaultd/index.db && vaultd index`). Vectors kept warm are reloaded."""
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.vectors is not None:
            self.vectors = VectorIndex()
            self.vectors.refresh(self.store)
        if self.bm25 is not None:
            from vaultd.bm25 import Bm25Index

            self.bm25 = Bm25Index()
            self.bm25.load(self.store, background=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verbs
    def indexer(self) -> Indexer:
        from vaultd.chunking import context_named
        from vaultd.indexer import Indexer

        return Indexer(self.root, self.store, self.embedder, ignore=self.ignore,
                       max_file_bytes=self.settings.index.max_file_bytes,
                       chunk_tokens=self.settings.index.chunk_tokens,
                       context=context_named(self.settings.index.context),
                       index_url=self.settings.index.url)

    def index(self, progress: Progress | None = None, *, vectors: bool = True) -> IndexReport:
        """Reconcile the whole vault with the index: first every changed file into the
        full-text index (keyword search finds it), then the vectors of its new chunks. With
        `vectors=False` the second phase is left to `embed_pending` (the daemon's way)."""
        return self.indexer().reconcile(progress, vectors=vectors)

    def embed_pending(self, progress: Progress | None = None, *,
                      limit: int | None = None) -> int:
        """Embed chunks that wait for a vector (at most `limit` distinct contents). Returns
        how many chunks got one."""
        return self.indexer().embed_pending(progress, limit=limit)

    def pending_vectors(self) -> int:
        """How many chunks wait for a vector: keyword search finds them, vector search not
        yet, hybrid search ranks them by BM25 alone."""
        return self.store.pending_vectors()

    def _daemon_or_local(self, daemon_can_answer: bool = True) -> DaemonOrLocal:
        """Through the daemon when one runs, unless `daemon="never"` or an embedder was given."""
        return DaemonOrLocal(self.root, use_daemon=daemon_can_answer and self.daemon == "auto"
                             and self._embedder is None)

    def embed(self, texts: list[str], kind: Kind = "document") -> np.ndarray:
        def remote(daemon: DaemonClient) -> np.ndarray:
            import numpy as np

            data = daemon.embed(list(texts), kind)
            return np.asarray(data["vectors"], dtype=np.float32).reshape(-1, data["dims"])

        route = self._daemon_or_local()
        vectors = route.run(remote, lambda: self.embedder.embed(list(texts), kind=kind))
        self.route = route.route
        return vectors

    def search(self, query: str | SearchRequest, k: int = 10, **options: Any) -> Hits:
        """Hybrid search (or `mode="vector"|"bm25"`) with optional filters: the query and `k`,
        with any other `SearchRequest` field as a keyword (`types`, `tags`, `path_glob`,
        `since`, `until`, `mode`, `archive`, `half_life_days`, `mmr_lambda`,
        `record`, `full`), or one whole `SearchRequest`. A hit's text is the passage of its
        chunk that best matches the query (`[search] passage_chars`); `full=True` gives the
        chunk's whole text. `record=True` (what `vaultd search` does)
        counts the top 5 as recalled, for recall promotion. `archive` places archived
        (faded or merged) notes: "lower" (default: found, ranked below live notes of similar
        relevance), "equal" or "none"; `include_archive=True/False`, the keyword of earlier
        versions, means "equal"/"none". A wrong value (an empty query, `k` < 1, an unknown
        type, a date that does not exist) raises ValueError. The result's `pending_vectors`
        says how many chunks had no vector yet (ranked by BM25 alone)."""
        if "include_archive" in options:  # the keyword of earlier versions
            options["archive"] = "equal" if options.pop("include_archive") else "none"
        request = (query if isinstance(query, SearchRequest)
                   else SearchRequest(query, k, **options)).check()  # ValueError: say what

        def remote(daemon: DaemonClient) -> Hits:
            answer = daemon.search(request)
            out = Hits(answer.hits)
            out.pending_vectors = answer.pending_vectors
            return out

        route = self._daemon_or_local(request.daemon_can_answer)
        hits = route.run(remote, lambda: self.search_with(self.store, request))
        self.route = route.route
        return hits

    def search_with(self, store: Store, request: SearchRequest) -> Hits:
        """`search` on a given store connection (the daemon gives each HTTP thread its own).
        With `request.record`, the top 5 hits count as recalled for this query."""
        s = self.settings.search
        r = request
        # the log read in order by search (vaultd.search.NEIGHBOUR_SHARE), unless a short
        # chunk's vector already holds the chunk before it: that counted twice
        # (bench/RESULTS.md, "Neighbours and repeats")
        in_order = self.settings.index.context == "none"
        options = SearchOptions(
            k=r.k, mode=r.mode,
            filters=Filters(types=r.types, tags=r.tags, path_glob=r.path_glob, since=r.since,
                            until=r.until, include_archive=r.archive != "none"),
            vector_weight=s.vector_weight, text_weight=s.text_weight, rrf_k=s.rrf_k,
            candidates=s.candidates,
            archive_weight=ARCHIVE_WEIGHT if r.archive == "lower" else 1.0,
            half_life_days=s.half_life_days if r.half_life_days is None else r.half_life_days,
            mmr_lambda=s.mmr_lambda if r.mmr_lambda is None else r.mmr_lambda,
            today=dt.date.fromisoformat(r.today) if r.today else None,
            passage_chars=None if r.full or s.passage_chars <= 0 else s.passage_chars,
            neighbour_share=NEIGHBOUR_SHARE if in_order else 0.0,
            repeat_step=REPEAT_STEP if in_order else 0.0)
        self._check_model(store)
        searcher = Searcher(store, lambda q: self.embedder.embed([q], kind="query")[0],
                            self.vectors, self._executor, self.bm25, self.merged_hint)
        hits = searcher.search(r.query, options)
        if r.record and hits:
            import time as _time

            from vaultd.lifecycle.promote import record_recalls

            record_recalls(store, hits, r.query, _time.time())
        return hits

    def _check_model(self, store: Store) -> None:
        indexed = store.model_identity()
        if indexed is not None and indexed.get("id") != self.profile.id:
            from vaultd.errors import ModelError

            raise ModelError(f"the index was built with model '{indexed.get('id')}' but the "
                             f"vault is configured for '{self.profile.id}'; run `vaultd index`")

    def changed_since_index(self, scanned: layout.Scan | None = None) -> list[str]:
        """Paths whose size or mtime differ from the index, plus new and deleted ones."""
        on_disk = (scanned or layout.scan(self.root, self.ignore)).files
        known = self.store.file_states()
        changed = [p for p, st in on_disk.items()
                   if p not in known or known[p][:2] != (st.size, st.mtime_ns)]
        changed += [p for p in known if p not in on_disk]
        return sorted(changed)

    def status(self) -> VaultStatus:
        from vaultd.status import ModelInfo, SkippedFile, VaultStatus
        from vaultd.store.backend import index_location

        index_file = layout.index_path(self.root)
        # before `self.store` opens (and so makes) it; a database is there once it answers
        exists = bool(self.settings.index.url) or index_file.exists()
        store = self.store
        last = store.get_meta("last_index_at")
        scanned = layout.scan(self.root, self.ignore)
        changed = self.changed_since_index(scanned)
        skipped = dict(store.skipped())  # what the index skipped, and what the scan does
        return VaultStatus(
            vault=str(self.root),
            index=index_location(index_file, self.settings.index.url) if exists else None,
            counts=store.counts(), pending_vectors=store.pending_vectors(),
            model=ModelInfo(self.profile.id, self.profile.dims, store.model_identity()),
            versions=store.versions(), schema_version=store.schema_version,
            last_index_at=(time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(float(last)))
                           if last else None),
            changed_since_index=len(changed), changed_paths=changed[:20],
            skipped_files=[SkippedFile(p, r)
                           for p, r in sorted({**scanned.skipped, **skipped}.items())],
            writer=self.writer_role())

    def doctor(self, fix: bool = False) -> Any:
        """Check the index against the vault (read-only; fine next to a running daemon), or
        with `fix` repair it (refused while a daemon runs). Returns a `doctor.Report`."""
        from vaultd import doctor

        return doctor.fix(self) if fix else doctor.check(self)

    # -- memory lifecycle
    def writer_role(self) -> WriterRole:
        """Whether this machine may run the writing jobs (`[lifecycle] writer`; on a shared
        index the daemons' lease instead: vaultd.daemon.leadership)."""
        if self.role_source is not None:
            return self.role_source()
        if self.settings.index.url:
            from vaultd.daemon.leadership import role_outside_a_daemon

            return role_outside_a_daemon(self.root, self.settings.index.url,
                                         self.settings.lifecycle.writer, self.host)
        return role(self.settings.lifecycle.writer, self.host)

    def remember(self, text: str, tags: list[str] | None = None) -> tuple[str, str]:
        """Append a timestamped entry to today's daily log, its credentials redacted unless
        `[privacy] redact = false`: the one way in for `vaultd remember` and MCP
        `memory_write`. Returns (path, heading)."""
        from vaultd import edits
        from vaultd.redact import redact_if

        text = redact_if(text, self.settings.privacy.redact)
        return edits.append_entry(self.root, text, tags=tags,
                                  folder=layout.daily_folder(self.settings.lifecycle.scope))

    def save_transcript(self, transcript: Path) -> tuple[str, str] | None:
        """Append what an agent's transcript says since it was last saved to today's daily
        log (`transcript.capture`); None when nothing new was worth keeping."""
        from vaultd.transcript import capture

        return capture(self.root, transcript, redact_secrets=self.settings.privacy.redact,
                       folder=layout.daily_folder(self.settings.lifecycle.scope))

    def thresholds(self) -> Thresholds:
        from vaultd.lifecycle.entries import Thresholds

        p = self.profile
        return Thresholds(link=p.link_threshold, consolidate=p.consolidate_threshold,
                          duplicate=p.duplicate_threshold, route=p.route_threshold)

    def lifecycle(self, phases: list[str], *, dry_run: bool = False, today: Any = None,
                  mirror: bool = True, quiet_seconds: float = 0.0) -> list[PhaseReport]:
        """Run lifecycle phases in the order given (see `vaultd.lifecycle.PHASES`); each
        reports its plan (what would link, fade, merge, route, be promoted — with reasons, and
        a unified diff for routed files) and what it wrote."""
        from vaultd import lifecycle
        from vaultd.lifecycle.entries import snapshot
        from vaultd.lifecycle.plans import Outcome, PhaseReport
        from vaultd.lifecycle.recovery import finish_interrupted, plan_interrupted

        if not dry_run and (mirror or set(phases) - {"connect"}):  # else: links in the index only
            self.writer_role().check("the lifecycle")
        chosen = [lifecycle.phase(name) for name in phases]
        reports = []
        if any(p.moves_entries for p in chosen):
            # first finish any move or consolidation a crash cut short, so a re-run converges;
            # reported (and shown by a dry run) like a phase of its own when it has work
            views = snapshot(self.store, self.seals)[0]
            scope = self.settings.lifecycle.scope
            recovery = plan_interrupted(self.root, views, scope, self.seals)
            finished = Outcome() if dry_run or not recovery.actions else \
                finish_interrupted(self.root, views, scope, self.seals, recovery)
            if finished.written or finished.created:
                self.indexer().sync_paths(finished.written + finished.created)
            if recovery.actions or recovery.notes:
                reports.append(PhaseReport.of(recovery, finished, {v.id: v for v in views},
                                              dry_run))
        for phase in chosen:
            # a fresh context for each phase: it sees what the last one wrote
            ctx = self.lifecycle_context(dry_run=dry_run, today=today, mirror=mirror,
                                         quiet_seconds=quiet_seconds)
            plan = phase.plan(ctx)
            outcome = Outcome() if dry_run else phase.apply(ctx, plan)
            changed = outcome.written + outcome.created
            if changed:
                self.indexer().sync_paths(changed)
            if phase.ends_with_flush and not dry_run:
                self.flush()  # the review ends with MEMORY.md brought up to date
                outcome.written.append(layout.MEMORY_FILE)
            reports.append(PhaseReport.of(plan, outcome, ctx.by_id, dry_run))
        return reports

    def lifecycle_context(self, *, dry_run: bool = False, today: Any = None,
                          mirror: bool = True, quiet_seconds: float = 0.0) -> Context:
        """What a lifecycle phase plans from: the entries and their vectors as indexed now,
        the thresholds and settings, and how to embed and to reach the optional LLM."""
        from vaultd.lifecycle.entries import snapshot
        from vaultd.lifecycle.plans import Context

        if self.store.pending_vectors():  # an entry's vector is the mean of all its chunks'
            self.embed_pending()
        views, matrix = snapshot(self.store, self.seals)
        return Context(self.root, self.store, views, matrix, self.thresholds(),
                       self.settings.lifecycle, self.embed, templates_dir(), llm=self._llm(),
                       dry_run=dry_run, mirror=mirror, quiet_seconds=quiet_seconds,
                       seals=self.seals, redact=self.settings.privacy.redact,
                       **({"today": today} if today is not None else {}))

    def flush(self, *, dry_run: bool = False) -> FlushReport:
        """Index what changed, connect new entries, route proven knowledge, then write
        MEMORY.md's managed block. Idempotent: with nothing new, every file stays
        byte-identical (and keeps its mtime)."""
        from vaultd.lifecycle.flush import FlushInputs, flush

        if not dry_run:
            self.writer_role().check("flush")
        given = FlushInputs(
            root=self.root, store=self.store, seals=self.seals, settings=self.settings.lifecycle,
            redact=self.settings.privacy.redact, templates=templates_dir(),
            index=lambda: self.index().summary(),
            lifecycle=lambda phases, dry: self.lifecycle(phases, dry_run=dry),
            sync=lambda paths: self.indexer().sync_paths(paths))
        return flush(given, dry_run=dry_run)

    def _llm(self) -> Any:
        cfg = self.settings.lifecycle
        if not cfg.llm_provider:
            return None
        from vaultd.llm import ChatConfig

        if cfg.llm_provider not in ("openai", "ollama") or not cfg.llm_url or not cfg.llm_model:
            from vaultd.errors import ConfigError

            raise ConfigError("[lifecycle] llm_provider must be 'openai' or 'ollama', with "
                              "llm_url and llm_model set")
        return ChatConfig(provider=cfg.llm_provider, url=cfg.llm_url,  # type: ignore[arg-type]
                          model=cfg.llm_model, api_key_env=cfg.llm_api_key_env)

    def states(self) -> dict[str, Any]:
        """The durable lifecycle states, as the files say (survives an index rebuild)."""
        from vaultd.lifecycle.entries import snapshot

        views, _ = snapshot(self.store, self.seals)
        active = [v for v in views if not v.archived]
        newer = {v.id: len(active) - i - 1 for i, v in enumerate(active)}
        rows = []
        for v in views:
            rows.append({"entry": v.label(), "proven": v.proven, "pinned": v.pinned,
                         "reprieves": v.reprieves, "archived": v.archived,
                         "protected": v.protection(self.settings.lifecycle.scope),
                         "age": newer.get(v.id)})
        return {"entries": rows}

    def calibrate(self) -> dict[str, Any]:
        from vaultd.lifecycle.connect import calibrate
        from vaultd.lifecycle.entries import snapshot

        views, matrix = snapshot(self.store)
        active = [i for i, v in enumerate(views) if not v.archived]
        out = calibrate(matrix[active], self.profile.link_threshold,
                        self.profile.consolidate_threshold)
        return {"model": self.profile.id, **out}

    def restore(self, rel: str) -> list[str]:
        from vaultd.lifecycle.moves import restore

        written = restore(self.root, rel, seals=self.seals)
        self.indexer().sync_paths(written)
        return written

    def undo(self, merge_id: str) -> list[str]:
        from vaultd.lifecycle.moves import undo

        written = undo(self.root, self.store, merge_id, self.seals)
        self.indexer().sync_paths(written)
        return written


def flush_anywhere(vault: Vault) -> FlushReport:
    """Flush through the vault's daemon when it runs (its warm model, its single writer), else
    in-process — whatever the vault's own `daemon` mode. Refused on a machine that is not the
    vault's writer."""
    from vaultd.lifecycle.flush import FlushReport

    vault.writer_role().check("flush")
    return DaemonOrLocal(vault.root).run(lambda daemon: FlushReport.from_dict(daemon.flush()),
                                         vault.flush)


def lifecycle_anywhere(vault: Vault, phases: list[str]) -> LifecycleRun:
    """Run lifecycle phases through the vault's daemon when it runs (the index's single writer:
    no second process writing the index and the vault beside it), else in-process; the same
    `LifecycleRun` either way. Refused on a machine that is not the vault's writer."""
    from vaultd.lifecycle.plans import LifecycleRun

    vault.writer_role().check("the lifecycle")

    def local() -> LifecycleRun:
        vault.index()
        return LifecycleRun(vault.lifecycle(phases), vault.states())

    return DaemonOrLocal(vault.root).run(
        lambda daemon: LifecycleRun.from_dict(daemon.lifecycle(phases)), local)
