"""All or nothing on a full disk: every append and replace lands whole or not at all, a full
disk is said as "disk full" with the path (exit 2 from the CLI), and a full disk under the
index is not called a broken index.

Two ways to fill a disk: a short write or ENOSPC injected into `os.write`/`os.fsync` (runs
everywhere), and a real, tiny tmpfs (Linux, when this user may mount one; skipped otherwise)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_vault

from vaultd import edits
from vaultd.cli import main
from vaultd.errors import DiskFullError, IndexCorruptError
from vaultd.store import sqlite_module, unusable

WHEN = dt.datetime(2026, 12, 1, 9, 30)
BIG = " ".join(f"word{i}" for i in range(7000))  # about 60 KB: under MAX_ENTRY_BYTES


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def disk_fills_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """`os.write` as on a disk with `room` bytes left: a write gets what fits (a short count),
    the next one fails with ENOSPC."""
    real = os.write
    left = [room]

    def write(fd: int, data: bytes) -> int:
        if left[0] <= 0:
            raise _enospc()
        done = real(fd, bytes(data[:left[0]]))
        left[0] -= done
        return done

    monkeypatch.setattr(os, "write", write)


def short_writes(monkeypatch: pytest.MonkeyPatch, most: int) -> None:
    """`os.write` that writes at most `most` bytes a call and never fails (a signal, a pipe-
    like file system): a short count alone is not an error, the rest must follow."""
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:most])))


def daily_log(root: Path) -> Path:
    edits.append_entry(root, "first entry of the day", when=WHEN)
    return root / f"episodic/{WHEN:%Y-%m-%d}.md"


def nothing_written(path: Path) -> str:
    """The whole message of a note write that found the disk full, as a `match` pattern."""
    return f"^{re.escape(str(path))}: disk full; nothing written$"


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(edits.TEMP_SUFFIX)]


# ---------------------------------------------------------------------------- injected


def test_an_append_cut_short_by_a_full_disk_leaves_the_log_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_vault(tmp_path)
    log = daily_log(root)
    before = log.read_bytes()
    with monkeypatch.context() as patch:
        disk_fills_after(patch, 3000)
        with pytest.raises(DiskFullError) as caught:
            edits.append_entry(root, BIG, when=WHEN)
    assert str(caught.value) == f"{log}: disk full; nothing written"
    assert log.read_bytes() == before


def test_an_append_whose_fsync_finds_no_room_is_cut_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems (NFS, thin volumes) only find out at fsync that the bytes do not fit."""
    root = make_vault(tmp_path)
    log = daily_log(root)
    before = log.read_bytes()
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise _enospc()
        real(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        with pytest.raises(DiskFullError, match="disk full"):
            edits.append_entry(root, "second entry", when=WHEN)
    assert log.read_bytes() == before


def test_a_line_another_program_appended_after_a_torn_entry_is_never_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell `>>` lands between our part-written entry and the full disk's error: cutting
    back would drop the person's line, so vaultd leaves both and says where its part is."""
    root = make_vault(tmp_path)
    log = daily_log(root)
    size = log.stat().st_size
    real = os.write

    def write(fd: int, data: bytes) -> int:
        real(fd, bytes(data[:100]))  # part of our entry fits
        with open(log, "ab") as shell:  # the shell's `>>` (buffered I/O: not os.write)
            shell.write(b"echo from a shell\n")
        raise _enospc()

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", write)
        with pytest.raises(edits.ConflictError, match=f"partial entry at byte {size} is left"):
            edits.append_entry(root, BIG, when=WHEN)
    assert log.read_bytes().endswith(b"echo from a shell\n")


def test_a_short_write_is_not_an_end_the_rest_of_the_entry_follows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_vault(tmp_path)
    log = daily_log(root)
    before = log.read_bytes()
    with monkeypatch.context() as patch:
        short_writes(patch, 1000)
        edits.append_entry(root, BIG, when=WHEN)
    after = log.read_bytes()
    assert after.startswith(before)
    assert after.decode("utf-8").rstrip("\n").endswith("word6999")


def test_remember_on_a_full_disk_exits_2_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_vault(tmp_path)
    edits.append_entry(root, "first entry of the day")  # today's log, as `remember` names it
    log = root / f"episodic/{dt.date.today():%Y-%m-%d}.md"
    before = log.read_bytes()
    with monkeypatch.context() as patch:
        disk_fills_after(patch, 3000)
        result = CliRunner().invoke(main, ["--vault", str(root), "remember", BIG])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"vaultd: {log}: disk full; nothing written\n"
    assert log.read_bytes() == before


def test_a_new_daily_log_that_does_not_fit_is_not_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_vault(tmp_path)
    log = root / f"episodic/{WHEN:%Y-%m-%d}.md"
    with monkeypatch.context() as patch:
        disk_fills_after(patch, 3000)
        with pytest.raises(DiskFullError, match=nothing_written(log)):
            edits.append_entry(root, BIG, when=WHEN)
    assert not log.exists()
    assert temp_files(log.parent) == []


def test_a_replace_that_does_not_fit_keeps_the_note_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_vault(tmp_path, {"semantic/deploy.md": "# Deploy\n\nfly deploy\n"})
    note = root / "semantic/deploy.md"
    snapshot = edits.read(note)
    with monkeypatch.context() as patch:
        disk_fills_after(patch, 3000)
        with pytest.raises(DiskFullError, match=nothing_written(note)):
            edits.replace_checked(snapshot, snapshot.text + BIG, root=root)
    assert note.read_bytes() == snapshot.data
    assert temp_files(note.parent) == []


def test_an_index_write_that_finds_the_disk_full_is_not_called_a_broken_index(
        tmp_path: Path) -> None:
    """SQLite's own "database or disk is full" (SQLITE_FULL), made real by a page limit."""
    index = tmp_path / "index.db"
    conn = sqlite_module().connect(str(index))
    conn.execute("CREATE TABLE t (x)")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite_module().OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    conn.close()
    problem = unusable(index, caught.value)
    assert isinstance(problem, DiskFullError) and not isinstance(problem, IndexCorruptError)
    assert str(problem).startswith(f"{index}: disk full; the index is intact")
    assert "doctor --fix" not in str(problem)


# ---------------------------------------------------------------------------- a real small disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on its own 16 MiB tmpfs, unmounted afterwards."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("a tmpfs mount needs Linux and mount(8)")
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no reason given"])[0]
        pytest.skip(f"may not mount a tmpfs here (needs root or CAP_SYS_ADMIN): {why}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)  # still busy: detach


def fill(disk: Path, leave: int) -> Path:
    """Fill the file system of `disk`, then free `leave` bytes; the filler file's path."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.fixture
def vaultd(tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    """Run `vaultd ARGS` in-process with the fake embedder: (exit code, stdout, stderr). The
    click Result is not kept: its traceback would hold the in-process vault, and so its index
    files, open on the small disk, which then could not be unmounted."""
    runner = CliRunner(env={"VAULTD_VAULT": None, "VAULTD_CACHE_DIR": str(tmp_path / "cache"),
                            "VAULTD_EMBEDDING_MODEL": "hash-256"})

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run


def test_remember_on_a_small_full_disk_writes_nothing_and_exits_2(
        small_disk: Path, vaultd: Callable[..., tuple[int, str, str]]) -> None:
    root = make_vault(small_disk)
    code, out, err = vaultd("--vault", str(root), "remember", "first entry of the day")
    assert code == 0, err
    log = root / out.split(":", 1)[0]
    before = log.read_bytes()
    filler = fill(small_disk, 8192)
    code, out, err = vaultd("--vault", str(root), "remember", BIG)
    assert (code, err) == (2, f"vaultd: {log}: disk full; nothing written\n")
    assert log.read_bytes() == before
    filler.unlink()  # room again: the same entry lands whole
    code, out, err = vaultd("--vault", str(root), "remember", BIG)
    assert code == 0, err
    assert log.read_text(encoding="utf-8").rstrip("\n").endswith("word6999")


def test_a_replace_on_a_small_full_disk_keeps_the_note(small_disk: Path) -> None:
    root = make_vault(small_disk, {"semantic/deploy.md": "# Deploy\n\nfly deploy\n"})
    note = root / "semantic/deploy.md"
    snapshot = edits.read(note)
    fill(small_disk, 8192)
    with pytest.raises(DiskFullError, match=nothing_written(note)):
        edits.replace_checked(snapshot, snapshot.text + BIG, root=root)
    assert note.read_bytes() == snapshot.data
    assert temp_files(note.parent) == []


def test_indexing_on_a_small_full_disk_says_disk_full_and_the_index_survives(
        small_disk: Path, vaultd: Callable[..., tuple[int, str, str]]) -> None:
    root = make_vault(small_disk, {"semantic/deploy.md": "# Deploy\n\nfly deploy\n"})
    assert vaultd("--vault", str(root), "index")[0] == 0
    (root / "semantic/big.md").write_text(
        "".join(f"## part {i}\nzanzibar {BIG[:3000]}\n\n" for i in range(20)), encoding="utf-8")
    filler = fill(small_disk, 64 * 1024)
    code, _, err = vaultd("--vault", str(root), "index")
    assert code == 2, err
    assert f"vaultd: {root / '.vaultd' / 'index.db'}: disk full; the index is intact" in err
    assert "not a usable" not in err and "doctor --fix" not in err
    filler.unlink()
    assert vaultd("--vault", str(root), "index")[0] == 0
    code, out, err = vaultd("--vault", str(root), "search", "--local", "zanzibar")
    assert code == 0 and "big.md" in out, err
