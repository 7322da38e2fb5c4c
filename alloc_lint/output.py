"""Where the report goes, and whether it is coloured."""
from __future__ import annotations

import os
import sys


def colour_enabled(stream) -> bool:
    """Colour on terminals; NO_COLOR (any non-empty value) turns it off and
    FORCE_COLOR on, with NO_COLOR winning when both are set, as CPython does."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Output:
    """Standard output, or `--output-file` (written when the run ends)."""

    def __init__(self, path: str | None, colour: bool = False):
        self.path = path
        self.colour = colour
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        if self.path is None:
            sys.stdout.write(text)
        else:
            self.parts.append(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.path is not None and exc[0] is None:
            with open(self.path, "w", encoding="utf-8", newline="") as handle:
                handle.write("".join(self.parts))
        else:
            sys.stdout.flush()
