"""`python -m alloc_lint ...` runs the command line (under any interpreter)."""
import sys

from .cli import main

sys.exit(main())
