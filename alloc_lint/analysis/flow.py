"""Small syntactic facts about names: where they occur, and whether a name is
bound other than by assignment. The use classification built on them is
`uses.py`; the ownership and stability proofs are `ownership.py` and
`stability.py`."""
from __future__ import annotations

import ast


def name_nodes(tree: ast.AST, name: str) -> list[ast.Name]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name]


def binds_otherwise(tree: ast.AST, name: str) -> bool:
    """Is `name` bound in `tree` other than through an ast.Name (a parameter,
    def, class, import, `except ... as`, match capture) or declared
    global/nonlocal?"""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg == name:
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Global, ast.Nonlocal)) and name in node.names:
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name.split(".")[0]) == name:
            return True
        if isinstance(node, ast.ExceptHandler) and node.name == name:
            return True
        if type(node).__name__ in ("MatchAs", "MatchStar") and getattr(node, "name", None) == name:
            return True
        if type(node).__name__ == "MatchMapping" and getattr(node, "rest", None) == name:
            return True
    return False


def callee_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None
