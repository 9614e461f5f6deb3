"""Which vault a shared index holds: the check that keeps two vaults pointed at one PostgreSQL
database by mistake from deleting each other's rows.

A reconcile deletes every indexed note the vault does not have. On the SQLite file that is
always right (the file lives in the vault's own `.vaultd/`); on a database another vault may
have indexed, it would wipe that vault's index, and its daemon would wipe this one's back.

The database's meta holds a random id, written by the first vault that indexes it (with where
that vault was, for the message). A vault that has checked the database keeps the id in its own
`.vaultd/` (local to the machine, like the index's other state): the same id, and the check is
one meta read. A vault meeting the database for the first time (a new clone of the team's vault
repository, a new container, a database that predates the id) is the same vault when at least
half of the notes the database holds (a sample of them, MEMORY.md and the agents' own files at
the top left out: most vaults have them) are in it: clones of one repository
share their paths; a different vault shares none. Otherwise it is refused before anything is
written, naming both. No id is written into the vault's synced files, so clones never
conflict over one, and a vault whose notes were moved or renamed wholesale after it was checked
is still recognised by its id.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from vaultd import edits, layout
from vaultd.errors import VaultMismatchError
from vaultd.store import IndexStore
from vaultd.store.shown import shown
from vaultd.writer_role import this_host

ID_META = "vault_id"  # the database's: the id of the vault it indexes
NAME_META = "vault_name"  # the database's: where that vault was first indexed from
LOCAL_FILE = "index_vault_id"  # the vault's, in `.vaultd/`: the id it checked
SAMPLE = 500  # indexed notes looked at when a vault meets a database for the first time
COMMON = frozenset((layout.MEMORY_FILE, *layout.AGENT_LOADED))


def check_vault(root: Path, store: IndexStore, url: str) -> None:
    """Refuse (`VaultMismatchError`, nothing written) when the index at `url` holds another
    vault; record the identity when it holds this one or nothing yet. `url` "" (the SQLite
    file in the vault itself) is never checked."""
    if not url:
        return
    held = store.get_meta(ID_META)
    local = _local_id(root)
    if held is not None and held == local:
        return
    # (MEMORY.md and the agents' own files at the top are in most vaults: they tell nothing)
    known = sorted(p for p in store.file_states() if p not in COMMON)
    step = max(1, len(known) // SAMPLE)
    sample = known[::step][:SAMPLE]
    present = sum(1 for rel in sample if (root / rel).is_file())
    if sample and present * 2 < len(sample):
        name = store.get_meta(NAME_META) or "another vault"
        raise VaultMismatchError(
            f"the PostgreSQL index at {shown(url)} holds another vault's notes ({name}: "
            f"{len(known)} notes, {present} of {len(sample)} looked at are in {root}); "
            f"indexing {root} there would delete that vault's rows, so nothing was written. "
            "Give this vault a database of its own ([index] url or VAULTD_INDEX_URL)")
    if held is None:
        held = secrets.token_hex(16)
        with store.transaction():
            store.set_meta(ID_META, held)
            store.set_meta(NAME_META, f"{root} on {this_host()}")
    edits.write_own(root, LOCAL_FILE, held + "\n")


def _local_id(root: Path) -> str | None:
    try:
        return (layout.state_dir(root) / LOCAL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
