"""Wrap a line the fix engine wrote that is longer than the project's line
length, the way `ruff format` (and black) write it, so formatter checks stay
green after a fix.

Only the shapes of statements fixes write are handled; anything else is left
as it is (`wrap` returns None):

- a tuple assignment `A, T, T_alt = T, T_alt, T`: the value in parentheses,
  one element per line; when even `A, T, T_alt = (` does not fit, the targets
  in parentheses one per line, then `) = value` (the value exploded too if it
  does not fit after them);
- a chained assignment of a constant `T = T_alt = None`: one statement per name;
- a call at the end of a statement `T = torch.empty_like(A, dtype=...)`: the
  arguments on one line inside the call's parentheses, or one per line with a
  trailing comma;
- an `if`/`elif`/`while` header: the condition in parentheses, on one line or
  one `and`/`or` operand per line.

A comment at the end of the line stays at the end of the last line.
"""
from __future__ import annotations

import ast
import io
import tokenize


def wrap(line: str, unit: str, limit: int) -> list[str] | None:
    """`line` (indentation, code, maybe a comment; no line end) as several
    lines that a formatter would write, or None. The result is checked to be
    the same statement as the line (the same syntax tree)."""
    lines = _wrap(line, unit, limit)
    if lines is None:
        return None
    before, after = _tree(line.strip()), _tree("\n".join(x[len(_indent(line)):] for x in lines))
    if before is None or (after != before and after != _unchained(line.strip())):
        return None
    return lines


def _unchained(code: str) -> str | None:
    """`a = b = None` as `a = None` then `b = None` (the same program for a constant)."""
    try:
        stmt = ast.parse(code).body[0]
    except (SyntaxError, IndexError):
        return None
    if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)):
        return None
    return ast.dump(ast.Module([ast.Assign([t], stmt.value) for t in stmt.targets], []))


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _tree(code: str) -> str | None:
    """The statement(s) of `code` without positions; a block header gets a body."""
    code = code.strip()
    if code.startswith("elif"):  # a clause: compare it as an `if`
        code = code[2:]
    body = code.split("#", 1)[0].rstrip() if "#" in code.splitlines()[-1] else code
    if body.endswith(":"):
        code = code + "\n    pass"
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return None


def _wrap(line: str, unit: str, limit: int) -> list[str] | None:
    indent = _indent(line)
    code, comment = _split_comment(line[len(indent):])
    if code is None:
        return None
    try:
        if code.endswith(":"):
            return _header(indent, code, comment, unit, limit)
        tree = ast.parse(code)
    except SyntaxError:
        return None
    if len(tree.body) != 1:
        return None
    stmt = tree.body[0]
    raw = code.encode("utf-8")
    if isinstance(stmt, ast.Assign) and len(stmt.targets) > 1:
        if isinstance(stmt.value, ast.Constant) and all(isinstance(t, ast.Name) for t in stmt.targets):
            value = _text(raw, stmt.value)
            out = [f"{indent}{t.id} = {value}" for t in stmt.targets]
            out[-1] += comment
            return out
        return None
    value = getattr(stmt, "value", None)
    if isinstance(stmt, ast.Assign) and isinstance(value, ast.Tuple) and value.elts \
            and not code[value.col_offset:].startswith("(") and _ascii(code):
        return _tuple_assignment(indent, code, stmt, comment, unit, limit)
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)) \
            and isinstance(value, ast.Call) and value.end_col_offset == len(raw):
        return _call(indent, raw, value, comment, unit, limit)
    return None


def _ascii(text: str) -> bool:
    return text.isascii()


def _text(raw: bytes, node: ast.AST) -> str:
    return raw[node.col_offset:node.end_col_offset].decode("utf-8")


def _split_comment(rest: str) -> tuple[str | None, str]:
    """(code, comment with the spaces before it) of one line."""
    if "#" not in rest:
        return rest.rstrip(), ""
    try:
        for token in tokenize.generate_tokens(io.StringIO(rest + "\n").readline):
            if token.type == tokenize.COMMENT:
                code = rest[:token.start[1]].rstrip()
                return code, rest[len(code):].rstrip()
    except (tokenize.TokenError, SyntaxError):
        return None, ""
    return rest.rstrip(), ""


def width(text: str) -> int:
    """Columns, a tab in the indentation counting 4 as in ruff's default."""
    return len(text.expandtabs(4)) if "\t" in text else len(text)


def _fits(text: str, limit: int) -> bool:
    return width(text) <= limit


def _exploded(indent: str, items: list[str], unit: str) -> list[str]:
    return [f"{indent}{unit}{item}," for item in items]


def _tuple_assignment(indent, code, stmt, comment, unit, limit):
    target, value = stmt.targets[0], stmt.value
    values = [code[e.col_offset:e.end_col_offset] for e in value.elts]
    flat_value = ", ".join(values)
    lhs = code[:value.col_offset].rstrip()  # "A, T, T_alt ="
    if _fits(f"{indent}{lhs} (", limit) or not (isinstance(target, ast.Tuple)
                                                 and not code.startswith("(")):
        return [f"{indent}{lhs} (", *_exploded(indent, values, unit), f"{indent}){comment}"]
    targets = [code[e.col_offset:e.end_col_offset] for e in target.elts]
    out = [f"{indent}(", *_exploded(indent, targets, unit)]
    if _fits(f"{indent}) = {flat_value}{comment}", limit):
        return out + [f"{indent}) = {flat_value}{comment}"]
    return out + [f"{indent}) = (", *_exploded(indent, values, unit), f"{indent}){comment}"]


def _call(indent, raw: bytes, call: ast.Call, comment, unit, limit):
    head_end = raw.index(b"(", call.func.end_col_offset) + 1
    head = raw[:head_end].decode("utf-8")
    parts = sorted([*call.args, *call.keywords], key=lambda n: (n.lineno, n.col_offset))
    if not parts:
        return None
    items = [_text(raw, p) for p in parts]
    inner = raw[head_end:call.end_col_offset - 1].decode("utf-8").strip()
    magic_comma = inner.endswith(",")
    flat = ", ".join(items)
    if not magic_comma and _fits(f"{indent}{unit}{flat}", limit):
        return [f"{indent}{head}", f"{indent}{unit}{flat}", f"{indent}){comment}"]
    return [f"{indent}{head}", *_exploded(indent, items, unit), f"{indent}){comment}"]


def _header(indent, code, comment, unit, limit):
    keyword = code.split(None, 1)[0]
    if keyword not in ("if", "elif", "while"):
        return None
    condition = code[len(keyword):-1].strip()
    tree = ast.parse(f"if {condition}:\n    pass\n")
    test = tree.body[0].test
    flat = f"{indent}{unit}{condition}"
    lines = [f"{indent}{keyword} ("]
    if _fits(flat, limit) or not isinstance(test, ast.BoolOp) or not _ascii(condition):
        lines.append(flat)
    else:
        source = f"if {condition}:"
        operator = "and" if isinstance(test.op, ast.And) else "or"
        operands = [source[v.col_offset:v.end_col_offset] for v in test.values]
        lines.append(f"{indent}{unit}{operands[0]}")
        lines += [f"{indent}{unit}{operator} {operand}" for operand in operands[1:]]
    lines.append(f"{indent}):{comment}")
    return lines
