"""ALC002's fix: collect the parts in a list, concatenate once after the loop.

`plan(group, ctx)` decides, for the growth statements of one accumulator in
one loop, whether the fix is offered and how safe it is, and describes it as
statement operations (alloc_lint.edits). The decision is the rule page's
"Fix safety" section; each withheld fix says why, each unsafe one what it
assumes.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..analysis.ownership import Origin, value_origin
from ..analysis.scopes import SCOPE_NODES, walk_scope
from ..analysis.uses import Kind, UseClassifier, captured_names, classifier_for, dynamic_access
from ..diagnostics import Fix
from ..edits import InsertAfter, InsertBefore, Replace, position

# Context managers that never swallow an exception (so an error in the loop
# still leaves the function), whatever else they do.
TRANSPARENT_CONTEXTS = frozenset({
    "torch.no_grad", "torch.inference_mode", "torch.enable_grad", "torch.set_grad_enabled",
    "torch.autocast", "torch.cuda.amp.autocast", "torch.amp.autocast", "torch.cuda.device",
    "torch.device", "torch.autograd.profiler.record_function", "torch.profiler.record_function",
    "torch.cuda.nvtx.range", "nvtx.annotate",
})
# Calls that switch grad or inference mode when called as a statement, not
# only as a `with` item (the mode then lasts past the statement).
MODE_SWITCHES = frozenset({
    "torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled",
    "torch._C._set_grad_enabled", "torch.inference_mode", "torch.autograd.grad_mode.inference_mode",
    "torch._C._InferenceMode", "torch.no_grad", "torch.enable_grad",
})
# `dir()` lists the loop's names, and the fix adds one (uses.dynamic_access has the others).
_LISTS_NAMES = "dir"
# Factories whose result is a fresh dense tensor of the given `dtype=`, or of
# the default dtype (always a floating type) without one.
FACTORIES = frozenset({"torch.zeros", "torch.ones", "torch.empty", "torch.zeros_like",
                       "torch.ones_like", "torch.empty_like", "torch.full", "torch.full_like",
                       "torch.arange", "torch.tensor"})
DEFAULT_FLOATING = frozenset({"torch.zeros", "torch.ones", "torch.empty"})
FLOATING = frozenset({f"torch.{n}" for n in (
    "float16", "half", "bfloat16", "float32", "float", "float64", "double",
    "complex64", "cfloat", "complex128", "cdouble")})

ASSUME_FRESH = ("no part is written after it is appended, nor a view keeping a larger tensor "
                "alive (the list holds references; the loop's concatenation copied at once)")
ASSUME_DTYPE = ("every part has the accumulator's dtype (one final concatenation promotes once: "
                "an int64 accumulator meeting float32, then float64 parts rounds differently)")
ASSUME_FITS = ("every part fits the accumulator's shape and device (a part that does not makes "
               "the concatenation after the loop raise, after the loop's later iterations ran: "
               "their effects, a `return` or another error in them come first)")
ASSUME_STACK = ("every part has the start's number of dimensions (`hstack` of an empty 1-D start and "
                "2-D parts joins along dim 0, then 1; once, along 0: another result, no error)")
ASSUME_GRAD = ("grad mode is the same at each of the loop's concatenations as after the loop "
               "(a call in the loop such as `torch.set_grad_enabled(...)` changes which parts get gradients)")
ASSUME_SEED = ("the first part is not None (a None part leaves the accumulator None in the loop, so the "
               "next part seeds it again; the list would keep the None)")
ASSUME_CONTEXT = "the `with` statement around the loop does not swallow an exception raised in it"
ASSUME_START = ("nothing writes the start value of the accumulator during the loop (the list keeps it; "
                "the loop's first concatenation copied it)")
# Concatenations whose result the fits proof (_parts_fit) knows: `cat` along one dimension.
CATS = frozenset({"torch.cat", "torch.concat", "torch.concatenate"})
# Keywords a factory call may have in the fits proof (no `requires_grad`, `layout`, `out` ...).
SHAPE_KEYWORDS = frozenset({"dtype", "device", "size", "fill_value"})


@dataclass
class Plan:
    fixes: list = field(default_factory=list)
    reason: str | None = None  # why no fix is offered


def plan(group: list, ctx) -> Plan:
    """The fix for all growth statements of one accumulator in one loop."""
    try:
        return _plan(group, ctx)
    except _NoFix as exc:
        return Plan(reason=str(exc))


class _NoFix(Exception):
    pass


def _plan(group: list, ctx) -> Plan:
    first = group[0]
    acc, loop = first.acc, first.loop
    scope = loop.scope.node
    parents = _parents(group[0].loop.scope)
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise _NoFix(f"`{acc}` is a global here: code called in the loop could read it")
    shape = _shape(group, ctx)
    classifier = classifier_for(ctx, loop.scope)
    _check_uses(group, shape, ctx, classifier)  # (the pattern's uses under a `with`: _check_exits)
    _check_exits(group, ctx)
    _check_mode_switches(group, ctx)
    assumptions = []
    dynamic = dynamic_access(scope, classifier)
    if dynamic:  # outside the loop (inside it, _check_uses withheld the fix)
        assumptions.append(f"nothing reads `{acc}` by name during the loop ({dynamic})")
    for holder in _ancestors(loop.node, scope, parents):
        if isinstance(holder, (ast.Try,)) or type(holder).__name__ == "TryStar":
            raise _NoFix(f"the loop is inside the `try` at line {holder.lineno}: an exception caught "
                         f"there would leave `{acc}` as it was before the loop")
        if isinstance(holder, (ast.With, ast.AsyncWith)) and not all(
                _qualified(item.context_expr, loop, ctx) in TRANSPARENT_CONTEXTS for item in holder.items):
            assumptions.append(ASSUME_CONTEXT)
    _check_placement(group, ctx)
    if not _bound_before(acc, loop, ctx):
        raise _NoFix(f"`{acc}` may be unbound before the loop")
    if not all(_alone_on_line(s, ctx) for s in shape.replaced):
        raise _NoFix("a statement of the pattern shares its line with another statement")
    if first.func.split(".")[0] != "torch":
        assumptions += [ASSUME_FRESH, ASSUME_DTYPE, ASSUME_FITS]
        if shape.seeded:
            assumptions.append(ASSUME_SEED)
    else:
        if not _parts_fresh_and_typed(group, shape, ctx, classifier):
            assumptions += [ASSUME_FRESH, ASSUME_DTYPE, ASSUME_GRAD]
            if shape.seeded:
                assumptions.append(ASSUME_SEED)
        if not _parts_fit(group, shape, ctx, classifier):
            assumptions.append(ASSUME_FITS)
            if first.func.endswith("hstack"):
                assumptions.append(ASSUME_STACK)
    if not _start_owned(group, shape, ctx):
        assumptions.append(ASSUME_START)
    parts = _fresh_name(f"{acc}_parts", _identifiers(scope))
    operations = _operations(group, shape, parts, ctx)
    message = f"Collect the parts of `{acc}` in a list and concatenate once after the loop"
    if assumptions:
        message += "; assumes " + "; ".join(dict.fromkeys(assumptions))
    return Plan([Fix("unsafe" if assumptions else "safe", message, "collect", operations)])


# --- what the statements look like -------------------------------------------------------


@dataclass
class _Shape:
    seeded: bool  # `acc = x if acc is None else CAT(...)` / `if acc is None: ... else: ...`
    prepend: bool  # the accumulator is last in the list
    replaced: list  # the statements replaced by an append, one per growth
    pattern: dict  # id(Name node) -> uses.Kind, for the pattern's own occurrences (accumulator and parts)
    call_text: str  # the final concatenation with `{}` for the list


def _shape(group: list, ctx) -> _Shape:
    acc, loop = group[0].acc, group[0].loop
    parents = _parents(group[0].loop.scope)
    pattern, replaced = {}, []
    positions = set()
    for g in group:
        values = [v for v in _joined(g)]
        for value in values:  # the accumulator and the parts, as the concatenation's own values
            if isinstance(value, (ast.Name, ast.Starred)) and isinstance(getattr(value, "value", value), ast.Name):
                pattern[id(getattr(value, "value", value))] = Kind.CONCAT_ARG
        pattern.update((id(t), Kind.REBIND) for t in _targets(g.stmt) if isinstance(t, ast.Name))
        index = values.index(g.acc_node)
        if index == 0:
            positions.add("append")
        elif index == len(values) - 1:
            positions.add("prepend")
        else:
            raise _NoFix(f"`{acc}` is in the middle of the joined values: parts go on both sides")
    if len(positions) > 1:
        raise _NoFix(f"parts are added on both sides of `{acc}`")
    texts = {_final_call(g, ctx) for g in group}
    if len(texts) != 1:
        raise _NoFix(f"the concatenations of `{acc}` differ (function or dimension)")
    seeded = False
    seeds = [n for n in _loop_names(loop) if n.id == acc and isinstance(n.ctx, ast.Store)
             and id(n) not in pattern and isinstance(parents.get(n), (ast.Assign, ast.AnnAssign))]
    for g in group:
        if g.seed is not None:  # `x if acc is None else CAT([acc, x])`
            test = g.stmt.value.test
            _require_none_test(test, acc)
            _require_same_part(g, g.seed)
            pattern.update((id(n), Kind.METADATA) for n in ast.walk(test) if isinstance(n, ast.Name) and n.id == acc)
            _mark_seed_part(g.seed, pattern)
            seeded = True
            replaced.append(g.stmt)
            continue
        holder = parents.get(g.stmt)
        if seeds and isinstance(holder, ast.If) and len(holder.body) == 1 and len(holder.orelse) == 1 \
                and g.stmt in (holder.body[0], holder.orelse[0]):
            seed_stmt = holder.orelse[0] if holder.body[0] is g.stmt else holder.body[0]
            first_branch = _require_none_test(holder.test, acc)
            if (seed_stmt is holder.body[0]) != first_branch:
                raise _NoFix("the first iteration is special-cased in a way the fix does not rewrite")
            if not (isinstance(seed_stmt, ast.Assign) and len(seed_stmt.targets) == 1
                    and isinstance(seed_stmt.targets[0], ast.Name) and seed_stmt.targets[0].id == acc):
                raise _NoFix("the first iteration is special-cased in a way the fix does not rewrite")
            _require_same_part(g, seed_stmt.value)
            pattern[id(seed_stmt.targets[0])] = Kind.REBIND
            pattern.update((id(n), Kind.METADATA) for n in ast.walk(holder.test)
                           if isinstance(n, ast.Name) and n.id == acc)
            _mark_seed_part(seed_stmt.value, pattern)
            seeded = True
            replaced.append(holder)
            continue
        replaced.append(g.stmt)
    if seeded and len(group) > 1:
        raise _NoFix("the first iteration is special-cased and the accumulator grows in several places")
    if any(id(n) not in pattern for n in seeds):
        raise _NoFix("the first iteration is special-cased in a way the fix does not rewrite "
                     "(the fix handles `x if acc is None else ...` and `if acc is None: ... else: ...`)")
    return _Shape(seeded, "prepend" in positions, replaced, pattern, texts.pop())


def _mark_seed_part(seed: ast.expr, pattern: dict) -> None:
    """The first iteration's value (the same part as later ones) is appended too."""
    if isinstance(seed, ast.Name):
        pattern[id(seed)] = Kind.CONCAT_ARG


def _require_none_test(test: ast.expr, acc: str) -> bool:
    """`acc is None` (True: the body seeds) or `acc is not None` (False)."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Name) \
            and test.left.id == acc and isinstance(test.comparators[0], ast.Constant) \
            and test.comparators[0].value is None and isinstance(test.ops[0], (ast.Is, ast.IsNot)):
        return isinstance(test.ops[0], ast.Is)
    raise _NoFix("the first iteration is special-cased in a way the fix does not rewrite "
                 "(the fix handles `acc is None` tests)")


def _require_same_part(growth, seed: ast.expr) -> None:
    parts = [v for v in _joined(growth) if v is not growth.acc_node]
    if len(parts) != 1 or isinstance(parts[0], ast.Starred) or ast.dump(parts[0]) != ast.dump(seed):
        raise _NoFix("the first iteration starts from another value than the parts added later")


def _joined(growth) -> list:
    call = growth.call
    if growth.func.endswith(".append"):
        args = list(call.args[:2])
        keywords = {k.arg: k.value for k in call.keywords}
        args += [keywords[k] for k in ("arr", "values")[len(args):] if k in keywords]
        return args
    seq = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg in ("tensors", "arrays", "tup"))
    return list(seq.elts)


def _final_call(growth, ctx) -> str:
    """The concatenation after the loop, with `{}` where the list goes."""
    call = growth.call
    func = _source(call.func, ctx.lines)
    rest = []
    if growth.func.endswith(".append"):
        if not isinstance(call.func, ast.Attribute):
            raise _NoFix("the fix needs `concatenate` from the same module as `append`")
        func = func[:func.rfind(".")] + ".concatenate"
        extra = list(call.args[2:]) + [k.value for k in call.keywords if k.arg == "axis"]
        if any(k.arg not in ("arr", "values", "axis") for k in call.keywords):
            raise _NoFix("the concatenation has arguments the fix does not carry over")
        axis = extra[0] if extra else None
        if axis is not None:
            _require_constant(axis)
        if axis is None:  # `append` ravels its values first: a Python number becomes a typed array
            module = func[:func.rfind(".")]  # (not a weak scalar that takes the array's dtype)
            return f"{func}([{module}.ravel(part) for part in {{}}], axis=None)"
        rest.append(f"axis={_source(axis, ctx.lines)}")
        return f"{func}({{}}, {', '.join(rest)})"
    first = "{}" if call.args else None
    for arg in call.args[1:]:
        _require_constant(arg)
        rest.append(_source(arg, ctx.lines))
    for k in call.keywords:
        if k.arg in ("tensors", "arrays", "tup"):
            first = f"{k.arg}={{}}"
            continue
        if k.arg is None:
            raise _NoFix("the concatenation has arguments the fix does not carry over")
        _require_constant(k.value)
        rest.append(f"{k.arg}={_source(k.value, ctx.lines)}")
    return f"{func}({', '.join([first, *rest])})"


def _require_constant(node: ast.expr) -> None:
    value = node.operand if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) else node
    if not isinstance(value, ast.Constant):
        raise _NoFix("the concatenation's dimension (or another argument) is not a constant: "
                     "it would be evaluated once after the loop")


# --- what must hold ------------------------------------------------------------------


def _check_uses(group: list, shape: _Shape, ctx, classifier: UseClassifier) -> None:
    """The accumulator occurs in the loop only in the pattern, nowhere in a
    nested function, and not in the loop's `else:`: after the fix it keeps its
    value from before the loop until the loop ends. Every occurrence in the
    loop (body, target, `while` test, comprehensions and lambdas in them) is
    classified by the shared use classifier (analysis/uses.py) with the
    pattern's own occurrences pre-assigned; any other use, whatever its kind
    (a metadata read too: the shape is stale), withholds the fix."""
    acc, loop = group[0].acc, group[0].loop
    scope = loop.scope.node
    if acc in captured_names(scope, SCOPE_NODES):
        parents = _parents(loop.scope)
        line = next((n.lineno for n in ast.walk(scope) if isinstance(n, (ast.Name, ast.arg))
                     and acc in (getattr(n, "id", None), getattr(n, "arg", None))
                     and _in_nested_function(n, scope, parents)), scope.lineno)
        raise _NoFix(f"`{acc}` is used by a nested function at line {line}: "
                     "called during the loop, it would see the value from before the loop")
    dynamic = dynamic_access(loop.node, classifier)
    if dynamic:
        raise _NoFix(f"{dynamic}: it can read `{acc}` by name")
    for node in loop_nodes(loop):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == _LISTS_NAMES \
                and _builtin(node.func.id, loop, ctx):
            raise _NoFix(f"`{node.func.id}()` at line {node.lineno} lists the loop's names, "
                         f"to which the fix adds one (it can read `{acc}` by name)")
    for use in classifier.uses({acc}, _loop_roots(loop), boundary=loop.node, preassigned=shape.pattern):
        if id(use.node) not in shape.pattern:
            raise _NoFix(f"`{acc}` is read in the loop at line {use.line} (`{_line(use.node, ctx)}`, "
                         f"{_KIND_WORDS.get(use.kind, use.kind.value)}): after the fix it would still hold "
                         "its value from before the loop")
    for stmt in loop.node.orelse:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and node.id == acc:
                raise _NoFix(f"the loop's `else:` uses `{acc}` (line {node.lineno}) before the parts are joined")


_KIND_WORDS = {Kind.METADATA: "a metadata read", Kind.PURE_READ: "a read", Kind.INPLACE: "an in-place write",
               Kind.ESCAPE: "kept beyond its statement", Kind.UNKNOWN: "a use not known to be harmless",
               Kind.ASYNC: "an asynchronous use", Kind.REBIND: "a rebinding", Kind.DELETE: "a deletion"}


def _loop_roots(loop) -> list:
    """What runs on every iteration: the body, and the `for` target or the `while` test."""
    node = loop.node
    return list(node.body) + ([node.target] if isinstance(node, (ast.For, ast.AsyncFor)) else [node.test])


def _start_owned(group: list, shape: _Shape, ctx) -> bool:
    """Is the value the list starts with owned by the accumulator alone, so
    that nothing else can write it during the loop? None (the seeded shape
    with `acc = None` just before: the list starts empty), or a fresh tensor
    (analysis/ownership.py: an allocation, `.clone()`, arithmetic) bound by
    the last statement before the loop that mentions the accumulator."""
    acc, loop = group[0].acc, group[0].loop
    if shape.seeded and _starts_as_none(acc, loop):
        return True
    if isinstance(loop.node, (ast.For, ast.AsyncFor)) and any(
            isinstance(n, ast.Name) and n.id == acc for n in ast.walk(loop.node.iter)):
        return False  # the iterable, evaluated after that statement, may keep it
    start = _start_value(acc, loop)
    if start is None:
        return False
    qualify = lambda expr: _qualified(expr, loop, ctx)  # noqa: E731
    origin, _ = value_origin(start, set(), set(), qualify, ctx.lines)
    return origin in (Origin.OWNED, Origin.NONE)


def _check_exits(group: list, ctx) -> None:
    """The concatenation is not inside a `try` or `with` of the loop body: an
    error it raises is not caught in the loop, and it runs under no context
    the single concatenation after the loop would leave."""
    loop = group[0].loop
    parents = _parents(group[0].loop.scope)
    for g in group:
        for holder in _ancestors(g.stmt, loop.node, parents):
            if isinstance(holder, ast.Try) or type(holder).__name__ == "TryStar":
                raise _NoFix(f"the concatenation is inside the `try` at line {holder.lineno}: "
                             "its errors are caught in the loop")
            if isinstance(holder, (ast.With, ast.AsyncWith)):
                raise _NoFix(f"the concatenation runs under the `with` at line {holder.lineno}, "
                             "which the single concatenation after the loop would not")


def _check_mode_switches(group: list, ctx) -> None:
    """A grad or inference mode switched in the loop by a call seen there
    (`torch.set_grad_enabled(i > 0)`, `torch.no_grad().__enter__()`): each
    concatenation of the loop ran under its iteration's mode, the single one
    after the loop would run under the last. (A `with` item restores the
    mode when its block ends; calls whose code is not seen are the unsafe
    fix's grad-mode assumption.)"""
    loop = group[0].loop
    parents = _parents(loop.scope)
    for node in loop_nodes(loop):
        if isinstance(node, ast.Call) and _qualified(node.func, loop, ctx) in MODE_SWITCHES \
                and not isinstance(parents.get(node), ast.withitem):
            raise _NoFix(f"the call at line {node.lineno} (`{_line(node, ctx)}`) switches grad or inference "
                         "mode in the loop: the single concatenation after the loop would run under another "
                         "mode than the loop's")


def _check_placement(group: list, ctx) -> None:
    """What the concatenation placed after the loop, and `acc` left at its
    start value until then, need of the code around the loop: no `break` or
    `continue` in the loop's `else:` (it would jump over the concatenation,
    or past it to the next iteration of an enclosing loop); no generator
    expression that reads `acc` and may run during the loop (in the loop's
    header, or anywhere before it, or anywhere if an enclosing loop runs it
    again: a lambda or function is withheld in _check_uses); and nothing
    that unbinds `acc` in the function (`del acc`, `except ... as acc`), so
    that `acc` is bound before the loop where _bound_before sees an assignment."""
    acc, loop = group[0].acc, group[0].loop
    scope = loop.scope.node
    parents = _parents(loop.scope)
    for stmt in loop.node.orelse:
        for node in _walk_same_loop(stmt):
            if isinstance(node, (ast.Break, ast.Continue)):
                word = "break" if isinstance(node, ast.Break) else "continue"
                raise _NoFix(f"the loop's `else:` has a `{word}` (line {node.lineno}) that would jump over "
                             "the concatenation placed after the loop")
    nested = any(isinstance(a, (ast.For, ast.AsyncFor, ast.While)) for a in _ancestors(loop.node, scope, parents))
    header = loop.node.iter if isinstance(loop.node, (ast.For, ast.AsyncFor)) else None
    in_header = {id(n) for n in ast.walk(header)} if header is not None else set()
    in_loop = {id(n) for n in loop_nodes(loop)}
    end = (loop.node.end_lineno, loop.node.end_col_offset)
    for node in walk_scope(scope):
        if id(node) in in_loop or not hasattr(node, "lineno"):
            continue
        if (node.lineno, node.col_offset) > end and not nested and id(node) not in in_header:
            continue  # after the loop, which runs once per call
        if isinstance(node, ast.GeneratorExp) and any(isinstance(n, ast.Name) and n.id == acc for n in ast.walk(node)):
            raise _NoFix(f"the generator expression at line {node.lineno} reads `{acc}` lazily: "
                         "run during the loop, it would see the value from before the loop")
        if isinstance(node, ast.Delete) and any(isinstance(t, ast.Name) and t.id == acc for t in node.targets):
            raise _NoFix(f"`{acc}` may be unbound before the loop (`del {acc}` at line {node.lineno})")
        if isinstance(node, ast.ExceptHandler) and node.name == acc:
            raise _NoFix(f"`{acc}` may be unbound before the loop (`except ... as {acc}` at line "
                         f"{node.lineno} unbinds it)")


def _walk_same_loop(stmt: ast.stmt):
    """The nodes of a statement whose `break`/`continue` belong to the loop
    around it: not inside a nested loop (its `else:` excepted) or scope."""
    todo = [stmt]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, SCOPE_NODES):
            continue
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            todo.extend(node.orelse)
            continue
        todo.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr))  # handlers, cases too


def _bound_before(acc: str, loop, ctx) -> bool:
    """Is `acc` certainly bound when the loop starts (a parameter, or assigned
    by a statement of an enclosing block before the loop)?"""
    scope = loop.scope.node
    args = scope.args
    if acc in {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}:
        return True
    parents = _parents(loop.scope)
    node = loop.node
    while node is not scope:
        holder = parents.get(node)
        for block in (getattr(holder, "body", None), getattr(holder, "orelse", None),
                      getattr(holder, "finalbody", None)):
            if isinstance(block, list) and node in block:
                for stmt in block[:block.index(node)]:
                    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None and any(
                            isinstance(t, ast.Name) and t.id == acc for t in _targets(stmt)):
                        return True
        node = holder
    return False


def _parts_fresh_and_typed(group: list, shape: _Shape, ctx, classifier: UseClassifier) -> bool:
    """Is every part a fresh tensor from a torch factory that nothing writes
    after it is appended, and do the parts and the accumulator's start have
    dtypes for which promoting step by step and once give the same values
    (one dtype, or floating types only: widening a float is exact)? A part
    is the factory call written inline, or a name the same block binds to
    one just before the concatenation, every use of which in the loop keeps
    its values (classified by analysis/uses.py)."""
    loop = group[0].loop
    dtypes = []
    for part in _new_parts(group, shape, ctx, classifier):
        dtype = _factory_dtype(part, loop, ctx) if part is not None else None
        if dtype is None:
            return False
        dtypes.append(dtype)
    if not (shape.seeded and _starts_as_none(group[0].acc, loop)):  # a seeded loop may start from a tensor
        start = _start_value(group[0].acc, loop)
        dtype = _factory_dtype(start, loop, ctx) if start is not None else None
        if dtype is None:
            return False
        dtypes.append(dtype)
    return len(set(dtypes)) == 1 or all(d == "floating" or d in FLOATING for d in dtypes)


def _new_parts(group, shape, ctx, classifier):
    """Each part joined to the accumulators of `group`, a name replaced by the
    fresh factory call it is bound to (None where that is not proven)."""
    for g in group:
        for part in _joined(g):
            if part is not g.acc_node:
                yield _fresh_binding(part, g, shape, ctx, classifier) if isinstance(part, ast.Name) else part


def _fresh_binding(part: ast.Name, growth, shape: _Shape, ctx, classifier: UseClassifier) -> ast.expr | None:
    """The value a part named in the concatenation holds there, when that is
    provably a fresh tensor the list alone keeps: the nearest binding before
    the growth statement, in its own block, is `part = VALUE` (one target,
    no other binding of the name between), the name is not seen by a nested
    scope, and every occurrence of the name in the loop (a previous
    iteration's part included) and in its `else:` keeps the tensor's values
    and holds no reference to it (`Use.keeps_values`). Else None."""
    name, loop = part.id, growth.loop
    scope = loop.scope.node
    parents = _parents(loop.scope)
    block = next((b for b in _blocks_of(parents.get(growth.stmt)) if growth.stmt in b), None)
    if block is None or name == growth.acc or name in captured_names(scope, SCOPE_NODES):
        return None
    value = None
    for stmt in reversed(block[:block.index(growth.stmt)]):
        binds = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == name
                 and not isinstance(n.ctx, ast.Load)]
        if not binds:
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and stmt.targets[0] in binds \
                and len(binds) == 1:
            value = stmt.value
        break
    if value is None:
        return None
    roots = _loop_roots(loop) + list(loop.node.orelse)
    uses = classifier.uses({name}, roots, boundary=loop.node, preassigned=shape.pattern)
    return value if all(u.keeps_values for u in uses) else None


def _blocks_of(node) -> list:
    if node is None:
        return []
    blocks = [getattr(node, f) for f in ("body", "orelse", "finalbody") if isinstance(getattr(node, f, None), list)]
    return blocks + [h.body for h in getattr(node, "handlers", [])]


def _factory_dtype(node: ast.expr, loop, ctx) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = _qualified(node.func, loop, ctx)
    if func not in FACTORIES or any(k.arg not in SHAPE_KEYWORDS for k in node.keywords):
        return None  # `out=buf` returns buf itself; `requires_grad=True` makes grad mode matter
    dtype = next((k.value for k in node.keywords if k.arg == "dtype"), None)
    if dtype is None:
        return "floating" if func in DEFAULT_FLOATING else None
    name = _qualified(dtype, loop, ctx)
    return name if name and name.startswith("torch.") else None


def _parts_fit(group: list, shape: _Shape, ctx, classifier: UseClassifier) -> bool:
    """Can no concatenation of the loop raise, so that moving it after the
    loop moves no error? `torch.cat` along a constant dimension, and every
    part (and the start, or `None` for a seeded loop) a factory call of
    constant sizes (`torch.zeros(2, 3)`, `torch.full((2, 3), v)`) with the
    same constant `device=` ("cpu", or a device with its index: the default
    device, or the current CUDA device, may be switched by a call in the
    loop), all of one number of dimensions and equal sizes but along the
    dimension joined. An empty 1-D start is skipped by `cat` in both
    programs (torch's legacy rule), whatever the parts' dimensions."""
    loop = group[0].loop
    if group[0].func not in CATS:
        return False
    call = group[0].call
    given = ["tensors", "dim"][:len(call.args)] + ["dim" if k.arg == "axis" else k.arg for k in call.keywords]
    if len(call.args) > 2 or len(given) != len(set(given)) or not {"tensors"} <= set(given) <= {"tensors", "dim"}:
        return False  # arguments the call rejects (on every iteration, or once after the loop)
    dim = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg in ("dim", "axis")), ast.Constant(0))
    dim = _int_constant(dim)
    values = list(_new_parts(group, shape, ctx, classifier))
    found = [_factory_shape(v, loop, ctx) for v in values]
    devices = set()
    if not (shape.seeded and _starts_as_none(group[0].acc, loop)):
        start = _start_value(group[0].acc, loop)
        start_shape = _factory_shape(start, loop, ctx) if start is not None else None
        if start_shape is None:
            return False
        if start_shape[0] == (0,):
            devices.add(start_shape[1])  # skipped by `cat`, but on a device all the same
        else:
            found.append(start_shape)
    if dim is None or not found or any(f is None for f in found):
        return False
    sizes = {s for s, _ in found}
    devices |= {d for _, d in found}
    ndims = {len(s) for s in sizes}
    if len(devices) != 1 or len(ndims) != 1 or min(ndims) == 0:
        return False
    ndim = ndims.pop()
    if not -ndim <= dim < ndim:
        return False
    dim %= ndim
    return len({s[:dim] + s[dim + 1:] for s in sizes}) == 1


def _factory_shape(node: ast.expr, loop, ctx) -> tuple | None:
    """(sizes, device) of a factory call with constant sizes and a constant
    device that names one device; else None."""
    if not isinstance(node, ast.Call) or _factory_dtype(node, loop, ctx) is None:
        return None
    func = _qualified(node.func, loop, ctx)
    keywords = {k.arg: k.value for k in node.keywords}
    device = keywords.get("device")
    if not (isinstance(device, ast.Constant) and isinstance(device.value, str)
            and (device.value in ("cpu", "meta") or device.value.rsplit(":", 1)[-1].isdigit())):
        return None
    if func in ("torch.zeros", "torch.ones", "torch.empty", "torch.full"):
        args = list(node.args[:1] if func == "torch.full" else node.args)
        if "size" in keywords:
            args = [keywords["size"]] if not args else [None]
        if len(args) == 1 and isinstance(args[0], (ast.Tuple, ast.List)):
            args = list(args[0].elts)
        sizes = tuple(_int_constant(a) for a in args)
    elif func == "torch.tensor" and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        elts = node.args[0].elts
        sizes = (len(elts),) if all(isinstance(e, ast.Constant) and type(e.value) in (int, float, bool)
                                    for e in elts) else (None,)
    else:
        return None
    if not sizes or any(s is None or s < 0 for s in sizes):
        return None
    if func == "torch.empty" and 0 not in sizes:
        return None  # its values are what the memory held: the fix allocates in another order
    return sizes, device.value


def _int_constant(node) -> int | None:
    negative = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    value = node.operand if negative else node
    if isinstance(value, ast.Constant) and type(value.value) is int:
        return -value.value if negative else value.value
    return None


def _start_value(acc: str, loop) -> ast.expr | None:
    """The value `acc` gets from the last statement before the loop, in the
    loop's own block, if that statement is a plain assignment to it."""
    container = loop.container
    for stmt in reversed(container[:container.index(loop.node)]):
        names = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == acc]
        if not names:
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id == acc and not any(n is not stmt.targets[0] for n in names):
            return stmt.value
        return None
    return None


# --- the edit operations ---------------------------------------------------------------


def _operations(group: list, shape: _Shape, parts: str, ctx) -> tuple:
    acc, loop = group[0].acc, group[0].loop
    at = lambda stmt: position(stmt, ctx.lines)  # noqa: E731
    if not shape.seeded:
        start = f"{parts} = [{acc}]"
    elif _starts_as_none(acc, loop):
        start = f"{parts} = []"
    else:
        start = f"{parts} = [] if {acc} is None else [{acc}]"
    ops = [InsertBefore(at(loop.node), start)]
    for g, stmt in zip(group, shape.replaced):
        new = [v for v in _joined(g) if v is not g.acc_node]
        texts = [_source(v, ctx.lines) for v in new]
        if len(new) == 1 and not isinstance(new[0], ast.Starred):
            code = f"{parts}.append({texts[0]})"
        elif shape.prepend:  # reversed at the end with the list: reverse them here (the order kept in `*xs` too)
            code = f"{parts}.extend(({', '.join(texts)}{',' if len(texts) == 1 else ''})[::-1])"
        elif len(new) == 1:
            code = f"{parts}.extend({_source(new[0].value, ctx.lines)})"
        else:
            code = f"{parts}.extend(({', '.join(texts)}))"
        ops.append(Replace(at(stmt), code))
    # Syntax only, no name the function could shadow (`len`, `reversed`).
    joined = f"{parts}[::-1]" if shape.prepend else parts
    final = f"if {parts}[1:]:\n    {acc} = {shape.call_text.format(joined)}\n"
    if shape.seeded:
        final += f"elif {parts}:\n    {acc} = {parts}[0]\n"
    final += f"del {parts}"
    ops.append(InsertAfter(at(loop.node), final))
    return tuple(ops)


def _starts_as_none(acc: str, loop) -> bool:
    value = _start_value(acc, loop)
    return isinstance(value, ast.Constant) and value.value is None


# --- small helpers ----------------------------------------------------------------------


def _parents(scope) -> dict:
    """Parent links inside the loop's function (not the whole module's)."""
    parents = getattr(scope, "_alc002_parents", None)
    if parents is None:
        parents = {child: node for node in ast.walk(scope.node) for child in ast.iter_child_nodes(node)}
        scope._alc002_parents = parents
    return parents


def _targets(stmt: ast.stmt) -> list:
    return stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]


def _ancestors(node: ast.AST, stop: ast.AST, parents: dict):
    current = parents.get(node)
    while current is not None and current is not stop:
        yield current
        current = parents.get(current)


def _in_nested_function(node: ast.AST, scope: ast.AST, parents: dict) -> bool:
    return any(isinstance(a, SCOPE_NODES) for a in _ancestors(node, scope, parents))


def _loop_names(loop) -> list:
    """Name nodes of the loop's body, target and `while` test (not its
    iterable, evaluated once before), nested scopes excluded."""
    return [n for n in loop_nodes(loop) if isinstance(n, ast.Name)]


def loop_nodes(loop) -> list:
    """Every node of the loop's body and target, or its `while` test, in the
    loop's scope (nested functions and classes yielded, not entered)."""
    node = loop.node
    roots = list(node.body) + ([node.target] if isinstance(node, (ast.For, ast.AsyncFor)) else [node.test])
    found = []
    for root in roots:
        found.extend(n for n in walk_scope(root))
    return found


def _qualified(expr: ast.expr, loop, ctx) -> str:
    return ctx.resolver.qualified_name(expr, loop.scope) or ""


def _builtin(name: str, loop, ctx) -> bool:
    """Is `name` the builtin: bound in no enclosing scope?"""
    scope = loop.scope
    while scope is not None:
        if name in ctx.resolver.bindings(scope):
            return False
        scope = scope.parent
    return True


def _source(node: ast.expr, lines: list) -> str:
    """The expression as written, where it is on one line; else unparsed."""
    if node.lineno == node.end_lineno:
        line = lines[node.lineno - 1].encode("utf-8")
        return line[node.col_offset:node.end_col_offset].decode("utf-8")
    return ast.unparse(node)


def _line(node: ast.AST, ctx) -> str:
    text = ctx.lines[node.lineno - 1].strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _alone_on_line(stmt: ast.stmt, ctx) -> bool:
    """Nothing but indentation before the statement and nothing but a comment after it."""
    before = ctx.lines[stmt.lineno - 1].encode("utf-8")[:stmt.col_offset]
    after = ctx.lines[stmt.end_lineno - 1].encode("utf-8")[stmt.end_col_offset:].strip()
    if isinstance(stmt, (ast.If, ast.For, ast.While, ast.With)):
        after = b""  # a compound statement's end is its body's
    return not before.strip() and (not after or after.startswith(b"#"))


def _identifiers(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)  # (the list would be that global)
    return names


def _fresh_name(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    return candidate
