"""The `vaultd` command: each subcommand parses, makes one library call, prints.

The `main` group and what every command shares are in `base`; the commands are grouped by what
they work on (`index_commands`, `memory_commands`, `daemon_commands`, `agent_commands`), each
module adding its commands to `main` when imported. Heavy imports (numpy, onnxruntime) happen
inside the library only when a command needs them.
"""

from __future__ import annotations

from vaultd.cli import agent_commands, daemon_commands, index_commands, memory_commands
from vaultd.cli.base import accept_vault_after_subcommand
from vaultd.cli.base import main as main

# imported for the commands they add to `main`
COMMAND_MODULES = (index_commands, memory_commands, daemon_commands, agent_commands)

accept_vault_after_subcommand(main)
