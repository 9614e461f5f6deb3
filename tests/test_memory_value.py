"""MEMORY.md is worth its budget (issue 14, point 4): each line states a fact itself, whole and
verbatim, grouped under its source; specific facts before generic ones; the budget filled; what
is left out counted honestly."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import fake_embedder, make_vault, vaultd_wrote, with_settings, write

from vaultd import blocks
from vaultd.lifecycle.entries import statements
from vaultd.vault import Vault, init_vault, open_vault


def block_of(vault: Vault) -> str:
    vault.flush()
    block = blocks.block_of((vault.root / "MEMORY.md").read_text(encoding="utf-8"))
    assert block is not None
    return block


def open_fake(root: Path, tmp_path: Path) -> Vault:
    return open_vault(root, env={}, daemon="never", embedder=fake_embedder(tmp_path))


def test_an_openclaw_bullet_is_rendered_once_without_a_doubled_dash(tmp_path: Path) -> None:
    root = tmp_path / "memory"
    write(root, "2026-11-01.md", "- Fixed `TestQueueDrain` flake by draining the queue before "
          "shutdown.\n- Moved the nightly build to 02:00 UTC because of the Berlin cron.\n")
    init_vault(root)
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
    assert "- - " not in block
    fact = "Fixed `TestQueueDrain` flake by draining the queue before shutdown."
    assert block.count(fact) == 1  # the text once, not "text: text"
    assert "Moved the nightly build to 02:00 UTC because of the Berlin cron." in block
    assert block.count("(2026-11-01.md)") == 1  # one link for the group


def test_a_note_states_its_fact_not_its_preamble(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {
        "semantic/stripe.md": "---\ntitle: Stripe webhook quirks\nstatus: proven\n---\n"
        "# Stripe webhook quirks\n\nWhat we learned the hard way about Stripe webhooks.\n\n"
        "Signature checks need the raw request body (`await request.body()`), byte for "
        "byte.\n",
        "semantic/pool.md": "---\ntitle: Pool\nsummary: PgBouncer pool size is 20 per "
        "worker.\n---\n# Pool\n\nSome background on pools.\n\nThe pool was raised twice in "
        "2026 after incidents.\n"})
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
    assert "What we learned the hard way" not in block
    assert ("Signature checks need the raw request body (`await request.body()`), byte for "
            "byte.") in block
    assert "- [“Pool”](semantic/pool.md): “PgBouncer pool size is 20 per worker.”" in block
    assert "raised twice" not in block  # `summary:` chose the line


def test_a_consolidated_notes_bullets_are_facts_without_their_provenance(
        tmp_path: Path) -> None:
    facts = ["Caroline joined the Connected LGBTQ Activists group last Tuesday.",
             "Caroline made a stained glass window about her journey.",
             "Caroline plans an LGBTQ art show next month in Boston."]
    body = "".join(f"- {f} — [2026-06-{18 + i}](../episodic/2026-06-{18 + i}.md)\n"
                   for i, f in enumerate(facts))
    root = make_vault(tmp_path)
    vaultd_wrote(root, "semantic/caroline.md", "---\ntype: semantic\ntitle: Caroline\n"
                 f"status: proven\nconsolidation: abc\n---\n# Caroline\n\n{body}")
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
    for fact in facts:
        assert f"- {fact}\n" in block + "\n"  # whole, verbatim, its provenance dropped
    assert "— [2026-06" not in block
    assert block.count("(semantic/caroline.md)") == 1


def test_the_budget_is_filled_and_what_is_left_out_is_counted(tmp_path: Path) -> None:
    cities = ["Porto", "Lyon", "Graz", "Turku", "Split", "Ghent", "Brno", "Cork", "Bergen",
              "Aarhus", "Bilbao", "Krakow"]
    goods = ["Saffron", "Cobalt", "Walnut", "Linen", "Quartz", "Cocoa", "Amber", "Vinyl"]
    carriers = ["barge", "rail", "truck", "courier", "ferry", "drone", "cargo bike"]
    facts = [f"{goods[n % 8]} batch {n} left {cities[n % 12]} by {carriers[n % 7]} in crate "
             f"{n * 7}." for n in range(80)]
    files = {f"episodic/2026-10-{1 + d:02d}.md": "---\ntype: episodic\n---\n# day\n\n" + "".join(
        f"- {f}\n" for f in facts[d * 10:(d + 1) * 10]) for d in range(8)}
    root = make_vault(tmp_path, files)
    with open_fake(root, tmp_path) as vault:
        with_settings(vault, memory_budget=2500)
        block = block_of(vault)
    assert 0.85 * 2500 <= len(block) <= 2500
    assert "…" not in block  # nothing cut mid-way: a fact is shown whole or not at all
    shown = [f for f in facts if f in block]
    lines = [line for line in block.split("\n") if " batch " in line]
    assert len(lines) == len(shown) > 10
    left = re.search(r"_(\d+) more entries did not fit the 2,500-character budget: "
                     r"`vaultd search <topic>` finds them._$", block)
    assert left is not None and int(left.group(1)) == len(facts) - len(shown)


def test_specific_facts_come_before_generic_ones(tmp_path: Path) -> None:
    generic = [f"Alice values the support and kindness of her friends and family, {w}."
               for w in ("always", "deeply", "truly", "greatly", "really", "dearly",
                         "sincerely", "warmly", "very much", "a lot")]
    specific = ["Alice adopted a beagle named Pepper in Porto.",
                "Alice ran the Lisbon half marathon in 1:52.",
                "Alice's sister Maren studies oboe at the Graz conservatory."]
    body = "".join(f"- {f}\n" for f in generic[:5] + specific + generic[5:])
    root = make_vault(tmp_path, {"episodic/2026-10-01.md": f"# day\n\n{body}",
                                 "episodic/2026-10-02.md": "# day\n\n- Filler entry so the "
                                 "first day's facts are not the recent ones.\n" * 1})
    with open_fake(root, tmp_path) as vault:
        with_settings(vault, memory_budget=700)
        block = block_of(vault)
    for fact in specific:
        assert fact in block
    assert sum(g in block for g in generic) < len(generic)


def test_sections_come_from_the_vaults_own_template(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {
        "procedural/deploy.md": "# Deploy\n\nRun `fly deploy --strategy rolling` from main.\n",
        "semantic/money.md": "---\nstatus: proven\n---\n# Money\n\nAmounts are integer cents "
        "in `amount_minor`.\n",
        ".vaultd/memory_block.md": "## What I know\n{key_facts}\n"})
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
    assert block.startswith("## What I know\n") and "## Procedures" not in block
    assert "Run `fly deploy --strategy rolling` from main." in block  # not lost: a fact here
    assert "Amounts are integer cents in `amount_minor`." in block


def test_what_searches_recall_comes_first(tmp_path: Path) -> None:
    facts = [f"Build {n} of the kiosk firmware ships with locale pack {p}."
             for n, p in ((101, "Basque"), (202, "Faroese"), (303, "Sorbian"), (404, "Manx"))]
    root = make_vault(tmp_path, {"episodic/2026-10-01.md": "# day\n\n" + "".join(
        f"- {f}\n" for f in facts)})
    with open_fake(root, tmp_path) as vault:
        vault.index()
        key = next(row[2] for row in vault.store.entry_rows() if "Sorbian" in row[2])
        for query in ("sorbian locale", "firmware 303", "which build has sorbian"):
            vault.store.add_recalls([("episodic/2026-10-01.md", key)], query, 0.0)
        with_settings(vault, memory_budget=400)  # room for one fact
        block = block_of(vault)
    assert facts[2] in block and sum(f in block for f in facts) == 1


def test_never_over_budget_whatever_the_budget(tmp_path: Path) -> None:
    files = {f"episodic/2026-10-{1 + d:02d}.md": "# day\n\n" + "".join(
        f"## {9 + n}:00 — Event {d}-{n}\nRoom {d * 10 + n} hosted workshop {d}{n} for "
        f"{3 + n} guests. Catering came from stall {n}{d}.\n\n" for n in range(4))
        for d in range(9)}
    names = ("alpha", "beta", "gamma", "delta", "kappa", "sigma")
    colours = ("red", "blue", "green", "amber", "violet", "teal")
    for t in range(8):
        files[f"semantic/topic{t}.md"] = f"# Topic {t}\n\n" + "".join(
            f"- {name.title()} {t} sets the {colour} limit to {t * r + 7} for `{name}{t}`.\n"
            for r, (name, colour) in enumerate(zip(names, colours)))
    for t in range(5):
        files[f"procedural/p{t}.md"] = f"# Procedure {t}\n\nRun `tool{t} --level {t}` twice.\n"
    root = make_vault(tmp_path, files)
    with open_fake(root, tmp_path) as vault:
        for budget in (700, 1100, 1900, 3100, 5000, 8000):
            with_settings(vault, memory_budget=budget)
            block = block_of(vault)
            assert len(block) <= budget, budget
            if "did not fit" in block:  # filled before anything is left out: all but the
                # closing line's reserve and less than one line (quoted lines, from notes
                # outside the agent's memory, cost 4 characters more)
                assert len(block) >= 0.75 * budget, budget
            assert vault.flush().memory_written is False  # idempotent at every budget


def test_a_users_own_notes_are_candidates_too(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"Projects/garden.md": "# Garden\n\nThe quince tree by the "
                                 "north fence was planted in March 2019.\n"})
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
    # quoted: the user's words, not the agent's memory
    assert ("- [“Garden”](Projects/garden.md): “The quince tree by the north fence was planted "
            "in March 2019.”") in block


def test_statements_are_whole_and_skip_what_is_not_a_fact() -> None:
    text = ("What we learned about webhooks. The endpoint is `POST /webhooks/stripe` in "
            "`app/webhooks/stripe.py`.\n\nIt fails with:\n\n```\nSignatureVerificationError: "
            "No signatures found matching\n```\n\n- Stripe retries failed deliveries for three "
            "days — [2026-11-18](../episodic/2026-11-18.md)\n- A bullet that goes on\n  over a "
            "second line of text.\n- [[archive/episodic/2026-06-18]] - a list of sources\n"
            "- See [[release-tallyho]].\n#decision #stripe\n## Retries\n")
    assert statements(text) == [
        "What we learned about webhooks.",
        "The endpoint is `POST /webhooks/stripe` in `app/webhooks/stripe.py`.",
        "Stripe retries failed deliveries for three days",  # its provenance dropped
        "A bullet that goes on over a second line of text.",  # whole, continuation joined
    ]  # not: the lead-in, the code, a source reference, a bare link, tags, a heading


def test_faded_and_merged_entries_leave_memory_md(tmp_path: Path) -> None:
    """Fading lowers prominence: an entry under archive/ is still found by search, but it is
    no longer a MEMORY.md candidate (issue 14, point 1)."""
    root = make_vault(tmp_path, {
        "episodic/2026-11-01.md": "- The kiln thermocouple in Oslo reads 40 degrees low.\n",
        "archive/episodic/2026-10-01.md": "- The Zanzibar ferry leaves Stone Town at 07:00.\n"})
    with open_fake(root, tmp_path) as vault:
        block = block_of(vault)
        assert "The kiln thermocouple in Oslo reads 40 degrees low." in block
        assert "Zanzibar" not in block
        assert [h.archived for h in vault.search("Zanzibar ferry", mode="bm25")] == [True]


def test_a_consolidated_theme_does_not_crowd_out_distinct_facts(tmp_path: Path) -> None:
    """A consolidated note restates one theme: a question about it needs one of its facts, so
    the budget goes to distinct episodes first (locomo-dev: its facts are asked about a third
    as often per fact), and the theme still gets its line."""
    theme = ["John started a weekend yoga class with a colleague.",
             "John's yoga instructor focuses on proper poses.",
             "John attends a yoga studio with a chill vibe.",
             "The yoga studio John attends offers kickboxing too.",
             "John finds yoga awesome for his wellbeing.",
             "John's beginner yoga class helps his flexibility."]
    body = "".join(f"- {f} — [2026-06-1{i}](../archive/episodic/2026-06-1{i}.md)\n"
                   for i, f in enumerate(theme))
    distinct = ["John's sister Ayla moved to Quito in March.",
                "John sold his Vespa for 900 euros.",
                "John's dog Biscuit is afraid of thunder.",
                "John passed the Kraków firefighter exam on his second try.",
                "John's favourite band is Khruangbin."]
    root = make_vault(tmp_path, {
        "episodic/2026-09-01.md": "# day\n\n" + "".join(f"- {f}\n" for f in distinct),
        "episodic/2026-09-02.md": "# day\n\n- Filler so the first day is not recent.\n"})
    vaultd_wrote(root, "semantic/john-yoga.md", "---\ntype: semantic\ntitle: John — yoga\n"
                 f"status: proven\nconsolidation: abc123\n---\n# John — yoga\n\n{body}")
    with open_fake(root, tmp_path) as vault:
        with_settings(vault, memory_budget=800)
        block = block_of(vault)
    assert all(f in block for f in distinct), block
    assert 1 <= sum(f in block for f in theme) < len(theme), block
