"""Settings: `.vaultd/config.toml` overlaid with `VAULTD_<SECTION>_<KEY>` environment variables.

Read once, by the composition roots (`vault.open_vault`, later the daemon). Every other module gets
the values it needs passed in.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from vaultd.errors import ConfigError
from vaultd.layout import STATE_DIR
from vaultd.passages import PASSAGE_CHARS

CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str = "all-MiniLM-L6-v2"
    threads: int = 2
    batch_size: int = 8


@dataclass(frozen=True)
class IndexSettings:
    ignore: tuple[str, ...] = ()
    max_file_bytes: int = 5_000_000
    chunk_tokens: int = 200
    # What a short chunk (a chat turn, a one-line entry) is also embedded with: "previous" (the
    # chunk before it under the same heading) or "none" (vaultd.chunking.CONTEXTS).
    context: str = "none"
    # "" keeps the index in `.vaultd/index.db`; a "postgresql://…" URL puts it in that
    # database (vaultd.store.backend; `pip install 'vaultd-memory[postgres]'`)
    url: str = ""


@dataclass(frozen=True)
class SearchSettings:
    vector_weight: float = 1.0
    text_weight: float = 1.0
    rrf_k: int = 60
    candidates: int = 50
    half_life_days: float = 0.0
    mmr_lambda: float = 0.0
    # a hit's text: the best-matching lines of its chunk within this many characters
    # (vaultd.passages); 0: the chunk's whole text
    passage_chars: int = PASSAGE_CHARS


# The port of a vault whose config names none (vaults made before `vaultd init` chose one).
DEFAULT_PORT = 52525


@dataclass(frozen=True)
class ServerSettings:
    # Loopback by default; any other address (e.g. "0.0.0.0") makes a team server, which
    # starts only once a client token exists (`vaultd token add NAME`) and asks every client
    # for one (README, "A team server").
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = 2_000_000
    max_texts: int = 2048  # OpenAI's own limit per request; embedded in batches inside
    # Serve the embedding endpoints (and model listing/version) without the token, for clients
    # that cannot send one (Ollama's); they expose compute, never the vault (docs/api.md).
    open_embeddings: bool = False
    # Browser origins allowed to call the API (CORS), e.g. "app://obsidian.md"; others get 403.
    allow_origins: tuple[str, ...] = ()
    # A team server's Host names (e.g. "memory.example.com"), beside IP addresses and
    # localhost, which always pass; any other name is refused (403), as DNS rebinding would use.
    allowed_hosts: tuple[str, ...] = ()
    # Connections served at once (at most half the process's file-descriptor limit); beyond,
    # the oldest connection still sending its request is dropped, else the new one gets 503.
    max_connections: int = 128
    head_seconds: float = 10.0  # the request line and headers must arrive within this
    body_seconds: float = 30.0  # and the body within this
    # Other model names the embedding endpoints answer for, each → the served model's id (e.g.
    # {"text-embedding-3-small" = "all-MiniLM-L6-v2"}); any other name is 404, as OpenAI's.
    model_aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DaemonSettings:
    debounce_ms: int = 300
    reconcile_minutes: float = 10.0
    polling: bool = False
    poll_seconds: float = 2.0
    log_max_bytes: int = 1_000_000
    # On an index shared in PostgreSQL: how long the leader's lease lasts without a renewal
    # (a paused leader is taken over after it), and how often it is renewed (and a reader
    # tries to take it). docs/architecture.md, "One leader, many readers".
    lease_seconds: float = 15.0
    lease_renew_seconds: float = 5.0


@dataclass(frozen=True)
class LifecycleSettings:
    # The agent's memory: the folders (vault-relative; "." for the whole vault) whose entries
    # the lifecycle may move, cut, merge, extract from or mark. Everything else is the user's:
    # indexed, searched and linked in the index, never changed.
    scope: tuple[str, ...] = ("episodic",)
    writer: str = ""  # the host that runs the writing jobs of a shared vault; "" = any
    newer_entries: int = 20  # an unconnected entry gets a reprieve once this many newer exist
    # Mirror links into a `vaultd_related:` frontmatter list (Obsidian's graph draws them), in
    # notes in scope; notes outside it only with mirror_outside_scope.
    mirror_related: bool = True
    mirror_outside_scope: bool = False
    promote_after: int = 3  # top-5 search hits on this many different queries → proven
    # Routing: proven knowledge goes to the nearest of these files (vault-relative), inside a
    # managed block. A path outside the vault must also be listed in route_outside.
    route_targets: tuple[str, ...] = ()
    route_outside: tuple[str, ...] = ()
    heartbeat_days: int = 3  # the heartbeat reviews daily-log entries this recent
    memory_budget: int = 8000  # MEMORY.md's managed block, in characters
    # Optional LLM merge for consolidation (default: extractive, offline). provider "openai"
    # (url = base URL ending in /v1) or "ollama"; its output is checked and else discarded.
    llm_provider: str = ""
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key_env: str = ""
    # Daemon schedules (crontab syntax; "" turns a job off). Connect runs after every index batch.
    connect_after_index: bool = True
    connect_cron: str = "0 * * * *"  # also mirrors links into `vaultd_related:`
    promote_cron: str = "10 * * * *"
    consolidate_cron: str = "20 * * * *"
    route_cron: str = "30 * * * *"
    age_cron: str = "40 3 * * *"
    heartbeat_cron: str = "0 9 */3 * *"
    prune_cron: str = "0 4 * * 0"
    flush_cron: str = "50 * * * *"  # MEMORY.md and routed blocks


@dataclass(frozen=True)
class PrivacySettings:
    # Replace credentials (API keys, tokens, passwords in URLs, private keys, `.env`-style
    # secrets) with `[redacted: kind]` before vaultd writes an agent's or a chat's text to a
    # file: a vault is synced and shared, and what it holds is read back into agents' context.
    redact: bool = True


@dataclass(frozen=True)
class Settings:
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    # User-declared model profiles, by id: raw tables handed to `embedder.profile_from_table`.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)


_SECTIONS = {"embedding": EmbeddingSettings, "index": IndexSettings,
             "search": SearchSettings, "server": ServerSettings, "daemon": DaemonSettings,
             "lifecycle": LifecycleSettings, "privacy": PrivacySettings}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type of the default, or say where it is wrong."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in {"1", "true", "yes", "on"}
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, dict):  # a table of names; in the environment "a=x,b=y"
            if isinstance(value, str):
                value = dict(pair.split("=", 1) for pair in value.split(",") if pair.strip())
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise TypeError("not a table of names")
            return {k.strip(): v.strip() for k, v in value.items()}
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}") from exc


def _section(cls: type, table: dict[str, Any], env: dict[str, str], name: str, source: str) -> Any:
    obj = cls()
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    values = {}
    for f in fields(cls):
        default = getattr(obj, f.name)
        if f.name in table:
            values[f.name] = _coerce(table[f.name], default, f"{source} [{name}] {f.name}")
        env_key = f"VAULTD_{name.upper()}_{f.name.upper()}"
        if env_key in env:
            values[f.name] = _coerce(env[env_key], default, f"environment {env_key}")
    return replace(obj, **values)


def set_default(template: str, key: str, value: Any) -> str:
    """The config template with `key`'s commented default (`# key = ...`) made `key = value`
    (what `vaultd init` writes for what it detects: the lifecycle's scope, the writer)."""
    import json
    import re

    line = f"{key} = {json.dumps(value)}"  # JSON strings and lists of them are TOML too
    return re.sub(rf"^# {re.escape(key)} = [^#\n]*?(?=[ \t]*(?:#|$))", lambda _: line,
                  template, count=1, flags=re.MULTILINE)


def load_settings(vault_root: Path, env: dict[str, str] | None = None) -> Settings:
    """Read `VAULT/.vaultd/config.toml` (if present) and the environment into Settings."""
    env = dict(os.environ if env is None else env)
    path = vault_root / STATE_DIR / CONFIG_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - set(_SECTIONS) - {"models"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s): {', '.join(sorted(unknown))}")
    sections = {
        name: _section(cls, data.get(name, {}), env, name, str(path))
        for name, cls in _SECTIONS.items()
    }
    models = data.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{path}: [models.<id>] must be tables")
    return Settings(models=models, **sections)
