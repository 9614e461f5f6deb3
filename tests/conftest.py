"""Shared fixtures and helpers. Every vault lives under `tmp_path`, reads no `VAULTD_*`
environment and embeds with a deterministic fake embedder (`HashEmbedder`, `TopicEmbedder`), so
tests need no network and no model file; tests of the real model say so (`model` marker).

Tests import helpers from here (`from conftest import ...`) and from `daemon_helpers`, never
from another test module."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pg_server import backend_store, index_env, pg_server, pg_url  # noqa: F401 - fixtures

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.vault import Vault, init_vault, open_vault


@pytest.fixture(scope="session", autouse=True)
def int8_model_built_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default int8 model is built from the shipped file when first needed, into the cache
    dir; tests give each vault its own cache dir. So the first build in a session is a real one
    (into a session folder) and later builds of the same shipped file copy its file and manifest,
    which `ensure_quantized` then verifies by hash like any cached build. Builds from any other
    source (the tiny graphs of test_embedder_profiles) are real every time."""
    from vaultd import model_build
    from vaultd.embedder import SHIPPED_MODEL

    folder = tmp_path_factory.mktemp("int8-model")
    shipped = builtin_profiles(folder)[SHIPPED_MODEL].sha256
    real_build = model_build._build
    first: list[model_build.Built] = []

    def build_once(source: Path, source_sha256: str, out: Path,
                   previous: dict | None) -> model_build.Built:
        if source_sha256 != shipped:
            return real_build(source, source_sha256, out, previous)
        if not first:
            first.append(real_build(source, source_sha256, folder / out.name, None))
        built = first[0]
        shutil.copyfile(built.path, out)
        shutil.copyfile(model_build.manifest_path(built.path), model_build.manifest_path(out))
        return replace(built, path=out, seconds=0.0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_build, "_build", build_once)
        yield


def make_vault(tmp_path: Path, files: dict[str, str | bytes] | None = None, *,
               name: str = "vault", config: str | None = None) -> Path:
    """A fresh vault at `tmp_path/name` holding `files` (vault-relative path → text or bytes),
    with `config` as its `.vaultd/config.toml` when given (daemon tests pass FAST_CONFIG)."""
    root = tmp_path / name
    init_vault(root)
    if config is not None:
        (root / ".vaultd" / "config.toml").write_text(config, encoding="utf-8")
    for rel, content in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


SAMPLE_VAULT = Path(__file__).resolve().parent.parent / "sample_vault"


def copy_sample_vault(dest: Path, source: Path = SAMPLE_VAULT) -> Path:
    """A vault made from `sample_vault`'s notes at `dest`. Its `.vaultd/` (the README's first
    command leaves an index there) is never copied: a test starts from the notes alone."""
    import shutil

    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".vaultd"))
    init_vault(dest)
    return dest


def fake_embedder(tmp_path: Path) -> HashEmbedder:
    return HashEmbedder(builtin_profiles(tmp_path)["hash-256"])


@pytest.fixture
def hash_embedder(tmp_path: Path) -> HashEmbedder:
    return fake_embedder(tmp_path)


@pytest.fixture
def fake_vault(tmp_path: Path, hash_embedder: HashEmbedder) -> Iterator[Vault]:
    """An empty vault (plus what `init_vault` creates), opened with the fake embedder."""
    with open_vault(make_vault(tmp_path), env={}, embedder=hash_embedder) as vault:
        yield vault


def write(root: Path, rel: str, text: str) -> None:
    """Write a note as a user would (UTF-8, exactly these bytes), creating its folder."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(text.encode("utf-8"))


def vaultd_wrote(root: Path, rel: str, text: str,
                 claims: tuple[str, ...] = ("status", "consolidation", "consolidated_from",
                                            "consolidated_hashes", "extracted_from")) -> None:
    """Write a note whose `claims` (those present) are sealed as vaultd seals its own: a test
    standing in for what promote or consolidation wrote earlier. A note written with `write`
    only says these things about itself, and vaultd does not act on that."""
    from vaultd.provenance import Seals, seal_note_text

    write(root, rel, seal_note_text(Seals.of_vault(root), rel, text, claims))


def refuse_reads(monkeypatch: pytest.MonkeyPatch,
                 refusal: Callable[[str], OSError | None]) -> None:
    """Make opening a file for reading fail where `refusal(path)` gives an error, as the OS
    would (root reads through chmod 000; a full file table is hard to arrange): vaultd reads
    notes through `os.open` (`edits.read`, which never waits on a FIFO)."""
    real = os.open

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_ACCMODE == os.O_RDONLY:
            exc = refusal(os.fspath(path))
            if exc is not None:
                raise exc
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)


def with_settings(vault: Vault, **changes: object) -> None:
    """Change `[lifecycle]` settings of an open vault."""
    vault.settings = replace(vault.settings,
                             lifecycle=replace(vault.settings.lifecycle, **changes))


class TopicEmbedder(HashEmbedder):
    """A fake embedder for the lifecycle: cos ≈ 0.98 for texts sharing a `topicX` word, ≈ 0
    otherwise."""

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            topics = re.findall(r"topic\w+", text.lower())
            for t in topics:
                out[row, int(hashlib.md5(t.encode()).hexdigest(), 16) % self.dims] += 1.0
            noise = int(hashlib.md5(text.encode()).hexdigest(), 16)
            out[row, noise % self.dims] += 0.15 if topics else 1.0
            out[row] /= np.linalg.norm(out[row])
        return out


# Three episodes about one topic, on three days: what consolidation merges.
SAYS = ["topicflaky refund test failed locally. Passed on rerun, suspect timing.",
        "topicflaky nightly broke again near midnight. Berlin timezone involved.",
        "topicflaky root cause found: local date versus UTC date in the fixture."]


def daily(day: str, entries: list[str]) -> str:
    body = "".join(f"\n## {10 + i}:00 — {e.split('.')[0]}\n{e}\n" for i, e in enumerate(entries))
    return f"---\ntype: episodic\ncreated: {day}\ntags: [daily]\n---\n# {day}\n{body}"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    """An empty vault embedding with `TopicEmbedder`, thresholds set for it: what the lifecycle
    tests work on (modules with another kind of vault define their own `vault`)."""
    root = tmp_path / "v"
    init_vault(root)
    profile = replace(builtin_profiles(tmp_path)["hash-256"], id="topic-256",
                      link_threshold=0.7, consolidate_threshold=0.8, route_threshold=0.35,
                      # texts of one topic are at 0.98-0.998 here: close, not the same words
                      duplicate_threshold=0.999)
    v = open_vault(root, env={}, embedder=TopicEmbedder(profile))
    yield v
    v.close()


# Three entries under one heading, of different text (issue 12, point 1).
NIGHTLY = ["topicnightly broke at two because the cron ran in Berlin time.",
           "topicnightly failed again; the fixture database was left locked by a worker.",
           "topicnightly red a third time, this one a flaky network call to the sandbox."]


def nightly_log(day: str) -> str:
    body = "".join(f"\n## Nightly failure\n{t}\n" for t in NIGHTLY)
    return f"---\ntype: episodic\ncreated: {day}\n---\n# {day}\n{body}\n## Lunch\ntopicfood.\n"
