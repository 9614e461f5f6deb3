"""Per-client tokens of a team server: named, revocable, kept hashed in `.vaultd/clients.json`.

A daemon bound to a non-loopback `[server] host` (a team server) accepts a request from the
network only with one of these tokens (`guards.check_client`); the single `.vaultd/token` of a
loopback daemon stays on this machine. `vaultd token add NAME` makes a token, shows it once and
keeps only its SHA-256, with the name and the time it was made; `revoke` removes the entry. The
file is written through `vaultd.edits` (atomically, mode 0600, under the path's lock, so two
`token add` at once both land), and a running daemon reads it again whenever it changes
(`ClientTokens.digests`, one `stat` a request), so a revoked token is refused at its next
request, without a restart.

Why a plain SHA-256 and not a password hash (bcrypt, scrypt, argon2): those are slow on purpose
to make guessing a low-entropy password from a stolen hash expensive; a token here is 32 random
bytes (`secrets.token_urlsafe(32)`, 256 bits), which no amount of guessing finds, so a slow
hash would buy nothing and cost every request its time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vaultd import layout
from vaultd.errors import ConfigError, VaultdError

FILE = "clients.json"
FORMAT = 1  # the file's `version`; a newer one is refused, never half-read
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ClientToken:
    """One client's entry: its name, when its token was made (UTC, ISO 8601) and the token's
    SHA-256 (hex). The token itself is never stored."""

    name: str
    created: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "created": self.created, "sha256": self.sha256}


def digest(token: str) -> str:
    """The hex SHA-256 a token is stored and compared as (why not a slow hash: module doc)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise VaultdError(f"client token name {name!r}: use 1 to 64 letters, digits, '.', '_', "
                          "'-' or '@', starting with a letter or digit (e.g. alice, ci-runner)")


def path_of(root: Path) -> Path:
    return layout.state_dir(root) / FILE


class ClientTokens:
    """The client tokens of the vault at `root`: listed, added and revoked by the CLI, read by
    the daemon on every request (cheaply: the file is parsed again only when it changed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime ns, size) last parsed
        self._digests: dict[str, str] = {}

    @property
    def path(self) -> Path:
        return path_of(self.root)

    def entries(self) -> list[ClientToken]:
        """Every client, oldest first; [] when the file does not exist."""
        return _parse(self.path, self._read())

    def add(self, name: str) -> tuple[ClientToken, str]:
        """A new client `name`: its entry and its token, which only the caller ever sees."""
        import secrets

        from vaultd import edits

        check_name(name)
        with edits.locked(self.path, self.root):
            clients = self.entries()
            same = next((c for c in clients if c.name == name), None)
            if same is not None:
                raise VaultdError(f"a client token named {name!r} exists already (made "
                                  f"{same.created}); pick another name, or `vaultd token "
                                  f"revoke {name}` first")
            token = secrets.token_urlsafe(32)
            created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
            entry = ClientToken(name, created.replace("+00:00", "Z"), digest(token))
            self._write([*clients, entry])
        return entry, token

    def revoke(self, name: str) -> ClientToken:
        """Remove client `name`; its token is refused from the daemon's next request on."""
        from vaultd import edits

        with edits.locked(self.path, self.root):
            clients = self.entries()
            gone = next((c for c in clients if c.name == name), None)
            if gone is None:
                known = ", ".join(c.name for c in clients) or "none"
                raise VaultdError(f"no client token named {name!r} (clients: {known})")
            self._write([c for c in clients if c.name != name])
        return gone

    def digests(self) -> dict[str, str]:
        """name → token digest, as the file holds them now: parsed again when the file was
        replaced or changed since the last call (every write replaces it: a new inode), so a
        revocation takes effect at the next request. A file that cannot be read or parsed
        raises (ConfigError, naming it): a team server then refuses clients rather than
        serve a list it cannot read."""
        path = self.path
        try:
            st = os.stat(path)
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen is None:
                self._seen, self._digests = None, {}
            elif seen != self._seen:
                self._digests = {c.name: c.sha256 for c in self.entries()}
                self._seen = seen
            return dict(self._digests)

    def _read(self) -> str | None:
        from vaultd import gate

        path = gate.own(self.root, FILE)  # a planted link must not choose who gets in
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from exc

    def _write(self, clients: list[ClientToken]) -> None:
        from vaultd import edits

        data = {"version": FORMAT, "clients": [c.to_dict() for c in clients]}
        edits.write_own(self.root, FILE, json.dumps(data, indent=2) + "\n", mode=0o600)


def _parse(path: Path, text: str | None) -> list[ClientToken]:
    """The file's entries; ConfigError naming the file and what is wrong with it."""
    if text is None:
        return []
    fix = "fix it, or remove it and add the clients again with `vaultd token add NAME`"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise ConfigError(f"{path}: expected an object with a \"clients\" list; {fix}")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT:
        raise ConfigError(f"{path}: format version {version!r} is not one this vaultd reads "
                          f"(it reads {FORMAT}); a newer vaultd wrote it")
    out: list[ClientToken] = []
    for i, item in enumerate(data["clients"]):
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("name", "created", "sha256")):
            raise ConfigError(f"{path}: client {i + 1} needs string name, created and sha256; "
                              f"{fix}")
        if not NAME_RE.match(item["name"]) or not _DIGEST_RE.match(item["sha256"]):
            raise ConfigError(f"{path}: client {i + 1} ({item['name']!r}) has a bad name or "
                              f"sha256; {fix}")
        out.append(ClientToken(item["name"], item["created"], item["sha256"]))
    return out
