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


def char_column(line: str, byte_col: int) -> int:
    """ast columns are UTF-8 byte offsets; editors and LibCST count characters."""
    if line.isascii():
        return byte_col
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))
