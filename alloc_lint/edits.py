"""Fix operations: how a rule describes a rewrite, and how it is carried out.

A rule never edits text itself (and never imports LibCST). It describes a fix
as a tuple of statement-level operations on the text it checked and puts it
in `Fix.operations`; `apply_operations` carries them out, and `fix_edits` gives
the line edits JSON, SARIF and editors carry. Operations are frozen dataclasses
of strings and ints: they pickle, hash, compare, and go into the results cache
and across worker processes.

    from alloc_lint.edits import InsertBefore, InsertAfter, Replace, Wrap, position
    at = lambda stmt: position(stmt, ctx.lines)          # ast statement -> (line, column)
    Fix("safe", message, "my-form", (
        InsertBefore(at(loop), "parts = []"),
        Replace(at(rebind), "parts.append(x)"),
        InsertAfter(at(loop), "acc = torch.cat(parts)"),
    ))

Addressing. A statement is named by where it starts: `(line, column)`, the
1-based line and the 0-based column *in characters* (`ast` gives UTF-8 bytes:
use `position(stmt, lines)`). A decorated definition is addressed where `ast`
puts it (the `def` line). Only statements that start a line of their own can
be addressed (`a = 1; b = 2`: not `b`); Replace and Wrap also need them to end
their line (a comment may follow). An `elif` is a clause, not a statement.

Code. New code is source text of one or more statements, written at column 0,
nested blocks indented with four spaces (`"if t is None:\n    t = f(x)"`). It
is re-indented like the block it lands in (tabs in a tab-indented file), and
written with the file's line endings. Comment lines in it are kept; the text
of multi-line strings in it is not re-indented.

The operations (one statement may receive several inserts, kept in order; at
most one Replace and one Wrap):

- `InsertBefore(stmt, code)`: `code` just before `stmt`. Comment and blank
  lines above `stmt` stay above the inserted code.
- `InsertAfter(stmt, code)`: `code` just after `stmt`; after a compound
  statement's whole body, `else:` blocks included (and after comment lines
  indented inside its last block).
- `Replace(stmt, code)`: `stmt` becomes `code`. The comment lines above it and
  the comment at the end of its line are kept; an empty `code` deletes the
  statement, leaving its comments in place (a block left empty gets `pass`).
  An operation inside a replaced compound statement is an error.
- `Wrap(stmts, header, body_after="", orelse="")`: adjacent statements of one
  block, in order, move into `header:` (e.g. `"if t is None"`; a trailing
  colon is optional), followed in that block by `body_after`, with an optional
  `else:` block `orelse` (for `if`, `for`, `while` headers). Comment lines
  above the first moved statement stay above the header; the moved lines are
  indented one level deeper, except lines inside multi-line strings. Inserts
  and a Replace on a moved statement are carried out inside the new block.

`apply_operations(text, operations, line_length=None)` returns the new text or
raises `FixError` (never anything else): when a position names no statement,
the operations conflict, or the result would not parse. It works on whole
lines (alloc_lint.fixer): every byte outside the changed statements is kept,
and only the innermost `def` or `class` holding the operations (else the
top-level statements holding them) is parsed again to check the result. The
text is what the rule checked (a BOM already removed by the caller).

New or changed lines wider than `line_length` (pass Config.line_length: the
project's `line-length` of [tool.ruff] or [tool.black], default 88) are
wrapped as `ruff format` writes them (alloc_lint.linewrap); None wraps nothing.

`fix_edits(text, operations, line_length=None)` gives the same rewrite as line
edits of `text` (what api.attach_edits puts in `Fix.edits`).
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


def apply_operations(text: str, operations, line_length: int | None = None) -> str:
    """`text` with every operation carried out. Raises FixError. New or changed
    lines longer than `line_length` are wrapped as `ruff format` would (None:
    not wrapped)."""
    if not operations:
        return text
    return _carry_out("apply", text, tuple(operations), line_length)


def fix_edits(text: str, operations, line_length: int | None = None) -> list[Edit]:
    """The line edits that carry out `operations` on `text`. Raises FixError."""
    if not operations:
        return []
    return _carry_out("edits", text, tuple(operations), line_length)


def _carry_out(what: str, text: str, operations: tuple, line_length: int | None):
    try:
        from . import fixer

        return getattr(fixer, what)(text, operations, line_length)
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
