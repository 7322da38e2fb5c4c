"""`alloc-lint server`: a language server over stdio (needs the `server` extra)."""
from __future__ import annotations

import sys

INSTALL_HINT = "`alloc-lint server` needs pygls and lsprotocol: pip install 'alloc-lint[server]'"


def main(argv: list[str] | None = None) -> int:
    try:
        from .server import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("pygls", "lsprotocol"):
            raise
        print(f"alloc-lint: error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    serve()
    return 0
