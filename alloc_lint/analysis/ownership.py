"""Where an accumulator's values come from: its seeds, and whether each one is owned.

A seed is every binding of the accumulator other than the pattern's rebinding
(before the loop, or inside it: `if output is None: output = attn_output`).
A reuse form that writes into the first value (the swap) is only the same
program when every seed is OWNED: a fresh dense tensor that nothing else
references. The origin of a value is decided by its syntax alone:

- NONE      the constant None (a placeholder, not a buffer)
- OWNED     a fresh dense allocation without `out=` or `requires_grad`
            (`torch.zeros(...)`, `torch.empty_like(y)`, `y.clone()`,
            binary arithmetic, `torch.cat`/`torch.stack`)
- OPAQUE    anything the function made but cannot vouch for: another local
            name, an unknown call's result, a chained or walrus binding
- EXTERNAL  memory someone else owns: a parameter, a global, an attribute,
            a subscript or view, a `for` target
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from enum import Enum

from .uses import source


class Origin(str, Enum):
    NONE = "none"
    OWNED = "owned"
    OPAQUE = "opaque"
    EXTERNAL = "external"


_RANK = {Origin.NONE: 0, Origin.OWNED: 1, Origin.OPAQUE: 2, Origin.EXTERNAL: 3}

FRESH_ALLOCATORS = frozenset({
    "torch.empty", "torch.zeros", "torch.ones", "torch.full", "torch.rand", "torch.randn",
    "torch.randint", "torch.empty_like", "torch.zeros_like", "torch.ones_like", "torch.full_like",
    "torch.rand_like", "torch.randn_like", "torch.randint_like", "torch.cat", "torch.concat",
    "torch.concatenate", "torch.stack", "torch.clone",
})
LIKE_INITIALISERS = frozenset({"torch.empty_like", "torch.zeros_like", "torch.ones_like",
                               "torch.rand_like", "torch.randn_like", "torch.clone"})


@dataclass(frozen=True)
class Seed:
    target: ast.AST  # the binding occurrence of the accumulator (ast.Name)
    value: ast.expr | None  # what it is bound to, when that can be read
    origin: Origin
    text: str  # the binding, quoted in messages
    reason: str | None = None  # why it is not OWNED


def worst(*origins: Origin) -> Origin:
    return max(origins, key=_RANK.__getitem__, default=Origin.NONE)


def value_origin(value: ast.expr, params: set, local_names: set, qualify,
                 lines: list | None = None) -> tuple[Origin, str | None]:
    """The origin of an expression bound to an accumulator, and (when not
    OWNED) one line saying why."""
    text = f"`{source(value, lines)}`"
    if isinstance(value, ast.Constant) and value.value is None:
        return Origin.NONE, None
    if isinstance(value, ast.Name):
        if value.id in params or value.id not in local_names:
            return Origin.EXTERNAL, f"{text} is the caller's or a global tensor"
        return Origin.OPAQUE, f"{text} is another name for the tensor"
    if isinstance(value, (ast.Attribute, ast.Subscript, ast.Starred)):
        return Origin.EXTERNAL, f"{text} is (part of) a tensor another object holds"
    if isinstance(value, ast.BinOp):
        return Origin.OWNED, None
    if isinstance(value, ast.UnaryOp):
        if isinstance(value.op, ast.UAdd):
            origin, reason = value_origin(value.operand, params, local_names, qualify, lines)
            if origin is Origin.OWNED:
                return origin, None
            return worst(origin, Origin.OPAQUE), f"{text} is `{source(value.operand, lines)}` itself (unary `+`)"
        return Origin.OWNED, None
    if isinstance(value, ast.IfExp):
        a = value_origin(value.body, params, local_names, qualify, lines)
        b = value_origin(value.orelse, params, local_names, qualify, lines)
        return max((a, b), key=lambda o: _RANK[o[0]])
    if isinstance(value, ast.Call):
        keywords = {k.arg: k.value for k in value.keywords}
        if "out" in keywords:
            return Origin.OPAQUE, f"{text} returns its `out=` tensor"
        grad = keywords.get("requires_grad")
        if grad is not None and not (isinstance(grad, ast.Constant) and grad.value is False):
            return Origin.OPAQUE, (f"{text} may require grad: writing into it in place raises or "
                                   "changes the result's requires_grad")
        if isinstance(value.func, ast.Attribute) and value.func.attr == "clone" and not value.args:
            return Origin.OWNED, None
        if qualify(value.func) in FRESH_ALLOCATORS:
            return Origin.OWNED, None
        return Origin.OPAQUE, f"{text} is the result of a call the tool cannot see into"
    return Origin.OPAQUE, f"{text} is not a fresh allocation"


def binding_value(node: ast.Name, parents: dict,
                  lines: list | None = None) -> tuple[ast.expr | None, str | None, ast.AST]:
    """For a binding occurrence of a name: (the value it receives, or None;
    why the value cannot be vouched for, or None; the binding statement)."""
    parent = parents.get(node)
    if isinstance(parent, (ast.Tuple, ast.List)):
        holder = parents.get(parent)
        if isinstance(holder, ast.Assign) and parent in holder.targets:
            if len(holder.targets) > 1:
                return None, f"`{source(holder, lines)}` binds several names to one value", holder
            if isinstance(holder.value, (ast.Tuple, ast.List)) and len(holder.value.elts) == len(parent.elts) \
                    and not any(isinstance(e, ast.Starred) for e in (*parent.elts, *holder.value.elts)):
                return holder.value.elts[parent.elts.index(node)], None, holder
            return None, f"`{source(holder, lines)}` unpacks a value the tool cannot see into", holder
        return None, f"`{node.id}` is bound by `{source(holder or parent, lines)}`", holder or parent
    if isinstance(parent, ast.Assign) and node in parent.targets:
        if len(parent.targets) > 1:
            others = _others(parent, node, lines)
            return None, f"`{source(parent, lines)}` also binds {others} to the same tensor", parent
        return parent.value, None, parent
    if isinstance(parent, ast.AnnAssign) and parent.target is node and parent.value is not None:
        return parent.value, None, parent
    if isinstance(parent, ast.NamedExpr) and parent.target is node:
        return None, f"`{source(parent, lines)}` (walrus) hands the same tensor to the enclosing expression", parent
    if isinstance(parent, (ast.For, ast.AsyncFor, ast.comprehension)):
        return None, f"`{node.id}` is an element of `{source(parent.iter, lines)}`", parent
    return None, f"`{node.id}` is bound by `{source(parent, lines)}`", parent


def _others(assign: ast.Assign, node: ast.Name, lines=None) -> str:
    names = [source(t, lines) for t in assign.targets if t is not node]
    return ", ".join(f"`{n}`" for n in names)


def seed_of(node: ast.Name, parents: dict, params: set, local_names: set, qualify,
            lines: list | None = None) -> Seed:
    value, reason, statement = binding_value(node, parents, lines)
    text = source(statement, lines) if isinstance(statement, ast.AST) else node.id
    if value is None:
        origin = Origin.EXTERNAL if isinstance(statement, (ast.For, ast.AsyncFor)) else Origin.OPAQUE
        return Seed(node, None, origin, text, reason)
    origin, why = value_origin(value, params, local_names, qualify, lines)
    return Seed(node, value, origin, text, why)


def matches_template(value: ast.expr, template: str, qualify) -> bool:
    """Is this seed, by its syntax, a tensor with exactly the dtype, device,
    shape and strides that `torch.empty_like(template)` gives?"""
    if isinstance(value, ast.Call) and not value.keywords:
        func = value.func
        if isinstance(func, ast.Attribute) and func.attr == "clone" and not value.args:
            return isinstance(func.value, ast.Name) and func.value.id == template
        if qualify(func) in LIKE_INITIALISERS or (qualify(func) == "torch.full_like" and len(value.args) == 2):
            first = value.args[0] if value.args else None
            return isinstance(first, ast.Name) and first.id == template and \
                len(value.args) == (2 if qualify(func) == "torch.full_like" else 1)
    return False
