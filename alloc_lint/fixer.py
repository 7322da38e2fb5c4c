"""The ALC001 codemod: rewrite planned groups into the swap or ping-pong form.

The rule finds groups on the stdlib `ast`; the rewrite happens on LibCST, which
keeps every comment and all formatting outside the statements it replaces.
Statements are matched between the two trees by their start position.
"""
from __future__ import annotations

import ast
import difflib

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .diagnostics import Edit
from .lines import split_lines


def _char_col(lines: list[str], lineno: int, byte_col: int) -> int:
    line = lines[lineno - 1]
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


class _Rewriter(cst.CSTTransformer):
    """Rebuilds the statement lists that hold planned statements."""

    def __init__(self, module: cst.Module, insert_before, wrap, replace):
        self.module = module
        self.insert_before = insert_before  # id(loop) -> [names to set to None]
        self.wrap = wrap  # id(first alloc line) -> (temp, [alloc line ids], [spare lines])
        self.replace = replace  # id(line) -> function(updated line) -> line | None

    def _statement(self, code: str) -> cst.SimpleStatementLine:
        return cst.parse_statement(code + self.module.default_newline, config=self.module.config_for_parsing)

    def _rebuild(self, originals, updated):
        by_id = {id(o): u for o, u in zip(originals, updated)}
        wrapped = {i for _, ids, _ in self.wrap.values() for i in ids[1:]}
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
                temp, ids, spares = self.wrap[key]
                lines = [by_id[i] for i in ids]
                leading = lines[0].leading_lines
                lines[0] = lines[0].with_changes(leading_lines=[])
                node = cst.If(
                    test=cst.parse_expression(f"{temp} is None"),
                    body=cst.IndentedBlock(body=[*lines, *spares]),
                    leading_lines=leading,
                )
            if key in self.replace:
                node = self.replace[key](node)
                if node is None:  # an emptied line: keep its comments for the next one
                    carry.extend(by_id[key].leading_lines)
                    continue
            if carry:
                node = node.with_changes(leading_lines=[*carry, *node.leading_lines])
                carry = []
            out.append(node)
        return out

    def leave_IndentedBlock(self, original_node, updated_node):
        return updated_node.with_changes(body=self._rebuild(original_node.body, updated_node.body))

    def leave_Module(self, original_node, updated_node):
        return updated_node.with_changes(body=self._rebuild(original_node.body, updated_node.body))


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


def apply_plans(text: str, plans: list) -> str:
    """Rewrite `text` (the source the plans were made from) with every plan."""
    if not plans:
        return text
    module = cst.parse_module(text)
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    at: dict[tuple[int, int], cst.CSTNode] = {}
    for node, where in positions.items():
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            at.setdefault((where.start.line, where.start.column), node)
    lines = split_lines(text)

    def node_for(stmt: ast.stmt) -> cst.CSTNode:
        key = (stmt.lineno, _char_col(lines, stmt.lineno, stmt.col_offset))
        if key not in at:
            raise LookupError(f"no statement at {key[0]}:{key[1] + 1}")
        return at[key]

    insert_before: dict[int, list[str]] = {}
    wrap, replace = {}, {}
    for plan in plans:
        insert_before.setdefault(id(node_for(plan.loop)), []).append(plan.first_temp)
        alloc_lines = [node_for(s) for s in plan.allocs]
        spares = []
        for (acc, temp, spare), line in zip(plan.pairs, alloc_lines):
            if spare:
                assign = line.body[0].with_changes(targets=[cst.AssignTarget(cst.Name(spare))])
                spares.append(line.with_changes(body=[assign], leading_lines=[],
                                                trailing_whitespace=cst.TrailingWhitespace()))
        wrap[id(alloc_lines[0])] = (plan.first_temp, [id(x) for x in alloc_lines], spares)
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
    return module.visit(_Rewriter(module, insert_before, wrap, replace)).code


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
