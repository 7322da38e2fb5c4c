"""Physical lines as Python counts them: only \\r\\n, \\r and \\n end a line
(str.splitlines also splits on form feeds and other separators)."""
from __future__ import annotations

import re

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def split_lines(text: str, keepends: bool = False) -> list[str]:
    lines = _LINE.findall(text)
    if keepends:
        return lines
    return [line.rstrip("\r\n") for line in lines]
