"""`python -m vaultd.cli`, as the benchmarks run it."""

from vaultd.cli import main

main()
