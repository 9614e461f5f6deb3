"""Context for short chunks: a chat turn is embedded with its neighbours under the same heading,
while its hit shows and points at its own text; the index records the policy, so a change
re-embeds exactly the chunks whose embedded text changed, once, and leaves the index as a fresh
build would; a neighbour's edit re-embeds the chunks that take it as context, and nothing else.
Real SQLite + sqlite-vec, the deterministic fake embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaultd import layout
from vaultd.chunking import CONTEXTS, Context, chunk_note, chunking_key, context_named
from vaultd.embedder import HashEmbedder, builtin_profiles
from vaultd.errors import ConfigError
from vaultd.indexer import CONTEXT_META
from vaultd.notes import parse
from vaultd.vault import Vault, init_vault, open_vault

COUNT = HashEmbedder(builtin_profiles(Path("."))["hash-256"]).count_tokens
LOG = "episodic/2023-05-08.md"
TURNS = [
    "- Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
    "- Melanie: Yeah, that was amazing!",
    "- Caroline: The stories people shared gave me courage.",
    "- Melanie: Did you meet anyone new?",
]


def dialog(turns: list[str], extra: str = "") -> str:
    return "---\ntype: episodic\n---\n# 2023-05-08\n\n" + "\n".join(turns) + "\n" + extra


def chunks(text: str, context: Context, max_tokens: int = 256, path: str = LOG) -> list:
    return chunk_note(parse(path, text), COUNT, max_tokens, 200, context)


# ---------------------------------------------------------------------------- chunking


def test_a_short_turn_is_embedded_with_the_turn_before_and_shown_alone() -> None:
    plain = chunks(dialog(TURNS), CONTEXTS["none"])
    turns = chunks(dialog(TURNS), CONTEXTS["previous"])
    assert [(c.id, c.text, c.start_line, c.end_line) for c in turns] == [
        (c.id, c.text, c.start_line, c.end_line) for c in plain]  # what a hit shows and where
    second = turns[1]
    assert second.text == TURNS[1]
    assert second.embed_text == f"2023-05-08\n{TURNS[0]}\n{TURNS[1]}"
    assert second.hash != plain[1].hash  # another text to embed is another vector
    assert turns[0].embed_text == plain[0].embed_text and turns[0].hash == plain[0].hash
    both = chunks(dialog(TURNS), Context(before=1, after=1))
    assert both[1].embed_text == f"2023-05-08\n{TURNS[0]}\n{TURNS[1]}\n{TURNS[2]}"
    assert both[3].embed_text == f"2023-05-08\n{TURNS[2]}\n{TURNS[3]}"


def test_no_policy_embeds_heading_and_text_as_before() -> None:
    for c in chunks(dialog(TURNS), CONTEXTS["none"]):
        assert c.context == "" and c.embed_text == f"2023-05-08\n{c.text}"


def test_neighbours_come_only_from_the_same_heading() -> None:
    text = dialog(TURNS[:2], "\n## Evening\n- Caroline: Dinner was late.\n")
    evening = chunks(text, CONTEXTS["previous"])[-1]
    assert evening.text == "- Caroline: Dinner was late."
    assert evening.context == ""  # the turn before it is under another heading
    assert evening.embed_text == "2023-05-08 > Evening\n- Caroline: Dinner was late."


def test_a_long_chunk_gets_no_neighbours_and_a_long_neighbour_is_cut() -> None:
    long_turn = "- Caroline: " + " ".join(f"word{i}" for i in range(300))
    got = chunks(dialog([long_turn, TURNS[1]]), Context(before=1, neighbour_tokens=10))
    assert all(c.context == "" for c in got if COUNT(c.text) > 64)  # its own text says enough
    short = got[-1]
    assert short.text == TURNS[1]
    lines = short.embed_text.split("\n")
    assert lines[0] == "2023-05-08" and lines[-1] == TURNS[1]
    assert lines[1].endswith("word299") and COUNT(lines[1]) <= 10  # the nearest words kept


def test_context_never_makes_the_embedded_text_exceed_the_model() -> None:
    turns = [f"- Caroline: turn {i} " + "lorem " * 30 for i in range(4)] + [TURNS[1]]
    for c in chunks(dialog(turns), Context(before=2, after=2, short_tokens=100,
                                           neighbour_tokens=60), max_tokens=80):
        assert COUNT(c.embed_text) <= 80, c
        assert c.text in c.embed_text  # the chunk's own text is never cut for context


def test_the_setting_names_a_policy_or_fails_naming_the_setting() -> None:
    assert context_named("Previous") == CONTEXTS["previous"]
    with pytest.raises(ConfigError, match=r"\[index\] context: 'neighbors' is not one of "
                                          r"none, previous"):
        context_named("neighbors")


# ---------------------------------------------------------------------------- the index


def make(tmp_path: Path) -> tuple[Path, HashEmbedder]:
    root = tmp_path / "vault"
    init_vault(root)
    (root / "episodic").mkdir(exist_ok=True)
    (root / LOG).write_text(dialog(TURNS), encoding="utf-8")
    (root / "episodic" / "2023-05-09.md").write_text(
        dialog(["- Melanie: Painting class tonight.", "- Caroline: Have fun!"]).replace(
            "2023-05-08", "2023-05-09"), encoding="utf-8")
    return root, HashEmbedder(builtin_profiles(tmp_path)["hash-256"])


def opened(root: Path, emb: HashEmbedder, context: str) -> Vault:
    return open_vault(root, env={"VAULTD_INDEX_CONTEXT": context}, embedder=emb)


def index_rows(vault: Vault) -> list[tuple]:
    """Every chunk as stored, with its vector: what a fresh build must equal."""
    return vault.store.conn.execute(
        "SELECT c.path, c.start_line, c.text, c.hash, c.context, e.vector FROM chunks c "
        "LEFT JOIN embeddings e ON e.hash = c.hash ORDER BY c.path, c.start_line").fetchall()


def test_a_policy_change_reembeds_what_changed_once_and_equals_a_fresh_build(
        tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, "none") as vault:
        vault.index()
        plain = {r[3] for r in index_rows(vault)}
    with opened(root, emb, "previous") as vault:
        report = vault.index()  # no file changed on disk: the policy alone re-reads them
        rows = index_rows(vault)
        changed = {r[3] for r in rows} - plain
        assert len(changed) == 4  # the turns after the first of each log
        assert report.chunks_embedded == len(changed)
        assert all(r[5] is not None for r in rows)  # every chunk has its vector
        assert vault.store.get_meta(CONTEXT_META) == chunking_key(CONTEXTS["previous"])
        again = vault.index()
        assert again.chunks_embedded == 0 and not again.changed
    for suffix in ("", "-wal", "-shm"):
        Path(str(layout.index_path(root)) + suffix).unlink(missing_ok=True)
    with opened(root, emb, "previous") as vault:
        vault.index()
        assert index_rows(vault) == rows  # the same as deleting the index and indexing anew


def test_each_vector_is_of_the_text_its_hash_names_also_when_embedded_later(
        tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, "previous") as vault:
        vault.indexer().reconcile(vectors=False)  # the daemon's way: vectors in a second phase
        assert vault.store.pending_vectors() > 0
        vault.indexer().embed_pending()
        rows = vault.store.conn.execute(
            "SELECT c.heading, c.text, c.context, e.vector FROM chunks c "
            "JOIN embeddings e ON e.hash = c.hash").fetchall()
    with_context = [r for r in rows if r[2]]
    assert with_context
    for heading, text, context, blob in rows:
        want = context or f"{heading}\n{text}"
        assert np.array_equal(np.frombuffer(blob, dtype=np.float32),
                              emb.embed([want], kind="document")[0])


def test_a_neighbours_edit_reembeds_the_turn_after_it_and_an_append_only_itself(
        tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, "previous") as vault:
        vault.index()
        edited = list(TURNS)
        edited[1] = "- Melanie: Yeah, that was wonderful!"
        (root / LOG).write_text(dialog(edited), encoding="utf-8")
        report = vault.index()
        assert report.chunks_embedded == 2  # the edited turn, and the one that quotes it
        (root / LOG).write_text(dialog(edited + ["- Caroline: Not yet."]), encoding="utf-8")
        report = vault.index()
        assert report.chunks_embedded == 1  # a new last turn is nobody's context before it
        hits = vault.search("wonderful", k=2, mode="vector")  # the turn, and the one after it
        assert sorted((h.lines, h.text.strip()) for h in hits) == [
            ((7, 7), edited[1]), ((8, 8), edited[2])]  # each shows its own text and line


def test_a_path_sync_under_a_changed_policy_reconciles_the_whole_vault(tmp_path: Path) -> None:
    root, emb = make(tmp_path)
    with opened(root, emb, "none") as vault:
        vault.index()
    with opened(root, emb, "previous") as vault:
        report = vault.indexer().sync_paths([LOG])
        assert {LOG, "episodic/2023-05-09.md"} <= set(report.changed)
        assert vault.store.get_meta(CONTEXT_META) == chunking_key(CONTEXTS["previous"])
