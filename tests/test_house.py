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
    outside = [f"{rel}:{n}" for rel, text in sources().items() if not rel.startswith("store/")
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
    (".vaultd-tmp", "edits/atomic.py"),
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


# Modules that may change files by hand, each with its reason; every other write goes through
# `edits`, which asks `gate` first (issue 24: one gate for every write).
HAND_WRITERS = {
    "edits/atomic.py": "temp files and the atomic rename every write is made of",
    "edits/lock.py": "vaultd's lock files in .vaultd/locks/",
    "edits/exchange.py": "the swap of a checked file, and giving a displaced save back",
    "edits/checked.py": "the checked replace, create and remove of a vault file",
    "edits/appends.py": "in-place appends and taking one back",
    "edits/own_files.py": "vaultd's own files in .vaultd/",
    "edits/outside_vault.py": "files outside any vault the user asked vaultd to change",
    "model_build.py": "the model cache, outside any vault",
}
_MUTATING_ATTRS = {"write_text", "write_bytes", "rename", "unlink", "rmdir", "removedirs",
                   "mkfifo", "link", "symlink", "symlink_to", "hardlink_to", "move", "rmtree",
                   "copy2", "copyfile", "copytree"}
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _open_mode(call: ast.Call) -> str:
    mode = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else ""


def file_mutations(text: str) -> list[str]:
    """Every call in a module's source that changes a file by path: open() for writing,
    os.open with a write flag, and the os / shutil / pathlib calls that write, rename, link or
    delete. Found in the syntax tree, so a comment or a string never counts."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        base = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        if name == "open" and base in ("", "io", "builtins"):
            hit = any(c in _open_mode(node) for c in "wax+")
        elif name == "open" and base == "os":
            flags = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            hit = bool(flags & _WRITE_FLAGS)
        elif name == "open" and node.args == [] and not node.keywords:
            hit = False  # Path.open() reads
        elif name == "open":  # Path.open(mode)
            hit = bool(node.args) and any(c in _open_mode(
                ast.Call(func, [ast.Constant(None), *node.args], node.keywords)) for c in "wax+")
        elif name == "replace":  # os.replace(a, b), Path.replace(b); str.replace(a, b) is
            # text and datetime.replace(microsecond=0) a new value: keywords only
            hit = base == "os" or (len(node.args) == 1 and not node.keywords)
        elif name in ("remove", "copy", "truncate"):  # list.remove, dict.copy, a handle's
            hit = base in ("os", "shutil")
        else:
            hit = name in _MUTATING_ATTRS
        if hit:
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_file_mutations_are_found_in_the_syntax_tree() -> None:
    module = ("import os, shutil\nfrom pathlib import Path\n"
              "open(p, 'w'); open(p, mode='ab'); open(p); open(p, 'rb')\n"
              "os.open(p, os.O_WRONLY | os.O_CREAT); os.open(p, os.O_RDONLY)\n"
              "Path(p).write_text('x'); Path(p).unlink(); os.replace(a, b); Path(a).replace(b)\n"
              "os.rename(a, b); shutil.rmtree(d); shutil.copy(a, b); os.link(a, b)\n"
              "os.truncate(p, 0); os.mkfifo(p); os.remove(p); Path(d).rmdir()\n"
              "'a'.replace('a', 'b'); items.remove(x); v.copy(); '# open(p, \"w\")'\n"
              "now.replace(microsecond=0)\n")
    found = [line.split(": ", 1)[1] for line in file_mutations(module)]
    assert len(found) == 15, found
    assert not any(s.startswith(("'a'", "items", "v.copy", "open(p)", "open(p, 'rb')"))
                   for s in found)


def test_only_edits_changes_files_by_hand() -> None:
    """Any other module that opened a vault file for writing, renamed or deleted one would
    slip past the write gate (`vaultd.gate`): `.git/config`, a plugin, a FIFO, a link out."""
    outside = {rel: hits for rel, text in sources().items() if rel not in HAND_WRITERS
               and (hits := file_mutations(text))}
    assert outside == {}
