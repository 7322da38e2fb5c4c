"""LSP positions and edits computed from first principles, for the server's
tests: lines end at \n, \r\n or \r (LSP and Python agree), a character
counts 1 to 4 UTF-8 units, 1 or 2 UTF-16 units, 1 UTF-32 unit. Independent of
alloc_lint.lsp.text, which the tests check against it."""
from __future__ import annotations

import re

from lsprotocol import types as lsp

LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def code_units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def position(text: str, line: int, column: int, encoding: str = "utf-16") -> tuple[int, int]:
    """LSP position of a 1-based line and 1-based character column."""
    body = LINES.findall(text)[line - 1].rstrip("\r\n")
    return line - 1, code_units(body[:column - 1], encoding)


def offset(text: str, pos: lsp.Position, encoding: str) -> int:
    lines = LINES.findall(text)
    if pos.line >= len(lines):
        return len(text)
    start = sum(len(x) for x in lines[:pos.line])
    body = lines[pos.line].rstrip("\r\n")
    seen = 0
    for index, char in enumerate(body):
        seen += code_units(char, encoding)
        if seen > pos.character:  # a position inside a character means its start
            return start + index
    return start + len(body)


def apply(text: str, edits: list[lsp.TextEdit], encoding: str = "utf-16") -> str:
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[:offset(text, e.range.start, encoding)] + e.new_text + text[offset(text, e.range.end, encoding):]
    return text
