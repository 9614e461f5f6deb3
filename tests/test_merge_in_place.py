"""A merge leaves its members where they are (issue 28): the daily log keeps every entry in its
order, the merged note keeps the facts word for word, and search and MEMORY.md say each fact
once. On both index backends where the store answers (`index_env`)."""

from __future__ import annotations

from pathlib import Path

from conftest import SAYS, daily, fake_embedder, vaultd_wrote, write

from vaultd.lifecycle.entries import snapshot
from vaultd.vault import Vault, init_vault, open_vault

LOG = ("---\ntype: episodic\ndate: 2026-10-09\n---\n# 2026-10-09\n\n"
       "- Melanie asked what the new pet is called.\n"
       "- Caroline's guinea pig is named Oscar.\n"
       "- Caroline painted a sunset over the lake.\n")
NOTE = ("---\ntype: semantic\ntitle: Caroline — pets\nstatus: proven\n"
        "consolidation: 0123456789\nconsolidated_from: [episodic/2026-10-09.md]\n---\n"
        "# Caroline — pets\n\n"
        "- Caroline's guinea pig is named Oscar. — [2026-10-09](../episodic/2026-10-09.md)\n"
        "- Caroline adopted a cat in March. — [2026-03-02](../episodic/2026-03-02.md)\n")


def _vault(tmp_path: Path, env: dict[str, str]) -> Vault:
    root = tmp_path / "v"
    init_vault(root)
    write(root, "episodic/2026-10-09.md", LOG)
    vaultd_wrote(root, "semantic/caroline-pets.md", NOTE)
    vault = open_vault(root, env=env, embedder=fake_embedder(tmp_path))
    vault.index()
    return vault


def test_the_store_names_each_merged_fact_and_its_twin_in_its_log(tmp_path: Path,
                                                        index_env: dict[str, str]) -> None:
    with _vault(tmp_path, index_env) as vault:
        [fact, cat] = sorted(vault.search("guinea pig Oscar cat March", k=10, mode="bm25",
                                          types=["semantic"]), key=lambda h: h.lines)
        rows = {(h.path, h.lines[0]): h for h in vault.search(
            "guinea pig Oscar cat March sunset", k=10, mode="bm25", types=["episodic"])}
        store = vault.store
        ids = {(r.path, r.start_line): rowid for rowid, r in store.chunks_by_rowid(
            store.chunk_keys(embedded_only=False).rowids).items()}
        merged = store.merged_facts(sorted(ids.values()))
        # the note's Oscar line has the log's Oscar bullet as its twin; its cat line (no such
        # entry in a log) has none; the log's own chunks are no merged facts
        assert merged == {ids[(fact.path, fact.lines[0])]: ids[("episodic/2026-10-09.md", 8)],
                          ids[(cat.path, cat.lines[0])]: None}
        assert ("episodic/2026-10-09.md", 8) in rows and cat.text.endswith("March.")
        assert store.merged_facts([]) == {}


def test_a_merged_fact_is_one_hit_and_it_is_the_logs(tmp_path: Path,
                                                     index_env: dict[str, str]) -> None:
    with _vault(tmp_path, index_env) as vault:
        for mode in ("hybrid", "bm25", "vector"):
            hits = vault.search("guinea pig named Oscar", k=5, mode=mode)
            oscar = [h for h in hits if "Oscar" in h.text]
            assert [(h.path, h.lines) for h in oscar] == [("episodic/2026-10-09.md", (8, 8))], \
                mode
        # a search that could leave the log out keeps each copy: here, knowledge only
        [known] = [h for h in vault.search("guinea pig named Oscar", k=5, types=["semantic"])
                   if "Oscar" in h.text]
        assert known.path == "semantic/caroline-pets.md"
        both = vault.search("guinea pig named Oscar", k=5, path_glob="*/*.md")
        assert {h.path for h in both if "Oscar" in h.text} == {
            "episodic/2026-10-09.md", "semantic/caroline-pets.md"}


def test_memory_md_says_a_merged_fact_once(vault: Vault) -> None:
    for day, said in zip(["2026-11-01", "2026-11-02", "2026-11-03"], SAYS):
        write(vault.root, f"episodic/{day}.md", daily(day, [said]))
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    [report] = vault.lifecycle(["consolidate"])
    assert [p for p in report.created if p.startswith("semantic/")]
    vault.index()
    assert all(v.merged_into for v in snapshot(vault.store, vault.seals)[0]
               if v.is_daily and "topicflaky" in v.text)
    vault.flush()
    memory = (vault.root / "MEMORY.md").read_text(encoding="utf-8")
    counts = [memory.count(said.split(". ")[0].removeprefix("topicflaky ")) for said in SAYS]
    assert max(counts) == 1 and sum(counts) >= 2, counts  # from the note; never again raw
