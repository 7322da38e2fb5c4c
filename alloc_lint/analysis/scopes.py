"""Scopes, loops and statement blocks of a module, from one walk of its `ast`."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property

SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
NESTED_SCOPES = SCOPE_NODES + (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
LOOP_NODES = (ast.For, ast.AsyncFor, ast.While)


@dataclass(eq=False)
class Scope:
    node: ast.AST  # Module, FunctionDef, AsyncFunctionDef or ClassDef
    parent: "Scope | None"


@dataclass(eq=False)
class Loop:
    node: ast.For | ast.AsyncFor | ast.While
    scope: Scope
    enclosing: list  # outer loops of the same scope, outermost first
    container: list  # the statement list holding the loop
    # Statement lists whose innermost loop is this one: the body, and the
    # blocks of if/else, with and try statements inside it.
    blocks: list = field(default_factory=list)


def walk_scope(node: ast.AST):
    """Every node of this scope, not entering nested function, class or lambda
    bodies (their decorators and defaults belong to this scope)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if isinstance(child, SCOPE_NODES):
                yield child
                if isinstance(child, ast.Lambda):
                    todo.extend(child.args.defaults + [d for d in child.args.kw_defaults if d])
                else:
                    todo.extend(child.decorator_list)
                    if not isinstance(child, ast.ClassDef):
                        todo.extend(child.args.defaults + [d for d in child.args.kw_defaults if d])
                    else:
                        todo.extend(child.bases + [k.value for k in child.keywords])
            else:
                todo.append(child)


def _blocks_of(stmt: ast.stmt):
    """The statement lists directly inside a compound statement, other than a
    loop's (the rule looks through if/else, with and try, and not into loops)."""
    if isinstance(stmt, ast.If):
        return [stmt.body, stmt.orelse]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [stmt.body]
    if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
        return [stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody]
    return []


class ModuleIndex:
    """Parent links, scopes and loops of a module."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.scopes: list[Scope] = []
        self.loops: list[Loop] = []
        self._scope_of_node: dict = {}
        self._index_scope(tree, None)

    @cached_property
    def parents(self) -> dict:
        """node -> parent node; built only when a rule needs data flow."""
        parents = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        return parents

    def scope_for(self, node: ast.AST) -> Scope:
        return self._scope_of_node[node]

    def _index_scope(self, node, parent_scope):
        scope = Scope(node, parent_scope)
        self.scopes.append(scope)
        self._scope_of_node[node] = scope
        self._index_block(node.body, scope, [], None)

    def _index_block(self, stmts, scope, enclosing, loop):
        if loop is not None:
            loop.blocks.append(stmts)
        for stmt in stmts:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._index_scope(stmt, scope)
                continue
            if isinstance(stmt, LOOP_NODES):
                inner = Loop(stmt, scope, list(enclosing), stmts)
                self.loops.append(inner)
                self._index_block(stmt.body, scope, enclosing + [inner], inner)
                self._index_block(stmt.orelse, scope, enclosing, loop)
                continue
            for block in _blocks_of(stmt):
                self._index_block(block, scope, enclosing, loop)
            if type(stmt).__name__ == "Match":
                for case in stmt.cases:
                    # Not a block the rule looks through, but loops inside count.
                    self._index_block(case.body, scope, enclosing, None)
