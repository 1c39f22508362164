"""`python -m edvr_cli` runs the `edvr` command (handy where the console script is not on PATH)."""

from edvr_cli.cli import main

main()
