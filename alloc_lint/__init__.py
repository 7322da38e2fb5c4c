"""alloc-lint: find per-iteration buffer allocations in merge-and-reassign loops
of PyTorch code, and rewrite them to allocate once."""
from .api import FixResult, check_source, fix_source
from .config import Config
from .diagnostics import Diagnostic, Edit, Fix
from .engine import SourceError

__version__ = "0.1.0"

__all__ = ["Config", "Diagnostic", "Edit", "Fix", "FixResult", "SourceError",
           "__version__", "check_source", "fix_source"]
