"""A quiet and honest first run (issue 26, point 8): the one-time build of the int8 model is
announced step by step (the CLI on stderr, the daemon in its log) instead of a silent wait; a
foreground `vaultd run` logs each line once, the first run too (the quantiser's import adds a
handler to the root logger, which vaultd takes back); MEMORY.md's template holds no prose of its
own that search would find or an agent would read; and `init` makes no empty type folders in a
folder of notes (Obsidian would show them): each is made by the first note written there."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fake_embedder
from daemon_helpers import env_for, vaultd

from vaultd import layout
from vaultd.cli import main
from vaultd.model_build import _quiet_quantizer
from vaultd.notes import heading_of, managed_mask
from vaultd.vault import open_vault, templates_dir

REPO = Path(__file__).resolve().parent.parent
STEPS = ["building the int8 model from", "1/3", "2/3", "3/3", "built the int8 model in"]


def first_run_env(tmp_path: Path) -> dict[str, str]:
    """The real default model with an empty cache: its int8 file is built in this run."""
    env = env_for(tmp_path)
    del env["VAULTD_EMBEDDING_MODEL"]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def small_vault(tmp_path: Path) -> Path:
    root = tmp_path / "vault"
    made = CliRunner().invoke(main, ["init", str(root)])
    assert made.exit_code == 0, made.output
    (root / "semantic").mkdir(exist_ok=True)
    (root / "semantic" / "otters.md").write_text("# Otters\n\nOtters hold hands asleep.\n",
                                                 encoding="utf-8")
    return root


@pytest.mark.slow
@pytest.mark.model
def test_a_first_foreground_run_announces_the_build_and_logs_each_line_once(
        tmp_path: Path) -> None:
    root = small_vault(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root), "run"],
                            env=first_run_env(tmp_path), cwd=str(root), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    try:  # until the first index has its vectors (or the deadline), and a moment more
        while time.monotonic() < deadline and proc.poll() is None \
                and not any("every chunk has its vector" in line for line in lines):
            time.sleep(0.2)
        time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)
    log = [line.rstrip("\n") for line in lines]
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ vaultd[\w.]*: (.*)$")
    assert all(stamped.match(line) for line in log), "\n".join(log)  # no second format
    messages = [stamped.match(line).group(1) for line in log]  # type: ignore[union-attr]
    assert len(messages) == len(set(messages)), "\n".join(log)  # each line once
    said = [next(i for i, m in enumerate(messages) if step in m) for step in STEPS]
    serving = next(i for i, m in enumerate(messages) if "serving" in m)
    assert said == sorted(said) and said[-1] < serving  # in order, before it serves


@pytest.mark.slow
@pytest.mark.model
def test_the_cli_announces_the_build_on_stderr_before_its_progress(tmp_path: Path) -> None:
    root = small_vault(tmp_path)
    result = vaultd(root, "index", env=first_run_env(tmp_path), timeout=240)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    said = [next(i for i, line in enumerate(err) if step in line) for step in STEPS]
    assert said == sorted(said) and all(err[i].startswith("vaultd: ") for i in said)
    assert said[-1] < next(i for i, line in enumerate(err) if line.startswith("reading"))
    (root / "semantic" / "otters.md").write_text("# Otters\n\nOtters sleep afloat.\n",
                                                 encoding="utf-8")
    again = vaultd(root, "index", env=first_run_env(tmp_path), timeout=120)  # the same cache
    assert again.returncode == 0 and "int8" not in again.stderr  # built once, then loaded


def test_the_quantizer_leaves_the_root_logger_as_it_found_it() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with _quiet_quantizer():
        logging.basicConfig(format="%(name)s - %(message)s", level=logging.INFO, force=False)
        if root.handlers == handlers:  # pytest's own handlers stop basicConfig: add one
            root.addHandler(logging.StreamHandler())
    assert root.handlers == handlers and root.level == level


def prose(text: str) -> list[str]:
    """The lines of a MEMORY.md outside vaultd's block that are neither blank nor headings."""
    lines = text.splitlines()
    return [line for line, managed in zip(lines, managed_mask(lines))
            if not managed and line.strip() and not heading_of(line)]


def test_the_memory_template_is_vaultds_block_under_a_heading() -> None:
    assert prose((templates_dir() / layout.MEMORY_FILE).read_text(encoding="utf-8")) == []


def test_a_new_vault_finds_nothing_of_the_template(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    template = (templates_dir() / layout.MEMORY_FILE).read_text(encoding="utf-8")
    words = set(re.findall(r"[A-Za-z]{4,}", template)) - {"vaultd", "begin"}
    with open_vault(root, env={}, embedder=fake_embedder(tmp_path)) as vault:
        vault.index()
        for word in sorted(words):
            assert [h.path for h in vault.search(word, mode="bm25")] == [], word


@pytest.mark.slow
def test_session_start_gives_an_agent_no_template_prose(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    env = env_for(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    try:
        result = subprocess.run([sys.executable, "-m", "vaultd", "--vault", str(root), "hook",
                                 "session-start"], input="{}", env=env, capture_output=True,
                                text=True, timeout=120, cwd=str(root))
    finally:
        vaultd(root, "stop", env=env)
    assert result.returncode == 0, result.stderr
    assert "vaultd:begin" in result.stdout  # MEMORY.md was read
    assert prose(result.stdout) == []


def test_init_on_an_obsidian_vault_makes_no_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "obsidian"
    (root / ".obsidian").mkdir(parents=True)
    (root / "Daily thoughts.md").write_text("# Thoughts\n\nA note of mine.\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(main, ["init", str(root)])
    assert made.exit_code == 0, made.output
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [".obsidian", layout.STATE_DIR]
    # a folder appears with the first note written there
    wrote = runner.invoke(main, ["--vault", str(root), "remember", "otters hold hands"])
    assert wrote.exit_code == 0, wrote.output
    assert len(list((root / "episodic").glob("*.md"))) == 1


@pytest.mark.slow
@pytest.mark.model
def test_vaultd_start_shows_the_build_its_daemon_runs(tmp_path: Path) -> None:
    root = small_vault(tmp_path)
    env = first_run_env(tmp_path)
    try:
        started = vaultd(root, "start", env=env, timeout=240)
        assert started.returncode == 0, started.stderr
        err = started.stderr.splitlines()
        said = [next(i for i, line in enumerate(err) if step in line) for step in STEPS]
        assert said == sorted(said) and all(err[i].startswith("vaultd: ") for i in said)
        assert "daemon running" in started.stdout
    finally:
        vaultd(root, "stop", env=env, timeout=60)
