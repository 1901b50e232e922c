"""`python -m keyresolve` is the `keyresolve` command."""

from .cli.commands import main

main()
