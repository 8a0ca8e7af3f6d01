"""``python -m threadbox``: the command line."""

from threadbox.infrastructure.cli import main

main()
