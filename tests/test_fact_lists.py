"""Notes vaultd writes as lists of facts (issue 28 point 2): a merged or extracted note is indexed
one fact per chunk, its topic as the heading, its provenance out of the text, so a question about
one fact reads that fact at a fact's cost; near-duplicate facts of a merge become one line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TopicEmbedder, daily, vaultd_wrote, write

from vaultd import chunking, edits
from vaultd.embedder import builtin_profiles
from vaultd.indexer import CONTEXT_META
from vaultd.layout import archive_path
from vaultd.notes import PROVENANCE_RE
from vaultd.vault import Vault, init_vault, open_vault

FACTS = [
    ("2026-10-01", "Caroline researched adoption agencies that welcome LGBTQ parents."),
    ("2026-10-04", "Caroline met an adoption counselor on Tuesday."),
    ("2026-10-09", "Caroline's guinea pig is named Oscar."),
    ("2026-10-12", "Caroline plans to finish the adoption paperwork in May."),
]


def merged_note(facts: list[tuple[str, str]] = FACTS) -> str:
    lines = "".join(f"- {text} — [{day}](../archive/episodic/{day}.md)\n" for day, text in facts)
    sources = ", ".join(f"episodic/{day}.md" for day, _ in facts)
    return ("---\ntype: semantic\ntitle: Caroline — adoption\nstatus: proven\n"
            f"consolidation: 0123456789\nconsolidated_from: [{sources}]\n---\n"
            f"# Caroline — adoption\n\n{lines}")


def test_a_merged_note_is_found_one_fact_at_a_time(fake_vault: Vault) -> None:
    vaultd_wrote(fake_vault.root, "semantic/caroline-adoption.md", merged_note())
    fake_vault.index()
    assert fake_vault.store.counts()["chunks"] == len(FACTS)
    text = (fake_vault.root / "semantic/caroline-adoption.md").read_text(encoding="utf-8")
    line = next(n for n, said in enumerate(text.split("\n"), 1) if "guinea pig" in said)
    for mode in ("bm25", "hybrid"):
        top = fake_vault.search("guinea pig Oscar", k=1, mode=mode)[0]
        # the fact's own words: no sibling facts, no link to its source
        assert top.text == "- Caroline's guinea pig is named Oscar."
        assert top.lines == (line, line)  # still the line of the note that holds it
        assert top.heading == top.date == "2026-10-09"  # as its daily log had it
        assert top.path == "semantic/caroline-adoption.md"
    # the whole note is still what `full` of a fact's chunk shows: that fact's line, whole
    full = fake_vault.search("guinea pig Oscar", k=1, full=True)[0]
    assert full.text == "- Caroline's guinea pig is named Oscar."


def test_a_fact_gets_the_lift_of_the_day_a_query_names(fake_vault: Vault) -> None:
    """Its date is the fact's own, so "what happened on 2026-10-04" finds the fact of that day
    in a merged note as it found it in the daily log."""
    vaultd_wrote(fake_vault.root, "semantic/caroline-adoption.md", merged_note())
    fake_vault.index()
    hits = fake_vault.search("What did Caroline do about adoption on 2026-10-04?", k=1,
                             today="2026-12-01")
    assert hits[0].text == "- Caroline met an adoption counselor on Tuesday."


def test_a_users_list_of_bullets_is_cut_by_length_as_before(fake_vault: Vault) -> None:
    """Only the notes in vaultd's fact-list format are cut per fact: a user's semantic note of
    bullets is packed into chunks as any note is, its links left as written."""
    text = merged_note().replace("status: proven\nconsolidation: 0123456789\n", "") \
        .replace("consolidated_from:", "sources:")
    write(fake_vault.root, "semantic/mine.md", text)
    fake_vault.index()
    assert fake_vault.store.counts()["chunks"] == 1
    top = fake_vault.search("guinea pig Oscar", k=1, full=True)[0]
    assert "](../archive/episodic/2026-10-09.md)" in top.text


def test_an_index_cut_by_older_rules_is_cut_again_once(fake_vault: Vault,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "is_fact_list", lambda note: False)  # the rules before
    vaultd_wrote(fake_vault.root, "semantic/caroline-adoption.md", merged_note())
    fake_vault.index()
    assert fake_vault.store.counts()["chunks"] == 1
    with fake_vault.store.transaction():  # what an index of before recorded
        fake_vault.store.set_meta(CONTEXT_META, "none")
    monkeypatch.undo()
    fake_vault.index()  # nothing changed on disk: the rules did
    assert fake_vault.store.counts()["chunks"] == len(FACTS)
    assert fake_vault.store.get_meta(CONTEXT_META) == chunking.chunking_key(
        chunking.CONTEXTS["none"])


class LastLineEmbedder(TopicEmbedder):
    """conftest's TopicEmbedder on a text's last line alone: an entry is its words, whatever its
    day's heading, so the same words on two days are the same vector (cosine 1.0), and other
    words of the topic are close (≈ 0.98)."""

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return super()._embed_batch([t.strip().split("\n")[-1] for t in texts])


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    root = tmp_path / "v"
    init_vault(root)
    profile = replace(builtin_profiles(tmp_path)["hash-256"], id="last-line-256",
                      link_threshold=0.7, consolidate_threshold=0.8, duplicate_threshold=0.995)
    v = open_vault(root, env={}, embedder=LastLineEmbedder(profile))
    yield v
    v.close()


SAME = "topicadopt Caroline researched adoption agencies that welcome LGBTQ parents."
OTHER = "topicadopt Caroline met an adoption counselor about agencies on Tuesday."


def test_a_fact_said_twice_is_one_line_with_both_sources(vault: Vault) -> None:
    """The same words on two days (a near-duplicate at any threshold) and a third entry of the
    topic: the merged note has two lines, the repeated fact once with both dates, linked to the
    logs that still hold them; search reads that fact in its logs (the note's copy is the same
    words again); undo archives the note and leaves the logs as they were."""
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    for day, said in zip(days, [SAME, SAME, OTHER]):
        write(vault.root, f"episodic/{day}.md", daily(day, [said, f"unrelated topic{day}."]))
    vault.index()
    vault.lifecycle(["connect"])
    [report] = vault.lifecycle(["consolidate"])
    [note] = [p for p in report.created if p.startswith("semantic/")]
    text = (vault.root / note).read_text(encoding="utf-8")
    facts = [line for line in text.split("\n") if line.startswith("- ")]
    assert len(facts) == 2, facts
    twice = next(line for line in facts if "researched" in line)
    assert "[2026-11-01](../episodic/2026-11-01.md), " \
           "[2026-11-02](../episodic/2026-11-02.md)" in twice
    assert PROVENANCE_RE.sub("", twice).endswith("LGBTQ parents.")
    fm = edits.get_frontmatter(note, text)
    assert len(fm["consolidated_from"]) == 3  # every member is still a source
    logs = {d: (vault.root / f"episodic/{d}.md").read_bytes() for d in days}
    vault.index()
    hits = vault.search("researched adoption agencies LGBTQ parents", k=3, mode="bm25")
    assert [h.path for h in hits[:2]] == ["episodic/2026-11-01.md", "episodic/2026-11-02.md"]
    assert all(h.path != note for h in hits)  # said in its logs: the note's copy is not news
    [only] = vault.search("researched adoption agencies LGBTQ parents", k=1, mode="bm25",
                          types=["semantic"])
    assert only.path == note and only.date == "2026-11-01" and "](" not in only.text
    changed = vault.undo(str(fm["consolidation"]))
    assert changed == [note, archive_path(note)]
    assert {d: (vault.root / f"episodic/{d}.md").read_bytes() for d in days} == logs


def test_facts_of_one_topic_that_differ_stay_apart(vault: Vault) -> None:
    """Facts of one topic are close (≈ 0.98) but not duplicates: each keeps its own line."""
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    says = [SAME, OTHER, "topicadopt Caroline hopes to adopt a child before next summer."]
    for day, said in zip(days, says):
        write(vault.root, f"episodic/{day}.md", daily(day, [said, f"unrelated topic{day}."]))
    vault.index()
    vault.lifecycle(["connect"])
    [report] = vault.lifecycle(["consolidate"])
    [note] = [p for p in report.created if p.startswith("semantic/")]
    text = Path(vault.root / note).read_text(encoding="utf-8")
    assert sum(line.startswith("- ") for line in text.split("\n")) == 3


def test_a_bullet_of_a_daily_log_keeps_its_vector_when_merged(fake_vault: Vault) -> None:
    """Embedded under its date, as its daily log gave it to the model, a merged fact has the
    hash (so the vector) it had: a merge re-embeds nothing, and is found as before."""
    day, said = FACTS[2]
    write(fake_vault.root, f"archive/episodic/{day}.md",
          f"---\ntype: episodic\ndate: {day}\n---\n# {day}\n\n- {said}\n")
    vaultd_wrote(fake_vault.root, "semantic/caroline-adoption.md", merged_note())
    report = fake_vault.index()
    hashes = fake_vault.store.chunk_keys(embedded_only=False).hashes
    assert len(hashes) == len(FACTS) + 1 and len(set(hashes)) == len(FACTS)
    assert report.chunks_embedded == len(FACTS)
