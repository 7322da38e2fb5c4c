"""Fix operations: how a rule describes a rewrite, and how it is carried out.

A rule never touches LibCST. It describes a fix as a tuple of statement-level
operations on the text it checked; `apply_operations` carries them out, and
`line_edits` turns the result into the line edits JSON, SARIF and editors carry.
Operations are frozen dataclasses of strings and ints: they pickle, hash,
compare, and go into the results cache and across worker processes.

Addressing. A statement is named by where it starts: `(line, column)`, the
1-based line and the 0-based column *in characters* (`ast` gives UTF-8 bytes:
use `position(stmt, lines)`). Only statements that start a line of their own
can be replaced or wrapped (`a = 1; b = 2` cannot).

Code. New code is source text of one or more statements, written at column 0,
nested blocks indented with four spaces (`"if t is None:\\n    t = f(x)"`). It
is re-indented like the block it lands in (tabs in a tab-indented file), and
written with the file's line endings. Comment lines in it are kept.

The operations (one statement may receive several inserts; at most one
Replace and one Wrap):

- `InsertBefore(stmt, code)`: `code` just before `stmt`. Comment and blank
  lines above `stmt` move above the inserted code.
- `InsertAfter(stmt, code)`: `code` just after `stmt`; after a compound
  statement's whole body, `else:` blocks included.
- `Replace(stmt, code)`: `stmt` becomes `code`. The comment lines above it and
  the comment at the end of its line are kept; an empty `code` deletes the
  statement and hands its comments to the next statement (a block left empty
  gets `pass`). Another operation inside a replaced compound statement is an
  error.
- `Wrap(stmts, header, body_after="", orelse="")`: adjacent statements of one
  block, in order, move into `header:` (e.g. `"if t is None"`; a trailing
  colon is optional), followed in that block by `body_after`, with an optional
  `else:` block `orelse` (for `if`, `for`, `while` headers). Comment lines
  above the first moved statement stay above the header. Inserts and a Replace
  on a moved statement are carried out inside the new block.

`apply_operations(text, operations)` returns the new text or raises
`FixError` (never anything else): when a position names no statement, the
operations conflict, LibCST reads the text otherwise than `ast`, or the result
would not parse. Only the smallest run of top-level statements (the `def` or
`class` holding the operations) is parsed with LibCST, so a fix costs about
the same in a 50-line file and in a 5,000-line one; every byte outside the
changed statements is kept. The text is what the rule checked (a BOM already
removed by the caller).

`fix_edits(text, operations)` gives the same result as line edits of `text`.
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass

from .diagnostics import Edit
from .lines import char_column, split_lines

Position = tuple  # (1-based line, 0-based column in characters)


@dataclass(frozen=True)
class InsertBefore:
    stmt: Position
    code: str


@dataclass(frozen=True)
class InsertAfter:
    stmt: Position
    code: str


@dataclass(frozen=True)
class Replace:
    stmt: Position
    code: str  # "" deletes the statement, keeping its comments


@dataclass(frozen=True)
class Wrap:
    stmts: tuple  # positions of adjacent statements of one block, in order
    header: str  # "if t is None", "with torch.no_grad()", ...
    body_after: str = ""  # statements after the moved ones, inside the new block
    orelse: str = ""  # the `else:` block, if any


Operation = InsertBefore | InsertAfter | Replace | Wrap


class FixError(Exception):
    """Operations that cannot be carried out on this text; nothing is changed."""


def position(stmt: ast.stmt, lines: list[str]) -> Position:
    """Where an `ast` statement starts, as operations address it. `lines` are
    the text's physical lines (`lines.split_lines(text)`, or FileContext.lines)."""
    return (stmt.lineno, char_column(lines[stmt.lineno - 1], stmt.col_offset))


def apply_operations(text: str, operations) -> str:
    """`text` with every operation carried out. Raises FixError."""
    if not operations:
        return text
    start, end, new = _rewrite(text, tuple(operations))
    lines = split_lines(text, keepends=True)
    return "".join(lines[:start - 1]) + new + "".join(lines[end:])


def fix_edits(text: str, operations) -> list[Edit]:
    """The line edits that carry out `operations` on `text`. Raises FixError."""
    if not operations:
        return []
    start, end, new = _rewrite(text, tuple(operations))
    old = "".join(split_lines(text, keepends=True)[start - 1:end])
    return [Edit(e.start_line + start - 1, e.end_line + start - 1, e.content) for e in line_edits(old, new)]


def _rewrite(text: str, operations: tuple) -> tuple[int, int, str]:
    """(first line, last line, new text of those lines)."""
    try:
        from . import fixer  # LibCST is imported only when something is fixed

        return fixer.rewrite(text, operations)
    except FixError:
        raise
    except Exception as exc:  # noqa: BLE001 - the promise: FixError and nothing else
        raise FixError(f"could not apply the fix: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def line_edits(old: str, new: str) -> list[Edit]:
    """The smallest line-level edits that turn `old` into `new`."""
    a, b = split_lines(old, keepends=True), split_lines(new, keepends=True)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [Edit(i1 + 1, i2 + 1, "".join(b[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def apply_edits(old: str, edits: list[Edit]) -> str:
    lines = split_lines(old, keepends=True)
    for edit in sorted(edits, key=lambda e: e.start_line, reverse=True):
        lines[edit.start_line - 1:edit.end_line - 1] = [edit.content]
    return "".join(lines)
