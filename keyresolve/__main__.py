"""`python -m keyresolve` is the `keyresolve` command."""

from .cli import main

main()
