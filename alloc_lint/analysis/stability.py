"""Does an allocation give the same shape, dtype, device and strides at every
merge of one entry into a loop? Proven here, or the reason it cannot be.

- A binding of the accumulator inside the loop runs only before the first
  merge when it is guarded by `if A is None:` (A one of the group's
  accumulators, which nothing in the loop can make None again after a merge),
  or by `if i == 0:` with `i` the counter of `for i in range(E)` /
  `for i, x in enumerate(...)` that nothing else binds, placed before the
  allocation. Any other binding restarts the accumulator mid-loop.
- A name other than the accumulator is stable when the function owns it (a
  local or a parameter: not global, not free, not captured by a nested
  scope, not declared global/nonlocal) and every use of it in the loop leaves
  its metadata alone (no unknown call receives it, no shape-changing method,
  no `out=` write that could resize it).
"""
from __future__ import annotations

import ast

from .uses import Use


def index_name(loop: ast.AST) -> str | None:
    """`i` of `for i in range(E)`, `for i in range(0, E)` or `for i, x in enumerate(xs)`."""
    if not isinstance(loop, (ast.For, ast.AsyncFor)) or not isinstance(loop.iter, ast.Call):
        return None
    call, target = loop.iter, loop.target
    func = call.func.id if isinstance(call.func, ast.Name) else None
    if func == "range" and isinstance(target, ast.Name) and not call.keywords and (
            len(call.args) == 1 or (len(call.args) == 2 and isinstance(call.args[0], ast.Constant)
                                    and call.args[0].value == 0 and not isinstance(call.args[0].value, bool))):
        return target.id
    if func == "enumerate" and len(call.args) == 1 and not call.keywords \
            and isinstance(target, ast.Tuple) and len(target.elts) == 2 and isinstance(target.elts[0], ast.Name):
        return target.elts[0].id
    return None


def _none_test_names(test: ast.AST) -> set[str]:
    """Names `n` such that the test can only be true while `n is None`."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        found = set()
        for value in test.values:
            found |= _none_test_names(value)
        return found
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Is):
        left, right = test.left, test.comparators[0]
        if isinstance(left, ast.Name) and isinstance(right, ast.Constant) and right.value is None:
            return {left.id}
        if isinstance(right, ast.Name) and isinstance(left, ast.Constant) and left.value is None:
            return {right.id}
    return set()


def _is_first_index_test(test: ast.AST, index: str) -> bool:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_first_index_test(v, index) for v in test.values)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        sides = (test.left, test.comparators[0])
        return any(isinstance(a, ast.Name) and a.id == index and isinstance(b, ast.Constant)
                   and b.value == 0 and not isinstance(b.value, bool) for a, b in (sides, sides[::-1]))
    return False


def guards(node: ast.AST, loop: ast.AST, parents: dict):
    """The tests of the `if` statements between `node` and the loop whose
    body (not `else`) holds it."""
    current, parent = node, parents.get(node)
    while parent is not None and parent is not loop:
        if isinstance(parent, ast.If) and current in parent.body:
            yield parent.test
        current, parent = parent, parents.get(parent)


class Restarts:
    """Which bindings of a group's accumulators inside a loop can run after a merge."""

    def __init__(self, loop: ast.AST, parents: dict, accumulators: set, rebind_targets: set,
                 first_alloc_line: int, bound_in_loop):
        self.loop, self.parents = loop, parents
        self.index = index_name(loop)
        if self.index and bound_in_loop(self.index, exclude_target=True):
            self.index = None  # the counter is rebound: `i == 0` proves nothing
        self.first_alloc_line = first_alloc_line
        self.bindings = {}  # accumulator -> binding Name nodes in the loop, other than the rebinding
        for tree in _loop_parts(loop):
            for n in ast.walk(tree):
                if isinstance(n, ast.Name) and n.id in accumulators and not isinstance(n.ctx, ast.Load) \
                        and id(n) not in rebind_targets \
                        and not isinstance(parents.get(n), ast.AugAssign):
                    self.bindings.setdefault(n.id, []).append(n)
        # Accumulators that are never None after a merge: every other binding
        # of them in the loop is itself guarded by a None test of such a name.
        self.never_none_after_merge = set(accumulators)
        changed = True
        while changed:
            changed = False
            for acc in list(self.never_none_after_merge):
                if any(not self._none_guarded(b) for b in self.bindings.get(acc, [])):
                    self.never_none_after_merge.discard(acc)
                    changed = True

    def _none_guarded(self, node) -> bool:
        if isinstance(node.ctx, ast.Del):
            return False
        return any(_none_test_names(t) & self.never_none_after_merge for t in guards(node, self.loop, self.parents))

    def first_iteration_only(self, node: ast.Name) -> bool:
        if self._none_guarded(node):
            return True
        return bool(self.index) and node.lineno < self.first_alloc_line and isinstance(node.ctx, ast.Store) \
            and any(_is_first_index_test(t, self.index) for t in guards(node, self.loop, self.parents))

    def restarts(self, acc: str) -> list[ast.Name]:
        return [b for b in self.bindings.get(acc, []) if not self.first_iteration_only(b)]

    def seeds_in_loop(self, acc: str) -> list[ast.Name]:
        return [b for b in self.bindings.get(acc, []) if isinstance(b.ctx, ast.Store)]


def _loop_parts(loop: ast.AST) -> list:
    parts = list(loop.body)
    if isinstance(loop, (ast.For, ast.AsyncFor)):
        parts.append(loop.target)
    elif isinstance(loop, ast.While):
        parts.append(loop.test)
    return parts


def name_is_owned_local(name: str, scope_node: ast.AST, params: set, local_names: set,
                        captured: set) -> str | None:
    """None when `name` is a local or parameter of the function that no other
    scope can see; else why code called in the loop might rebind or change it."""
    if name in captured:
        return f"`{name}` is shared with a nested function, lambda or comprehension, or declared global/nonlocal"
    if name not in params and name not in local_names:
        return f"`{name}` is a global or enclosing-scope name, which code called in the loop may rebind"
    return None


def metadata_changing_use(uses: list[Use]) -> Use | None:
    """The first use that may change the tensor's shape, dtype, device or strides."""
    for use in uses:
        if not use.keeps_metadata:
            return use
    return None
