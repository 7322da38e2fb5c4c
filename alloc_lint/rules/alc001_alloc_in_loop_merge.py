"""ALC001 alloc-in-loop-merge."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..analysis import flow
from ..analysis.names import last_names
from ..analysis.prefilter import might_have_finding
from ..analysis.scopes import Loop, walk_scope
from ..diagnostics import Diagnostic, Fix
from ..edits import InsertBefore, Replace, Wrap, position
from .base import FileContext, Rule


@dataclass(eq=False)
class Pair:
    """One accumulator A and the temporary T allocated for it each iteration."""

    temp: str
    acc: str
    alloc: ast.Assign  # T = ALLOC(X, ...)
    alloc_index: int
    merge_arg: ast.Name  # T as it is passed to the merge call
    rebind: ast.Assign  # A = T, or a tuple assignment holding it
    rebind_value: ast.Name
    rebind_target: ast.Name
    deletes: list = field(default_factory=list)  # `del T` statements after the rebinding


@dataclass(eq=False)
class FixPlan:
    """How one group is rewritten; `_operations` turns it into edit operations."""

    form: str  # "swap" | "pingpong"
    loop: ast.stmt
    allocs: list  # the group's allocation statements, in order
    pairs: list  # (acc, temp, spare-or-None) per accumulator
    rebinds: list  # rebinding statements (each rewritten once)
    deletes: list
    first_temp: str


class AllocInLoopMerge(Rule):
    """
    # ALC001 alloc-in-loop-merge

    ## What it does
    Finds a buffer allocated on every iteration of a loop (`T = torch.empty_like(X)`)
    only to be handed to a call that merges into it, after which the accumulator is
    rebound to it (`A = T`, or `A, B = T, U` with plain names on both sides). The merge call must receive both `T` and `A`; `T` is
    passed positionally, by an `out`/`output`-like keyword, or by any keyword to a
    known merge kernel (`merge_attn_states`, `merge_state`, ... and the configured
    `extra-merge-functions`). Output and log-sum-exp accumulators updated by the
    same call form one group and get one fix.

    It reports nothing where the allocation is needed: the template `X` changes
    shape from one iteration to the next; the temporary is read after the rebinding,
    after the loop, or escapes (stored, appended, returned, yielded, captured by a
    closure, declared `global`/`nonlocal`); the accumulator's buffer escapes during
    the loop (`first = acc`, `history.append(acc)`, `yield acc`, a view of it kept
    in a name); or the code already allocates lazily and swaps.

    ## Why is this bad?
    Each iteration asks the allocator for a new buffer the size of the whole
    accumulator, while the previous one becomes garbage. Over a chunked-attention
    loop that is one request per chunk and per accumulator: in vLLM's MLA chunked
    prefill (1024 tokens, 128 heads, dim 128, 16 chunks) 30 requests and 511 MB
    allocated, against 2 requests and 34 MB when the buffer is allocated once and
    reused, with bitwise-identical results. Peak memory over the loop halves too.

    ## Example
    ```python
    output = None
    for i in range(iters):
        attn_output, attn_lse = run_chunk(i)
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    ```

    ## Use instead
    Allocate lazily once, and swap references after each merge, so the previous
    accumulator becomes the next scratch buffer:
    ```python
    output = None
    output_tmp = None
    for i in range(iters):
        attn_output, attn_lse = run_chunk(i)
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            if output_tmp is None:
                output_tmp = torch.empty_like(output)
                output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output, output_tmp = output_tmp, output
            output_lse, output_lse_tmp = output_lse_tmp, output_lse
    ```

    ## Fix safety
    The fix takes one of two forms, chosen by what can be proven about the
    accumulator's first value (every value it gets other than from the temporary):

    - **Swap** (above; one buffer per accumulator) is a *safe* fix only when every
      first value is a fresh tensor the function allocated itself (`torch.zeros`,
      `torch.empty_like`, `x.clone()`, arithmetic) and not aliased before the loop.
      From the second merge on, the swap writes into that first buffer.
    - **Ping-pong** (two lazily allocated buffers per accumulator, alternated; the
      first value is only ever read) is the *safe* fix otherwise. It never writes
      where the original program did not, and every buffer has the template's layout.
    - Where the first value comes from another name or an opaque call (vLLM's first
      chunk output), the swap is also offered as an *unsafe* fix (applied with
      `--unsafe-fixes`): it is only the same program if that tensor is referenced
      nowhere else and has the layout of a fresh `torch.empty_like` buffer. vLLM's
      padded-V views broke that assumption (vLLM PR #42642).
    - Where the accumulator starts as a parameter, a global or an attribute (the
      caller's tensor), the swap would overwrite the caller's data: only ping-pong
      is offered.
    - No fix is offered (the diagnostic says why) when the group's allocations are
      not adjacent statements, or a statement of the pattern shares its line with
      another statement.

    In every form `T = None` is inserted just before the innermost loop (so every
    entry into the loop starts without a buffer), the allocations are wrapped in
    `if T is None:`, and `del T` after the rebinding is dropped. Comments and
    formatting outside the changed lines are kept; the result does not trigger
    ALC001 again.

    ## Options
    In `[tool.alloc-lint]` of `pyproject.toml`:

    - `extra-allocators`: more allocator functions, by qualified name
      (`["mylib.ops.empty_like"]`); their first argument is the template.
      `torch.empty_like` is always one.
    - `extra-merge-functions`: more calls that merge into the temporary under any
      keyword (`["combine_states"]`), besides `merge_attn_states`, `merge_state`,
      `merge_state_v2` and `merge_states`. Listing one vouches that it keeps no
      reference to its arguments and writes its outputs in full.
    """

    code = "ALC001"
    name = "alloc-in-loop-merge"
    summary = "Buffer allocated on every loop iteration only to merge into it and rebind the accumulator"
    fix_availability = "sometimes"
    options = ("extra-allocators", "extra-merge-functions")

    def might_match(self, text: str, config) -> bool:
        return might_have_finding(text, last_names(config.allocators))

    def check(self, ctx: FileContext) -> list[Diagnostic]:
        allocators = frozenset(ctx.config.allocators)
        if not any(n in ctx.text for n in last_names(ctx.config.allocators)):
            return []
        diagnostics: list[Diagnostic] = []
        claimed: set = set()  # statements already rewritten by a group's fix
        names_in_use: dict = {}  # per scope: identifiers, and spare names handed out
        for loop in ctx.index.loops:
            for block in loop.blocks:
                for group in _find_groups(block, loop, ctx, allocators):
                    scope_node = loop.scope.node
                    if id(scope_node) not in names_in_use:
                        names_in_use[id(scope_node)] = _identifiers(scope_node)
                    diagnostics.extend(_diagnose(group, loop, ctx, claimed,
                                                 names_in_use[id(scope_node)]))
        return diagnostics


# --- finding the pattern -----------------------------------------------------------


def _merge_call(stmt: ast.stmt) -> ast.Call | None:
    if isinstance(stmt, ast.Expr):
        value = stmt.value.value if isinstance(stmt.value, ast.Await) else stmt.value
        if isinstance(value, ast.Call):
            return value
    return None


def _out_like(keyword: str) -> bool:
    k = keyword.lower()
    return k.startswith("out") or k.endswith("out") or k.endswith("output")


def _rebinding_pairs(stmt: ast.stmt):
    """(target Name, value Name) pairs of `A = T` or `A, B = T, U`."""
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
        return []
    target, value = stmt.targets[0], stmt.value
    if isinstance(target, ast.Name) and isinstance(value, ast.Name):
        return [(target, value)]
    # Only plain names on both sides: what the text prefilter can see, and
    # what a rebinding of accumulators looks like in practice.
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts) \
            and all(isinstance(e, ast.Name) for e in (*target.elts, *value.elts)):
        return list(zip(target.elts, value.elts))
    return []


def _find_groups(block: list, loop: Loop, ctx: FileContext, allocators: frozenset):
    """Candidate groups in one statement list: allocations, then a merge call
    receiving them and the accumulators, then the rebindings."""
    allocs: dict[str, list[tuple[int, ast.Assign]]] = {}
    for i, stmt in enumerate(block):
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and isinstance(stmt.value, ast.Call) and stmt.value.args \
                and not isinstance(stmt.value.args[0], ast.Starred):
            allocs.setdefault(stmt.targets[0].id, []).append((i, stmt))
    if not allocs:
        return
    merge_names = last_names(ctx.config.merge_functions)
    for m, stmt in enumerate(block):
        call = _merge_call(stmt)
        if call is None:
            continue
        passed: dict[str, list[tuple[ast.Name, str | None]]] = {}
        for arg in call.args:
            if isinstance(arg, ast.Name):
                passed.setdefault(arg.id, []).append((arg, None))
        for kw in call.keywords:
            if kw.arg and isinstance(kw.value, ast.Name):
                passed.setdefault(kw.value.id, []).append((kw.value, kw.arg))
        known_merge = flow.callee_name(call) in merge_names
        pairs = []
        for temp, found in allocs.items():
            before = [(i, s) for i, s in found if i < m]
            if temp not in passed or not before:
                continue
            arg_node, keyword = passed[temp][0]
            if keyword and not known_merge and not _out_like(keyword):
                continue
            alloc_index, alloc = before[-1]
            if ctx.resolver.qualified_name(alloc.value.func, loop.scope) not in allocators:
                continue
            pair = _find_rebinding(block, m, temp, passed)
            if pair is None:
                continue
            rebind, target, value = pair
            deletes = [s for s in block[block.index(rebind) + 1:]
                       if isinstance(s, ast.Delete) and any(isinstance(t, ast.Name) and t.id == temp
                                                             for t in _del_names(s))]
            pairs.append(Pair(temp, target.id, alloc, alloc_index, arg_node, rebind, value, target, deletes))
        if pairs:
            yield pairs


def _del_names(stmt: ast.Delete):
    for target in stmt.targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            yield from target.elts
        else:
            yield target


def _find_rebinding(block, merge_index, temp, passed):
    for stmt in block[merge_index + 1:]:
        for target, value in _rebinding_pairs(stmt):
            if value.id == temp and target.id != temp and target.id in passed:
                return stmt, target, value
    return None


# --- safety --------------------------------------------------------------------------


def _loop_parts(loop: Loop) -> list:
    parts = list(loop.node.body)
    if isinstance(loop.node, (ast.For, ast.AsyncFor)):
        parts.append(loop.node.target)
    return parts


def _temp_is_private(pair: Pair, scope_node: ast.AST) -> bool:
    """T occurs nowhere but in its allocation, the merge call, the rebinding
    and `del T`: it is never read later, never escapes, and the code is not
    already in the lazy-init form (which reads `T is None`)."""
    allowed = {id(pair.alloc.targets[0]), id(pair.merge_arg), id(pair.rebind_value)}
    for stmt in pair.deletes:
        allowed.update(id(t) for t in _del_names(stmt))
    if any(id(n) not in allowed for n in flow.name_nodes(scope_node, pair.temp)):
        return False
    return not flow.binds_otherwise(scope_node, pair.temp)


def _accumulator_is_private(pair: Pair, group: list, loop: Loop, ctx: FileContext) -> bool:
    """A's buffer gains no reference inside the loop that could outlive the
    iteration; A is not shared with a closure or another scope."""
    scope_node = loop.scope.node
    parents = ctx.index.parents
    for node in ast.walk(scope_node):
        if isinstance(node, (ast.Global, ast.Nonlocal)) and pair.acc in node.names:
            return False
        if isinstance(node, (ast.Name, ast.arg)) and (getattr(node, "id", None) or getattr(node, "arg", None)) \
                == pair.acc and flow.in_nested_scope(node, scope_node, parents):
            return False
    qualify = lambda expr: ctx.resolver.qualified_name(expr, loop.scope)  # noqa: E731
    templates = {id(p.alloc.value.args[0]) for p in group}
    rebind_targets = {id(p.rebind_target) for p in group}
    for part in _loop_parts(loop):
        for node in flow.name_nodes(part, pair.acc):
            if isinstance(node.ctx, ast.Load):
                if id(node) in templates or flow.read_is_transient(node, parents, qualify):
                    continue
                return False
            if isinstance(node.ctx, ast.Del):
                return False
            if id(node) in rebind_targets or _seed_value(node, parents) is not None:
                continue
            if isinstance(parents.get(node), ast.AugAssign):
                continue  # in place: the buffer stays the accumulator's
            return False
    return True


def _template_is_stable(pair: Pair, group: list, loop: Loop) -> bool:
    """The allocation's template has the same shape on every iteration: an
    accumulator of the group, or a name the loop never rebinds."""
    template = pair.alloc.value.args[0]
    if not isinstance(template, ast.Name):
        return False
    if template.id in {p.acc for p in group}:
        return True
    if template.id in {p.temp for p in group}:
        return False
    return not flow.is_rebound_in(_loop_parts(loop), template.id)


def _seed_value(node: ast.Name, parents: dict):
    """For a store of an accumulator, the expression it receives (None if it is
    not a plain assignment we can read)."""
    parent = parents.get(node)
    if isinstance(parent, (ast.Tuple, ast.List)):
        holder = parents.get(parent)
        if isinstance(holder, ast.Assign) and parent in holder.targets and \
                isinstance(holder.value, (ast.Tuple, ast.List)) and len(holder.value.elts) == len(parent.elts):
            return holder.value.elts[parent.elts.index(node)]
        if isinstance(holder, ast.Assign) and parent in holder.targets:
            return holder.value  # unpacking a call's result
        return None
    if isinstance(parent, ast.Assign) and node in parent.targets:
        return parent.value
    if isinstance(parent, (ast.AnnAssign, ast.NamedExpr)) and parent.target is node and parent.value is not None:
        return parent.value
    return None


def _first_value_origin(pair: Pair, loop: Loop, ctx: FileContext) -> tuple[str, str | None]:
    """How the accumulator gets buffers other than from the temporary: the
    worst origin over every such assignment in the function, and one example."""
    scope = loop.scope
    parents = ctx.index.parents
    node = scope.node
    params = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        params = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x}
    local_names = {n.id for n in walk_scope(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    qualify = lambda expr: ctx.resolver.qualified_name(expr, scope)  # noqa: E731
    if pair.acc in params:
        return "external", pair.acc
    seeds = []  # (origin, source text) of every other assignment to A
    for name in walk_scope(node):
        if not (isinstance(name, ast.Name) and name.id == pair.acc and isinstance(name.ctx, ast.Store)):
            continue
        if name is pair.rebind_target or isinstance(parents.get(name), ast.AugAssign):
            continue
        value = _seed_value(name, parents)
        if value is None:
            seeds.append(("external", pair.acc))
        else:
            seeds.append((flow.value_origin(value, params, local_names, qualify), ast.unparse(value)))
    if not seeds:
        return "external", pair.acc  # a global
    origin = flow.worst(*(o for o, _ in seeds))
    example = next(text for o, text in seeds if o == origin)
    if origin in ("owned", "none"):
        if loop.enclosing and not _reassigned_before(loop, pair.acc):
            return "opaque", f"{pair.acc} (from an earlier pass of the enclosing loop)"
        for name in flow.name_nodes(node, pair.acc):
            if isinstance(name.ctx, ast.Load) and name.lineno < loop.node.lineno \
                    and not flow.read_is_transient(name, parents, qualify):
                return "opaque", f"{pair.acc} (aliased before the loop)"
    return origin, example


def _reassigned_before(loop: Loop, acc: str) -> bool:
    for stmt in loop.container[:loop.container.index(loop.node)]:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                if any(isinstance(e, ast.Name) and e.id == acc for e in elts):
                    return True
    return False


# --- diagnostics and fixes -----------------------------------------------------------


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
    return names


def _alone_on_lines(stmt: ast.stmt, ctx: FileContext) -> bool:
    """Nothing but indentation before the statement and nothing but a comment after it."""
    lines = ctx.lines
    before = lines[stmt.lineno - 1].encode("utf-8")[:stmt.col_offset]
    after = lines[stmt.end_lineno - 1].encode("utf-8")[stmt.end_col_offset:].strip()
    return not before.strip() and (not after or after.startswith(b"#"))


def _fresh_name(base: str, taken: set[str]) -> str:
    candidate, n = f"{base}_alt", 2
    while candidate in taken:
        candidate, n = f"{base}_alt{n}", n + 1
    taken.add(candidate)
    return candidate


def _diagnose(pairs: list, loop: Loop, ctx: FileContext, claimed: set, names_in_use: set):
    # A group is reported whole or not at all: if one accumulator of a merge
    # needs its fresh buffer, the pattern is not the wasteful one.
    scope_node = loop.scope.node
    temps, accs = [p.temp for p in pairs], [p.acc for p in pairs]
    if len(set(accs)) != len(accs) or set(temps) & set(accs):
        return []
    if not all(_temp_is_private(p, scope_node) and _template_is_stable(p, pairs, loop)
               and _accumulator_is_private(p, pairs, loop, ctx) for p in pairs):
        return []
    group = pairs

    origins = [_first_value_origin(p, loop, ctx) for p in group]
    origin = flow.worst(*(o for o, _ in origins))
    example = next((e for o, e in origins if o == origin), None)

    statements = [p.alloc for p in group] + [p.rebind for p in group] + [d for p in group for d in p.deletes]
    indices = sorted(p.alloc_index for p in group)
    reason = None
    if indices != list(range(indices[0], indices[0] + len(indices))):
        reason = "the group's allocations are not adjacent statements"
    elif not all(_alone_on_lines(s, ctx) for s in statements):
        reason = "a statement of the pattern shares its line with another statement"
    elif any(id(s) in claimed for s in statements):
        reason = "a statement of the pattern belongs to another group's fix"
    fixes = [] if reason else _fixes(group, loop, origin, example, names_in_use, ctx.lines)
    if fixes:
        claimed.update(id(s) for s in statements)

    diagnostics = []
    for p in group:
        call = p.alloc.value
        func = ast.unparse(call.func)
        message = (f"`{func}` allocates `{p.temp}` on every loop iteration only to merge into it "
                   f"and rebind `{p.acc}`; allocate it once and reuse it")
        if reason:
            message += f" (no automatic fix: {reason})"
        diagnostics.append(Diagnostic(
            code="ALC001", name="alloc-in-loop-merge", filename=ctx.filename,
            line=call.lineno, column=ctx.char_column(call.lineno, call.col_offset) + 1,
            end_line=call.end_lineno, end_column=ctx.char_column(call.end_lineno, call.end_col_offset) + 1,
            message=message, fixes=fixes, no_fix_reason=reason,
        ))
    return diagnostics


def _plan(form: str, group: list, loop: Loop, names_in_use: set) -> FixPlan:
    ordered = sorted(group, key=lambda p: p.alloc_index)
    pairs = [(p.acc, p.temp, _fresh_name(p.temp, names_in_use) if form == "pingpong" else None)
             for p in ordered]
    rebinds = []
    for p in ordered:
        if p.rebind not in rebinds:
            rebinds.append(p.rebind)
    deletes = []
    for p in ordered:
        deletes.extend(d for d in p.deletes if d not in deletes)
    return FixPlan(form, loop.node, [p.alloc for p in ordered], pairs, rebinds, deletes, ordered[0].temp)


def _operations(plan: FixPlan, lines: list) -> tuple:
    """The edit operations (alloc_lint.edits) that carry out `plan`."""
    at = lambda stmt: position(stmt, lines)  # noqa: E731
    spares = [f"{spare} = {_source(alloc.value, lines)}"
              for (_, _, spare), alloc in zip(plan.pairs, plan.allocs) if spare]
    ops = [InsertBefore(at(plan.loop), f"{plan.first_temp} = None"),
           Wrap(tuple(at(s) for s in plan.allocs), f"if {plan.first_temp} is None", "\n".join(spares))]
    ops += [Replace(at(s), _rebinding(s, plan.pairs, plan.form)) for s in plan.rebinds]
    temps = {temp for _, temp, _ in plan.pairs}
    ops += [Replace(at(s), _without_temps(s, temps) or "") for s in plan.deletes]
    return tuple(ops)


def _source(node: ast.expr, lines: list) -> str:
    """The expression as written, where it is one line; else unparsed."""
    if node.lineno == node.end_lineno:
        line = lines[node.lineno - 1].encode("utf-8")
        return line[node.col_offset:node.end_col_offset].decode("utf-8")
    return ast.unparse(node)


def _rebinding(stmt: ast.Assign, pairs, form: str) -> str:
    """`A = T` -> `A, T = T, A` (swap) or `A, T, T_alt = T, T_alt, T` (ping-pong),
    keeping any other elements of a tuple assignment."""
    target, value = stmt.targets[0], stmt.value
    if isinstance(target, ast.Name):
        targets, values = [target.id], [value.id]
    else:
        targets = [ast.unparse(t) for t in target.elts]
        values = [ast.unparse(v) for v in value.elts]
    for acc, temp, spare in pairs:
        if acc in targets and values[targets.index(acc)] == temp:
            if form == "swap":
                targets.append(temp)
                values.append(acc)
            else:
                targets += [temp, spare]
                values += [spare, temp]
    return f"{', '.join(targets)} = {', '.join(values)}"


def _without_temps(stmt: ast.Delete, temps: set[str]) -> str | None:
    kept = []
    for target in stmt.targets:
        elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        kept += [ast.unparse(e) for e in elts if not (isinstance(e, ast.Name) and e.id in temps)]
    return f"del {', '.join(kept)}" if kept else None


def _fixes(group: list, loop: Loop, origin: str, example: str | None, names_in_use: set,
           lines: list) -> list[Fix]:
    accs = ", ".join(f"`{p.acc}`" for p in group)
    temps = ", ".join(f"`{p.temp}`" for p in group)
    swap_message = f"Allocate {temps} once, lazily, and swap with {accs} after each merge"
    pingpong_message = (f"Allocate two buffers per accumulator once, lazily, and alternate them "
                        f"(the first value of {accs} is only read)")

    def fix(applicability: str, message: str, form: str) -> Fix:
        return Fix(applicability, message, form, _operations(_plan(form, group, loop, names_in_use), lines))

    if origin in ("owned", "none"):
        return [fix("safe", swap_message, "swap")]
    if origin == "external":
        return [fix("safe", pingpong_message + f"; a swap would overwrite `{example}`, which the caller owns",
                    "pingpong")]
    unsafe = (swap_message + f"; assumes the first value of {accs} (from `{example}`) is referenced "
              "nowhere else and has the layout of a fresh buffer")
    return [fix("unsafe", unsafe, "swap"), fix("safe", pingpong_message, "pingpong")]
