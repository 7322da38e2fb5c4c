"""Resolve a call's callee to a qualified name through the module's imports.

LibCST's QualifiedNameProvider does not follow `alloc = torch.empty_like`; this
small resolver does, for module- and function-level imports and aliases, and
refuses to guess: a name bound by anything else (a local `def empty_like`, a
parameter, an arbitrary assignment) resolves to nothing.
"""
from __future__ import annotations

import ast
import builtins
from functools import lru_cache

from .scopes import Scope, walk_scope

_OPAQUE = object()  # bound, but not to anything we can name


def _bindings(scope: Scope) -> dict[str, list]:
    """Every binding of each name in this scope: qualified-name strings,
    alias expressions (resolved later), or _OPAQUE."""
    found: dict[str, list] = {}

    def add(name, value):
        found.setdefault(name, []).append(value)

    node = scope.node
    alias_targets = set()  # ids of the Names bound by `alias = torch.empty_like`
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                add(a.arg, _OPAQUE)
    for sub in walk_scope(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                if alias.asname:
                    add(alias.asname, alias.name)
                else:
                    top = alias.name.split(".")[0]
                    add(top, top)
        elif isinstance(sub, ast.ImportFrom):
            for alias in sub.names:
                if alias.name == "*":
                    add("*", sub.module if not sub.level and sub.module else _OPAQUE)
                    continue
                qual = f"{sub.module}.{alias.name}" if sub.module and not sub.level else _OPAQUE
                add(alias.asname or alias.name, qual)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if sub is not node:
                add(sub.name, _OPAQUE)
        elif isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name) \
                and isinstance(sub.value, (ast.Name, ast.Attribute)):
            add(sub.targets[0].id, sub.value)
            alias_targets.add(id(sub.targets[0]))  # walk_scope yields it after its Assign
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            if id(sub) not in alias_targets:
                add(sub.id, _OPAQUE)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            add(sub.name, _OPAQUE)
        elif isinstance(sub, (ast.Global, ast.Nonlocal)):
            for name in sub.names:
                add(name, _OPAQUE)
    return found


class Resolver:
    """Qualified names of expressions, looked up from a scope outwards."""

    def __init__(self):
        self._cache: dict[int, dict[str, list]] = {}

    def bindings(self, scope: Scope) -> dict[str, list]:
        key = id(scope.node)
        if key not in self._cache:
            self._cache[key] = _bindings(scope)
        return self._cache[key]

    def qualified_name(self, expr: ast.expr, scope: Scope, _depth: int = 0) -> str | None:
        if _depth > 8:
            return None
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = self._resolve_name(expr.id, scope, _depth)
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])

    def is_builtin(self, name: str, scope: Scope) -> bool:
        """Does `name` in `scope` mean Python's builtin (a builtin's name, bound
        nowhere on the way out, and no `from ... import *` that could bind it)?"""
        if not hasattr(builtins, name):
            return False
        current = scope
        while current is not None:
            if not (isinstance(current.node, ast.ClassDef) and current is not scope):
                bound = self.bindings(current)
                if name in bound or "*" in bound:
                    return False
            current = current.parent
        return True

    def _resolve_name(self, name: str, scope: Scope, depth: int) -> str | None:
        current = scope
        while current is not None:
            if isinstance(current.node, ast.ClassDef) and current is not scope:
                current = current.parent  # class bodies don't enclose methods
                continue
            bound = self.bindings(current).get(name)
            if bound:
                results = set()
                for value in bound:
                    if value is _OPAQUE:
                        return None
                    if isinstance(value, str):
                        results.add(value)
                    else:
                        results.add(self.qualified_name(value, current, depth + 1))
                if len(results) == 1:
                    return results.pop()
                return None
            current = current.parent
        # `from torch import *` at module level makes bare names torch's.
        module = scope
        while module.parent is not None:
            module = module.parent
        stars = [m for m in self.bindings(module).get("*", []) if isinstance(m, str)]
        if len(stars) == 1:
            return f"{stars[0]}.{name}"
        return None


@lru_cache(maxsize=64)
def last_names(qualified: tuple[str, ...]) -> frozenset[str]:
    return frozenset(q.rsplit(".", 1)[-1] for q in qualified)
