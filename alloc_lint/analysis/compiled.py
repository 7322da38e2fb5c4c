"""Is a function's source compiled by TorchScript, or traced by torch.fx?

The reuse forms assume Python's dynamic typing (`T = None`, then a tensor) and,
when guarded, branch on tensor metadata (`if T is None or T.shape != X.shape:`).
TorchScript rejects the first (a NoneType variable given a tensor), and
`torch.fx.symbolic_trace` the second (a Proxy used as control flow). Both are
decided lexically, within the module:

- TorchScript: a `@torch.jit.*` decorator (not `ignore`/`unused`, which leave
  the function to Python) on the function or an enclosing class, a class
  deriving from `torch.jit.ScriptModule`, a function or class passed by name to
  `torch.jit.script(...)` in the module (any other argument: every
  `torch.nn.*` subclass of the module), and what those call by name.
- torch.fx: a method of a class deriving directly from a `torch.nn.*` class,
  or a function or class (an instance of it) passed by name to
  `torch.fx.symbolic_trace(...)` in the module.

Code compiled or traced from another module is not seen (the rule page's axiom).
"""
from __future__ import annotations

import ast

from .scopes import Scope, node_index

PASS_THROUGH = frozenset({"torch.jit.ignore", "torch.jit.unused"})
SCRIPT_CALLS = frozenset({"torch.jit.script", "torch.jit.script_if_tracing"})
TRACE_CALLS = frozenset({"torch.fx.symbolic_trace"})


def _module(scope: Scope) -> Scope:
    while scope.parent is not None:
        scope = scope.parent
    return scope


def _name(expr: ast.AST, scope: Scope, resolver) -> str:
    target = expr.func if isinstance(expr, ast.Call) else expr
    return resolver.qualified_name(target, scope) or ""


def _target_name(call: ast.Call) -> str | None:
    """`f` of `torch.jit.script(f)` or `torch.jit.script(Model(...))`."""
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Call):
        arg = arg.func
    return arg.id if isinstance(arg, ast.Name) else None


def _nn_class(node: ast.ClassDef, scope: Scope, resolver) -> bool:
    return any(_name(b, scope, resolver).startswith("torch.nn.") for b in node.bases)


class Compilation:
    """Per module: which definitions TorchScript compiles, which torch.fx traces."""

    def __init__(self, index, resolver):
        self.index, self.resolver = index, resolver
        self._scripted: dict | None = None
        self._traced: set | None = None

    def _scope_of_def(self, node) -> Scope:
        return self.index.scope_for(node)

    def _defs(self):
        return [s.node for s in self.index.scopes
                if isinstance(s.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

    def scripted(self) -> dict:
        """id(definition) -> one line saying how TorchScript gets to compile it."""
        if self._scripted is not None:
            return self._scripted
        module = self.index.scopes[0]
        defs = self._defs()
        by_name: dict = {}
        for d in defs:
            by_name.setdefault(d.name, []).append(d)
        found: dict = {}
        for d in defs:
            outer = self._scope_of_def(d).parent
            for decorator in d.decorator_list:
                name = _name(decorator, outer, self.resolver)
                if name.startswith("torch.jit.") and name not in PASS_THROUGH:
                    found[id(d)] = f"`@{ast.unparse(decorator)}` (line {decorator.lineno}) compiles `{d.name}` " \
                                   "with TorchScript"
            if isinstance(d, ast.ClassDef) and any(_name(b, outer, self.resolver).startswith("torch.jit.")
                                                   for b in d.bases):
                found[id(d)] = f"`{d.name}` (line {d.lineno}) is a TorchScript module"
        for call in node_index(self.index.tree).of_type(ast.Call):
            if _name(call, module, self.resolver) not in SCRIPT_CALLS:
                continue
            target = _target_name(call)
            why = f"`{ast.unparse(call)[:60]}` (line {call.lineno}) compiles `{target or 'a module'}` with TorchScript"
            if target in by_name:
                for d in by_name[target]:
                    found.setdefault(id(d), why)
            else:  # an instance or expression we cannot follow: any module class of this file
                for d in defs:
                    if isinstance(d, ast.ClassDef) and _nn_class(d, self._scope_of_def(d).parent, self.resolver):
                        found.setdefault(id(d), why)
        # What compiled code calls by name is compiled too.
        todo = [d for d in defs if id(d) in found]
        while todo:
            d = todo.pop()
            for call in ast.walk(d):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
                    for callee in by_name.get(call.func.id, []):
                        if id(callee) not in found:
                            found[id(callee)] = f"`{callee.name}` is called from `{d.name}`, which TorchScript " \
                                                "compiles"
                            todo.append(callee)
        self._scripted = found
        return found

    def torchscript(self, scope: Scope) -> str | None:
        """Why the function of `scope` (or an enclosing definition) is compiled
        by TorchScript, or None."""
        scripted = self.scripted()
        current = scope
        while current is not None:
            if id(current.node) in scripted:
                return scripted[id(current.node)]
            current = current.parent
        return None

    def fx(self, scope: Scope) -> str | None:
        """Why the function of `scope` may be traced by torch.fx, or None."""
        node = scope.node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
        parent = scope.parent
        if parent is not None and isinstance(parent.node, ast.ClassDef) \
                and _nn_class(parent.node, parent.parent, self.resolver):
            return f"`{parent.node.name}.{node.name}` is a method of a `torch.nn` module, which " \
                   "`torch.fx.symbolic_trace` may trace"
        if self._traced is None:
            module = _module(scope)
            self._traced = {_target_name(c) for c in node_index(self.index.tree).of_type(ast.Call)
                            if _name(c, module, self.resolver) in TRACE_CALLS}
        if node.name in self._traced:
            return f"`{node.name}` is passed to `torch.fx.symbolic_trace`"
        if parent is not None and isinstance(parent.node, ast.ClassDef) and parent.node.name in self._traced:
            return f"`{parent.node.name}` is passed to `torch.fx.symbolic_trace`, which traces its methods"
        return None
