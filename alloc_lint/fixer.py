"""Carrying out `alloc_lint.edits` operations on whole lines of text.

Every operation works on whole lines: the statements it addresses start a line
of their own and end one (a comment may follow), so everything outside their
lines is kept byte for byte. `ast` says where statements start and end and
which block holds them; `tokenize` says which lines lie inside a multi-line
string, whose text must not be re-indented. No LibCST: importing it alone
costs a third of a whole check of vLLM, which JSON and SARIF output would pay.

Only the innermost `def` or `class` holding the operations (else the top-level
statements holding them) is rewritten and parsed again to check the result.
"""
from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field
from functools import lru_cache

from .edits import FixError, InsertAfter, InsertBefore, Replace, Wrap
from .lines import char_column, split_lines

# --- where things are ------------------------------------------------------------------


@dataclass(eq=False)
class _Statement:
    node: ast.stmt
    first: int  # 0-based line indexes into the text, decorators included
    last: int
    base: str  # the statement's indentation
    block: int  # id of the statement list holding it
    index: int  # its place there
    text: str = field(repr=False, default="")
    own_unit: str | None = None  # the indentation its block adds; None at module level

    @property
    def unit(self) -> str:
        """The indentation a block made here adds."""
        return self.own_unit if self.own_unit is not None else _module_unit(self.text)


@dataclass
class _Index:
    tree: ast.Module
    at: dict = field(default_factory=dict)  # (line, column) -> ast statement
    blocks: dict = field(default_factory=dict)  # id(statement list) -> statement list
    parent_base: dict = field(default_factory=dict)  # id(statement list) -> indentation of its owner
    # (first line, last line, indented) of every top-level statement, def and class
    runs: list = field(default_factory=list)


@lru_cache(maxsize=4)
def _index(text: str) -> _Index:
    lines = _lines(text)
    index = _Index(ast.parse(text))
    compound = (*_COMPOUND, getattr(ast, "TryStar", ast.Try))

    def visit(block: list, owner_base: "str | None"):
        index.blocks[id(block)] = block
        index.parent_base[id(block)] = owner_base
        for i, stmt in enumerate(block):
            line = lines[stmt.lineno - 1]
            column = stmt.col_offset if line.isascii() else char_column(line, stmt.col_offset)
            index.at[(stmt.lineno, column)] = (stmt, block, i)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                index.runs.append((_first_line(stmt), stmt.end_lineno, owner_base is not None))
            elif owner_base is None:
                index.runs.append((_first_line(stmt), stmt.end_lineno, False))
            if not isinstance(stmt, compound):
                continue
            base = _indentation(line)
            for name in ("body", "orelse", "finalbody"):
                child = getattr(stmt, name, None)
                if isinstance(child, list) and child and isinstance(child[0], ast.stmt):
                    visit(child, base)
            for handler in getattr(stmt, "handlers", ()):
                visit(handler.body, base)
            for case in getattr(stmt, "cases", ()):
                visit(case.body, _indentation(lines[case.pattern.lineno - 1]))

    visit(index.tree.body, None)
    return index


def _first_line(stmt: ast.stmt) -> int:
    return min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])


def _indentation(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t\f"))]


def _statement(text: str, where, lines: list) -> _Statement:
    index = _index(text)
    try:
        line, column = where
        stmt, block, i = index.at[(line, column)]
    except (KeyError, TypeError, ValueError):
        raise FixError(f"no statement starts at {where[0]}:{where[1] + 1}" if _is_position(where)
                       else f"not a statement position: {where!r}") from None
    source = lines[line - 1]
    head = source[:column]
    if head.strip(" \t\f"):
        raise FixError(f"the statement at {line}:{column + 1} shares its line with another")
    if isinstance(stmt, ast.If) and source[column:].startswith("elif"):
        raise FixError("an operation addresses a clause (`elif`), not a statement of a block")
    owner = index.parent_base[id(block)]
    unit = None
    if owner is not None:
        if not (head.startswith(owner) and len(head) > len(owner)):
            raise FixError(f"cannot tell the indentation of the block at line {line}")
        unit = head[len(owner):]
    return _Statement(stmt, _first_line(stmt) - 1, stmt.end_lineno - 1, head, id(block), i, text, unit)


def _is_position(where) -> bool:
    return isinstance(where, tuple) and len(where) == 2 and all(type(x) is int for x in where)


@lru_cache(maxsize=4)
def _module_unit(text: str) -> str:
    """The file's first indentation, for blocks made at module level."""
    try:
        for token in _tokens(text):
            if token.type == tokenize.INDENT:
                return token.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return "    "


def _alone_at_end(stmt: _Statement, lines: list) -> str:
    """What follows the statement on its last line: "" or whitespace and a comment."""
    node = stmt.node
    last = lines[node.end_lineno - 1]
    rest = last.encode("utf-8")[node.end_col_offset:].decode("utf-8", "replace")
    if rest.strip() and not rest.lstrip().startswith("#"):
        raise FixError(f"the statement at line {node.lineno} shares its line with another")
    return rest


# --- strings and indentation -----------------------------------------------------------


def _tokens(text: str):
    return tokenize.generate_tokens(io.StringIO(text).readline)


@lru_cache(maxsize=64)
def _string_lines(text: str) -> frozenset:
    """0-based indexes of the lines of `text` that begin inside a string."""
    if '"""' not in text and "'''" not in text and "\\\n" not in text and "\\\r" not in text:
        return frozenset()  # a string spans lines only with triple quotes or a backslash
    inside = set()
    for token in _tokens(text):
        if token.end[0] > token.start[0] and token.type not in (tokenize.NEWLINE, tokenize.NL):
            inside.update(range(token.start[0], token.end[0]))  # 1-based start == 0-based next line
    return frozenset(inside)


def _indent(lines: list, skip: frozenset, base: str, unit: str) -> list:
    """`lines` one block deeper: `unit` after `base` on every line that starts
    with `base` and does not begin inside a string (blank lines stay blank)."""
    out = []
    for i, line in enumerate(lines):
        if i in skip or not line.strip() or not line.startswith(base):
            out.append(line)
        else:
            out.append(base + unit + line[len(base):])
    return out


@lru_cache(maxsize=256)
def _snippet(code: str, base: str, unit: str, newline: str) -> tuple:
    """The lines of new `code` (written at column 0, blocks indented with any
    unit) at indentation `base`, its blocks indented with `unit`."""
    if not code.strip():
        return ()
    code = code if code.endswith(("\n", "\r")) else code + "\n"
    try:
        ast.parse(code)
        skip = _string_lines(code)
    except (SyntaxError, tokenize.TokenError, ValueError):
        raise FixError(f"new code does not parse: {code.strip().splitlines()[0]!r}") from None
    lines = split_lines(code)
    own = next((_indentation(line) for i, line in enumerate(lines)
                if i not in skip and line.strip() and _indentation(line)), "    ")
    out = []
    for i, line in enumerate(lines):
        if i in skip:
            out.append(line + newline)
            continue
        if not line.strip():
            out.append(newline)
            continue
        lead = _indentation(line)
        levels = 0
        while lead.startswith(own):
            lead, levels = lead[len(own):], levels + 1
        out.append(base + unit * levels + lead + line.lstrip(" \t\f") + newline)
    return tuple(out)


def _newline(line: str) -> str:
    stripped = line.rstrip("\r\n")
    return line[len(stripped):] or "\n"


# --- the rewrite ---------------------------------------------------------------------


def _segment(text: str, targets: list) -> tuple[int, int, bool]:
    """The smallest run of whole lines holding the `targets` statements that
    parses on its own: the innermost `def` or `class` around them all, else
    the top-level statements holding them. Indented runs are checked under
    `if True:`. Lines are 1-based."""
    runs = _index(text).runs
    low, high = min(t.first for t in targets) + 1, max(t.last for t in targets) + 1
    inner = [r for r in runs if r[2] and r[0] <= low and high <= r[1]
             and not any((r[0], r[1]) == (t.first + 1, t.last + 1) for t in targets)]
    if inner:
        return min(inner, key=lambda r: r[1] - r[0])
    spans = [r for r in runs if not r[2]]
    touched = [s for s in spans if s[0] <= high and s[1] >= low]
    start, end = min(s[0] for s in touched), max(s[1] for s in touched)
    grown = True
    while grown:  # statements sharing a line with the run (`a = 1; b = 2`) come along
        grown = False
        for s in spans:
            if s[0] <= end and s[1] >= start and (s[0] < start or s[1] > end):
                start, end, grown = min(start, s[0]), max(end, s[1]), True
    return start, end, False


@lru_cache(maxsize=4)
def _lines(text: str) -> tuple:
    return tuple(split_lines(text, keepends=True))


@lru_cache(maxsize=4)
def _bare(text: str) -> tuple:
    return tuple(line.rstrip("\r\n") for line in _lines(text))


def apply(text: str, operations: tuple, line_length: int | None = None) -> str:
    start, end, new = rewrite(text, operations, line_length)
    lines = _lines(text)
    return "".join(lines[:start - 1]) + new + "".join(lines[end:])


def edits(text: str, operations: tuple, line_length: int | None = None) -> list:
    from .edits import Edit, line_edits

    start, end, new = rewrite(text, operations, line_length)
    old = "".join(_lines(text)[start - 1:end])
    return [Edit(e.start_line + start - 1, e.end_line + start - 1, e.content) for e in line_edits(old, new)]


def rewrite(text: str, operations: tuple, line_length: int | None = None) -> tuple[int, int, str]:
    """(first line, last line, new text of those lines) for `operations`;
    new or changed lines longer than `line_length` wrapped as a formatter would."""
    for op in operations:
        if not isinstance(op, (InsertBefore, InsertAfter, Replace, Wrap)):
            raise FixError(f"not an operation: {op!r}")
        if isinstance(op, Wrap) and not op.stmts:
            raise FixError("a wrap of no statements")
        for where in (op.stmts if isinstance(op, Wrap) else (op.stmt,)):
            if not _is_position(where):
                raise FixError(f"not a statement position: {where!r}")
    lines = _lines(text)
    rewriter = _Rewrite(text, lines, _bare(text), operations)
    start, end, indented = _segment(text, rewriter.statements)
    new = "".join(rewriter.run(start - 1, end - 1))
    if line_length:
        new = _fit(text, _lines(text)[start - 1:end], new, indented, line_length)
    check = "if True:\n" + new if indented else new  # an indented block may have any indentation
    try:
        ast.parse(check)
    except (SyntaxError, ValueError) as exc:
        raise FixError(f"the result would not parse: {exc}") from None
    return start, end, new


def _fit(text: str, old: tuple, new: str, indented: bool, limit: int) -> str:
    """`new` with each new or changed one-line statement longer than `limit`
    wrapped (alloc_lint.linewrap); other lines as they are."""
    lines = split_lines(new, keepends=True)
    original = set(old)
    from . import linewrap

    long = {i for i, line in enumerate(lines)
            if line not in original and linewrap.width(line.rstrip("\r\n")) > limit}
    if not long:
        return new

    whole, unit = _one_line_statements(new, indented)
    unit = unit or _module_unit(text)
    out = []
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        wrapped = linewrap.wrap(body, unit, limit) if i in long and i in whole else None
        out.extend(w + line[len(body):] for w in wrapped) if wrapped else out.append(line)
    return "".join(out)


def _one_line_statements(text: str, indented: bool) -> tuple[set, str | None]:
    """0-based indexes of the lines of `text` that hold a whole logical line,
    and the indentation its first nested block adds (None if none)."""
    shift = 1 if indented else 0
    found, first, unit, levels = set(), None, None, [""]
    try:
        for token in _tokens(("if True:\n" if indented else "") + text):
            if token.type == tokenize.INDENT:
                if unit is None and len(levels) > shift and token.string.startswith(levels[-1]):
                    unit = token.string[len(levels[-1]):] or None
                levels.append(token.string)
            elif token.type == tokenize.DEDENT:
                levels.pop()
            elif token.type == tokenize.NEWLINE:
                if first == token.start[0]:
                    found.add(first - 1 - shift)
                first = None
            elif token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER) \
                    and first is None:
                first = token.start[0]
    except (tokenize.TokenError, SyntaxError):
        return set(), None
    return found, unit


class _Rewrite:
    """The new lines of a segment: what goes before, after and instead of
    original lines, and which runs of lines move into a new block."""

    def __init__(self, text: str, lines: list, bare: list, operations: tuple):
        self.lines = lines
        self.newline = _newline(lines[0]) if lines else "\n"
        self.before: dict[int, list] = {}  # line -> new lines before it
        self.after: dict[int, list] = {}  # line -> new lines after it
        self.instead: dict[int, tuple] = {}  # first line -> (last line, new lines)
        self.wraps: dict[int, tuple] = {}  # first line -> (last line, first statement, Wrap)
        self.statements: list[_Statement] = []
        anchors: dict[int, int] = {}  # id(statement node) -> line its InsertAfter follows
        replaced: list[_Statement] = []
        wrapped: set[int] = set()
        deleted: dict[int, list] = {}  # block -> statements deleted
        kept: set[int] = set()  # blocks that keep or receive a statement

        def find(where) -> _Statement:
            stmt = _statement(text, where, bare)
            self.statements.append(stmt)
            return stmt

        for op in operations:
            if isinstance(op, InsertBefore):
                stmt = find(op.stmt)
                self.before.setdefault(stmt.first, []).extend(self._code(op.code, stmt))
            elif isinstance(op, InsertAfter):
                stmt = find(op.stmt)
                _alone_at_end(stmt, bare)
                anchor = anchors[id(stmt.node)] = self._after_comments(stmt, bare)
                self.after.setdefault(anchor, []).extend(self._code(op.code, stmt))
                kept.add(stmt.block)
            elif isinstance(op, Replace):
                stmt = find(op.stmt)
                if any(r.node is stmt.node for r in replaced):
                    raise FixError(f"two replacements of the statement at {op.stmt[0]}:{op.stmt[1] + 1}")
                replaced.append(stmt)
                self.instead[stmt.first] = (stmt.last, self._replacement(op.code, stmt, bare))
                if op.code.strip():
                    kept.add(stmt.block)
                else:
                    deleted.setdefault(stmt.block, []).append(stmt)
            else:
                members = [find(where) for where in op.stmts]
                for member in members:
                    _alone_at_end(member, bare)
                    if id(member.node) in wrapped:
                        raise FixError(f"the statement at line {member.node.lineno} is wrapped twice")
                    wrapped.add(id(member.node))
                first = members[0]
                if any(m.block != first.block or m.index != first.index + k for k, m in enumerate(members)):
                    raise FixError("wrapped statements are not adjacent statements of one block, in order")
                _header(op.header, bool(op.orelse))
                self.wraps[first.first] = (members[-1], first, op)
                kept.add(first.block)

        for stmt in replaced:  # changes inside a statement that is replaced would be lost
            for other in self.statements:
                if other.node is not stmt.node and stmt.first <= other.first and other.last <= stmt.last:
                    raise FixError("an operation inside a statement that is replaced")
        # The last line of each wrap: the last member's, or what was inserted after it.
        self.wraps = {line: (anchors.get(id(last.node), last.last), first, op)
                      for line, (last, first, op) in self.wraps.items()}
        index = _index(text)
        for block, gone in deleted.items():  # a block whose every statement is deleted gets `pass`
            if block not in kept and len(gone) == len(index.blocks[block]) \
                    and index.parent_base[block] is not None:  # a module may be empty
                last = max(gone, key=lambda s: s.last)
                end, new = self.instead[last.first]
                self.instead[last.first] = (end, [*new, last.base + "pass" + self.newline])

    def _code(self, code: str, stmt: _Statement) -> list:
        return list(_snippet(code, stmt.base, stmt.unit, self.newline))

    def _replacement(self, code: str, stmt: _Statement, bare: list) -> list:
        """The new lines of a replaced statement, keeping the comment at the end of its line."""
        rest = _alone_at_end(stmt, bare)
        new = self._code(code, stmt)
        if rest.strip():
            if new and not _ends_compound(code):
                new[-1] = new[-1].rstrip("\r\n") + rest + self.newline
            else:  # on a line of its own, above the new code (or in place of the deleted statement)
                new.insert(0, stmt.base + rest.strip() + self.newline)
        if new and not self.lines[stmt.last].endswith(("\n", "\r")):  # no line end at the end of the file
            new[-1] = new[-1].rstrip("\r\n")
        return new

    def _after_comments(self, stmt: _Statement, bare: list) -> int:
        """The line an insert after `stmt` follows: comment lines indented
        deeper than the statement, right after it, belong to the block it ends."""
        line = probe = stmt.last
        while probe + 1 < len(bare):
            probe += 1
            current = bare[probe]
            if not current.strip():
                continue
            if not (current.lstrip().startswith("#") and current.startswith(stmt.base)
                    and len(_indentation(current)) > len(stmt.base)):
                break
            line = probe
        return line

    def run(self, start: int, end: int, inside=None) -> list:
        """The new lines for original lines start..end (0-based, inclusive)."""
        out: list[str] = []
        i = start
        while i <= end:
            if i in self.wraps and self.wraps[i] is not inside:
                out.extend(self._wrapped(i))
                i = self.wraps[i][0] + 1
                continue
            out.extend(self.before.get(i, ()))
            if i in self.instead:
                last, new = self.instead[i]
                out.extend(new)
            else:
                last = i
                out.append(self.lines[i])
            if last in self.after:
                if out and not out[-1].endswith(("\n", "\r")):
                    out[-1] += self.newline
                out.extend(self.after[last])
            i = last + 1
        return out

    def _wrapped(self, line: int) -> list:
        end, first, op = self.wraps[line]
        body = self.run(line, end, inside=self.wraps[line])
        if body and not body[-1].endswith(("\n", "\r")):
            body[-1] += self.newline
        try:
            skip = _string_lines("".join(body))
        except (tokenize.TokenError, SyntaxError) as exc:
            raise FixError(f"cannot read the statements to wrap: {exc}") from None
        inner = first.base + first.unit
        new = [first.base + _header(op.header, bool(op.orelse)) + ":" + self.newline]
        new += _indent(body, skip, first.base, first.unit)
        new += _snippet(op.body_after, inner, first.unit, self.newline)
        if op.orelse.strip():
            new += [first.base + "else:" + self.newline]
            new += _snippet(op.orelse, inner, first.unit, self.newline)
        return new


@lru_cache(maxsize=64)
def _ends_compound(code: str) -> bool:
    return isinstance(ast.parse(code).body[-1], _COMPOUND)


_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
             ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Match)


@lru_cache(maxsize=64)
def _header(header: str, orelse: bool) -> str:
    """`header` without its colon, if it opens a block (that may have `else:`)."""
    header = header.strip()
    header = header[:-1].rstrip() if header.endswith(":") else header
    try:
        node = ast.parse(f"{header}:\n    pass\n").body[0]
    except (SyntaxError, ValueError, IndexError):
        raise FixError(f"`{header}:` is not the header of a block") from None
    if orelse and not isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While)):
        raise FixError(f"`{header}:` cannot have an `else:` block")
    return header
