"""vaultd's lock for a read-modify-write of one path, shared by every vaultd process and thread.

Lock files live under `.vaultd/locks/`, named by a hash of the path: none beside the notes, and
no name length limit from long note names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from vaultd import gate

# lock files of older versions sat beside notes as `.NAME.vaultd-lock` (doctor lists them)
LOCK_SUFFIX = ".vaultd-lock"
LOCKS_DIR = "locks"  # under `.vaultd/`: one lock file per path written, named by its hash

_held = threading.local()  # the lock keys this thread holds: `locked` is re-entrant


@contextlib.contextmanager
def locked(path: Path, root: Path) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of `path` among vaultd writers (every
    process and thread; re-entrant within a thread). The lock file is
    `.vaultd/locks/HASH.lock` of the vault `root`, HASH of the path relative to the vault
    (absolute when outside it, e.g. a declared route target): nothing beside the notes, and no
    file name length limit. The lock file is one of vaultd's own (`gate.own`): never opened
    through a link."""
    import fcntl

    real = os.path.realpath(path)  # one file, one lock, however it is named
    rel = os.path.relpath(real, os.path.realpath(root))
    key = real if rel.startswith("..") else Path(rel).as_posix()
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    lock = gate.own(root, f"{LOCKS_DIR}/{digest}.lock")
    held: set[str] = getattr(_held, "keys", None) or set()
    _held.keys = held
    if str(lock) in held:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(str(lock))
        try:
            yield
        finally:
            held.discard(str(lock))
    finally:
        os.close(fd)  # releases the lock
