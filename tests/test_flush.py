"""MEMORY.md's managed block: sections, budget, idempotency, and the user's edits."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAMPLE_VAULT, copy_sample_vault, make_vault

from vaultd import blocks, edits
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.notes import fence_mask
from vaultd.vault import Vault, init_vault, open_vault

USER_TEXT = "# Memory\n\nMy own notes, kept verbatim.\n\n"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    root = tmp_path / "v"
    init_vault(root)
    (root / "MEMORY.md").write_text(USER_TEXT + "<!-- vaultd:begin -->\n<!-- vaultd:end -->\n"
                                    "\nTrailing user line.\n", encoding="utf-8")
    (root / "semantic" / "money.md").write_text(
        "---\ntitle: Money\nstatus: proven\n---\n# Money\n\nAmounts are integer cents.\n")
    (root / "procedural" / "deploy.md").write_text("# Deploy\n\nRun fly deploy.\n")
    (root / "episodic" / "2026-11-20.md").write_text(
        "# 2026-11-20\n\n## 09:00 — Pool\nPool exhausted.\n\n## 10:00 — Follow up\n"
        "TODO check the PgBouncer limits.\n")
    v = open_vault(root, env={}, embedder=HashEmbedder(builtin_profiles(tmp_path)["hash-256"]))
    yield v
    v.close()


def test_sections_and_user_text(vault: Vault) -> None:
    result = vault.flush()
    text = (vault.root / "MEMORY.md").read_text(encoding="utf-8")
    assert result.memory_written
    assert text.startswith(USER_TEXT) and text.endswith("<!-- vaultd:end -->\n\nTrailing user "
                                                        "line.\n")
    block = blocks.block_of(text)
    assert block is not None
    sections = dict(part.split("\n", 1) for part in block.split("## ")[1:])
    # the user's own notes (outside the agent's memory) are quoted; the agent's own episodes
    # are said as they are
    assert "- [“Money”](semantic/money.md): “Amounts are integer cents.”" in sections[
        "Key facts"]
    assert "- [“Deploy”](procedural/deploy.md): “Run fly deploy.”" in sections["Procedures"]
    assert ("- [2026-11-20](episodic/2026-11-20.md): Follow up: TODO check the PgBouncer "
            "limits." in sections["Open threads"])
    assert "- [2026-11-20](episodic/2026-11-20.md): Pool exhausted." in sections[
        "Recent episodes"]
    assert list(sections) == ["Key facts", "Procedures", "Decisions", "Open threads",
                              "Recent episodes"]  # templates/memory_block.md's order


def test_second_flush_changes_nothing(vault: Vault) -> None:
    vault.flush()
    path = vault.root / "MEMORY.md"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    os.utime(path, ns=(before[1], before[1]))
    result = vault.flush()
    assert not result.memory_written
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_budget_overflow_is_announced(vault: Vault) -> None:
    for i in range(40):
        (vault.root / "procedural" / f"p{i}.md").write_text(
            f"# Procedure {i}\n\nStep {i} " + "words " * 20 + "\n")
    vault.settings = replace(vault.settings,
                             lifecycle=replace(vault.settings.lifecycle, memory_budget=1500))
    vault.flush()
    block = blocks.block_of((vault.root / "MEMORY.md").read_text(encoding="utf-8"))
    assert block is not None and len(block) <= 1500
    assert re.search(r"_\d+ more entries( \(and \d+ more statement\(s\) of the sources "
                     r"above\))? did not fit the 1,500-character budget", block)
    assert "vaultd search" in block


def test_a_user_edit_between_read_and_write_survives(vault: Vault,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = vault.root / "MEMORY.md"
    real = edits.replace_checked
    calls = []

    def user_saves_first(snapshot: edits.Snapshot, text: str, **kw: Path) -> bool:
        if not calls:  # the user saves right after vaultd read the file
            path.write_text(snapshot.text.replace("My own notes", "My EDITED notes"))
        calls.append(1)
        return real(snapshot, text, **kw)

    monkeypatch.setattr(edits, "replace_checked", user_saves_first)
    vault.flush()
    text = path.read_text(encoding="utf-8")
    assert "My EDITED notes, kept verbatim." in text  # their edit survived
    assert "## Key facts" in text and len(calls) == 2  # and ours merged in on the re-read


def test_dry_run_prints_a_diff_and_writes_nothing(vault: Vault) -> None:
    before = (vault.root / "MEMORY.md").read_bytes()
    result = vault.flush(dry_run=True)
    assert "+## Key facts" in result.memory_diff
    assert (vault.root / "MEMORY.md").read_bytes() == before


def test_post_flush_runs_on_the_daemon(tmp_path: Path) -> None:
    from daemon_helpers import FAST_CONFIG, running_daemon

    root = make_vault(tmp_path, config=FAST_CONFIG)
    (root / "semantic" / "fact.md").write_text("---\nstatus: proven\n---\n# Fact\n\nThe sky.\n")
    with running_daemon(root) as daemon:
        status, body = daemon.call("POST", "/flush", {})
        assert status == 200 and body["memory_written"] is True
        memory = (root / "MEMORY.md").read_text(encoding="utf-8")
        assert "- [“Fact”](semantic/fact.md): “The sky.”" in memory
        status, body = daemon.call("POST", "/flush", {})
        assert status == 200 and body["memory_written"] is False  # nothing new
        status, _ = daemon.call("POST", "/flush", {}, token="wrong")
        assert status == 401


GOLDEN = Path(__file__).parent / "fixtures" / "sample_memory_block.md"


@pytest.mark.slow
@pytest.mark.model
def test_golden_memory_for_sample_vault(tmp_path: Path) -> None:
    """MEMORY.md's block for sample_vault with the real model. If a deliberate change alters
    it, regenerate with VAULTD_REGENERATE_GOLDEN=1 and review the diff."""
    root = copy_sample_vault(tmp_path / "sample")
    with open_vault(root, env={"VAULTD_CACHE_DIR": str(tmp_path / "c")}, daemon="never") as v:
        v.flush()
        text = (root / "MEMORY.md").read_text(encoding="utf-8")
        block = blocks.block_of(text)
        assert block is not None
        if os.environ.get("VAULTD_REGENERATE_GOLDEN"):
            GOLDEN.write_text(block + "\n", encoding="utf-8")
        assert block + "\n" == GOLDEN.read_text(encoding="utf-8")
        user_part = (SAMPLE_VAULT / "MEMORY.md").read_text(encoding="utf-8").split(
            "<!-- vaultd:begin -->")[0]
        assert text.startswith(user_part)
        assert not v.flush().memory_written  # idempotent


def test_flush_goes_through_the_daemon_when_it_runs(tmp_path: Path) -> None:
    from daemon_helpers import FAST_CONFIG, running_daemon

    from vaultd.vault import flush_anywhere

    root = make_vault(tmp_path, config=FAST_CONFIG)
    (root / "semantic" / "fact.md").write_text("---\nstatus: proven\n---\n# Fact\n\nWater.\n")
    with running_daemon(root), open_vault(root, env={}, daemon="never",
                                          embedder=HashEmbedder(builtin_profiles(tmp_path)[
                                              "hash-256"])) as v:
        result = flush_anywhere(v)
        assert result.memory_written is True
        assert v._store is None  # this process never opened the index


# -- a MEMORY.md that talks about the markers (issue 12, point 3) ----------------------------

MENTIONS = ("# Memory\n\nvaultd writes between `<!-- vaultd:begin -->` and "
            "`<!-- vaultd:end -->`, in a sentence.\nWords between the two mentions stay.\n\n"
            "An example of a block:\n\n```markdown\n<!-- vaultd:begin -->\nexample content\n"
            "<!-- vaultd:end -->\n```\n\nMy closing line.\n")


@pytest.mark.parametrize("real_block", [False, True], ids=["no-block-yet", "with-block"])
def test_markers_named_inline_or_fenced_are_the_users_text(vault: Vault,
                                                           real_block: bool) -> None:
    user = MENTIONS + ("\n<!-- vaultd:begin -->\n<!-- vaultd:end -->\n" if real_block else "")
    (vault.root / "MEMORY.md").write_text(user, encoding="utf-8")
    assert vault.flush().memory_written
    text = (vault.root / "MEMORY.md").read_text(encoding="utf-8")
    assert text.startswith(MENTIONS)  # every byte of theirs, the fenced example included
    block = blocks.block_of(text)
    assert block is not None and "integer cents" in block and "example content" not in block
    assert text.count("<!-- vaultd:begin -->") == 3
    assert vault.flush().memory_written is False  # found again: one block, not a second one


def test_a_block_never_lands_inside_an_unclosed_fence(vault: Vault) -> None:
    user = "# Memory\n\n```sh\nmake deploy\n"
    (vault.root / "MEMORY.md").write_text(user, encoding="utf-8")
    vault.flush()
    text = (vault.root / "MEMORY.md").read_text(encoding="utf-8")
    assert text.startswith(user)
    assert blocks.block_of(text) is not None and "integer cents" in blocks.block_of(text)
    lines = text.split("\n")
    assert not fence_mask(lines)[lines.index(blocks.BEGIN)]  # rendered as a block, not code
    assert vault.flush().memory_written is False


def _block(vault: Vault) -> str:
    vault.flush()
    return blocks.block_of((vault.root / "MEMORY.md").read_text(encoding="utf-8")) or ""


def test_lines_that_share_a_subject_say_it_once(vault: Vault) -> None:
    """Under one day's header, "Caroline went …" and "Caroline plans …" become one line that
    names her once: fewer characters per fact, nothing a fact says lost."""
    (vault.root / "episodic" / "2026-11-21.md").write_text(
        "# 2026-11-21\n\n- Caroline went to the pride parade with Melanie.\n"
        "- Caroline plans to paint a mural for Melanie.\n"
        "- Melanie ran a charity race with Caroline.\n"
        "- Melanie adopted a dog named Luna, a gift from Caroline.\n"
        "- The parade was loud.\n- The race raised money.\n", encoding="utf-8")
    block = _block(vault)
    assert ("- Caroline: went to the pride parade with Melanie; plans to paint a mural for "
            "Melanie." in block)
    assert ("- Melanie: ran a charity race with Caroline; adopted a dog named Luna, a gift "
            "from Caroline." in block)
    # a sentence's first word is capitalised whatever it is: "The" is no one's name
    assert "- The parade was loud." in block and "- The race raised money." in block


def test_a_quoted_note_keeps_its_words_when_lines_share_a_subject(vault: Vault) -> None:
    (vault.root / "semantic" / "people.md").write_text(
        "# People\n\n- Caroline went to the pride parade with Melanie.\n"
        "- Caroline plans to paint a mural for Melanie.\n", encoding="utf-8")
    block = _block(vault)
    assert "- “Caroline went to the pride parade with Melanie.”" in block
    assert "- “Caroline plans to paint a mural for Melanie.”" in block


def test_a_dated_event_is_worth_more_than_an_undated_one_and_a_rule_no_less() -> None:
    """What an agent is asked first: when something happened, how many (bench/RESULTS.md,
    issue 28); a rule or a preference is not lowered for its words."""
    from vaultd.lifecycle.flush import cue_factor

    plain = cue_factor("Melanie went hiking with her kids.")
    assert cue_factor("Melanie went hiking with her kids last week.") > plain
    assert cue_factor("Melanie went hiking with her kids in 2022.") > plain
    assert cue_factor("It is important to run the migrations before the deploy.") == plain
    assert plain == 1.0
    assert cue_factor("09:30 Melanie went hiking with her kids.") == plain  # when it was noted
