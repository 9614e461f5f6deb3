"""Shared fixtures. Every vault lives under `tmp_path`, reads no `VAULTD_*` environment and embeds
with the deterministic `HashEmbedder`, so tests need no network and no model file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.vault import Vault, init_vault, open_vault


def make_vault(tmp_path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A fresh vault at `tmp_path/vault` holding `files` (vault-relative path → text or bytes)."""
    root = tmp_path / "vault"
    init_vault(root)
    for rel, content in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


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
