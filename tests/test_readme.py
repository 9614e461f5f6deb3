"""The README tells the truth about the CLI and the configuration (issue 16, point 5): its
command table names every command and only real ones, with the options and choices they take;
its configuration table names `vaultd.config`'s sections; its first command installs into a
virtual environment (a distribution's Python refuses a bare `pip install`), and its test
command is the one CI runs. (The lifecycle phase list is held by tests/test_house.py.)"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click

from vaultd.cli import main
from vaultd.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def invocations() -> list[str]:
    """Each `vaultd ...` in the first column of the Commands table (`a` / `b` is two)."""
    out = []
    for row in table_rows(section("Commands")):
        out += re.findall(r"`(vaultd [^`]+)`", row[0])
    return out


def command_of(invocation: str) -> tuple[tuple[str, ...], click.Command]:
    words = invocation.split()[1:]
    command: click.Command = main
    path: list[str] = []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words.pop(0))
        command = command.commands[path[-1]]
    assert not isinstance(command, click.Group), f"{invocation}: names a group, not a command"
    return tuple(path), command


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out |= leaf_commands(command, (*prefix, name))
        else:
            out.add((*prefix, name))
    return out


def test_the_command_table_lists_every_command_and_only_real_ones() -> None:
    listed = {command_of(inv)[0] for inv in invocations()}
    assert listed == leaf_commands(main)


def test_the_options_and_choices_in_the_command_table_are_the_clis() -> None:
    for invocation in invocations():
        _, command = command_of(invocation)
        options = {opt: p for p in command.params if isinstance(p, click.Option)
                   for opt in (*p.opts, *p.secondary_opts)}
        for group in re.findall(r"\[([^\]]+)\]", invocation):
            alternatives = [a.strip() for a in group.split(r"\|")]
            if not alternatives[0].startswith("-"):
                continue  # an argument such as [PATH]
            name = alternatives[0].split()[0]
            assert name in options, f"{invocation}: no option {name}"
            values = [alternatives[0].split()[1], *alternatives[1:]] \
                if len(alternatives[0].split()) > 1 and len(alternatives) > 1 else []
            if values and not values[1].startswith("-"):  # --opt a|b|c: the choices
                assert isinstance(options[name].type, click.Choice), invocation
                assert values == list(options[name].type.choices), invocation
            else:  # --a|--b: alternative options
                for alt in alternatives[1:]:
                    assert alt.split()[0] in options, f"{invocation}: no option {alt}"


def test_the_configuration_table_names_the_config_sections() -> None:
    listed = [row[0].strip("`") for row in table_rows(section("Configuration"))]
    expected = [f"[{f.name}]" if f.name != "models" else "[models.<id>]"
                for f in fields(Settings)]
    assert listed == expected


def test_the_first_command_makes_a_virtual_environment_and_tests_run_as_ci_runs_them() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", section("Quickstart"), flags=re.S)
    first, _search, tests = blocks[:3]
    assert first.count("\n") == 0, "the quickstart is one command"
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install . && ")
    assert not re.search(r"(^|&& )pip install", first + "\n" + tests)  # PEP 668 refuses it
    assert tests.endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "-m pytest -q" in ci and "'.[test]'" in ci and "'.[test]'" in tests
