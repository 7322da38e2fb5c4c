"""ALC002 concat-grows-in-loop."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..analysis.scopes import NESTED_SCOPES, Loop, node_index
from ..diagnostics import Diagnostic
from . import alc002_fix, alc002_text
from .base import FileContext, Rule

# Concatenations, by qualified name: how the parts are passed.
#   "seq":    f(sequence, ...), the sequence first or as the keyword below;
#   "append": f(arr, values, axis=None), NumPy's append.
_SEQ_KEYWORD = {"torch": "tensors", "numpy": "arrays", "cupy": "arrays"}
_STACKS = ("hstack", "vstack", "dstack", "column_stack", "row_stack")
CONCATENATIONS: dict[str, str] = {
    **{f"torch.{n}": "seq" for n in ("cat", "concat", "concatenate", *_STACKS)},
    **{f"{m}.{n}": "seq" for m in ("numpy", "cupy") for n in ("concatenate", *_STACKS)},
    "numpy.append": "append",
    "cupy.append": "append",
}
# Builtins whose loops visit each value once: `i == 0` holds on one iteration at most.
_DISTINCT_ITERATORS = ("range", "enumerate")


@dataclass(eq=False)
class Growth:
    """One statement `acc = CONCAT([acc, part, ...])` in a loop."""

    acc: str
    stmt: ast.stmt  # the Assign / AnnAssign
    call: ast.Call  # the concatenation
    func: str  # its qualified name
    acc_node: ast.Name  # the accumulator's occurrence among the concatenated values
    parts: list  # the other values, in order
    seed: ast.expr | None = None  # the other arm of `x if acc is None else CONCAT(...)`
    loop: Loop | None = None
    # The loop's other growth statements of acc (statements, not Growths: two
    # Growths listing each other would be a cycle, kept alive while gc is off).
    others: list = field(default_factory=list)


class ConcatGrowsInLoop(Rule):
    """
    # ALC002 concat-grows-in-loop

    ## What it does
    Finds an accumulator rebound, on every iteration of a loop, to a
    concatenation of its own previous value and new parts:
    `acc = torch.cat([acc, x], dim)`. The concatenation may be `torch.cat`,
    `torch.concat`, `torch.concatenate`, `torch.hstack`/`vstack`/`dstack`/
    `column_stack`/`row_stack`, or NumPy's and CuPy's `concatenate`, `append`,
    `hstack`, `vstack`, `dstack`, `column_stack`, `row_stack`, under any import
    spelling (`import torch as th`, `from torch import cat`, `cat = torch.cat`).
    The accumulator may stand anywhere in the list or tuple (`[x, acc]`
    prepends), with one or more new parts; the first iteration may be
    special-cased (`if acc is None: acc = x`, `if i == 0:`, or
    `acc = x if acc is None else torch.cat([acc, x])`), or the accumulator set
    before the loop (an empty `(0, ...)` tensor included). One diagnostic per
    concatenation call.

    It reports nothing where the growth is bounded or absent: the result is
    bound to another name (`out = torch.cat([acc, x])`); the accumulator is
    rebound in the loop other than by the concatenation and a first-iteration
    seed (`acc = acc[-window:]`, a restart, a `for acc in ...` target, `del
    acc`), so it does not carry over from one iteration to the next; it is only
    a slice of itself in the list (`torch.cat([acc[1:], x])`, a sliding
    window), or appears twice (`[acc, acc]` doubles); a new part is cut from
    or computed from the accumulator by torch, directly or through a name the
    loop binds (`reflected = acc.flip(2)`, then `torch.cat([acc,
    reflected[:, :, :n]])`: reflection padding roughly doubles it, a linear
    total, not a quadratic one; reading its dtype or device, or
    `acc.new_ones(n, 1)`, is fine); every path from the
    concatenation leaves the loop (`break`, `return`, `raise`), or it only runs
    on one iteration (`if i == n - 1:`); the loop walks a literal list or tuple
    (a fixed, small number of parts); the accumulator is declared `global` or
    `nonlocal` (anything may rebind it).

    ## Why is this bad?
    Each iteration allocates a new tensor holding everything accumulated so far
    and copies it there: for n parts of equal size, n allocations and about
    n²/2 parts copied, where one concatenation after the loop copies n parts
    once. A video VAE decoding 81 frames one by one this way copies about
    3,300 frames instead of 81; keeping per-token logits of a `[batch, vocab]`
    step for 1,000 decoded tokens copies 500,000 steps' worth of logits.

    ## Example
    ```python
    out = None
    for i in range(num_frames):
        frame = decode(z[:, :, i:i + 1])
        out = frame if out is None else torch.cat([out, frame], dim=2)
    ```

    ## Use instead
    Collect the parts in a list and concatenate once, after the loop (what
    `alloc-lint fix --unsafe-fixes` writes here):
    ```python
    out = None
    out_parts = []
    for i in range(num_frames):
        frame = decode(z[:, :, i:i + 1])
        out_parts.append(frame)
    if out_parts[1:]:
        out = torch.cat(out_parts, dim=2)
    elif out_parts:
        out = out_parts[0]
    del out_parts
    ```
    Where the accumulator is read inside the loop (a generation loop feeding
    the tokens so far back to the model), no list helps: preallocate the
    whole buffer once (`torch.empty(batch, max_len)`) and write each step
    into a slice of it, reading `buf[:, :t]`.

    ## Fix safety
    The fix (form `collect`) covers two shapes, and any number of growth
    statements of one accumulator in one loop (one fix for all of them):

    - **start before the loop**: no first-iteration seed; before the loop
      `acc_parts = [acc]`; each `acc = CAT([acc, x, ...], dim)` becomes
      `acc_parts.append(x)` (`.extend((x, y))` for several parts,
      `.extend(xs)` for `*xs`); after the loop
      `if acc_parts[1:]: acc = CAT(acc_parts, dim)` and `del acc_parts`.
      An accumulator written last (`[x, acc]`, prepending) is joined as
      `CAT(acc_parts[::-1], dim)`, its parts added reversed in place
      (`.extend((x, *ys)[::-1])`: evaluated in their order, and the order
      within `ys` kept once the list is reversed).
    - **seeded**: `acc = x if acc is None else CAT([acc, x], dim)`, or
      `if acc is None: acc = x` / `else: acc = CAT([acc, x], dim)` as the
      whole `if` statement, with the same single part `x` in both: the
      statement becomes `acc_parts.append(x)`; before the loop
      `acc_parts = []` (when the statement before the loop sets `acc = None`)
      or `acc_parts = [] if acc is None else [acc]`; after the loop
      `if acc_parts[1:]: acc = CAT(acc_parts, dim)`,
      `elif acc_parts: acc = acc_parts[0]`, `del acc_parts`.

    The code added calls no name the function could bind (no `len`,
    `reversed`: a slice and `[::-1]` instead), and the list's name is one
    the function does not use (`acc_parts2` ...). The final call is the
    loop's own concatenation (NumPy's `append` becomes the same module's
    `concatenate` with the same `axis`; where `append` had none, each part is
    raveled first, as `append` does: `np.concatenate([np.ravel(part) for
    part in acc_parts], axis=None)`, so a Python number becomes an array of
    its own dtype, not a weak scalar taking the array's). So the result has
    the same dimension, and with no iteration, or one seeded iteration,
    `acc` is the very object the original leaves (a `Parameter`, the
    caller's tensor): no copy.

    The uses are classified by the same use classifier as ALC001's fixes
    (`alloc_lint/analysis/uses.py`), not a second one: every occurrence of the
    accumulator in the loop (its body, `for` target or `while` test, and the
    comprehensions and lambdas in them) gets one kind from its closed list,
    with the pattern's own occurrences pre-assigned (the accumulator and the
    parts in the concatenation: *concatenated value*; the rebinding; the
    `acc is None` test of a seed). What ALC002 allows differs from ALC001:
    after the rewrite the accumulator keeps its value from before the loop
    until the loop ends, so any other use, of whatever kind (a *metadata
    read* such as `acc.shape[0]` too, an *escape*, an *in-place write*, an
    *unknown use*), withholds the fix, and the message names the use, its
    line and its kind. Names another scope sees and access by name or
    through frames come from the same module.

    **No fix** is offered (the message says why) when the rewrite would be
    visible: the accumulator is used in the loop other than by the pattern
    (its shape, a slice, `acc *= w`, a call reading it: the loop would see
    its value from before the loop), by name in the loop (`locals()`,
    `vars()`, `eval`, `exec`, `sys._getframe()` and the like, `dir()`), by a
    function or lambda defined in the function (it could be called during
    the loop), by a generator expression that may run during the loop (in
    the loop's header, `for n in (acc.numel() for _ in xs)`, or anywhere
    before the loop, or anywhere when an enclosing loop runs it again), or
    in the loop's `else:`; the loop's `else:` has a `break` or `continue`
    (it would jump over the concatenation placed after the loop); the loop
    is at module or class level (a global: code called in the loop could
    read it), or inside a `try` of the function (an exception caught there
    would leave the accumulator as before the loop); the concatenation is
    inside a `try` or a `with` of the loop body (its errors are caught in the
    loop; `no_grad`, `inference_mode` and `autocast` would not cover the
    single concatenation after the loop), or a call in the loop switches
    grad or inference mode (`torch.set_grad_enabled(i > 0)`,
    `torch.no_grad().__enter__()`: the one concatenation after the loop
    would run under the last mode; a `with` item restores it); the
    accumulator may be unbound before the loop (not assigned on every path to it, or `del acc` /
    `except ... as acc` before it, or anywhere when an enclosing loop runs
    it again); the first iteration is special-cased otherwise (`if i == 0:`,
    `continue`) or seeds another value than the parts added later, or
    several statements grow a seeded accumulator; parts go on both sides of
    the accumulator; the concatenations of one accumulator differ, or their
    dimension or another argument is not a constant (it would be evaluated
    once, after the loop); a statement of the pattern shares its line with
    another.

    Otherwise the fix is **unsafe** (applied with `--unsafe-fixes`) unless
    each of these is proven, and its message names those that are not:

    - *errors*: the fix moves every concatenation of the loop after it, so a
      part that does not fit (other number of dimensions, sizes, device)
      raises after the loop's later iterations ran: their effects on the
      caller's objects, globals, closures, a `return` or another error in
      them come first, and a loop whose only exit was that error may run on.
      No condition on the rest of the loop makes that harmless (any
      statement may return, raise or run user code), so the fix is safe
      only when no concatenation can raise: proven for `torch.cat` (`concat`,
      `concatenate`) along a constant dimension when every part, and the
      start (or `None` before a seeded loop), is a factory call of constant
      sizes (`torch.zeros(2, 3)`, `torch.full((1, 3), v)`, `torch.tensor`
      of a flat list of numbers; `torch.empty` only with no element: its
      values are whatever memory it gets, and the fix allocates in another
      order) with one constant device naming a device
      (`device="cpu"`, `"cuda:0"`; not the default device nor `"cuda"`: a
      call in the loop may switch those), all of one number of dimensions
      and equal sizes but along the dimension joined (an empty 1-D start is
      skipped by `cat` in both programs). The `*stack` functions are never
      proven; `hstack` of an empty 1-D start and 2-D parts joins along
      dim 0, then 1, where one `hstack` joins along 0: another result and no
      error, named in the message. (Memory exhaustion aside: the fixed loop
      allocates otherwise, see Memory below.)
    - *the list keeps references where the loop copied at once*: a part
      written after it is appended (a reused output buffer, as CUDA-graph
      runners return; an `out=` target; a view of state the loop mutates)
      would change the result, and a part that is a view keeps its whole base
      alive. Proven when every part is a fresh tensor from a torch factory
      (`torch.zeros/ones/empty/full/arange/tensor` and their `_like` forms,
      with no keyword but `dtype`, `device`, `size`, `fill_value`: no
      `out=`, no `requires_grad=`), written inline, or a name bound to one
      by the nearest binding before the concatenation in the same block
      (`row = torch.full(...)`, one target), seen by no nested scope, and
      every occurrence of which in the loop and its `else:` (the previous
      iteration's part included) is classified as keeping its values and
      holding no reference: a metadata read, a non-aliasing read, a
      rebinding, a deletion (`row += 1`, `row.mul_(2)`, `v = row[0]`,
      `f(row)` all leave it unproven).
    - *grad mode*: the loop's concatenations each ran under the grad mode of
      their iteration, the single one after the loop runs under the mode
      after it; code run by the loop that switches it (a function calling
      `torch.set_grad_enabled(...)`; a call to it seen in the loop withholds
      the fix) changes which parts get gradients. Proven with the parts
      above (no part, and no start, requires grad).
    - *the first part is not None* (seeded shapes): a `None` part leaves the
      accumulator `None` in the loop, so the next part seeds it again, where
      the list keeps the `None`. Proven with the parts above.
    - *the start value*: the list keeps the value the accumulator had before
      the loop, where the loop copied it at its first concatenation, so a
      write into it during the loop through another name (`y += 1` where `y`
      is the caller's tensor the accumulator started from) would show.
      Proven when the seeded shape starts from `acc = None`, or the start is
      a fresh tensor (an allocation, `.clone()`, arithmetic: the ownership
      proof ALC001 uses, `analysis/ownership.py`) bound by the last statement
      before the loop that mentions the accumulator.
    - *dtype*: one final concatenation promotes once, the loop step by step;
      the values differ when an integer meets floats of different widths (an
      int64 accumulator, then a float32 part, then a float64 part rounds
      through float32 in the loop only). The same when every part and the
      start have one dtype, or only floating dtypes (widening a float is
      exact). Proven when every part and the start value (the plain
      assignment just before the loop; for a seeded loop, unless it is
      `None`) is such a factory call with an explicit `dtype=torch.X`, or
      `zeros/ones/empty` without one (the default dtype, always floating).
    - NumPy and CuPy concatenations are never proven (their parts'
      provenance is not tracked): unsafe at best, with the errors, references
      and dtype assumptions.
    - `locals()`, `eval` or a frame read elsewhere in the function
      (`f = sys._getframe()` before the loop, `f.f_locals` in it) could see
      the stale accumulator or the list: an assumption too.
    - A `with` around the loop other than `torch.no_grad()`,
      `inference_mode()`, `enable_grad()`, `set_grad_enabled()`, `autocast`,
      a device context or a profiling range might swallow an exception
      raised in the loop: that too is an assumption of the fix.

    Taken for granted, as everywhere in alloc-lint: `torch.cat` and the
    factories are torch's own (nothing in the loop rebinds them); no code
    run by the loop enters or leaves inference mode without a `with` after
    the last concatenation (the result is an inference tensor or not by the
    mode it is made in); nothing inspects the function's frame from outside
    (a debugger, a traceback's `tb_frame.f_locals` after an error, which
    would see the start value and the list).

    In practice the safe form is rare: a loop whose parts come from a model,
    a kernel or any other call, or are created on the default device, cannot
    be proven, and gets the unsafe fix.

    Memory: the original holds the accumulator (the result so far) and, at
    each concatenation, the new result beside it: about twice the final size
    at the last iteration, and a new allocation of the whole result on every
    iteration (n allocations, about n²/2 parts copied for n equal parts). The
    fixed loop allocates nothing to grow; it holds every part in the list
    (together the size of the result so far), then at the end the parts and
    the result, also about twice the final size, with one allocation and n
    parts copied. A part that is a view of a larger tensor keeps that tensor
    alive in the list, where the original freed it once copied: parts from
    `logits[:, -1]` of a `[batch, seq, vocab]` output hold every step's whole
    output (an assumption of the unsafe fix, above).

    ## Options
    None: the concatenations are fixed (torch, NumPy, CuPy), resolved through
    the module's imports.
    """

    code = "ALC002"
    name = "concat-grows-in-loop"
    summary = "Accumulator grown by concatenating onto it on every loop iteration (quadratic copying)"
    fix_availability = "sometimes"
    options = ()

    def might_match(self, text: str, config=None) -> bool:
        """Sound text test: False only if the file has no ALC002 finding
        (the argument is in alloc_lint/rules/alc002_text.py)."""
        return alc002_text.might_match(text)

    def check(self, ctx: FileContext) -> list[Diagnostic]:
        found = [g for loop in ctx.index.loops for g in _growths_in(loop, ctx)]
        by_loop: dict[int, list[Growth]] = {}
        for growth in found:
            by_loop.setdefault(id(growth.loop), []).append(growth)
        reported = []
        for growth in found:
            growth.others = [g.stmt for g in by_loop[id(growth.loop)] if g.acc == growth.acc and g is not growth]
            if _grows_every_iteration(growth, ctx):
                reported.append(growth)
        groups: dict[tuple, list[Growth]] = {}  # one fix per accumulator and loop
        for growth in reported:
            groups.setdefault((id(growth.loop), growth.acc), []).append(growth)
        plans = {key: alc002_fix.plan(group, ctx) for key, group in groups.items()}
        return [_diagnostic(g, plans[(id(g.loop), g.acc)], ctx) for g in reported]


# --- finding the statements -----------------------------------------------------------


def _growths_in(loop: Loop, ctx: FileContext):
    for block in loop.blocks:
        for stmt in block:
            growth = _match(stmt, ctx, loop)
            if growth is not None:
                growth.loop = loop
                yield growth


def _match(stmt: ast.stmt, ctx: FileContext, loop: Loop) -> Growth | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.simple:
        target = stmt.target
    else:
        return None
    if not isinstance(target, ast.Name):
        return None
    acc, value, seed = target.id, stmt.value, None
    if isinstance(value, ast.IfExp):
        # `x if acc is None else CONCAT(...)`: the other arm must be a
        # first-iteration seed, or the accumulator itself (growth on some
        # iterations); anything else restarts the accumulator.
        for call, other, call_is_body in ((value.body, value.orelse, True), (value.orelse, value.body, False)):
            if isinstance(call, ast.Call):
                if isinstance(other, ast.Name) and other.id == acc:
                    break
                if _first_iteration_branch(value.test, acc, loop) == (not call_is_body):
                    seed = other
                    break
        else:
            return None
        value = call
    if not isinstance(value, ast.Call) or not _holds_bare(value, acc):
        return None  # (checked before the costlier name resolution)
    func = ctx.resolver.qualified_name(value.func, loop.scope)
    kind = CONCATENATIONS.get(func or "")
    if kind is None or any(k.arg == "out" for k in value.keywords):
        return None
    values = _concatenated(value, kind, func)
    if values is None:
        return None
    mine = [v for v in values if isinstance(v, ast.Name) and v.id == acc]
    if len(mine) != 1 or len(values) < 2:
        return None  # not its own previous value, or `[acc, acc]` (doubling)
    parts = [v for v in values if v is not mine[0]]
    return Growth(acc, stmt, value, func, mine[0], parts, seed)


def _holds_bare(call: ast.Call, acc: str) -> bool:
    """Is `acc` a bare argument, or a bare element of a list or tuple argument?"""
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for value in (arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]):
            if isinstance(value, ast.Name) and value.id == acc:
                return True
    return False


def _concatenated(call: ast.Call, kind: str, func: str) -> list | None:
    """The values a concatenation joins, or None if they are not spelled out."""
    if kind == "append":
        args = list(call.args[:2])
        by_keyword = {k.arg: k.value for k in call.keywords}
        for i, name in enumerate(("arr", "values")):
            if len(args) <= i and name in by_keyword:
                args.append(by_keyword[name])
        return args if len(args) == 2 and not any(isinstance(a, ast.Starred) for a in args) else None
    if call.args:
        seq = call.args[0]
    else:
        keyword = _SEQ_KEYWORD[func.split(".")[0]]
        seq = next((k.value for k in call.keywords if k.arg in (keyword, "tup")), None)
    if not isinstance(seq, (ast.List, ast.Tuple)):
        return None
    return list(seq.elts)


# --- does it grow on every iteration? -------------------------------------------------


def _grows_every_iteration(growth: Growth, ctx: FileContext) -> bool:
    loop = growth.loop
    if _literal_iterable(loop):
        return False
    if _declared_shared(growth.acc, loop, ctx):
        return False
    if not _only_growth_and_seeds_bind(growth, ctx):
        return False
    if _part_sized_by_accumulator(growth, ctx):
        return False
    if _leaves_loop_after(growth.stmt, loop, ctx):
        return False
    return not _runs_on_one_iteration(growth.stmt, loop, ctx)


# Reads of the accumulator that cannot make a new part as large as it.
_SIZELESS_ATTRIBUTES = frozenset({"dtype", "device", "layout", "is_cuda", "requires_grad"})
_NEW_METHODS = frozenset({"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"})
_METADATA_ATTRIBUTES = frozenset({"shape", "ndim"})
_METADATA_METHODS = frozenset({"size", "dim", "numel", "nelement"})


def _part_sized_by_accumulator(growth: Growth, ctx: FileContext) -> bool:
    """Could a new part be as large as the accumulator: cut from it, computed
    from it by torch (`acc.flip(2)[:, :, :n]`, `acc[-1:] + 1`,
    `acc.new_zeros(acc.shape)`), directly or through names the loop binds
    (`reflected = video.flip(dims=[2])`)? Then the accumulator may double on
    every iteration (reflection padding), copying a linear total: not the
    quadratic pattern. Its dtype and device, `acc.new_ones(n, 1)`, sizes read
    from it into other names, and opaque calls that read it (a model reading
    the tokens generated so far) are not taken to size a part."""
    parents = _parents(growth.loop)
    qualify = lambda expr: ctx.resolver.qualified_name(expr, growth.loop.scope) or ""  # noqa: E731
    bindings: dict[str, list] = {}  # name -> statements of the loop binding it
    for node in _loop_nodes(growth.loop):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        bindings.setdefault(name.id, []).append(node)
    tainted = _Tainted(growth.acc, bindings, parents, qualify)
    return any(_derived(part, lambda n: tainted(n, growth.stmt), parents, qualify) for part in growth.parts)


class _Tainted:
    """Does `name`, as read at statement `at`, hold the accumulator's contents?
    (A class, not a recursive closure: that would be a reference cycle keeping
    the file's tree alive while the garbage collector is off during a run.)"""

    def __init__(self, acc: str, bindings: dict, parents: dict, qualify):
        self.acc, self.bindings, self.parents, self.qualify = acc, bindings, parents, qualify
        self.memo: dict = {}

    def __call__(self, name: str, at: ast.stmt, depth: int = 0) -> bool:
        if name == self.acc:
            return True
        if depth > 8 or name not in self.bindings:
            return False
        key = (name, id(at))
        if key not in self.memo:
            self.memo[key] = False  # cycles: not tainted
            self.memo[key] = any(
                _derived(stmt.value, lambda n, s=stmt: self(n, s, depth + 1), self.parents, self.qualify,
                         through_metadata=False)
                for stmt in _reaching(name, at, self.bindings[name], self.parents))
        return self.memo[key]


def _reaching(name: str, at: ast.stmt, candidates: list, parents: dict) -> list:
    """The bindings of `name` that may reach statement `at`: the nearest plain
    assignment before it in its own block if there is one, else every binding
    in the loop (one from the previous iteration may reach it)."""
    block = next((b for b in _blocks(parents.get(at)) if at in b), None) if parents.get(at) else None
    if block is not None:
        for stmt in reversed(block[:block.index(at)]):
            if stmt in candidates:
                return [stmt]
            if any(isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load)
                   for n in ast.walk(stmt)):
                break  # bound conditionally or otherwise: all of them
    return candidates


def _derived(expr: ast.expr, tainted, parents: dict, qualify, through_metadata: bool = True) -> bool:
    """Does the value of `expr` carry a tainted name's contents (or, with
    through_metadata, its sizes) up to `expr` itself? Each read is followed
    up to `expr`: an opaque call taking it as an argument, its dtype or
    device, `x.new_*(...)`, and (without through_metadata) its sizes stop it.
    A name bound to a size (`n = acc.shape[1]`) is not tainted: generation
    loops count the tokens so far to place the next one."""
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and tainted(node.id) \
                and _carried(node, expr, parents, qualify, through_metadata):
            return True
    return False


def _carried(node: ast.AST, root: ast.expr, parents: dict, qualify, through_metadata: bool) -> bool:
    while node is not root:
        parent = parents.get(node)
        if parent is None:
            return False
        if isinstance(parent, ast.Attribute):
            call = parents.get(parent)
            is_method = isinstance(call, ast.Call) and call.func is parent
            if parent.attr in _SIZELESS_ATTRIBUTES or (is_method and parent.attr in _NEW_METHODS):
                return False
            if not through_metadata and (parent.attr in _METADATA_ATTRIBUTES or (
                    is_method and parent.attr in _METADATA_METHODS)):
                return False
        elif isinstance(parent, (ast.Call, ast.keyword)):
            call = parents.get(parent) if isinstance(parent, ast.keyword) else parent
            if isinstance(call, ast.Call) and call.func is not node:
                if not through_metadata and isinstance(call.func, ast.Name) and call.func.id == "len":
                    return False
                sizes_result = isinstance(call.func, ast.Attribute) and call.func.attr in _NEW_METHODS
                if not sizes_result and qualify(call.func).split(".")[0] not in ("torch", "numpy", "cupy"):
                    return False  # an opaque call reading it: not taken to be sized by it
            if isinstance(parent, ast.keyword):
                node = parent
                parent = call
        node = parent
    return True


def _parents(loop: Loop) -> dict:
    """Parent links inside one loop (the module's whole map costs more than
    the rule: most files kept by the text test have no finding)."""
    parents = getattr(loop, "_alc002_parents", None)
    if parents is None:
        parents = {child: node for node in ast.walk(loop.node) for child in ast.iter_child_nodes(node)}
        loop._alc002_parents = parents
    return parents


def _literal_iterable(loop: Loop) -> bool:
    node = loop.node
    return isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(
        node.iter, (ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Constant))


def _declared_shared(acc: str, loop: Loop, ctx: FileContext) -> bool:
    """`global acc` / `nonlocal acc` in this scope or a nested one, or (for a
    module-level loop) in any function of the module: something else may rebind it."""
    scope = loop.scope.node
    index = node_index(ctx.tree)
    return any(acc in n.names and (isinstance(scope, (ast.Module, ast.ClassDef)) or index.inside(n, scope))
               for n in index.of_type(ast.Global, ast.Nonlocal))


def _loop_nodes(loop: Loop):
    """Every node of the loop's body and target, or its `while` test (not its
    `else`, which runs once, nor a `for` iterable, evaluated once before), in
    this scope: nested functions, lambdas and classes are yielded (their
    names are bindings) but not entered; comprehensions are entered (a walrus
    in one binds in this scope)."""
    return alc002_fix.loop_nodes(loop)


def _only_growth_and_seeds_bind(growth: Growth, ctx: FileContext) -> bool:
    """The accumulator carries over from one iteration to the next: inside the
    loop it is bound only by its growth statements and by first-iteration seeds."""
    acc, loop = growth.acc, growth.loop
    parents = _parents(growth.loop)
    allowed = {id(stmt) for stmt in (growth.stmt, *growth.others)}
    for node in _loop_nodes(loop):
        if isinstance(node, ast.Name) and node.id == acc and not isinstance(node.ctx, ast.Load):
            holder = parents.get(node)
            if id(holder) in allowed and isinstance(node.ctx, ast.Store):
                continue
            if isinstance(node.ctx, ast.Store) and _is_seed(node, loop, ctx):
                continue
            if isinstance(holder, ast.AugAssign):
                continue  # `acc *= w` keeps its size
            return False
        if isinstance(node, ast.arg) and node.arg == acc:
            return False
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == acc:
            return False
        if isinstance(node, ast.alias) and (node.asname or node.name.split(".")[0]) == acc:
            return False
        if isinstance(node, ast.ExceptHandler) and node.name == acc:
            return False
        if type(node).__name__ in ("MatchAs", "MatchStar") and getattr(node, "name", None) == acc:
            return False
        if type(node).__name__ == "MatchMapping" and getattr(node, "rest", None) == acc:
            return False
    return True


def _is_seed(name: ast.Name, loop: Loop, ctx: FileContext) -> bool:
    """A plain assignment to the accumulator that only runs before the loop's
    first growth: in the branch of `if acc is None:` / `if i == 0:` taken then."""
    parents = _parents(loop)
    stmt = parents.get(name)
    if not (isinstance(stmt, (ast.Assign, ast.AnnAssign)) and
            (name in getattr(stmt, "targets", ()) or getattr(stmt, "target", None) is name)):
        return False
    child, current = stmt, parents.get(stmt)
    while current is not None and current is not loop.node:
        if isinstance(current, ast.If):
            first = _first_iteration_branch(current.test, name.id, loop)
            if first is not None and (child in current.body) == first:
                return True
        if isinstance(current, NESTED_SCOPES):
            return False
        child, current = current, parents.get(current)
    return False


def _first_iteration_branch(test: ast.expr, acc: str, loop: Loop) -> bool | None:
    """True if the test holds only before the accumulator's first growth (so the
    `if` body is a seed), False if it fails only then (the `else` is), None if
    neither is known."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right, op = test.left, test.comparators[0], test.ops[0]
        if _is_const(left, None) or _is_const(left, 0):
            left, right = right, left
        if isinstance(left, ast.Name) and left.id == acc and _is_const(right, None):
            if isinstance(op, ast.Is):
                return True
            if isinstance(op, ast.IsNot):
                return False
        if isinstance(left, ast.Name) and left.id in _distinct_counters(loop) and _is_const(right, 0):
            if isinstance(op, ast.Eq):
                return True
            if isinstance(op, (ast.NotEq, ast.Gt)):
                return False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) \
            and isinstance(test.operand, ast.Name) and test.operand.id in _distinct_counters(loop):
        return True
    if isinstance(test, ast.Name) and test.id in _distinct_counters(loop):
        return False
    return None


def _is_const(node: ast.expr, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value if value is None else \
        isinstance(node, ast.Constant) and type(node.value) is int and node.value == value


def _distinct_counters(loop: Loop) -> set[str]:
    """Names that take a different value on every iteration: `i` in
    `for i in range(...)` or `for i, x in enumerate(...)`, never rebound in the body."""
    node = loop.node
    if not isinstance(node, (ast.For, ast.AsyncFor)) or not isinstance(node.iter, ast.Call) \
            or not isinstance(node.iter.func, ast.Name) or node.iter.func.id not in _DISTINCT_ITERATORS:
        return set()
    target = node.target
    if node.iter.func.id == "enumerate":
        if not (isinstance(target, ast.Tuple) and len(target.elts) == 2):
            return set()
        target = target.elts[0]
    if not isinstance(target, ast.Name):
        return set()
    for sub in node.body:
        for n in ast.walk(sub):
            if isinstance(n, ast.Name) and n.id == target.id and not isinstance(n.ctx, ast.Load):
                return set()
    return {target.id}


def _always_leaves(stmt: ast.stmt) -> bool:
    """Does every path through this statement leave the loop (or the function)?"""
    if isinstance(stmt, (ast.Break, ast.Return, ast.Raise)):
        return True
    if isinstance(stmt, ast.If):
        return _block_leaves(stmt.body) and _block_leaves(stmt.orelse)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return _block_leaves(stmt.body)
    return False


def _block_leaves(block: list) -> bool:
    return any(_always_leaves(s) for s in block)


def _leaves_loop_after(stmt: ast.stmt, loop: Loop, ctx: FileContext) -> bool:
    """Does every path from this statement leave the loop before the next
    iteration? Then the concatenation runs once per entry into the loop."""
    parents = _parents(loop)
    current = stmt
    while current is not loop.node:
        holder = parents.get(current)
        if holder is None:
            return False
        for block in _blocks(holder):
            if current in block and _block_leaves(block[block.index(current) + 1:]):
                return True
        current = holder
    return False


def _blocks(node: ast.AST) -> list:
    blocks = [getattr(node, name) for name in ("body", "orelse", "finalbody")
              if isinstance(getattr(node, name, None), list)]
    if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
        blocks += [h.body for h in node.handlers]
    return blocks


def _runs_on_one_iteration(stmt: ast.stmt, loop: Loop, ctx: FileContext) -> bool:
    """Is the statement under a branch taken when a value that changes with the
    iteration equals something (`if i == n - 1:`, `if step == 0:`)? Then it
    may run on one iteration only: report nothing."""
    parents = _parents(loop)
    varying = _loop_bound_names(loop)
    child, current = stmt, parents.get(stmt)
    while current is not None and current is not loop.node:
        if isinstance(current, ast.If) and isinstance(current.test, ast.Compare):
            ops = current.test.ops
            in_body = child in current.body
            selects_equal = (in_body and all(isinstance(o, (ast.Eq, ast.Is)) for o in ops)) or \
                (not in_body and all(isinstance(o, (ast.NotEq, ast.IsNot)) for o in ops))
            sides = [current.test.left, *current.test.comparators]
            if selects_equal and not any(_is_const(s, None) for s in sides) and any(
                    isinstance(n, ast.Name) and n.id in varying for s in sides for n in ast.walk(s)):
                return True
        child, current = current, parents.get(current)
    return False


def _loop_bound_names(loop: Loop) -> set[str]:
    return {n.id for n in _loop_nodes(loop) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


# --- diagnostics ----------------------------------------------------------------------


def _diagnostic(growth: Growth, plan, ctx: FileContext) -> Diagnostic:
    call = growth.call
    func = ast.unparse(call.func)
    message = (f"`{func}` copies all of `{growth.acc}` on every loop iteration to grow it "
               f"(quadratic in the number of parts); ")
    if plan.reason and "read in the loop" in plan.reason:
        message += ("preallocate the whole result once and write each part into a slice of it "
                    f"(no automatic fix: {plan.reason})")
    else:
        message += "collect the parts in a list and concatenate once after the loop"
        if plan.reason:
            message += f" (no automatic fix: {plan.reason})"
    return Diagnostic(
        code=ConcatGrowsInLoop.code, name=ConcatGrowsInLoop.name, filename=ctx.filename,
        line=call.lineno, column=ctx.char_column(call.lineno, call.col_offset) + 1,
        end_line=call.end_lineno, end_column=ctx.char_column(call.end_lineno, call.end_col_offset) + 1,
        message=message, fixes=list(plan.fixes), no_fix_reason=plan.reason,
    )
