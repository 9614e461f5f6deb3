"""The README's quickstart leaves the clone as it was (issue 26, points 1 and 3): every install
line names vaultd's own distribution (`vaultd` on the package index is an unrelated project),
and the first command runs the daemon's lifecycle on a copy of the sample vault, so however
long it runs, `git status` of the clone stays empty."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vaultd import DISTRIBUTION
from vaultd.cli import main
from vaultd.example import example_notes
from vaultd.lifecycle import PHASE_NAMES
from vaultd.vault import open_vault

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
INSTALL = re.compile(r"\b(?:pipx|pip|uv pip|uv tool) install\b")


def install_targets(text: str) -> list[str]:
    """What each `pip install ...` in a text installs: its words up to the end of the command
    (a backtick, a closing parenthesis or quote, a line end), a command wrapped over lines of
    Python source or prose joined first."""
    joined = re.sub(r"[\"']?\s*\n\s*(?:#\s*)?[\"f]*", " ", text)  # "...install "\n  "'x'"
    out = []
    for match in INSTALL.finditer(joined):
        tail = re.split(r"[`)\n;]|\" |&&", joined[match.end():match.end() + 200])[0]
        for word in tail.split():
            word = word.strip("'\"").rstrip(",")
            word = word.rstrip(".") if len(word) > 1 else word  # "... vaultd-memory."
            if word and not word.startswith("-"):
                out.append(word)
    return out


def test_install_targets_are_read_from_prose_and_wrapped_source() -> None:
    source = ('raise E("no tiktoken (pip install "\n        "\'vaultd[openai]\')")\n'
              "Fix: `pip install --force-reinstall vaultd-memory` or `pipx install .`\n"
              "`.venv/bin/pip install -e '.[test]' && pytest`")
    assert install_targets(source) == ["vaultd[openai]", "vaultd-memory", ".", ".[test]"]


def test_every_install_line_names_the_distribution_in_pyproject() -> None:
    name = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    assert name == DISTRIBUTION != "vaultd"
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "vaultd").rglob("*.py"))]
    wrong = []
    for path in files:
        for target in install_targets(path.read_text(encoding="utf-8")):
            project = re.match(r"[\w.{}-]*", target).group(0)  # type: ignore[union-attr]
            if project.lower().startswith("vaultd") and project not in (name,
                                                                         "{DISTRIBUTION}"):
                wrong.append(f"{path.relative_to(REPO)}: pip install {target}")
    assert wrong == []
    assert f"pipx install {name}" in README  # and the README says what it is called


def quickstart() -> tuple[list[str], str]:
    """The README's first command: the arguments of its `vaultd init`, and the vault its
    `vaultd --vault X run` runs on."""
    first = re.findall(r"```sh\n(.*?)\n```", README.split("\n## Quickstart\n", 1)[1],
                       flags=re.S)[0]
    steps = [shlex.split(step) for step in first.split("&&")]
    init = next(s for s in steps if s[0].endswith("vaultd") and s[1] == "init")
    run = next(s for s in steps if s[0].endswith("vaultd") and s[-1] == "run")
    return init[1:], run[run.index("--vault") + 1]


def git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t",
                           "-c", "commit.gpgsign=false", *args], cwd=clone, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_quickstart_runs_the_lifecycle_and_leaves_the_clone_clean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clone = tmp_path / "clone"  # what a fresh clone holds of what the quickstart touches
    clone.mkdir()
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    for rel in example_notes(REPO / "sample_vault"):
        (clone / "sample_vault" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "sample_vault" / rel, clone / "sample_vault" / rel)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "clone")

    init_args, vault_arg = quickstart()
    monkeypatch.chdir(clone)
    result = CliRunner().invoke(main, init_args)
    assert result.exit_code == 0, result.output
    root = (clone / vault_arg).resolve()
    assert (root / ".vaultd").is_dir() and not (clone / "sample_vault" / ".vaultd").exists()

    # what `vaultd run` does with it, however long it runs: index, then every scheduled job
    # (the lifecycle's phases and the flush), again months later when entries have faded
    env = {"VAULTD_EMBEDDING_MODEL": "hash-256", "VAULTD_CACHE_DIR": str(tmp_path / "cache")}
    before = {p: p.read_bytes() for p in root.rglob("*.md")}
    with open_vault(root, env=env, daemon="never") as vault:
        vault.index()
        for today in (None, dt.date.today() + dt.timedelta(days=120)):
            vault.lifecycle(list(PHASE_NAMES), **({"today": today} if today else {}))
            vault.flush()
            vault.index()
    after = {p: p.read_bytes() for p in root.rglob("*.md")}
    assert after != before, "the lifecycle changed nothing: this run proves nothing"
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""


def test_init_example_copies_into_a_new_folder_only(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["init", "--example", str(tmp_path / "try")])
    assert result.exit_code == 0, result.output
    notes = sorted(p.relative_to(tmp_path / "try").as_posix()
                   for p in (tmp_path / "try").rglob("*.md"))
    assert notes == sorted(p.as_posix() for p in example_notes(REPO / "sample_vault"))
    again = runner.invoke(main, ["init", "--example", str(tmp_path / "try")])  # the quickstart
    assert again.exit_code == 0 and "already a vault" in again.output  # run a second time

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "note.md").write_text("my own note\n", encoding="utf-8")
    refused = runner.invoke(main, ["init", "--example", str(mine)])
    assert refused.exit_code == 2 and "is not empty" in refused.output
    assert sorted(p.name for p in mine.iterdir()) == ["note.md"]
