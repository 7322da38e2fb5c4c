"""Def-use facts about names inside a loop: where a name is bound, whether a
read can let a reference outlive its statement, and where a value comes from.

Everything here answers conservatively: "unknown" counts as "escapes".
"""
from __future__ import annotations

import ast

from .scopes import NESTED_SCOPES

# Methods that keep a reference to their argument.
STORING_METHODS = frozenset({
    "append", "extend", "insert", "add", "put", "put_nowait", "appendleft",
    "extendleft", "setdefault", "update", "push", "register_buffer", "setattr",
    "__setitem__", "register", "cache", "store", "save", "set",
})
# Builtins whose result holds the argument itself (or iterates over views of it).
ALIASING_CALLS = frozenset({
    "list", "tuple", "set", "frozenset", "dict", "iter", "zip", "enumerate",
    "reversed", "map", "filter", "id", "ref", "proxy", "getattr", "vars", "memoryview",
})
# Attribute reads and method calls whose result shares no storage with the tensor.
HARMLESS_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout", "requires_grad"})
HARMLESS_METHODS = frozenset({
    "size", "numel", "dim", "stride", "is_contiguous", "data_ptr", "element_size",
    "nelement", "storage_offset", "item", "tolist", "sum", "mean", "norm", "amax", "amin",
    "abs", "isnan", "isinf", "any", "all", "record_stream",
})
# Calls whose result is a freshly allocated tensor nobody else holds.
FRESH_TENSOR_CALLS = frozenset({
    "torch.empty", "torch.zeros", "torch.ones", "torch.full", "torch.rand", "torch.randn",
    "torch.randint", "torch.empty_like", "torch.zeros_like", "torch.ones_like",
    "torch.full_like", "torch.rand_like", "torch.randn_like", "torch.empty_strided",
    "torch.arange", "torch.tensor", "torch.cat", "torch.stack",
})
FRESH_TENSOR_METHODS = frozenset({"clone"})


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


def in_nested_scope(node: ast.AST, scope_node: ast.AST, parents: dict) -> bool:
    """Is `node` inside a def, lambda, class or comprehension nested in scope_node?"""
    current = parents.get(node)
    while current is not None and current is not scope_node:
        if isinstance(current, NESTED_SCOPES):
            return True
        current = parents.get(current)
    return False


def is_rebound_in(tree_nodes, name: str) -> bool:
    """Is `name` stored or deleted anywhere in these subtrees?"""
    for tree in tree_nodes:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
                return True
        if binds_otherwise(tree, name):
            return True
    return False


def callee_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_none_test(node: ast.Name, parent: ast.AST) -> bool:
    return (isinstance(parent, ast.Compare) and len(parent.ops) == 1
            and isinstance(parent.ops[0], (ast.Is, ast.IsNot))
            and any(isinstance(side, ast.Constant) and side.value is None
                    for side in (parent.left, *parent.comparators)))


def read_is_transient(node: ast.Name, parents: dict, qualify=lambda expr: None) -> bool:
    """Can this read of a tensor name not create a reference that outlives
    the statement it is in?

    `qualify` names a callee (torch's own functions never keep their inputs).
    True when the value is consumed by something that makes a new object
    (arithmetic, a comparison, `x is None`, `x.shape`), or flows only through
    calls and operators into an expression statement or a condition, with no
    container-storing method on the way. Anything else (an assignment, a
    return, a yield, a literal container, a lambda) may keep it.
    """
    parent = parents.get(node)
    if _is_none_test(node, parent):
        return True
    if isinstance(parent, (ast.BinOp, ast.Compare, ast.FormattedValue)):
        return True
    if isinstance(parent, ast.UnaryOp) and not isinstance(parent.op, ast.UAdd):
        return True
    if isinstance(parent, ast.Attribute) and parent.value is node:
        if parent.attr in HARMLESS_ATTRIBUTES:
            return True
        grand = parents.get(parent)
        if isinstance(grand, ast.Call) and grand.func is parent and parent.attr in HARMLESS_METHODS:
            return True
    if isinstance(parent, ast.Subscript) and parent.value is node and isinstance(parent.ctx, ast.Store):
        return True  # `acc[...] = x` writes into the current buffer
    if isinstance(parent, ast.Attribute) and isinstance(parent.ctx, ast.Store):
        return False
    # Follow the value up to its statement.
    current = node
    while True:
        parent = parents.get(current)
        if parent is None:
            return False
        if isinstance(parent, ast.Call):
            name = callee_name(parent)
            if (name in STORING_METHODS or name in ALIASING_CALLS) \
                    and not (qualify(parent.func) or "").startswith("torch."):
                return False
            # As an argument, or as the receiver of a method call.
        elif isinstance(parent, ast.keyword):
            pass
        elif isinstance(parent, ast.Attribute):
            if parents.get(parent) is None or not (isinstance(parents.get(parent), ast.Call)
                                                    and parents.get(parent).func is parent):
                return False  # an attribute read other than a method call
        elif isinstance(parent, (ast.Await, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp,
                                 ast.IfExp, ast.FormattedValue, ast.JoinedStr)):
            pass
        elif isinstance(parent, ast.Expr):
            return True
        elif isinstance(parent, (ast.If, ast.While, ast.Assert)):
            return current is parent.test or isinstance(parent, ast.Assert)
        else:
            return False
        current = parent


def value_origin(value: ast.expr, scope_params: set[str], local_names: set[str], qualify) -> str:
    """Where a value assigned to an accumulator comes from.

    "none": the constant None (a placeholder, not a buffer);
    "owned": a fresh tensor nobody else references (torch.zeros(...), x.clone(), a * b);
    "external": memory the caller or another object owns (a parameter, a
        global, an attribute, a subscript or view);
    "opaque": anything else, e.g. another local name or an unknown call's result.
    """
    if isinstance(value, ast.Constant) and value.value is None:
        return "none"
    if isinstance(value, ast.Name):
        if value.id in scope_params or value.id not in local_names:
            return "external"
        return "opaque"
    if isinstance(value, (ast.Attribute, ast.Subscript, ast.Starred)):
        return "external"
    if isinstance(value, (ast.BinOp, ast.UnaryOp)):
        return "owned"
    if isinstance(value, ast.IfExp):
        return worst(value_origin(value.body, scope_params, local_names, qualify),
                     value_origin(value.orelse, scope_params, local_names, qualify))
    if isinstance(value, ast.Call):
        if isinstance(value.func, ast.Attribute) and value.func.attr in FRESH_TENSOR_METHODS:
            return "owned"
        if qualify(value.func) in FRESH_TENSOR_CALLS:
            return "owned"
        return "opaque"
    return "opaque"


_RANK = {"none": 0, "owned": 1, "opaque": 2, "external": 3}


def worst(*origins: str) -> str:
    return max(origins, key=_RANK.__getitem__, default="none")
