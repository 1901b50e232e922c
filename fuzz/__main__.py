"""`python -m fuzz DRIVER ...` (fuzz/README.md)."""

import sys

from .cli import main

sys.exit(main())
