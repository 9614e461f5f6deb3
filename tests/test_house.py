"""The house rules that keep vaultd readable, held by tests so they stay true: one module runs
SQL, each shared fact has one home, and the lifecycle's phase table is the one list of phases."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from vaultd import lifecycle
from vaultd.lifecycle.plans import Phase

PACKAGE = Path(__file__).resolve().parent.parent / "vaultd"
README = PACKAGE.parent / "README.md"


@functools.cache
def sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_only_the_store_runs_sql() -> None:
    calls = re.compile(r"\.(execute|executemany|executescript)\(")
    outside = [f"{rel}:{n}" for rel, text in sources().items() if rel != "store.py"
               for n, line in enumerate(text.splitlines(), 1) if calls.search(line)]
    assert outside == []


@functools.cache
def literals(text: str) -> list[str]:
    """Every string constant of a module (docstrings and comments mention facts freely)."""
    tree = ast.parse(text)
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docs]


@pytest.mark.parametrize(("fact", "home"), [
    ("<!-- vaultd:begin -->", "blocks.py"),
    ("<!-- vaultd:end -->", "blocks.py"),
    (".vaultd-tmp", "edits.py"),
    (".vaultd", "layout.py"),
    ("MEMORY.md", "layout.py"),
])
def test_each_shared_fact_has_one_home(fact: str, home: str) -> None:
    holders = sorted(rel for rel, text in sources().items() if fact in literals(text))
    assert holders == [home]


def test_entry_times_and_hashes_are_read_in_one_place() -> None:
    time_regex = [rel for rel, text in sources().items()
                  if any(r"\d{1,2}:\d{2}" in s for s in literals(text))]
    assert time_regex == ["notes.py"]  # notes.TIME_PREFIX_RE / entry_title
    hashing = [rel for rel, text in sources().items() if "sha256(e.text" in text
               or "sha256(text.encode()).hexdigest()[:32]" in text]
    assert hashing == ["notes.py"]  # notes.entry_hash: the indexer and the lifecycle agree


def test_every_phase_in_the_table_keeps_the_contract() -> None:
    for name in lifecycle.PHASE_NAMES:
        phase = lifecycle.phase(name)
        assert isinstance(phase, Phase) and phase.name == name
        assert phase.summary, f"{name}: its plan needs a docstring (the docs read it)"
    with pytest.raises(ValueError, match="valid: connect, promote"):
        lifecycle.phase("no-such-phase")


def test_the_readme_lists_the_phases_of_the_table() -> None:
    section = README.read_text(encoding="utf-8").split("## The memory lifecycle", 1)[1]
    section = section.split("\n## ", 1)[0]
    listed = re.findall(r"^- \*\*(\w+)\*\*", section, flags=re.M)
    assert [p for p in listed if p != "buffer"] == list(lifecycle.PHASE_NAMES)


def test_tests_start_from_sample_vaults_notes_alone(tmp_path: Path) -> None:
    """The README's first command leaves `sample_vault/.vaultd/index.db`; a test copying the
    vault must not inherit it (it would find nothing new to index)."""
    from conftest import SAMPLE_VAULT, copy_sample_vault

    source = tmp_path / "sample_vault"
    import shutil

    shutil.copytree(SAMPLE_VAULT, source, ignore=shutil.ignore_patterns(".vaultd"))
    (source / ".vaultd").mkdir()
    (source / ".vaultd" / "index.db").write_bytes(b"an index of another run")
    root = copy_sample_vault(tmp_path / "copy", source)
    assert not (root / ".vaultd" / "index.db").exists()
    notes = sorted(p.relative_to(SAMPLE_VAULT) for p in SAMPLE_VAULT.rglob("*.md")
                   if ".vaultd" not in p.parts)
    assert sorted(p.relative_to(root) for p in root.rglob("*.md")) == notes


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and helpers live in conftest, daemon_helpers and chunk_checks."""
    here = Path(__file__).resolve().parent
    imports = re.compile(r"^\s*(?:from|import)\s+(tests\b|test_\w+)", re.M)
    offenders = sorted(p.name for p in here.glob("*.py") if imports.search(p.read_text()))
    assert offenders == []
