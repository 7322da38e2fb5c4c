"""LibCST side of `alloc_lint.edits` (imported only when something is fixed).

Only the top-level statements that hold the operations are parsed: LibCST
costs about ten times `ast`, and a whole large module costs it seconds. The
statements are found with `ast` (whose positions the operations use), cut out
as whole lines, parsed as a module of their own, rewritten, and put back.
"""
from __future__ import annotations

import ast
from functools import lru_cache

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .edits import FixError, InsertAfter, InsertBefore, Replace, Wrap
from .lines import split_lines


@lru_cache(maxsize=4)
def _top_level_spans(text: str) -> tuple:
    """(first line, last line) of each top-level statement, decorators included."""
    spans = []
    for stmt in ast.parse(text).body:
        decorators = getattr(stmt, "decorator_list", ())
        spans.append((min([stmt.lineno, *(d.lineno for d in decorators)]), stmt.end_lineno))
    return tuple(spans)


def _segment(text: str, lines: set) -> tuple[int, int]:
    """The smallest run of whole top-level statements holding `lines`."""
    spans = _top_level_spans(text)
    touched = [s for s in spans if any(s[0] <= line <= s[1] for line in lines)]
    missing = [line for line in lines if not any(s[0] <= line <= s[1] for s in touched)]
    if missing:
        raise FixError(f"no statement at line {min(missing)}")
    start, end = min(s[0] for s in touched), max(s[1] for s in touched)
    grown = True
    while grown:  # statements sharing a line with the run (`a = 1; b = 2`) come along
        grown = False
        for s in spans:
            if s[0] <= end and s[1] >= start and (s[0] < start or s[1] > end):
                start, end, grown = min(start, s[0]), max(end, s[1]), True
    return start, end


@lru_cache(maxsize=4)
def _parsed(segment: str):
    """The segment's module, its statements by start position, and each
    statement's line span. Cached: JSON and SARIF output apply each fix of a
    file on its own to the same text. LibCST trees are immutable (a transform
    builds new nodes), so sharing one is safe."""
    module = cst.parse_module(segment)
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    at: dict[tuple[int, int], cst.CSTNode] = {}
    spans: dict[int, tuple[int, int]] = {}
    for node, where in positions.items():
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            at.setdefault((where.start.line, where.start.column), node)
            spans[id(node)] = (where.start.line, where.end.line)
    return module, at, spans


@lru_cache(maxsize=256)
def _snippet(code: str, indent: str) -> tuple:
    """The statements of `code`, every block indented by `indent`."""
    if not code.strip():
        return ()
    module = cst.parse_module(code if code.endswith("\n") else code + "\n")
    if any(line.comment for line in module.footer):
        raise FixError("comment lines after the last statement of new code are not supported")
    body = [statement.visit(_Indent(indent)) for statement in module.body]
    if module.header:
        body[0] = body[0].with_changes(leading_lines=[*module.header, *body[0].leading_lines])
    return tuple(body)


class _Indent(cst.CSTTransformer):
    def __init__(self, indent: str):
        self.indent = indent

    def leave_IndentedBlock(self, original_node, updated_node):
        return updated_node.with_changes(indent=self.indent)


@lru_cache(maxsize=64)
def _header(header: str, orelse: bool) -> cst.BaseCompoundStatement:
    header = header.rstrip()
    header = header[:-1] if header.endswith(":") else header
    try:
        node = cst.parse_statement(f"{header}:\n    pass\n")
    except cst.ParserSyntaxError:
        node = None
    if not isinstance(getattr(node, "body", None), cst.IndentedBlock):
        raise FixError(f"`{header}:` is not the header of a block")
    if orelse:
        if not isinstance(node, (cst.If, cst.For, cst.While)):
            raise FixError(f"`{header}:` cannot have an `else:` block")
        node = cst.parse_statement(f"{header}:\n    pass\nelse:\n    pass\n")
    return node


class _Targets:
    """The operations, attached to the nodes they address."""

    def __init__(self, module, at, spans, operations, line_offset):
        self.before: dict[int, list[str]] = {}
        self.after: dict[int, list[str]] = {}
        self.replace: dict[int, str] = {}
        self.wraps: dict[int, tuple] = {}  # id(first statement) -> (ids, Wrap)
        self.wrapped: set[int] = set()
        self.done: set[int] = set()  # statements met in a statement list

        def node(where) -> cst.CSTNode:
            try:
                line, column = where
                found = at.get((line - line_offset, column))
            except (TypeError, ValueError):
                raise FixError(f"not a statement position: {where!r}") from None
            if found is None:
                raise FixError(f"no statement starts at {line}:{column + 1}")
            return found

        def alone(found, where):
            if isinstance(found, cst.SimpleStatementLine) and len(found.body) != 1:
                raise FixError(f"the statement at {where[0]}:{where[1] + 1} shares its line with another")

        for op in operations:
            if isinstance(op, InsertBefore):
                self.before.setdefault(id(node(op.stmt)), []).append(op.code)
            elif isinstance(op, InsertAfter):
                self.after.setdefault(id(node(op.stmt)), []).append(op.code)
            elif isinstance(op, Replace):
                found = node(op.stmt)
                alone(found, op.stmt)
                if id(found) in self.replace:
                    raise FixError(f"two replacements of the statement at {op.stmt[0]}:{op.stmt[1] + 1}")
                self.replace[id(found)] = op.code
            elif isinstance(op, Wrap):
                ids = []
                for where in op.stmts:
                    found = node(where)
                    alone(found, where)
                    if id(found) in self.wrapped:
                        raise FixError(f"the statement at {where[0]}:{where[1] + 1} is wrapped twice")
                    self.wrapped.add(id(found))
                    ids.append(id(found))
                self.wraps[ids[0]] = (ids, op)
            else:
                raise FixError(f"not an operation: {op!r}")

        # Changes inside a statement that is replaced would be lost.
        targets = self.all = {*self.before, *self.after, *self.replace, *self.wrapped}
        for key in self.replace:
            first, last = spans[key]
            for other in targets:
                if other != key and first <= spans[other][0] <= last and spans[other][1] <= last:
                    raise FixError("an operation inside a statement that is replaced")
        self.lines = {spans[key][0] for key in targets}


class _Rewriter(cst.CSTTransformer):
    """Rebuilds the statement lists that hold addressed statements."""

    def __init__(self, module: cst.Module, targets: _Targets, spans: dict):
        self.module = module
        self.targets = targets
        self.spans = spans
        self.used_wraps: set[int] = set()

    def on_visit(self, node) -> bool:
        # Statements that hold no addressed statement are kept as they are, unvisited.
        span = self.spans.get(id(node))
        if span is not None and not any(span[0] <= line <= span[1] for line in self.targets.lines):
            return False
        return super().on_visit(node)

    def leave_IndentedBlock(self, original_node, updated_node):
        indent = original_node.indent if original_node.indent is not None else self.module.default_indent
        body, rest = self._rebuild(original_node.body, updated_node.body, indent)
        if not body:  # every statement deleted: keep the block valid
            body, rest = [cst.SimpleStatementLine([cst.Pass()], leading_lines=rest)], []
        return updated_node.with_changes(body=body, footer=[*rest, *updated_node.footer])

    def leave_Module(self, original_node, updated_node):
        body, rest = self._rebuild(original_node.body, updated_node.body, self.module.default_indent)
        return updated_node.with_changes(body=body, footer=[*rest, *updated_node.footer])

    def _expand(self, original, node, indent: str) -> tuple[list, list]:
        """What one statement becomes (inserts, replacement), and the comment
        lines of a deleted statement with nothing left to carry them."""
        t = self.targets
        key = id(original)
        t.done.add(key)
        before = [s for code in t.before.get(key, ()) for s in _snippet(code, indent)]
        after = [s for code in t.after.get(key, ()) for s in _snippet(code, indent)]
        carry: list = []
        if key in t.replace:
            middle = list(_snippet(t.replace[key], indent))
            comment = getattr(node, "trailing_whitespace", None)
            comment = comment.comment if comment is not None else None
            if middle:
                last = middle[-1]
                if comment is not None and isinstance(last, cst.SimpleStatementLine) \
                        and last.trailing_whitespace.comment is None:
                    middle[-1] = last.with_changes(trailing_whitespace=node.trailing_whitespace)
                elif comment is not None:
                    middle[0] = middle[0].with_changes(
                        leading_lines=[cst.EmptyLine(comment=comment), *middle[0].leading_lines])
                middle[0] = middle[0].with_changes(leading_lines=[*node.leading_lines, *middle[0].leading_lines])
            else:  # deleted: its comments go to what follows
                carry = [*node.leading_lines, *([cst.EmptyLine(comment=comment)] if comment else [])]
        else:
            middle = [node]
        result = [*before, *middle, *after]
        if before and middle:  # comment lines above the statement go above the inserted code
            result[0] = result[0].with_changes(leading_lines=[*middle[0].leading_lines, *result[0].leading_lines])
            i = len(before)
            result[i] = result[i].with_changes(leading_lines=[])
        if not middle and result:
            result[0] = result[0].with_changes(leading_lines=[*carry, *result[0].leading_lines])
            carry = []
        return result, carry

    def _rebuild(self, originals, updated, indent: str):
        """The new statement list, and comment lines left over at its end."""
        t = self.targets
        out, carry = [], []
        i = 0
        while i < len(originals):
            key = id(originals[i])
            if key in t.wraps:
                ids, op = t.wraps[key]
                members = originals[i:i + len(ids)]
                if [id(m) for m in members] != ids:
                    raise FixError("wrapped statements are not adjacent statements of one block, in order")
                inner, inner_carry = [], []
                for original, node in zip(members, updated[i:i + len(ids)]):
                    nodes, left = self._expand(original, node, indent)
                    if nodes and inner_carry:
                        nodes[0] = nodes[0].with_changes(leading_lines=[*inner_carry, *nodes[0].leading_lines])
                        inner_carry = []
                    inner.extend(nodes)
                    inner_carry.extend(left)
                inner.extend(_snippet(op.body_after, indent))
                leading = []
                if inner:
                    leading = list(inner[0].leading_lines)
                    inner[0] = inner[0].with_changes(leading_lines=[])
                if inner_carry:  # comments of deleted statements at the end of the block
                    inner.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=inner_carry))
                if not inner:
                    inner = [cst.SimpleStatementLine([cst.Pass()])]
                compound = _header(op.header, bool(op.orelse))
                changes = {"body": cst.IndentedBlock(body=inner, indent=indent), "leading_lines": leading}
                if op.orelse:
                    changes["orelse"] = compound.orelse.with_changes(
                        body=cst.IndentedBlock(body=list(_snippet(op.orelse, indent)), indent=indent))
                nodes, left = [compound.with_changes(**changes)], []
                self.used_wraps.add(key)
                i += len(ids)
            elif key in t.wrapped:
                raise FixError("wrapped statements are not adjacent statements of one block, in order")
            else:
                nodes, left = self._expand(originals[i], updated[i], indent)
                i += 1
            if nodes and carry:
                nodes[0] = nodes[0].with_changes(leading_lines=[*carry, *nodes[0].leading_lines])
                carry = []
            out.extend(nodes)
            carry.extend(left)
        return out, carry


def rewrite(text: str, operations: tuple) -> tuple[int, int, str]:
    """(first line, last line, new text of those lines) for `operations`."""
    lines = set()
    for op in operations:
        if isinstance(op, Wrap) and not op.stmts:
            raise FixError("a wrap of no statements")
        for where in (op.stmts if isinstance(op, Wrap) else (op.stmt,)):
            if not (isinstance(where, tuple) and len(where) == 2 and all(isinstance(x, int) for x in where)):
                raise FixError(f"not a statement position: {where!r}")
            lines.add(where[0])
    start, end = _segment(text, lines)
    segment = "".join(split_lines(text, keepends=True)[start - 1:end])
    module, at, spans = _parsed(segment)
    targets = _Targets(module, at, spans, operations, start - 1)
    rewriter = _Rewriter(module, targets, spans)
    new = module.visit(rewriter).code
    if rewriter.used_wraps != set(targets.wraps):
        raise FixError("wrapped statements are not adjacent statements of one block, in order")
    if not targets.all <= targets.done:  # e.g. an `elif`, which no statement list holds
        raise FixError("an operation addresses a clause, not a statement of a block")
    ast.parse(new)  # the run of whole top-level statements must parse on its own
    return start, end, new
