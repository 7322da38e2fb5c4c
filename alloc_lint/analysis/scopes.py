"""Scopes, loops and statement blocks of a module, from one walk of its `ast`."""
from __future__ import annotations

import ast
from contextlib import contextmanager
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


class NodeIndex:
    """Every node of a module, from one walk: each node's parent, and the
    nodes of each type. Module-wide questions (`global` statements, attribute
    stores, `exec` calls) are asked of these lists instead of walking again."""

    def __init__(self, tree: ast.AST):
        nodes, parents, node_type = [tree], {}, ast.AST
        append = nodes.append
        for node in nodes:  # grows while read: breadth first (ast.iter_child_nodes, inlined)
            for name in node._fields:
                if name == "ctx":
                    continue  # Load/Store/Del: shared singletons, no one's child
                value = getattr(node, name, None)
                if value.__class__ is list:
                    for child in value:
                        if isinstance(child, node_type):
                            parents[child] = node
                            append(child)
                elif isinstance(value, node_type):
                    parents[value] = node
                    append(value)
        by_type: dict = {}
        for node in nodes:
            by_type.setdefault(type(node), []).append(node)
        self.parents = parents
        self._by_type = by_type

    def of_type(self, *types) -> list:
        """The nodes of these exact types (no subclasses: ast has none that matter here)."""
        if len(types) == 1:
            return self._by_type.get(types[0], [])
        return [n for t in types for n in self._by_type.get(t, ())]

    def inside(self, node: ast.AST, ancestor: ast.AST) -> bool:
        while node is not None:
            if node is ancestor:
                return True
            node = self.parents.get(node)
        return False


# While one file is checked (engine.check_tree): id(node) -> (node, NodeIndex
# or scope walk). Holding the node keeps its id unique; dropping the whole
# dict after the file frees its tree (the values refer back to their keys, so
# a weak dictionary would keep every tree alive).
_per_file: dict | None = None


@contextmanager
def per_file_caches():
    """Remember node indexes and scope walks while the rules check one file."""
    global _per_file
    outer, _per_file = _per_file, {}
    try:
        yield
    finally:
        _per_file = outer


def _cached(kind: str, node: ast.AST, compute):
    if _per_file is None:
        return compute(node)
    key = (kind, id(node))
    found = _per_file.get(key)
    if found is None:
        found = _per_file[key] = (node, compute(node))
    return found[1]


def node_index(tree: ast.AST) -> NodeIndex:
    """The NodeIndex of a module tree (built once per file checked: the trees
    are not changed after parsing)."""
    return _cached("index", tree, NodeIndex)


def walk_scope(node: ast.AST) -> tuple:
    """Every node of this scope, not entering nested function, class or lambda
    bodies (their decorators and defaults belong to this scope). Computed once
    per node and file (the rules ask again and again of the same function)."""
    return _cached("walk", node, lambda n: tuple(_walk_scope(n)))


def _walk_scope(node: ast.AST):
    todo, node_type = [node], ast.AST
    while todo:
        current = todo.pop()
        yield current
        for name in current._fields:  # ast.iter_child_nodes, inlined
            value = getattr(current, name, None)
            for child in value if value.__class__ is list else (value,):
                if not isinstance(child, node_type):
                    continue
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
        """node -> parent node."""
        return node_index(self.tree).parents

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
