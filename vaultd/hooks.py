"""Claude Code integration: vaultd's hooks in a `settings.json`, merged, never clobbered.

`install` adds one command hook per event (SessionStart prints MEMORY.md, PreCompact flushes
with the session transcript, SessionEnd flushes) and keeps every other hook and settings key.
Our hooks are recognised by their command — `… --vault <V> hook <event>` — so `uninstall` removes
exactly those for that vault and installing twice adds nothing. A settings file that is not valid
JSON is refused, never overwritten.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import IO, Any

from vaultd.edits import atomic_write
from vaultd.errors import VaultdError

EVENTS = {"SessionStart": "session-start", "PreCompact": "pre-compact",
          "SessionEnd": "session-end"}


def settings_path(user: bool, project: Path | None, home: Path) -> Path:
    """`~/.claude/settings.json` for `user`, else `<project>/.claude/settings.json`."""
    if user:
        return home / ".claude" / "settings.json"
    if project is None:
        raise VaultdError("choose where to install: --user or --project DIR")
    return project / ".claude" / "settings.json"


def hook_command(vault: Path, event: str, command: str = "vaultd") -> str:
    """The shell command Claude Code runs for `event` (a Claude Code event name)."""
    return f"{command} --vault {shlex.quote(str(vault))} hook {EVENTS[event]}"


def _ours(cmd: Any, vault: Path | None) -> bool:
    """True for a vaultd hook command (for `vault`, or any vault when None)."""
    if not isinstance(cmd, str) or " hook " not in cmd or "--vault" not in cmd:
        return False
    try:
        words = shlex.split(cmd)
    except ValueError:
        return False
    if "--vault" not in words or "hook" not in words:
        return False
    i, j = words.index("--vault"), words.index("hook")
    if i + 1 >= len(words) or j + 1 >= len(words) or words[j + 1] not in EVENTS.values():
        return False
    return vault is None or words[i + 1] == str(vault)


def load(path: Path) -> dict[str, Any]:
    """The settings at `path` ({} when missing or empty). VaultdError when not a JSON object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
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


def _save(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


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


def install(path: Path, vault: Path, command: str = "vaultd") -> dict[str, Any]:
    """Merge vaultd's hooks for `vault` into the settings at `path`. Returns
    {"path", "added": [events], "unchanged": [events], "written": bool}."""
    vault = Path(vault).expanduser().resolve()
    data = load(path)
    hooks = data.setdefault("hooks", {})
    added, unchanged = [], []
    for event in EVENTS:
        cmd = hook_command(vault, event, command)
        groups = hooks.get(event, [])
        if _has(groups, cmd):
            unchanged.append(event)
            continue
        hooks[event] = [*_strip(groups, vault), {"hooks": [{"type": "command", "command": cmd}]}]
        added.append(event)
    if added:
        _save(path, data)
    return {"path": str(path), "added": added, "unchanged": unchanged, "written": bool(added)}


def uninstall(path: Path, vault: Path | None) -> dict[str, Any]:
    """Remove vaultd's hooks for `vault` (all vaults when None) from the settings at `path`,
    leaving every other hook and key. Returns {"path", "removed": [events], "written": bool}."""
    if vault is not None:
        vault = Path(vault).expanduser().resolve()
    if not path.exists():
        return {"path": str(path), "removed": [], "written": False}
    data = load(path)
    hooks = data.get("hooks", {})
    removed = []
    for event in list(hooks):
        groups = _strip(hooks[event], vault)
        if groups != hooks[event]:
            removed.append(event)
            if groups:
                hooks[event] = groups
            else:
                del hooks[event]
    if removed:
        if not hooks:
            del data["hooks"]
        _save(path, data)
    return {"path": str(path), "removed": removed, "written": bool(removed)}


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
