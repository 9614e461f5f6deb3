"""`python -m vaultd` runs the CLI (used by `vaultd start` to spawn the daemon)."""

from vaultd.cli import main

main()
