"""Editor buffers and LSP positions, without pygls.

LSP lines end at \\n, \\r\\n or \\r, as Python's do (`lines.split_lines`; not
str.splitlines, which also breaks at form feeds and U+2028). A position's
character counts code units of the encoding negotiated at `initialize`:
UTF-16 unless the client offered UTF-8 or UTF-32. Our columns count characters.
"""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from ..lines import split_lines

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def units(text: str, encoding: str = UTF16) -> int:
    """The length of `text` in the encoding's code units."""
    if text.isascii() or encoding == UTF32:
        return len(text)
    # surrogatepass: a buffer may hold a lone surrogate (JSON allows one).
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def char_index(line: str, count: int, encoding: str = UTF16) -> int:
    """The character index `count` code units into `line`, clamped to its end
    (a count that falls inside a character rounds down to its start)."""
    if line.isascii() or encoding == UTF32:
        return max(0, min(count, len(line)))
    seen = 0
    for index, char in enumerate(line):
        seen += units(char, encoding)
        if seen > count:
            return index
    return len(line)


class Buffer:
    """A text with its line starts, to turn offsets into positions and back."""

    def __init__(self, text: str, encoding: str = UTF16):
        self.text = text
        self.encoding = encoding
        self.lines = split_lines(text, keepends=True)
        self.starts = [0, *accumulate(len(line) for line in self.lines)]

    def line(self, index: int) -> str:
        """Line `index` (0-based) without its line end; "" past the end."""
        return self.lines[index].rstrip("\r\n") if 0 <= index < len(self.lines) else ""

    def offset(self, line: int, character: int) -> int:
        """The offset of an LSP position; past the end of a line means its end."""
        if line < 0:
            return 0
        if line >= len(self.lines):
            return len(self.text)
        return self.starts[line] + char_index(self.line(line), character, self.encoding)

    def position(self, offset: int) -> tuple[int, int]:
        """The LSP (line, character) of an offset that is not inside a line end."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        if line >= len(self.lines):
            if not self.lines or self.lines[-1].endswith(("\n", "\r")):
                return len(self.lines), 0  # the empty line after the last line end
            line = len(self.lines) - 1
        return line, units(self.text[self.starts[line]:offset], self.encoding)

    def column_position(self, line: int, column: int) -> tuple[int, int]:
        """The LSP position of a 1-based line and 0-based character column."""
        return line - 1, units(self.line(line - 1)[:column], self.encoding)

    def line_start(self, line: int) -> int:
        """The offset where 1-based `line` starts (the text's end past the last)."""
        return self.starts[min(max(line - 1, 0), len(self.lines))]


def apply_change(text: str, start: tuple[int, int] | None, end: tuple[int, int] | None,
                 new: str, encoding: str = UTF16) -> str:
    """One `didChange` content change: a range replaced, or (no range) the whole text."""
    if start is None or end is None:
        return new
    buffer = Buffer(text, encoding)
    begin, finish = buffer.offset(*start), buffer.offset(*end)
    finish = max(begin, finish)
    return text[:begin] + new + text[finish:]
