"""The ALC001 codemod: rewrite planned groups into the swap or ping-pong form.

The rule finds groups on the stdlib `ast`; the rewrite happens on LibCST, which
keeps every comment and all formatting outside the statements it replaces.
Statements are matched between the two trees by their start position.
"""
from __future__ import annotations

import ast
import difflib
from functools import lru_cache

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .diagnostics import Edit
from .lines import char_column, split_lines


class _Rewriter(cst.CSTTransformer):
    """Rebuilds the statement lists that hold planned statements."""

    def __init__(self, module: cst.Module, insert_before, wrap, replace, spans=None, insert_after=None):
        self.module = module
        # Statements that hold no planned statement are kept as they are, unvisited.
        self.spans = spans or {}
        self.insert_after = insert_after or {}  # id(loop) -> [statements run right after it]
        targets = {*insert_before, *replace, *self.insert_after, *(i for _, ids, _, _ in wrap.values() for i in ids)}
        self.target_lines = {self.spans[i][0] for i in targets if i in self.spans}
        self.insert_before = insert_before  # id(loop) -> [names to set to None]
        # id(first alloc line) -> (temp, [alloc line ids], guard statement or None, [re-init statements])
        self.wrap = wrap
        self.replace = replace  # id(line) -> function(updated line) -> line | None

    def _statement(self, code: str) -> cst.SimpleStatementLine:
        # No module parsing config: its default indent may hold a form feed, which
        # LibCST refuses there; the newline is the module's at code generation.
        return cst.parse_statement(code + "\n")

    def _rebuild(self, originals, updated, indent):
        """The new statement list, and comment lines left over at its end."""
        by_id = {id(o): u for o, u in zip(originals, updated)}
        wrapped = {i for _, ids, _, _ in self.wrap.values() for i in ids[1:]}
        out, carry = [], []
        for original in originals:
            key = id(original)
            node = by_id[key]
            if key in wrapped:
                continue
            if key in self.insert_before:
                inits = [self._statement(f"{name} = None") for name in self.insert_before[key]]
                inits[0] = inits[0].with_changes(leading_lines=node.leading_lines)
                node = node.with_changes(leading_lines=[])
                out.extend(inits)
            if key in self.wrap:
                temp, ids, guard, reinit = self.wrap[key]
                lines = [by_id[i] for i in ids]
                leading = lines[0].leading_lines
                lines[0] = lines[0].with_changes(leading_lines=[])
                orelse = None
                if reinit:
                    orelse = cst.Else(body=cst.IndentedBlock(body=[self._statement(r) for r in reinit],
                                                             indent=indent))
                node = cst.If(
                    test=cst.parse_expression(f"{temp} is None"),
                    # Indent like the enclosing block, not LibCST's module default.
                    body=cst.IndentedBlock(body=lines, indent=indent),
                    orelse=orelse,
                    leading_lines=[] if guard else leading,
                )
                if guard:
                    condition, drop = guard
                    out.append(cst.If(
                        test=cst.parse_expression(f"{temp} is not None and ({condition})"),
                        body=cst.IndentedBlock(body=[self._statement(f"{' = '.join(drop)} = None")],
                                               indent=indent),
                        leading_lines=leading,
                    ))
            if key in self.replace:
                old = by_id[key]
                node = self.replace[key](node)
                if node is None:  # an emptied line: keep its comments for what follows
                    carry.extend(old.leading_lines)
                    comment = old.trailing_whitespace.comment
                    if comment is not None:
                        carry.append(cst.EmptyLine(comment=comment))
                    continue
            if carry:
                node = node.with_changes(leading_lines=[*carry, *node.leading_lines])
                carry = []
            out.append(node)
            out.extend(self._statement(code) for code in self.insert_after.get(key, []))
        return out, carry

    def on_visit(self, node) -> bool:
        span = self.spans.get(id(node))
        if span is not None and not any(span[0] <= line <= span[1] for line in self.target_lines):
            return False
        return super().on_visit(node)

    def leave_IndentedBlock(self, original_node, updated_node):
        indent = original_node.indent if original_node.indent is not None else self.module.default_indent
        body, rest = self._rebuild(original_node.body, updated_node.body, indent)
        return updated_node.with_changes(body=body, footer=[*rest, *updated_node.footer])

    def leave_Module(self, original_node, updated_node):
        body, rest = self._rebuild(original_node.body, updated_node.body, self.module.default_indent)
        return updated_node.with_changes(body=body, footer=[*rest, *updated_node.footer])


def _rebinding(stmt: ast.Assign, pairs, form: str) -> str:
    """`A = T` -> `A, T = T, A` (swap) or `A, T, T_alt = T, T_alt, T` (ping-pong),
    keeping any other elements of a tuple assignment."""
    target, value = stmt.targets[0], stmt.value
    if isinstance(target, ast.Name):
        targets, values = [target.id], [value.id]
    else:
        targets = [ast.unparse(t) for t in target.elts]
        values = [ast.unparse(v) for v in value.elts]
    for acc, temp, spare in pairs:
        if acc in targets and values[targets.index(acc)] == temp:
            if form == "swap":
                targets.append(temp)
                values.append(acc)
            else:
                targets += [temp, spare]
                values += [spare, temp]
    return f"{', '.join(targets)} = {', '.join(values)}"


def _without_temps(stmt: ast.Delete, temps: set[str]) -> str | None:
    kept = []
    for target in stmt.targets:
        elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        kept += [ast.unparse(e) for e in elts if not (isinstance(e, ast.Name) and e.id in temps)]
    return f"del {', '.join(kept)}" if kept else None


@lru_cache(maxsize=2)
def _parsed(text: str):
    """The module, its statements by start position, and each statement's line
    span. Cached: JSON and SARIF output apply each fix of a file on its own to
    the same text, and parsing with positions is most of the cost. LibCST trees
    are immutable (a transform builds new nodes), so sharing one is safe."""
    module = cst.parse_module(text)
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    at: dict[tuple[int, int], cst.CSTNode] = {}
    spans: dict[int, tuple[int, int]] = {}
    for node, where in positions.items():
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            at.setdefault((where.start.line, where.start.column), node)
            spans[id(node)] = (where.start.line, where.end.line)
    return module, at, spans


class FixError(Exception):
    """A planned rewrite could not be carried out on this text; nothing is changed."""


def apply_plans(text: str, plans: list) -> str:
    """Rewrite `text` (the source the plans were made from) with every plan.

    Raises FixError, never anything else, when LibCST reads the text
    differently from `ast` (odd whitespace, form feeds in indentation) or the
    result would not parse: a fix that cannot be proven well-formed is dropped."""
    if not plans:
        return text
    try:
        new = _apply_plans(text, plans)
        ast.parse(new)
    except (cst.ParserSyntaxError, LookupError, ValueError, SyntaxError, RecursionError, TypeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FixError(f"could not apply the fix: {message}") from None
    return new


def _apply_plans(text: str, plans: list) -> str:
    module, at, spans = _parsed(text)
    lines = split_lines(text)

    def node_for(stmt: ast.stmt) -> cst.CSTNode:
        key = (stmt.lineno, char_column(lines[stmt.lineno - 1], stmt.col_offset))
        if key not in at:
            raise LookupError(f"no statement at {key[0]}:{key[1] + 1}")
        return at[key]

    insert_before: dict[int, list[str]] = {}
    insert_after: dict[int, list[str]] = {}
    wrap, replace = {}, {}
    for plan in plans:
        loop = id(node_for(plan.loop))
        # Ping-pong's spare buffers start as None too: the lazy `if T is None:`
        # allocates the second buffer at the second merge, when the rotation
        # `A, T, T_alt = T, T_alt, T` has handed T the spare's None.
        insert_before.setdefault(loop, []).extend([plan.first_temp, *(s for _, _, s in plan.pairs if s)])
        if plan.release:
            insert_after.setdefault(loop, []).append(f"{' = '.join(plan.release)} = None")
        alloc_lines = [node_for(s) for s in plan.allocs]
        guard = (plan.guard, plan.drop) if plan.guard else None
        wrap[id(alloc_lines[0])] = (plan.first_temp, [id(x) for x in alloc_lines], guard, list(plan.reinit))
        for stmt in plan.rebinds:
            new = cst.parse_statement(_rebinding(stmt, plan.pairs, plan.form) + module.default_newline).body[0]
            replace[id(node_for(stmt))] = lambda line, new=new: line.with_changes(body=[new])
        temps = {temp for _, temp, _ in plan.pairs}
        for stmt in plan.deletes:
            kept = _without_temps(stmt, temps)
            if kept is None:
                replace[id(node_for(stmt))] = lambda line: None
            else:
                new = cst.parse_statement(kept + module.default_newline).body[0]
                replace[id(node_for(stmt))] = lambda line, new=new: line.with_changes(body=[new])
    return module.visit(_Rewriter(module, insert_before, wrap, replace, spans, insert_after)).code


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
