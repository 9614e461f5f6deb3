"""Claude Code integration: vaultd's hooks in a `settings.json`, merged, never clobbered.

`install` adds one command hook per event (SessionStart prints MEMORY.md, PreCompact flushes
with the session transcript, SessionEnd flushes) and keeps every other hook and settings key.
Our hooks are recognised by their command — `… --vault <V> hook <event>` — so `uninstall` removes
exactly those for that vault and installing twice adds nothing. A settings file that is not valid
JSON is refused, never overwritten.

The hooks run the `vaultd` that installed them by its absolute path (`installed_command`), as the
service unit does: an agent started with another PATH (no venv on it) still finds it.

The user's file keeps its formatting: our entries are spliced into and out of the text, so an
install followed by an uninstall gives back the same bytes; where splicing cannot be done (a
check parses the result and compares) the file is written anew with its detected indent. A
settings file vaultd created (noted in the vault's `.vaultd/hooks.json`) is removed when its
last hook goes; a file the user had is kept, never left as litter vaultd made.

Every read, write and removal goes through `edits.read_config`/`write_config`/`remove_config`:
a settings.json that is a symbolic link (a dotfiles repository) is written through to its
target, a hard-linked one keeps its links, a read-only one is refused, a FIFO is never waited
on, and a file that changed while vaultd worked is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vaultd.edits import read_config, remove_config, write_config
from vaultd.errors import VaultdError
from vaultd.layout import state_dir

EVENTS = {"SessionStart": "session-start", "PreCompact": "pre-compact",
          "SessionEnd": "session-end"}
CREATED_NOTE = "hooks.json"  # in the vault's .vaultd/: the settings files vaultd created


def settings_path(user: bool, project: Path | None, home: Path) -> Path:
    """`~/.claude/settings.json` for `user`, else `<project>/.claude/settings.json`."""
    if user:
        return home / ".claude" / "settings.json"
    if project is None:
        raise VaultdError("choose where to install: --user or --project DIR")
    return project / ".claude" / "settings.json"


def installed_command(executable: str | None = None) -> str:
    """The absolute command that runs this vaultd, for a shell with any PATH.

    The `vaultd` console script beside the interpreter (`<venv>/bin/vaultd`) when it is there:
    its shebang pins this interpreter, and unlike `python -m vaultd` it does not put the agent's
    working directory first on `sys.path` (a project holding a `vaultd/` folder would shadow the
    package). Otherwise (a source checkout run as `python -m vaultd`), `<python> -m vaultd`, as
    the service unit runs. The interpreter path is kept as is, not resolved: a venv's `python`
    is a link whose target lacks the venv's packages."""
    python = Path(executable or sys.executable)
    for name in ("vaultd", "vaultd.exe"):
        script = python.parent / name
        if script.is_file() and os.access(script, os.X_OK):
            return shlex.quote(str(script))
    return f"{shlex.quote(str(python))} -m vaultd"


def hook_command(vault: Path, event: str, command: str = "vaultd") -> str:
    """The shell command Claude Code runs for `event` (a Claude Code event name)."""
    return f"{command} --vault {shlex.quote(str(vault))} hook {EVENTS[event]}"


def _vault_of(cmd: Any) -> str | None:
    """The vault of a vaultd hook command, else None."""
    if not isinstance(cmd, str) or " hook " not in cmd or "--vault" not in cmd:
        return None
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if "--vault" not in words or "hook" not in words:
        return None
    i, j = words.index("--vault"), words.index("hook")
    if i + 1 >= len(words) or j + 1 >= len(words) or words[j + 1] not in EVENTS.values():
        return None
    return words[i + 1]


def _ours(cmd: Any, vault: Path | None) -> bool:
    """True for a vaultd hook command (for `vault`, or any vault when None)."""
    found = _vault_of(cmd)
    return found is not None and (vault is None or found == str(vault))


def load(path: Path) -> dict[str, Any]:
    """The settings at `path` ({} when missing or empty). VaultdError when not a JSON object."""
    raw = read_config(path)
    return {} if raw is None else _parse_settings(path, _decode(path, raw))


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VaultdError(f"{path}: not UTF-8 text (byte {exc.start}); vaultd left it "
                          "unchanged") from exc


def _parse_settings(path: Path, text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise VaultdError(f"{path}: not valid JSON ({exc}); fix it by hand, vaultd left it "
                          "unchanged") from exc
    if not isinstance(data, dict):
        raise VaultdError(f"{path}: expected a JSON object; vaultd left it unchanged")
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise VaultdError(f"{path}: \"hooks\" is not an object of lists; vaultd left it "
                          "unchanged")
    return data


def _strip(groups: list[Any], vault: Path | None) -> list[Any]:
    """`groups` without our hook commands; a group left with no hooks by that is dropped."""
    out = []
    for group in groups:
        inner = group.get("hooks") if isinstance(group, dict) else None
        if not isinstance(inner, list):
            out.append(group)
            continue
        kept = [h for h in inner if not (isinstance(h, dict) and _ours(h.get("command"), vault))]
        if len(kept) == len(inner):
            out.append(group)
        elif kept:
            out.append({**group, "hooks": kept})
    return out


def _has(groups: list[Any], command: str) -> bool:
    return any(isinstance(g, dict) and isinstance(g.get("hooks"), list)
               and any(isinstance(h, dict) and h.get("command") == command for h in g["hooks"])
               for g in groups)


# -- the text of the settings file, edited in place ------------------------------------------

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


@dataclass
class _Node:
    """A JSON value's span in the text; containers list their elements (object members span
    from the key to the end of the value)."""

    start: int
    end: int
    value: Any = None
    members: list[tuple[str, int, _Node]] = field(default_factory=list)  # objects
    items: list[_Node] = field(default_factory=list)  # arrays

    def member(self, key: str) -> _Node | None:
        return next((v for k, _, v in self.members if k == key), None)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _parse(text: str, i: int) -> _Node:
    i = _skip(text, i)
    if text[i] not in "{[":
        value, end = _DECODER.raw_decode(text, i)
        return _Node(i, end, value)
    node, close = _Node(i, i), "}" if text[i] == "{" else "]"
    j = _skip(text, i + 1)
    while text[j] != close:
        if close == "}":
            key, after = _DECODER.raw_decode(text, j)
            after = _skip(text, after)
            if text[after] != ":":
                raise ValueError("expected ':'")
            value = _parse(text, after + 1)
            node.members.append((key, j, value))
        else:
            value = _parse(text, j)
            node.items.append(value)
        j = _skip(text, value.end)
        if text[j] == ",":
            j = _skip(text, j + 1)
        elif text[j] != close:
            raise ValueError(f"expected ',' or {close!r}")
    node.end = j + 1
    return node


def _spans(node: _Node) -> list[tuple[int, int]]:
    if node.members:
        return [(start, value.end) for _, start, value in node.members]
    return [(item.start, item.end) for item in node.items]


def _rebuild(text: str, node: _Node, new: Sequence[str | None], extra: str | None = None,
             indent: str | None = "  ") -> str:
    """The container `node` with element i replaced by `new[i]` (None drops it) and `extra`
    appended; separators and whitespace between kept elements stay as they were."""
    spans = _spans(node)
    inner = text[node.start + 1:node.end - 1]
    out: list[str] = []
    last: int | None = None
    for i, ((start, _end), replacement) in enumerate(zip(spans, new)):
        if replacement is None:
            continue
        out.append(text[node.start + 1:start] if last is None else text[spans[i - 1][1]:start])
        out.append(replacement)
        last = i
    tail = text[spans[-1][1]:node.end - 1] if spans else ""
    if extra is not None:
        if last is not None:  # after the last kept element, spaced as its neighbours are
            sep = text[spans[last - 1][1]:spans[last][0]] if last > 0 else (
                "," + text[node.start + 1:spans[0][0]])
            out.append(sep if sep.lstrip(_WS).startswith(",") else "," + sep)
            out.append(extra)
        else:  # into an empty container: on its own line(s) when the file is indented
            base = _line_indent(text, node.start)
            if indent is None:
                out.append(extra)
            else:
                out.append("\n" + base + indent + extra)
                tail = "\n" + base
    if not spans and extra is None:
        return text[node.start] + inner + text[node.end - 1]
    if last is None and extra is None:
        return text[node.start] + text[node.end - 1]  # nothing left: {} or []
    return text[node.start] + "".join(out) + tail + text[node.end - 1]


def _line_indent(text: str, pos: int) -> str:
    line = text[text.rfind("\n", 0, pos) + 1:pos]
    return line[:len(line) - len(line.lstrip(" \t"))]


def _indent_unit(text: str) -> str | None:
    """The file's indent step (the first indented line's), None for a one-line file."""
    match = re.search(r"\n([ \t]+)\S", text)
    if match:
        return match.group(1)
    return None if text.strip() else "  "


def _dump(value: Any, indent: str | None, base: str) -> str:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return text.replace("\n", "\n" + base) if indent is not None else text


def _element_base(text: str, node: _Node, indent: str | None) -> str:
    """The indentation of an element appended to `node`."""
    spans = _spans(node)
    if spans:
        start = spans[-1][0]
        if not text[text.rfind("\n", 0, start) + 1:start].strip():
            return _line_indent(text, start)
    return _line_indent(text, node.start) + (indent or "")


def _strip_text(text: str, top: _Node, vault: Path | None, events: set[str] | None) -> str:
    """`text` without our hook commands (for `vault`; in `events` only, when given)."""
    hooks_node = top.member("hooks")
    if hooks_node is None:
        return text
    new_events: list[str | None] = []
    changed = False
    for event, start, groups in hooks_node.members:
        new_groups: list[str | None] = []
        for group in groups.items:
            inner = group.member("hooks")
            if inner is None or not inner.items or (events is not None and event not in events):
                new_groups.append(text[group.start:group.end])
                continue
            keep = [not _ours(_command_of(h), vault) for h in inner.items]
            if all(keep):
                new_groups.append(text[group.start:group.end])
            elif any(keep):
                hooks_text = _rebuild(text, inner, [text[h.start:h.end] if k else None
                                                    for h, k in zip(inner.items, keep)])
                g_new = [text[s:v.end] if v is not inner else
                         text[s:v.start] + hooks_text for _, s, v in group.members]
                new_groups.append(_rebuild(text, group, g_new))
            else:
                new_groups.append(None)
        if all(g is not None for g in new_groups) and new_groups == [
                text[g.start:g.end] for g in groups.items]:
            new_events.append(text[start:groups.end])
            continue
        changed = True
        kept = [g for g in new_groups if g is not None]
        new_events.append(text[start:groups.start] + _rebuild(text, groups, new_groups)
                          if kept or not groups.items else None)
    if not changed:
        return text
    top_new: list[str | None] = []
    for _key, start, value in top.members:
        if value is hooks_node:
            empty = all(e is None for e in new_events) and hooks_node.members
            top_new.append(None if empty else
                           text[start:value.start] + _rebuild(text, hooks_node, new_events))
        else:
            top_new.append(text[start:value.end])
    return text[:top.start] + _rebuild(text, top, top_new) + text[top.end:]


def _command_of(hook: _Node) -> Any:
    command = hook.member("command")
    return None if command is None else command.value


def _add_text(text: str, add: dict[str, Any]) -> str:
    """`text` with one group appended to `hooks[event]` for each event → group in `add`."""
    indent = _indent_unit(text)
    top = _parse(text, 0)
    hooks_node = top.member("hooks")
    if hooks_node is None:
        base = _element_base(text, top, indent)
        member = f'"hooks": {_dump({e: [g] for e, g in add.items()}, indent, base)}'
        return text[:top.start] + _rebuild(text, top, [text[s:v.end] for _, s, v in top.members],
                                           member, indent) + text[top.end:]
    new_events: list[str | None] = []
    for event, start, groups in hooks_node.members:
        if event in add:
            base = _element_base(text, groups, indent)
            appended = _rebuild(text, groups, [text[g.start:g.end] for g in groups.items],
                                _dump(add[event], indent, base), indent)
            new_events.append(text[start:groups.start] + appended)
        else:
            new_events.append(text[start:groups.end])
    missing = [e for e in add if hooks_node.member(e) is None]
    base = _element_base(text, hooks_node, indent)
    extra = (("," + ("\n" + base if indent is not None else " ")).join(
        f"{json.dumps(e)}: {_dump([add[e]], indent, base)}" for e in missing) or None)
    hooks_text = _rebuild(text, hooks_node, new_events, extra, indent)
    top_new = [text[s:v.end] if v is not hooks_node else text[s:v.start] + hooks_text
               for _, s, v in top.members]
    return text[:top.start] + _rebuild(text, top, top_new) + text[top.end:]


def _write(path: Path, old: bytes | None, new_text: str | None, data: dict[str, Any]) -> None:
    """Write `new_text` when it parses to `data`; else `data` anew in the file's indent. `old`
    is the file as read (None: none yet): a file changed since is left alone."""
    old_text = "" if old is None else _decode(path, old)
    try:
        spliced = new_text is not None and json.loads(new_text) == data
    except ValueError:
        spliced = False
    if not spliced:
        indent = _indent_unit(old_text) if old_text.strip() else "  "
        new_text = json.dumps(data, indent=indent, ensure_ascii=False) + (
            "\n" if old_text.endswith("\n") or not old_text else "")
    assert new_text is not None
    write_config(path, new_text, expected=old)


# -- which settings files vaultd created ------------------------------------------------------

def _note_path(vault: Path) -> Path:
    return state_dir(vault) / CREATED_NOTE


def _created(vault: Path) -> list[str]:
    try:
        data = json.loads(read_config(_note_path(vault)) or b"{}")
    except (OSError, ValueError, VaultdError):
        return []
    created = data.get("created") if isinstance(data, dict) else None
    return [p for p in created if isinstance(p, str)] if isinstance(created, list) else []


def _note_created(vault: Path, paths: list[Path], created: bool) -> None:
    """Add (or drop) `paths` in the vault's note of files vaultd created."""
    if not state_dir(vault).is_dir():
        return  # not a vault (yet): a file with no note is only ever kept, never removed
    note = _note_path(vault)
    before = read_config(note)
    now = _created(vault)
    names = [str(p) for p in paths]
    new = [*now, *[n for n in names if n not in now]] if created else [
        n for n in now if n not in names]
    if new == now:
        return
    if new:
        write_config(note, json.dumps({"created": new}, indent=2) + "\n", expected=before)
    else:
        remove_config(note, expected=before)


# -- install / uninstall ----------------------------------------------------------------------

def install(path: Path, vault: Path, command: str | None = None) -> dict[str, Any]:
    """Merge vaultd's hooks for `vault` into the settings at `path`; the hooks run `command`
    (default: this vaultd's absolute path, `installed_command()`). Returns {"path", "command",
    "added": [events], "unchanged": [events], "written": bool, "created": bool}."""
    vault = Path(vault).expanduser().resolve()
    command = command or installed_command()
    old = read_config(path)
    old_text = None if old is None else _decode(path, old)
    data = _parse_settings(path, old_text or "")
    hooks = data.setdefault("hooks", {})
    added, unchanged, add = [], [], {}
    for event in EVENTS:
        cmd = hook_command(vault, event, command)
        groups = hooks.get(event, [])
        if _has(groups, cmd):
            unchanged.append(event)
            continue
        add[event] = {"hooks": [{"type": "command", "command": cmd}]}
        hooks[event] = [*_strip(groups, vault), add[event]]
        added.append(event)
    report = {"path": str(path), "command": command, "added": added, "unchanged": unchanged,
              "written": bool(added), "created": old_text is None and bool(added)}
    if not added:
        return report
    if old_text is None or not old_text.strip():
        new_text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        try:
            stripped = _strip_text(old_text, _parse(old_text, 0), vault, set(added))
            new_text = _add_text(stripped, add)
        except (ValueError, IndexError):
            new_text = None
    made = [p for p in (path.parent, path) if not p.exists()]
    _write(path, old, new_text, data)
    if made:
        _note_created(vault, made, created=True)
    return report


def uninstall(path: Path, vault: Path | None) -> dict[str, Any]:
    """Remove vaultd's hooks for `vault` (all vaults when None) from the settings at `path`,
    leaving every other hook and key and the file's formatting. A file vaultd created goes
    when nothing else is left in it. Returns {"path", "removed": [events], "written": bool,
    "deleted": bool}."""
    if vault is not None:
        vault = Path(vault).expanduser().resolve()
    old = read_config(path)
    if old is None:
        return {"path": str(path), "removed": [], "written": False, "deleted": False}
    old_text = _decode(path, old)
    data = _parse_settings(path, old_text)
    hooks = data.get("hooks", {})
    removed, vaults = [], set()
    for event in list(hooks):
        groups = _strip(hooks[event], vault)
        if groups != hooks[event]:
            removed.append(event)
            vaults |= {_vault_of(h.get("command")) for g in hooks[event] if isinstance(g, dict)
                       for h in g.get("hooks", []) if isinstance(h, dict)} - {None}
            if groups:
                hooks[event] = groups
            else:
                del hooks[event]
    report = {"path": str(path), "removed": removed, "written": bool(removed), "deleted": False}
    if not removed:
        return report
    if not hooks:
        del data["hooks"]
    owners = [Path(v) for v in vaults if v is not None and (vault is None or v == str(vault))]
    ours = [v for v in owners if str(path) in _created(v)]
    if not data and ours and not path.is_symlink():  # a link is the user's: emptied, kept
        remove_config(path, expected=old)
        report["deleted"] = True
        with contextlib.suppress(VaultdError):  # .claude/ too, if vaultd made it, when empty
            if any(str(path.parent) in _created(v) for v in ours):
                remove_config(path.parent)
        for v in ours:
            _note_created(v, [path, path.parent], created=False)
        return report
    try:
        new_text: str | None = _strip_text(old_text, _parse(old_text, 0), vault, None)
    except (ValueError, IndexError):
        new_text = None
    _write(path, old, new_text, data)
    return report


def read_hook_input(stream: IO[str] | None) -> dict[str, Any]:
    """The JSON object Claude Code passes a hook on stdin; {} when absent or unreadable."""
    if stream is None:
        return {}
    try:
        if stream.isatty():
            return {}
        data = json.loads(stream.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def transcript_of(data: dict[str, Any]) -> Path | None:
    """The transcript file named in a hook's input, if it exists."""
    value = data.get("transcript_path")
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value).expanduser()
    return path if path.is_file() else None
