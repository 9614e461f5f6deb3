"""Files vaultd must not damage, and single files that must not stop a run (issue 12, points 5,
6, 8 and 9): read-only notes and folders, hard links, a BOM and CRLF line endings, file modes,
text that would hide a whole day from search, a UTF-16 note, a very long note name, a note
that cannot be read.

The tests run as root in CI containers: root's writes ignore permission bits, so "read-only"
here is what the mode says, which is exactly what vaultd checks.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import NIGHTLY, TopicEmbedder, nightly_log, vaultd_wrote

from vaultd import edits
from vaultd.edits import appends
from vaultd.embedder import builtin_profiles
from vaultd.errors import VaultdError
from vaultd.notes import decode
from vaultd.vault import Vault, init_vault, open_vault


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    root = tmp_path / "v"
    init_vault(root)
    profile = replace(builtin_profiles(tmp_path)["hash-256"], id="topic-256",
                      link_threshold=0.7, consolidate_threshold=0.8)
    v = open_vault(root, env={}, embedder=TopicEmbedder(profile))
    yield v
    v.close()


def write(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def linked_pair(vault: Vault) -> tuple[Path, Path]:
    """Two notes on one topic in the lifecycle's scope: connect wants to write
    `vaultd_related:` into both."""
    a = write(vault.root, "episodic/a.md", "---\ntype: episodic\n---\n# A\n\ntopicpool sizing.\n")
    b = write(vault.root, "episodic/b.md", "---\ntype: episodic\n---\n# B\n\ntopicpool limits.\n")
    return a, b


# ---------------------------------------------------------------- point 5: read-only, links


def test_a_read_only_note_is_not_rewritten(vault: Vault) -> None:
    a, b = linked_pair(vault)
    os.chmod(a, 0o444)
    before = a.read_bytes()
    vault.index()
    [report] = vault.lifecycle(["connect"])
    assert a.read_bytes() == before and (a.stat().st_mode & 0o777) == 0o444
    assert any("episodic/a.md" in c and "read-only" in c for c in report.conflicts)
    assert "vaultd_related:" in b.read_text(encoding="utf-8")  # the rest of the vault goes on


def test_a_read_only_memory_md_is_refused_with_the_reason(vault: Vault) -> None:
    path = write(vault.root, "MEMORY.md", "# Memory\n")
    vaultd_wrote(vault.root, "semantic/money.md",
                 "---\nstatus: proven\n---\n# Money\n\nIn cents.\n")
    os.chmod(path, 0o444)
    with pytest.raises(edits.ConflictError, match="read-only"):
        vault.flush()
    assert path.read_bytes() == b"# Memory\n"


def test_a_hard_linked_note_is_not_split_into_two_copies(vault: Vault, tmp_path: Path) -> None:
    a, _ = linked_pair(vault)
    twin = tmp_path / "twin.md"
    os.link(a, twin)
    vault.index()
    [report] = vault.lifecycle(["connect"])
    assert a.stat().st_ino == twin.stat().st_ino and a.stat().st_nlink == 2
    assert a.read_bytes() == twin.read_bytes()
    assert any("episodic/a.md" in c and "hard-linked" in c for c in report.conflicts)


def test_consolidate_with_a_read_only_semantic_folder_creates_nothing(vault: Vault) -> None:
    """A merge writes one file, its note: where that cannot be written, the merge is a conflict
    naming it, and the logs it would have merged are as they were (a merge never touches
    them)."""
    log = write(vault.root, "episodic/2026-11-05.md", nightly_log("2026-11-05"))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    before = log.read_bytes()
    semantic = vault.root / "semantic"
    semantic.mkdir(exist_ok=True)
    os.chmod(semantic, 0o555)
    try:
        [report] = vault.lifecycle(["consolidate"])
    finally:
        os.chmod(semantic, 0o755)
    assert report.actions and not report.created
    assert any("semantic/" in c and "read-only" in c for c in report.conflicts)
    assert log.read_bytes() == before
    assert not list(semantic.glob("*.md"))
    assert not (vault.root / "archive").exists() or not any((vault.root / "archive").rglob("*"))


def test_a_merge_in_a_read_only_log_folder_leaves_the_logs_alone(vault: Vault) -> None:
    """The logs a merge reads may be read-only: it only reads them."""
    log = write(vault.root, "episodic/2026-11-05.md", nightly_log("2026-11-05"))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    before = log.read_bytes()
    os.chmod(log.parent, 0o555)
    try:
        [report] = vault.lifecycle(["consolidate"])
    finally:
        os.chmod(log.parent, 0o755)
    assert [p for p in report.created if p.startswith("semantic/")] and not report.conflicts
    assert log.read_bytes() == before


# ---------------------------------------------------------------- point 6: bytes kept


BOM = codecs.BOM_UTF8


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def assert_crlf(data: bytes) -> None:
    assert data.count(b"\n") == data.count(b"\r\n") > 0, data


def test_archive_restore_and_undo_keep_a_bom_and_crlf_line_endings(vault: Vault) -> None:
    from vaultd.lifecycle.entries import snapshot
    from vaultd.lifecycle.moves import archive_entry
    from vaultd.lifecycle.plans import Outcome

    log = write(vault.root, "episodic/2026-11-05.md", BOM + crlf(nightly_log("2026-11-05")))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    [report] = vault.lifecycle(["consolidate"])
    [merged] = [p for p in report.created if p.startswith("semantic/")]
    data = log.read_bytes()  # a merge leaves the log as it was
    assert data.startswith(BOM) and data.count(BOM) == 1
    assert_crlf(data)
    fm = edits.get_frontmatter(merged, (vault.root / merged).read_text(encoding="utf-8"))
    vault.undo(fm["consolidation"])
    assert log.read_bytes() == data
    vault.index()
    views, _ = snapshot(vault.store, vault.seals)
    [lunch] = [v for v in views if v.path == "episodic/2026-11-05.md" and "topicfood" in v.text]
    archive_entry(vault.root, lunch, "a test", Outcome(), seals=vault.seals)  # as age fades one
    archive = (vault.root / "archive/episodic/2026-11-05.md").read_bytes()
    assert archive.startswith(BOM) and archive.count(BOM) == 1
    assert_crlf(archive)
    data = log.read_bytes()
    assert data.startswith(BOM) and data.count(BOM) == 1 and b"topicfood" not in data
    assert_crlf(data)
    vault.restore("archive/episodic/2026-11-05.md")
    data = log.read_bytes()
    assert data.startswith(BOM) and data.count(BOM) == 1
    assert_crlf(data)
    text = data.decode("utf-8-sig")
    assert [text.count(t) for t in NIGHTLY] == [1, 1, 1] and text.count("topicfood") == 1


def test_remember_keeps_a_crlf_log_crlf(vault: Vault) -> None:
    day = dt.date.today()
    log = write(vault.root, f"episodic/{day}.md",
                crlf(f"---\ntype: episodic\n---\n# {day}\n\n## 08:00 — Early\nfirst.\n"))
    vault.remember("second, from an agent")
    data = log.read_bytes()
    assert_crlf(data)
    assert b"\r\nsecond, from an agent\r\n" in data


def test_flush_keeps_a_crlf_memory_md_crlf(vault: Vault) -> None:
    user = crlf("# Memory\n\nMy notes.\n")
    write(vault.root, "MEMORY.md", BOM + user)
    vaultd_wrote(vault.root, "semantic/money.md",
                 "---\nstatus: proven\n---\n# Money\n\nIn cents.\n")
    assert vault.flush().memory_written
    data = (vault.root / "MEMORY.md").read_bytes()
    assert data.startswith(BOM + user) and b"In cents" in data
    assert_crlf(data)
    assert vault.flush().memory_written is False  # and found again: nothing to change


def test_new_files_get_the_umask_mode_not_0600(vault: Vault) -> None:
    old = os.umask(0o022)
    try:
        rel, _ = vault.remember("a new day's first entry")
        vault.flush()
    finally:
        os.umask(old)
    assert (vault.root / rel).stat().st_mode & 0o777 == 0o644
    write(vault.root, "MEMORY.md", "# Memory\n")
    os.chmod(vault.root / "MEMORY.md", 0o640)  # a mode the person chose is kept
    vault.flush()
    assert (vault.root / "MEMORY.md").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- point 8: one bad entry


TOO_LONG = "x" * (getattr(edits, "MAX_ENTRY_BYTES", 64_000) + 1)


@pytest.mark.parametrize("text", ["a NUL \x00 inside", TOO_LONG], ids=["nul", "oversized"])
def test_text_that_would_hide_the_day_is_refused_before_writing(vault: Vault,
                                                                text: str) -> None:
    rel, _ = vault.remember("an earlier entry of the day")
    before = (vault.root / rel).read_bytes()
    with pytest.raises(VaultdError, match="refused"):
        vault.remember(text)
    assert (vault.root / rel).read_bytes() == before
    vault.index()
    assert vault.search("earlier entry of the day", mode="bm25")  # the day stays searchable


def test_a_daily_log_is_not_grown_past_its_limit(vault: Vault,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(appends, "MAX_DAILY_LOG_BYTES", 2_000)
    rel, _ = vault.remember("an earlier entry")
    with pytest.raises(VaultdError, match="would grow past"):
        for _ in range(10):
            vault.remember("y " * 200)
    assert (vault.root / rel).stat().st_size <= 2_000


def test_the_cli_and_mcp_refuse_a_nul_with_the_message(vault: Vault) -> None:
    from click.testing import CliRunner

    from vaultd.cli import main
    from vaultd.mcp_server import MemoryTools

    result = CliRunner().invoke(main, ["--vault", str(vault.root), "remember", "bad\x00text"])
    assert result.exit_code != 0 and "NUL" in result.output
    tools = MemoryTools(vault.root)
    with pytest.raises(VaultdError, match="NUL"):
        tools.write("bad\x00text")
    tools.close()
    assert not list((vault.root / "episodic").glob("*.md"))  # nothing written at all


# ---------------------------------------------------------------- point 9: one file, one conflict


def test_a_utf16_note_is_rewritten_in_utf16_and_stops_nothing(vault: Vault) -> None:
    note = write(vault.root, "episodic/wide.md", "---\r\ntype: episodic\r\n---\r\n# Wide\r\n"
                 "\r\ntopicpool in UTF-16.\r\n".encode("utf-16"))
    write(vault.root, "episodic/b.md", "---\ntype: episodic\n---\n# B\n\ntopicpool limits.\n")
    vault.index()
    [report] = vault.lifecycle(["connect"])
    assert not report.conflicts, report.conflicts
    data = note.read_bytes()
    assert data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    text = decode("episodic/wide.md", data, 10**6)
    assert isinstance(text, str) and "vaultd_related:" in text and "topicpool in UTF-16." in text
    assert "\r\n" in text and text.count("\n") == text.count("\r\n")  # its CRLF kept too
    assert vault.flush().memory_written


def test_a_note_with_a_very_long_name_stops_nothing(vault: Vault) -> None:
    name = "n" * 240 + ".md"  # 243 bytes: with a prefix and suffix, no room for a lock beside it
    long = write(vault.root, f"episodic/{name}",
                 "---\ntype: episodic\n---\n# Long\n\ntopicpool long name.\n")
    write(vault.root, "episodic/b.md", "---\ntype: episodic\n---\n# B\n\ntopicpool limits.\n")
    vault.index()
    [report] = vault.lifecycle(["connect"])
    assert not report.conflicts, report.conflicts
    assert "vaultd_related:" in long.read_text(encoding="utf-8")
    assert vault.flush().memory_written
    litter = [p for p in vault.root.rglob("*") if "vaultd-lock" in p.name]
    assert not litter  # lock files live under .vaultd/locks/, named by a hash


def test_a_note_that_cannot_be_read_is_one_conflict_not_a_failed_run(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = linked_pair(vault)
    vault.index()
    real = edits.read

    def read(path: Path) -> edits.Snapshot:
        if Path(path) == a:
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(edits, "read", read)
    [report] = vault.lifecycle(["connect"])
    assert any("episodic/a.md" in c and "Input/output error" in c
               for c in report.conflicts + report.notes)
    assert "vaultd_related:" in b.read_text(encoding="utf-8")


def test_a_write_locks_inside_the_vaults_state_folder(vault: Vault) -> None:
    note = write(vault.root, "semantic/deep/n.md", "# N\n\nold.\n")
    assert edits.replace_checked(edits.read(note), "# N\n\nnew.\n", root=vault.root)
    assert note.read_text(encoding="utf-8") == "# N\n\nnew.\n"
    assert sorted(p.name for p in note.parent.iterdir()) == ["n.md"]
    assert list((vault.root / ".vaultd" / edits.LOCKS_DIR).glob("*.lock"))
