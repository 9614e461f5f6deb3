"""Writing to files without ever losing a user's words: every write vaultd makes goes through here.

Every write entry point asks `vaultd.gate` first — which paths vaultd may write at all (inside
the vault, through no link, not in `.git/` or another tool's folder, not a nested vault's, a
regular file with one link) — and takes the vault `root` for it. The package is split by what
is written and how; callers use the names below (`from vaultd import edits; edits.read(...)`):

- `snapshot`: reading a file the way it will be written back (`read`, `Snapshot`, `Form`).
- `atomic`: fsynced temp files and atomic renames, the mode of a new file, the checks before a
  file is replaced (`check_writable`, `atomic_write`).
- `lock`: vaultd's per-path lock under `.vaultd/locks/` (`locked`).
- `exchange`: the swap of a checked file for its new version, held by a read lease so that a
  save landing meanwhile is kept (the design and what remains is its module docstring).
- `checked`: replace, create or remove a vault file only if it still is what vaultd read.
- `appends`: in-place appends (`append_text`, `take_back`) and daily-log entries
  (`append_entry`).
- `own_files`: vaultd's own files in `.vaultd/` (`write_own`, `open_own`, …).
- `outside_vault`: files outside any vault the user asked vaultd to change (`write_config`).
- `frontmatter_lines`: frontmatter keys changed line by line (text in, text out; no file).

A file vaultd cannot rewrite faithfully is refused per file with a `ConflictError` naming it;
on a full disk (or quota) every write is all or nothing and `DiskFullError` names the file.
"""

from __future__ import annotations

from vaultd.edits.appends import MAX_DAILY_LOG_BYTES as MAX_DAILY_LOG_BYTES
from vaultd.edits.appends import MAX_ENTRY_BYTES as MAX_ENTRY_BYTES
from vaultd.edits.appends import append_entry as append_entry
from vaultd.edits.appends import append_text as append_text
from vaultd.edits.appends import check_entry as check_entry
from vaultd.edits.appends import daily_header as daily_header
from vaultd.edits.appends import entry_text as entry_text
from vaultd.edits.appends import take_back as take_back
from vaultd.edits.atomic import TEMP_SUFFIX as TEMP_SUFFIX
from vaultd.edits.atomic import atomic_write as atomic_write
from vaultd.edits.atomic import check_writable as check_writable
from vaultd.edits.atomic import inside as inside
from vaultd.edits.atomic import new_file_mode as new_file_mode
from vaultd.edits.checked import create_new as create_new
from vaultd.edits.checked import per_file as per_file
from vaultd.edits.checked import remove_checked as remove_checked
from vaultd.edits.checked import replace_checked as replace_checked
from vaultd.edits.frontmatter_lines import get_frontmatter as get_frontmatter
from vaultd.edits.frontmatter_lines import set_frontmatter as set_frontmatter
from vaultd.edits.frontmatter_lines import split_frontmatter as split_frontmatter
from vaultd.edits.lock import LOCK_SUFFIX as LOCK_SUFFIX
from vaultd.edits.lock import LOCKS_DIR as LOCKS_DIR
from vaultd.edits.lock import locked as locked
from vaultd.edits.outside_vault import read_config as read_config
from vaultd.edits.outside_vault import remove_config as remove_config
from vaultd.edits.outside_vault import write_config as write_config
from vaultd.edits.own_files import create_own as create_own
from vaultd.edits.own_files import open_own as open_own
from vaultd.edits.own_files import remove_leftover as remove_leftover
from vaultd.edits.own_files import remove_own as remove_own
from vaultd.edits.own_files import replace_own as replace_own
from vaultd.edits.own_files import write_own as write_own
from vaultd.edits.snapshot import UTF8 as UTF8
from vaultd.edits.snapshot import Form as Form
from vaultd.edits.snapshot import Snapshot as Snapshot
from vaultd.edits.snapshot import decode as decode
from vaultd.edits.snapshot import read as read

# the errors a caller catches, importable from here as before
from vaultd.errors import ConflictError as ConflictError
from vaultd.errors import DiskFullError as DiskFullError
from vaultd.errors import OutsideError as OutsideError
from vaultd.errors import RefusedError as RefusedError
from vaultd.errors import UnreadableError as UnreadableError
from vaultd.errors import VaultdError as VaultdError
