"""`python -m alloc_lint ...` runs the command line (under any interpreter)."""
from .cli import entry

entry()
