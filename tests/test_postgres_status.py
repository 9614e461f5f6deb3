"""`vaultd status` and `vaultd doctor` on an index in PostgreSQL (issue 27): status names the
database (never its password), doctor runs its checks on the database, and an unreachable
server is one finding naming it, not a traceback or an SQLite message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_vault

from vaultd import doctor
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.store.shown import shown
from vaultd.vault import Vault, open_vault

NOTES = {"notes/foxes.md": "# Foxes\n\nThe red fox hunts at dawn.\n",
         "notes/bread.md": "# Bread\n\nBake it for forty minutes.\n"}


def _open(tmp_path: Path, url: str) -> Vault:
    root = make_vault(tmp_path, NOTES, config=f'[index]\nurl = "{url}"\n')
    return open_vault(root, env={}, embedder=HashEmbedder(builtin_profiles(tmp_path)["hash-256"]))


def test_a_url_is_shown_without_its_password() -> None:
    assert shown("postgresql://vaultd:s3cret@db.example:5432/memory") == \
        "postgresql://vaultd:***@db.example:5432/memory"
    assert shown("postgresql://vaultd@/memory?host=/run") == "postgresql://vaultd@/memory?host=/run"


@pytest.mark.postgres
def test_status_names_the_database_and_doctor_checks_it(tmp_path: Path, pg_url: str) -> None:
    vault = _open(tmp_path, pg_url)
    try:
        vault.index()
        status = vault.status()
        assert status.index == shown(pg_url)
        notes = status.counts["notes"]  # these, and what `vaultd init` wrote
        assert notes >= len(NOTES) and status.counts["chunks"] >= len(NOTES)
        assert not (vault.root / ".vaultd" / "index.db").exists()
        report = doctor.check(vault)
        assert report.findings == [], report.findings
        assert report.checked["files"] == notes
        # a note the index has not seen is found on the database as on the file
        (vault.root / "notes" / "new.md").write_text("# New\n\nUnseen.\n", encoding="utf-8")
        assert any("notes/new.md" in f.message for f in doctor.check(vault).findings)
    finally:
        vault.close()


def test_doctor_on_an_unreachable_database_is_one_finding(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://vaultd:s3cret@/memory?host={tmp_path}"
    vault = _open(tmp_path, url)
    try:
        [finding] = doctor.check(vault).findings
        assert finding.kind == "unreachable"
        assert "postgresql://vaultd:***@" in finding.message and "s3cret" not in finding.message
        assert "\n" not in finding.message
    finally:
        vault.close()
