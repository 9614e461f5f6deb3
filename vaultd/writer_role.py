"""Which machine writes a vault that several machines share.

A vault synced by Syncthing, git or iCloud may have a daemon on each machine. Each indexes and
searches its copy, but only one may run the phases that write the notes — the lifecycle's
phases, flush's MEMORY.md and routed blocks, the `related:` mirror — or the machines would make
the same edits twice and the sync tool would turn them into conflict copies.

`[lifecycle] writer` names that machine by host name (`vaultd init` writes this machine's; a
config without it means any machine, as before). Host names compare without case, and a bare
name matches its qualified form (`studio` matches `studio.local`, which macOS reports on some
networks): on one vault, machines are told apart by the first label.

When the index is shared in PostgreSQL, the daemons' lease decides instead of the host name
(`vaultd.daemon.leadership`): the role then carries the lease's one line and whether this
daemon leads.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from vaultd.errors import VaultdError

ENV = "VAULTD_LIFECYCLE_WRITER"


class NotWriterError(VaultdError):
    """A writing job asked on a machine that is not the vault's writer."""


def this_host() -> str:
    return socket.gethostname()


def same_host(a: str, b: str) -> bool:
    a, b = a.strip().lower().rstrip("."), b.strip().lower().rstrip(".")
    if a == b:
        return True
    if "." in a and "." in b:
        return False
    return a.split(".", 1)[0] == b.split(".", 1)[0]


@dataclass(frozen=True)
class WriterRole:
    """This machine's part in a shared vault: `writer` as configured ("" = any machine); on a
    shared index, `lease` (the lease's line: "leader (…)" or "reader (…)", "" otherwise) and
    `leads` decide instead."""

    writer: str
    host: str
    lease: str = ""
    leads: bool = False

    @property
    def writes(self) -> bool:
        if self.lease:
            return self.leads
        return not self.writer.strip() or same_host(self.writer, self.host)

    def summary(self) -> str:
        if self.lease:
            return self.lease
        if not self.writer.strip():
            return f"any machine writes ([lifecycle] writer is not set; this is {self.host})"
        if self.writes:
            return f"this machine ({self.host}) is the writer: it runs the lifecycle and flush"
        return (f"{self.writer} is the writer; this machine ({self.host}) indexes and searches "
                "only")

    def to_dict(self) -> dict[str, Any]:
        lease = {"lease": self.lease, "leads": self.leads} if self.lease else {}
        return {"writer": self.writer, "host": self.host, "writes": self.writes,
                "summary": self.summary(), **lease}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriterRole:
        return cls(data["writer"], data["host"], data.get("lease", ""),
                   bool(data.get("leads", False)))

    def check(self, what: str) -> None:
        """Raise NotWriterError, naming the writer, unless this machine may run `what`."""
        if self.lease and not self.leads:
            raise NotWriterError(
                f"{what} writes to the vault, and only the leader of the shared index may: "
                f"here is a {self.lease}; run it through the leader's daemon")
        if not self.writes:
            raise NotWriterError(
                f"{what} writes to the vault, and only {self.writer} may ([lifecycle] writer; "
                f"this machine is {self.host}): run it on {self.writer}, or make this machine "
                f"the writer in .vaultd/config.toml ({ENV}={self.host} for one run)")


def role(writer: str, host: str | None = None) -> WriterRole:
    return WriterRole(writer.strip(), this_host() if host is None else host)


def config_with_writer(template: str, host: str | None = None) -> str:
    """The config template with `writer` set to this machine (what `vaultd init` writes)."""
    from vaultd.config import set_default

    return set_default(template, "writer", this_host() if host is None else host)
