"""Knowledge from episodes (issue 14, point 3): consolidation writes proven notes that keep every
fact verbatim with its date and source, titled by their subject; the heartbeat extracts durable
facts on a fresh vault from built-in (or the vault's own) prototypes. Offline, with the
`TopicEmbedder` of conftest: texts sharing a `topicX` word are close."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import daily, write

from vaultd import edits, layout
from vaultd.errors import ConfigError
from vaultd.lifecycle.consolidate import clusters, subject
from vaultd.lifecycle.entries import EntryView
from vaultd.lifecycle.heartbeat import load_prototypes
from vaultd.notes import parse
from vaultd.vault import Vault, templates_dir

FACT_LINE = re.compile(r"^- (.+) — \[(\d{4}-\d{2}-\d{2})\]\(([^)]+)\)$")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".vaultd" not in p.parts}


def touched(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, str]:
    out = {p: "create" for p in after if p not in before}
    out.update({p: "remove" for p in before if p not in after})
    out.update({p: "change" for p in before if p in after and before[p] != after[p]})
    return out


def said(lines: str) -> list[str]:
    """An entry's own words, line by line, without its heading or bullet marker."""
    out = [re.sub(r"^[-*+]\s+", "", line.strip()) for line in lines.split("\n")
           if line.strip() and not line.lstrip().startswith("#")]
    return out


# -- consolidation ---------------------------------------------------------------------------

CAROLINE = [  # one subject, in the shapes a daily log takes: sections, bullets, two lines
    ("2026-11-01", "## 19:55 Caroline\ntopicadopt Caroline researched adoption agencies.\n"
                   "She wants a family of her own.\n"),
    ("2026-11-02", "- topicadopt Caroline met an adoption counselor about agencies.\n"),
    ("2026-11-03", "## 08:10 — Caroline\ntopicadopt Caroline says adoption agencies that "
                   "welcome LGBTQ parents matter most to her.\n"),
]
OTHER = ["- Caroline went to the topicbeach with friends.\n",
         "- Melanie bought a topicguitar.\n", "- Caroline painted a topiclake.\n"]


def _log(day: str, body: str, extra: str) -> str:
    return f"---\ntype: episodic\ncreated: {day}\n---\n# {day}\n\n{extra}\n{body}"


def test_a_merged_note_keeps_every_member_verbatim_with_date_and_source(
        vault: Vault) -> None:
    for (day, body), extra in zip(CAROLINE, OTHER):
        write(vault.root, f"episodic/{day}.md", _log(day, body, extra))
    vault.index()
    vault.lifecycle(["connect"])
    [report] = vault.lifecycle(["consolidate"])
    [note] = [p for p in report.created if p.startswith("semantic/")]
    text = (vault.root / note).read_text(encoding="utf-8")
    fm = edits.get_frontmatter(note, text)
    assert fm["status"] == "proven" and fm["type"] == "semantic"
    # titled by what the group is about, not by a time or the heading the entries share
    assert fm["title"].startswith("Caroline — ") and "adoption" in fm["title"].lower()
    assert not re.search(r"\d{2}:\d{2}", fm["title"])
    assert note == "semantic/" + re.sub(r"[^a-z0-9]+", "-", fm["title"].lower()).strip("-") \
        + ".md"
    body = text.split("---\n", 2)[2]
    assert body.startswith(f"# {fm['title']}\n\n")
    facts = [FACT_LINE.match(line) for line in body.split("\n")[2:] if line]
    assert len(facts) == 3 and all(facts)
    # every member is in the note, word for word, dated, linked to its log, where it still is
    members = [e for day, _ in CAROLINE for e in parse(
        f"episodic/{day}.md", (vault.root / f"episodic/{day}.md").read_text(encoding="utf-8")
    ).entries if "topicadopt" in e.text]
    assert len(members) == 3
    for entry, (day, _) in zip(members, CAROLINE):
        line = next(m for m in facts if m and day == m.group(2))
        for words in said(entry.text):
            assert words in line.group(1)
        assert (vault.root / "semantic" / line.group(3)).resolve() == \
            (vault.root / f"episodic/{day}.md").resolve()
    assert not (vault.root / "archive").exists()  # nothing moved
    # the knowledge is found by search, as the note when a search asks for knowledge
    assert vault.search("Caroline adoption agencies topicadopt",
                        types=["semantic"])[0].path == note


def test_merged_notes_of_one_subject_get_distinct_names(vault: Vault) -> None:
    for (day, body), extra in zip(CAROLINE, OTHER):
        write(vault.root, f"episodic/{day}.md", _log(day, body, extra))
    vault.index()
    vault.lifecycle(["connect"])
    [dry] = vault.lifecycle(["consolidate"], dry_run=True)
    [name] = [f.path for f in dry.files if f.path.startswith("semantic/")]
    write(vault.root, name, "# Mine\n\nmy own note under that name.\n")  # the user's, first
    [real] = vault.lifecycle(["consolidate"])
    [note] = [p for p in real.created if p.startswith("semantic/")]
    assert note == name.removesuffix(".md") + "-2.md"
    assert (vault.root / name).read_text(encoding="utf-8") == \
        "# Mine\n\nmy own note under that name.\n"


def test_subject_names_the_group_against_the_rest_of_the_vault() -> None:
    group = ["Caroline researched adoption agencies.",
             "Caroline went to an LGBTQ support group meeting about adoption.",
             "Caroline says the LGBTQ support group helps with adoption agencies."]
    vault = group + [f"Caroline and Melanie talked about painting {i}." for i in range(30)]
    from vaultd.lifecycle.consolidate import terms

    df = Counter(k for t in vault for k in terms(t))
    title = subject(group, df, len(vault))
    head, _, rest = title.partition(" — ")
    assert head == "Caroline"  # the name all members share
    assert "adoption" in rest.lower() and ("lgbtq" in rest.lower() or "support" in rest.lower())
    assert subject(["alpha.", "beta.", "gamma."], Counter(), 3) == ""  # nothing shared


def _view(i: int) -> EntryView:
    return EntryView(id=str(i), path=f"episodic/2026-01-{i + 1:02d}.md", key=str(i), heading="",
                     type="episodic", date=None, tags=(), start_line=1, end_line=1, text="",
                     hash="", is_daily=True, frontmatter={})


def test_one_large_close_region_yields_several_groups_each_a_clique() -> None:
    # two tight bundles of four (0-3 around 0°, 4-7 around 40°) and a chain joining them
    angles = np.radians([0, 3, 6, 9, 40, 43, 46, 49, 20, 26])
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    groups = clusters([_view(i) for i in range(10)], vecs, 0.95)
    assert len(groups) >= 2
    for g in groups:
        sims = vecs[g] @ vecs[g].T
        assert (sims >= 0.95 - 1e-6).all() and len(g) >= 3
    assert len({i for g in groups for i in g}) == sum(len(g) for g in groups)  # disjoint
    assert all(len(g) <= 3 for g in clusters([_view(i) for i in range(10)], vecs, 0.95,
                                             max_size=3))
    assert clusters([_view(i) for i in range(10)], vecs, 0.95) == groups  # deterministic


# -- the heartbeat on a fresh vault -----------------------------------------------------------

PROTOTYPES = """min_similarity = 0.5

[kinds.likes]
type = "semantic"
title = "Preferences"
examples = ["topiclike someone loves something"]

[kinds.steps]
type = "procedural"
title = "How-tos"
examples = ["topicstep do this then that"]

[kinds.events]
type = "episodic"
title = "Events"
examples = ["topicevent something happened"]
"""


def _fresh(vault: Vault) -> None:
    """A vault with no curated semantic or procedural notes, and this vault's prototypes."""
    (layout.state_dir(vault.root) / "prototypes.toml").write_text(PROTOTYPES, encoding="utf-8")
    write(vault.root, "episodic/2026-11-20.md", daily("2026-11-20", [
        "topiclike Caroline loves green tea.", "topiclike Caroline loves long walks.",
        "topicstep To reset the router, hold the button for ten seconds.",
        "topicstep To reset the modem, unplug it first.",
        "topicevent Went to the market.", "topicevent The bus was late."]))


def test_a_fresh_vault_extracts_durable_facts_by_prototype(vault: Vault) -> None:
    _fresh(vault)
    vault.index()
    vault.lifecycle(["connect"])
    log = vault.root / "episodic/2026-11-20.md"
    [report] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    assert any("built-in prototypes" in n for n in report.notes)
    assert sorted(a.type for a in report.actions) == ["procedural", "procedural",
                                                          "semantic", "semantic"]
    assert sorted(report.created) == ["procedural/how-tos.md", "semantic/preferences.md"]
    prefs = (vault.root / "semantic/preferences.md").read_text(encoding="utf-8")
    fm = edits.get_frontmatter("semantic/preferences.md", prefs)
    assert fm["title"] == "Preferences" and fm["status"] == "proven"
    assert fm["extracted_from"] == ["[[episodic/2026-11-20]]"]
    assert "\n- topiclike Caroline loves green tea. — [2026-11-20](../episodic/2026-11-20.md)\n" \
        in prefs and "topicevent" not in prefs
    # the episodes stay where they are, marked extracted
    text = log.read_text(encoding="utf-8")
    assert len(parse("episodic/2026-11-20.md", text).entries) == 6
    state = edits.get_frontmatter("episodic/2026-11-20.md", text)["vaultd"]
    assert len(state["extracted"]) == 4
    again = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))[0]
    assert not again.actions and not again.created


def test_the_heartbeat_appends_to_its_note_and_a_dry_run_plans_exactly_that(
        vault: Vault) -> None:
    _fresh(vault)
    vault.index()
    vault.lifecycle(["connect"])
    vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    write(vault.root, "episodic/2026-11-22.md", daily("2026-11-22", [
        "topiclike Caroline loves jazz.", "topicevent Rain all day."]))
    vault.index()
    vault.lifecycle(["connect"])  # links mirrored now: the flush after the review adds none
    before = tree(vault.root)
    [dry] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 23), dry_run=True)
    assert tree(vault.root) == before
    planned = {f.path: f.change for f in dry.files}
    assert planned["semantic/preferences.md"] == "change"
    assert "+- topiclike Caroline loves jazz." in next(
        f.diff for f in dry.files if f.path == "semantic/preferences.md")
    [real] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 23))
    assert not real.conflicts
    assert touched(before, tree(vault.root)) == planned
    prefs = (vault.root / "semantic/preferences.md").read_text(encoding="utf-8")
    assert prefs.count("\n- topiclike") == 3
    assert edits.get_frontmatter("semantic/preferences.md", prefs)["extracted_from"] == [
        "[[episodic/2026-11-20]]", "[[episodic/2026-11-22]]"]


def test_an_extraction_a_crash_left_unmarked_is_not_written_twice(vault: Vault) -> None:
    """The note got the fact, the log was never marked (a crash between the two writes): the
    next heartbeat only marks the log."""
    _fresh(vault)
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    log = vault.root / "episodic/2026-11-20.md"
    unmarked = log.read_text(encoding="utf-8")
    vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    note = (vault.root / "semantic/preferences.md").read_text(encoding="utf-8")
    log.write_text(unmarked, encoding="utf-8")  # as if the mark never landed
    vault.index()
    [report] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    assert not report.conflicts and "semantic/preferences.md" not in report.created
    assert (vault.root / "semantic/preferences.md").read_text(encoding="utf-8") == note
    assert "extracted:" in log.read_text(encoding="utf-8")


def test_the_heartbeat_never_writes_into_a_note_it_did_not_make(vault: Vault) -> None:
    _fresh(vault)
    mine = "---\ntitle: Mine\n---\n# Mine\n\nmy own list.\n"
    write(vault.root, "archive/placeholder.md", "x\n")  # an archive folder exists: irrelevant
    vault.index()
    vault.lifecycle(["connect"], mirror=False)
    write(vault.root, "semantic/preferences.md", mine)  # appears after the plan's snapshot
    [report] = vault.lifecycle(["heartbeat"], today=dt.date(2026, 11, 21))
    assert (vault.root / "semantic/preferences.md").read_text(encoding="utf-8") == mine
    assert any("semantic/preferences.md" in c for c in report.conflicts)
    assert "procedural/how-tos.md" in report.created  # the rest of the review went on


def test_shipped_prototypes_load_and_a_broken_override_is_named(tmp_path: Path) -> None:
    shipped = load_prototypes(tmp_path, templates_dir())
    assert {k.type for k in shipped.kinds} == {"semantic", "procedural", "episodic"}
    assert {"preferences", "identities", "relationships", "decisions", "plans", "howtos"} <= \
        {k.name for k in shipped.kinds}
    assert 0 < shipped.min_similarity < 1
    (tmp_path / ".vaultd").mkdir()
    (tmp_path / ".vaultd" / "prototypes.toml").write_text("[kinds.x]\ntype = 'bogus'\n"
                                                          "examples = ['a']\n")
    with pytest.raises(ConfigError, match="prototypes.toml"):
        load_prototypes(tmp_path, templates_dir())


def test_calibrate_says_what_the_link_threshold_means(vault: Vault) -> None:
    for i in range(4):
        write(vault.root, f"episodic/2026-11-0{i + 1}.md",
              daily(f"2026-11-0{i + 1}", [f"topic{i} a note.", "topicshared b."]))
    vault.index()
    data = vault.calibrate()
    assert "related" in data["criteria"]["link"] and "locomo-dev" in data["criteria"]["link"]
    assert "stricter" in data["criteria"]["consolidate"]
    assert 0 <= data["isolated_at_current"] <= 1
    assert data["suggested"]["consolidate"] > data["suggested"]["link"]


def _dense_clusters(vecs: np.ndarray, threshold: float, min_size: int = 3,
                    max_size: int = 6) -> list[list[int]]:
    """The greedy clique grouping as it was written first: every pair's similarity at once."""
    sims = vecs @ vecs.T
    adjacent = sims >= threshold
    np.fill_diagonal(adjacent, False)
    free = np.ones(len(vecs), dtype=bool)
    tried = np.zeros(len(vecs), dtype=bool)
    groups = []
    while True:
        degree = (adjacent & free).sum(axis=1)
        degree[~free | tried] = -1
        seed = int(np.argmax(degree))
        if degree[seed] < min_size - 1:
            break
        tried[seed] = True
        members = [seed]
        candidates = adjacent[seed] & free
        while candidates.any() and len(members) < max_size:
            pool = np.flatnonzero(candidates)
            best = int(pool[int(np.argmax(sims[np.ix_(pool, members)].mean(axis=1)))])
            members.append(best)
            candidates &= adjacent[best]
        if len(members) >= min_size:
            free[members] = False
            groups.append(sorted(members))
    return sorted(groups)


def test_clusters_hold_a_block_of_similarities_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """consolidate grouped from an episodes x episodes similarity matrix (50k episodes: 10 GB)
    and recounted every degree for each seed. Grouping from each episode's neighbours, found a
    block of rows at a time, gives the same groups in a fraction of the memory."""
    import tracemalloc

    from vaultd.lifecycle import plans

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(150, 64))
    vecs = centres[rng.integers(0, 150, 2000)] + rng.normal(scale=0.35, size=(2000, 64))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    views = [_view(i) for i in range(2000)]
    want = _dense_clusters(vecs, 0.8)
    assert len(want) > 100 and max(map(len, want)) == 6  # many groups, some cut at MAX_GROUP
    monkeypatch.setattr(plans, "SIMILARITY_FLOATS", 2000 * 10)
    tracemalloc.start()
    got = clusters(views, vecs, 0.8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == want
    assert peak < 2000 * 2000 * 4 / 8, peak  # an eighth of the one similarity matrix


def test_calibrate_counts_all_pairs_a_block_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vaultd calibrate` took percentiles of an entries x entries matrix (50k entries: 10 GB);
    it counts each block of rows' pairs into fine bins instead: the same figures to the 3
    places it reports, in a fraction of the memory."""
    import tracemalloc

    from vaultd.lifecycle import connect, plans

    rng = np.random.default_rng(8)
    vecs = rng.normal(size=(1500, 32)) + rng.normal(size=32)  # a shared direction: cosines > 0
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -1.0)
    pairs = sims[np.triu_indices(1500, 1)]
    monkeypatch.setattr(plans, "SIMILARITY_FLOATS", 1500 * 20)
    tracemalloc.start()
    got = connect.calibrate(vecs, 0.5, 0.8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got["pairs"] == len(pairs)
    for q in (50, 90, 99, 99.9):
        assert abs(got["all_pairs"][f"p{q}"] - np.percentile(pairs, q)) <= 0.0011, q
    assert abs(got["suggested"]["link"] - np.percentile(pairs, 76)) <= 0.0011
    assert got["nearest_neighbour"]["p50"] == round(float(np.percentile(sims.max(axis=1), 50)), 3)
    assert got["linked_at_current"] == float((pairs >= 0.5).mean())
    assert got["isolated_at_current"] == float((sims.max(axis=1) < 0.5).mean())
    assert peak < 1500 * 1500 * 4 / 2, peak  # half the one similarity matrix (9 MB)
