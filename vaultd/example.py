"""The example vault: `vaultd init --example DIR` copies the bundled sample vault (the memory of
an agent working on a payments API) into DIR and makes it a vault there.

Trying vaultd on a copy is the point: the daemon's lifecycle rewrites daily logs, merges and
archives entries and writes MEMORY.md, which on the sample vault itself would change the files
a clone of the repository tracks.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vaultd import layout
from vaultd.errors import VaultdError

SAMPLE_DIR = "sample_vault"


def example_dir() -> Path:
    """The sample vault: inside the wheel as `vaultd/sample_vault`; in a source checkout, the
    repository's top-level `sample_vault/`."""
    packaged = Path(str(resources.files("vaultd"))) / SAMPLE_DIR
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / SAMPLE_DIR


def example_notes(source: Path) -> list[Path]:
    """The sample vault's notes, relative to it: not what a run in place left there
    (`.vaultd/`) nor anything else vaultd ignores, and never through a link."""
    ignore = layout.Ignore()
    return sorted(p.relative_to(source) for p in source.rglob("*")
                  if p.is_file() and not p.is_symlink()
                  and not ignore.ignored(p.relative_to(source).as_posix()))


def copy_example(dest: Path, source: Path | None = None) -> list[str]:
    """Copy the sample vault's notes into `dest`, which must be missing or empty (an example
    never lands among a user's own notes). Returns the vault-relative paths written."""
    from vaultd import edits

    source = example_dir() if source is None else source
    if not source.is_dir():
        raise VaultdError(f"the example vault is missing from this installation ({source}); "
                          "reinstall vaultd")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise VaultdError(f"{dest} is not empty: `vaultd init --example` copies the sample "
                          "vault into a new or empty folder; name another one")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for rel in example_notes(source):
        edits.create_new(dest / rel, (source / rel).read_text(encoding="utf-8"), root=dest)
        written.append(rel.as_posix())
    return written
