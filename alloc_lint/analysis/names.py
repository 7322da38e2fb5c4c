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

from .scopes import Scope, node_index, walk_scope

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
        elif type(sub).__name__ in ("MatchAs", "MatchStar") and getattr(sub, "name", None):
            add(sub.name, _OPAQUE)
        elif type(sub).__name__ == "MatchMapping" and getattr(sub, "rest", None):
            add(sub.rest, _OPAQUE)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
        # A nested function's `global x` / `nonlocal x` (then `x = ...`) rebinds
        # this scope's `x` at run time: it names nothing we can trust.
        module = scope
        while module.parent is not None:
            module = module.parent
        index = node_index(module.node)
        if isinstance(node, ast.Module):
            statements = index.of_type(ast.Global)
        else:
            statements = [n for n in index.of_type(ast.Nonlocal) if index.inside(n, node)]
        for sub in statements:
            for name in sub.names:
                add(name, _OPAQUE)
    return found


_READ_ONLY_GLOBALS = ("get", "keys", "values", "items", "copy", "__contains__")


def rebinds_globals_dynamically(tree: ast.Module) -> bool:
    """Can the module's globals be rebound by name at run time: `exec`/`eval`
    of code that may bind names (not a constant string that binds nothing, not
    code given its own namespace: `exec(src, ns)`), `globals()` used other
    than to read (`globals()[k] = v`, `.update(...)`, passed on), a bare
    `vars()` at module level (in a function it is the function's locals)?"""
    index = node_index(tree)
    if any(node.id == "__builtins__" for node in index.of_type(ast.Name)):
        return True  # `__builtins__["len"] = ...`
    module_level = None
    for node in index.of_type(ast.Call):
        if not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("exec", "eval") and not _harmless_dynamic_code(node):
            return True
        if node.func.id == "vars" and not node.args:
            if module_level is None:
                module_level = {id(n) for n in walk_scope(tree)}
            if id(node) not in module_level:
                continue  # in a function, `vars()` is the function's locals
        if node.func.id in ("globals", "vars") and not node.args:
            parent = index.parents.get(node)
            read = isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Load) \
                or isinstance(parent, ast.Attribute) and parent.attr in _READ_ONLY_GLOBALS
            if not read:
                return True
    return False


_BINDING_CALLS = frozenset({"exec", "eval", "globals", "vars", "setattr", "delattr", "__import__", "compile"})


def _harmless_dynamic_code(call: ast.Call) -> bool:
    """`exec(code, ns)` / `eval(code, ns)` with a namespace that is not
    `globals()` (checked where `globals()` occurs), or a constant string whose
    code binds no name and calls nothing that could."""
    if len(call.args) >= 2 or any(k.arg == "globals" for k in call.keywords):
        return True
    code = call.args[0] if call.args else None
    if not (isinstance(code, ast.Constant) and isinstance(code.value, str)):
        return False
    try:
        tree = ast.parse(code.value, mode="eval" if call.func.id == "eval" else "exec")
    except SyntaxError:
        return True  # raises before binding anything
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) or isinstance(node, (
                ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom, ast.NamedExpr, ast.FunctionDef,
                ast.AsyncFunctionDef, ast.ClassDef)):
            return False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BINDING_CALLS:
            return False
    return True


def _bound_after_stars(module: ast.Module, name: str) -> bool:
    """Does an unconditional top-level import or assignment after the module's
    last star import bind `name` (so that the star cannot be what it means
    once the module has run)?"""
    stars = [s.lineno for s in node_index(module).of_type(ast.ImportFrom) if any(a.name == "*" for a in s.names)]
    if not stars:
        return True
    for stmt in module.body:
        if stmt.lineno <= max(stars):
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name.split(".")[0]) == name for a in stmt.names):
            return True
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            return True
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and stmt.name == name:
            return True
    return False


class Resolver:
    """Qualified names of expressions, looked up from a scope outwards."""

    def __init__(self):
        self._cache: dict[int, dict[str, list]] = {}
        self._modules: dict[int, tuple] = {}  # id(module) -> (dynamic, patched qualified names)

    def _module_facts(self, module: Scope) -> tuple:
        """(the module's globals may be rebound by name at run time, the
        qualified names it assigns or deletes: `torch.exp = shim`)."""
        key = id(module.node)
        if key not in self._modules:
            self._modules[key] = (False, frozenset())  # while computing the patched names
            patched = set()
            index = node_index(module.node)
            stored = [n for n in index.of_type(ast.Attribute) if isinstance(n.ctx, (ast.Store, ast.Del))]
            set_on = [n.args[0] for n in index.of_type(ast.Call) if isinstance(n.func, ast.Name)
                      and n.func.id in ("setattr", "delattr") and n.args]
            for node in stored + set_on:
                name = self.qualified_name(node, module)
                if name:
                    patched.add(name)
            self._modules[key] = (rebinds_globals_dynamically(module.node), frozenset(patched))
        return self._modules[key]

    def bindings(self, scope: Scope) -> dict[str, list]:
        key = id(scope.node)
        if key not in self._cache:
            self._cache[key] = _bindings(scope)
        return self._cache[key]

    def patched(self, scope: Scope) -> frozenset[str]:
        """Qualified names the module of `scope` assigns, deletes or `setattr`s
        (`torch.exp = shim`, `torch.Tensor.add_ = ...`)."""
        module = scope
        while module.parent is not None:
            module = module.parent
        return self._module_facts(module)[1]

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
        qualified = ".".join([base, *reversed(parts)])
        module = scope
        while module.parent is not None:
            module = module.parent
        patched = self._module_facts(module)[1]
        # `torch.exp = shim` (or `setattr(torch, ...)`) in the module: torch.exp,
        # and everything under torch, may be the shim's.
        if any(qualified == p or qualified.startswith(p + ".") for p in patched):
            return None
        return qualified

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
                if current.parent is None and (self._module_facts(current)[0] or {"builtins", f"builtins.{name}"}
                                               & self._module_facts(current)[1]):
                    return False  # `globals()["len"] = ...`, `builtins.len = ...`
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
                if current.parent is None:  # a module global
                    if self._module_facts(current)[0]:
                        return None  # `globals()[...] = ...`, `exec(...)`: rebound by name
                    stars = self.bindings(current).get("*", [])
                    if stars and not _bound_after_stars(current.node, name):
                        for star in stars:
                            # `from m import *` may rebind it (torch's star never binds `torch`).
                            if not (isinstance(star, str) and star.split(".")[0] == "torch"):
                                return None
                            if name != "torch":
                                results.add(f"{star}.{name}")
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
