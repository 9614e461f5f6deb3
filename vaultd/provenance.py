"""Provenance: the claims in frontmatter that give a note vaultd's authority, sealed so that
vaultd acts only on claims it can verify it wrote.

A vault is untrusted input (synced, cloned, full of web clippings), and some frontmatter keys
make vaultd act: `status: proven` routes a note's text into CLAUDE.md and MEMORY.md,
`consolidation` / `consolidated_from` / `consolidated_hashes` make crash recovery and `undo`
move entries, `extracted_from` makes a note vaultd's own (the lifecycle may change it), and an
archive's `archived_from` or `archived:` records say where `restore` writes. Any note can say
any of these about itself, so each claim vaultd writes carries a MAC: HMAC-SHA256 under a
per-vault key kept in `.vaultd/seal.key` (0600; never in the index, which is a cache and must
stay derivable from the files plus this key).

What a MAC covers, so that a claim cannot be copied onto other text:
- a whole note's claims: the covered keys' values and the note's body (its one entry's content
  hash, which the index stores) — `vaultd_seal: "<key,key,…>:<mac>"`; an edit of the body or
  of a covered value voids the seal, and vaultd then treats every claim as the user's words;
- a daily log's per-entry `proven`: the entry's key and content hash, in `vaultd: {seals:
  {<entry key>: <mac>}}` beside the `proven` list;
- an archive record (`archived:` in an archived daily log): the record's fields, in its own
  `seal` field.

A claim that fails the check is ignored for every write and reported by `vaultd doctor`
(`unverified`). A vault synced to another machine keeps its claims only where that machine has
the same key (copy `.vaultd/seal.key` to the writer).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd.layout import state_dir

if TYPE_CHECKING:
    from vaultd.notes import Note

KEY_FILE = "seal.key"
SEAL = "vaultd_seal"  # a whole note's seal: "<covered keys, comma-separated>:<mac>"
# The frontmatter keys of a whole note that carry vaultd's authority.
NOTE_CLAIMS = ("status", "consolidation", "consolidated_from", "consolidated_hashes",
               "extracted_from", "archived_at", "archived_reason", "archived_from")
RECORD_SEAL = "seal"  # an archive record's own MAC field
DAILY_SEALS = "seals"  # under a daily log's `vaultd:` key: {entry key: MAC of its `proven`}
_MAC_HEX = 32


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, default=str,
                      separators=(",", ":"))


class Seals:
    """MACs under one vault's key. Build with `Seals.of_vault(root)` (creates the key on first
    use) or `Seals(key)`; `Seals.none()` verifies nothing (a caller with no key)."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @classmethod
    def none(cls) -> Seals:
        return cls(None)

    @classmethod
    def of_vault(cls, root: Path, *, create: bool = True) -> Seals:
        """The vault's seals; the key is made (32 random bytes, mode 0600) when missing and
        `create` is set, else a vault without a key verifies nothing."""
        path = state_dir(root) / KEY_FILE
        try:
            st = os.lstat(path)
            if st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
                # a key others can read (or a link, or one a clone brought along: git and
                # archives give files 0644) may be anyone's: it verifies nothing (doctor says)
                return cls.none()
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
            return cls(key) if len(key) >= 16 else cls.none()
        except FileNotFoundError:
            if not create or not state_dir(root).is_dir():
                return cls.none()
        except (ValueError, OSError):
            return cls.none()  # an unreadable or mangled key verifies nothing: doctor says so
        _create_key(root)
        return cls.of_vault(root, create=False)

    @property
    def active(self) -> bool:
        return self._key is not None

    def mac(self, kind: str, payload: Any) -> str:
        if self._key is None:
            return ""
        msg = f"vaultd/{kind}\0{_canonical(payload)}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def _ok(self, kind: str, payload: Any, given: Any) -> bool:
        if self._key is None or not isinstance(given, str) or len(given) != _MAC_HEX:
            return False
        return hmac.compare_digest(self.mac(kind, payload), given)

    # -- a whole note: its claims and its body
    def note_seal(self, frontmatter: Mapping[str, Any], entry_hash: str,
                  keys: Iterable[str]) -> str:
        """The `vaultd_seal` value vouching for `keys` of `frontmatter` on this body."""
        covered = sorted({k for k in keys if k in frontmatter and k in NOTE_CLAIMS})
        payload = {"claims": {k: frontmatter[k] for k in covered}, "entry": entry_hash}
        return f"{','.join(covered)}:{self.mac('note', payload)}"

    def claims_of(self, note: Note) -> frozenset[str]:
        """The claim keys of a parsed whole note that vaultd verifiably wrote on its body."""
        return self.note_claims(note.frontmatter, note.entries[0].hash) if note.entries \
            else frozenset()

    def note_claims(self, frontmatter: Mapping[str, Any], entry_hash: str) -> frozenset[str]:
        """The claim keys of a whole note that vaultd verifiably wrote on this body."""
        raw = frontmatter.get(SEAL)
        if not isinstance(raw, str) or ":" not in raw:
            return frozenset()
        names, _, given = raw.rpartition(":")
        covered = sorted({k for k in names.split(",") if k})
        if not covered or any(k not in NOTE_CLAIMS or k not in frontmatter for k in covered):
            return frozenset()
        payload = {"claims": {k: frontmatter[k] for k in covered}, "entry": entry_hash}
        return frozenset(covered) if self._ok("note", payload, given) else frozenset()

    # -- a daily log entry's `proven`
    def entry_mac(self, key: str, entry_hash: str) -> str:
        return self.mac("proven", {"key": key, "entry": entry_hash})

    def entry_proven(self, state: Mapping[str, Any], key: str, entry_hash: str) -> bool:
        """Whether a daily log's `vaultd:` state verifiably marks this entry proven."""
        proven, seals = state.get("proven"), state.get(DAILY_SEALS)
        return (isinstance(proven, list) and key in proven and isinstance(seals, dict)
                and self._ok("proven", {"key": key, "entry": entry_hash}, seals.get(key)))

    # -- an archive record
    def sealed_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in record.items() if k != RECORD_SEAL}
        return {**body, RECORD_SEAL: self.mac("archived", _record_payload(body))}

    def record_ok(self, record: Mapping[str, Any]) -> bool:
        body = {k: v for k, v in record.items() if k != RECORD_SEAL}
        return self._ok("archived", _record_payload(body), record.get(RECORD_SEAL))


def _create_key(root: Path) -> None:
    """A new key file, 0600 from its first byte; a key another process made first is kept."""
    from vaultd.edits import ConflictError, create_own

    with contextlib.suppress(ConflictError):
        create_own(root, KEY_FILE, secrets.token_hex(32) + "\n", mode=0o600)


def _record_payload(record: Mapping[str, Any]) -> dict[str, str]:
    """A record's fields as text: YAML may read `left: 0` back as an int or a key that looks
    like a date as a string; the MAC must not depend on that."""
    return {str(k): str(v) for k, v in record.items()}


def seal_note_text(seals: Seals, path: str, text: str, keys: Iterable[str]) -> str:
    """`text` (a whole note) with a `vaultd_seal` vouching for `keys` of its frontmatter, as
    they read back from the text itself (so what is verified is exactly what is on disk). No
    seal (the key removed) when `keys` names no claim present or the vault has no key."""
    from vaultd.edits import set_frontmatter
    from vaultd.notes import parse

    unsealed = set_frontmatter(text, {SEAL: None})
    note = parse(path, unsealed)
    fm = note.frontmatter
    wanted = [k for k in keys if k in fm and k in NOTE_CLAIMS]
    if not wanted or not seals.active or not note.entries:
        return unsealed
    return set_frontmatter(unsealed, {SEAL: seals.note_seal(fm, note.entries[0].hash, wanted)})


def unverified(frontmatter: Mapping[str, Any], entry_hash: str | None, is_daily: bool,
               seals: Seals, entries: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The claims a note makes that vaultd cannot verify, for `vaultd doctor`: each as the key
    (and, for a daily log, the entry) it names. `entries` is a daily log's (key, hash) pairs."""
    out: list[str] = []
    if is_daily:
        state = frontmatter.get("vaultd")
        state = state if isinstance(state, dict) else {}
        hashes = dict(entries)
        proven = state.get("proven")
        for key in proven if isinstance(proven, list) else []:
            if not seals.entry_proven(state, str(key), hashes.get(str(key), "")):
                out.append(f"proven ({str(key)[:60]})")
        records = frontmatter.get("archived")
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and not seals.record_ok(record):
                out.append(f"archived record ({str(record.get('key', ''))[:60]})")
        return out
    claims = [k for k in NOTE_CLAIMS if k in frontmatter
              and (k != "status" or str(frontmatter[k]).lower() == "proven")]
    good = seals.note_claims(frontmatter, entry_hash or "")
    return [k for k in claims if k not in good]


def key_problem(root: Path) -> str | None:
    """Why the vault's key cannot verify anything, or None (no key yet is not a problem)."""
    path = state_dir(root) / KEY_FILE
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):  # never opened: a FIFO would block the read
        return f"{path}: not a regular file; every claim in the vault is unverified"
    if st.st_mode & 0o077:
        return (f"{path}: readable by others (mode {st.st_mode & 0o777:04o}), so it verifies "
                "nothing: if you made it, `chmod 600` it; if it came with a copy of the vault, "
                "delete it (vaultd makes a new one; claims sealed with the old key stop "
                "counting)")
    try:
        if len(bytes.fromhex(path.read_text(encoding="ascii").strip())) < 16:
            return f"{path}: too short to be vaultd's key"
    except (ValueError, OSError) as exc:
        return f"{path}: not a vaultd key ({exc}); every claim in the vault is unverified"
    return None
