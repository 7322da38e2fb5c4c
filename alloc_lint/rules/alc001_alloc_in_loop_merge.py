"""ALC001 alloc-in-loop-merge."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache

from ..analysis import flow
from ..analysis.compiled import Compilation
from ..analysis.names import last_names
from ..analysis.prefilter import might_have_finding
from ..analysis.ownership import Origin, matches_template, seed_of
from ..analysis.scopes import NESTED_SCOPES, SCOPE_NODES, Loop, node_index, walk_scope
from ..analysis.stability import Restarts, metadata_changing_use, name_is_owned_local
from ..analysis.uses import (GRAD_CONTEXTS, HARMLESS_CONTEXTS, TORCH_NAMESPACES, Kind, UseClassifier,
                             captured_names, classifier_for, dynamic_access, is_suspension, opaque_call,
                             suspension_point, suspension_text, uninitialised_growth)
from ..diagnostics import Diagnostic, Fix
from ..edits import InsertAfter, InsertBefore, Replace, Wrap, position
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
    # The lazy allocation also runs when a reused buffer's metadata differs
    # from its template's (`if T is None or <guard>:`), and then first drops
    # the old buffers (`drop`) so none is held while the new ones are allocated.
    guard: str | None = None
    drop: tuple = ()
    # Statements of the lazy `if`'s `else:` (a reused buffer re-initialised).
    reinit: tuple = ()
    # Names set to None right after the loop, releasing the scratch buffers.
    release: tuple = ()
    # Every temporary is tested (`if T is None or U is None`), and set to None
    # before the loop, where an exception between the allocations may be caught
    # in the loop and leave some of them None.
    test_all: bool = False


SHAPE_SPELLINGS = frozenset({"torch.empty"})  # `torch.empty(X.shape, ...)`: empty_like written longhand
METHOD_ALLOCATORS = frozenset({"new_empty", "new_zeros", "new_ones", "new_full"})


class AllocInLoopMerge(Rule):
    """
    # ALC001 alloc-in-loop-merge

    ## What it does
    Finds a buffer allocated on every iteration of a loop (`T = torch.empty_like(X)`)
    only to be handed to a call that merges into it, after which the accumulator is
    rebound to it (`A = T`, or `A, B = T, U` with plain names on both sides). The
    merge call must receive both `T` and `A`; `T` is passed positionally, by an
    `out`/`output`-like keyword (one that starts with `out` or ends with `out`
    or `output`), or by any keyword to a known merge kernel
    (`merge_attn_states`, `merge_state`, ... and the configured
    `extra-merge-functions`). Output and log-sum-exp accumulators updated by the
    same call form one group and get one fix: when a temporary the call receives
    is read again elsewhere (its accumulator rebound in a nested block, say),
    no accumulator of the call is reported.

    Loops in functions are checked; a loop at module level or in a class body
    is reported too, but its fixes are unsafe: its variables are module or class
    attributes other code may read, and the fix changes the temporary's value
    after the loop.

    The allocation may be spelled `torch.empty_like(X)` (or `input=X`), any
    configured `extra-allocators` entry, `torch.empty(X.shape, dtype=X.dtype,
    device=X.device)` (or `X.size()`), or `X.new_empty(size)` (`new_zeros`,
    `new_ones`, `new_full`); the temporary may be annotated
    (`T: torch.Tensor = ...`).

    It reports nothing where the allocation is needed: the template `X` (or a size,
    dtype or device argument of the allocator) is rebound inside the loop; the
    temporary occurs anywhere but in its allocation, the merge call, the rebinding
    and `del T`; the accumulator's buffer escapes during the loop (bound to another
    name, stored, put in a container, appended, returned, yielded, iterated,
    captured by a closure, declared `global`/`nonlocal`); or the code already
    allocates lazily and swaps.

    ## Why is this bad?
    Each iteration asks the allocator for a new buffer the size of the whole
    accumulator, while the previous one becomes garbage. Over a chunked-attention
    loop that is one request per chunk and per accumulator: in vLLM's MLA chunked
    prefill (1024 tokens, 128 heads, dim 128, 16 chunks) 30 requests and 511 MB
    allocated, against 2 requests and 34 MB when the buffer is allocated once and
    reused, with bitwise-identical results.

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
    Allocate lazily once, and reuse. The upstream fix (vLLM PR #42460) swaps
    references after each merge, so the previous accumulator becomes the next
    scratch buffer:
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
    Here the first value is `attn_output`, a kernel's result the tool cannot see
    into, so `alloc-lint fix` applies the **ping-pong** form instead (below) and
    offers this swap only with `--unsafe-fixes`.

    ## Fix safety
    A *safe* fix is a proof that the rewritten program computes the same values,
    writes nowhere the original did not and raises nothing new. The proof is an
    allowlist: what is not shown harmless blocks the safe fix, and the message
    names the use, its line and what would have to hold.

    **The forms.** In every form `T = None` goes just before the innermost loop (each
    entry into the loop starts without buffers), the group's allocations are
    wrapped in `if T is None:`, a `del T` after the rebinding is dropped, and,
    unless the loop is followed only by a plain `return`, the scratch buffers are
    released right after the loop (`T = None`; with ping-pong `T = T_alt = None`,
    every scratch name of the group). Where an exception raised between the
    group's allocations (an out-of-memory error) may be caught inside the loop
    (a `try` around them within the loop, or a `with` whose context manager is
    not known to let exceptions through), every temporary of the group is set to
    None before the loop and tested, `if T is None or U is None:`: a caught
    exception may leave the first allocated and the second None.
    - **Swap** (one buffer per accumulator, `A, T = T, A`): from the second merge
      on it writes into the accumulator's first value.
    - **Ping-pong** (two buffers per accumulator, `A, T, T_alt = T, T_alt, T` with
      `T_alt = None` before the loop): the first value is only ever read; the second
      buffer is allocated at the second merge, when the first value has been
      dropped.
      Ping-pong rotates every accumulator's buffers together, so where it is
      needed the group's rebindings must be adjacent statements (a `continue`
      between them would skip some); otherwise no fix is offered.
    - **Guarded** (either form): the lazy allocation also runs when a reused
      buffer's metadata differs from its template's,
      `if T is None or T.shape != X.shape or T.dtype != X.dtype or T.device != X.device or T.stride() != X.stride() or X.is_quantized:`,
      and then drops the old buffers (`T = None`) before allocating. `empty_like`
      also copies a quantized template's scale and zero point, which the
      comparisons do not see, so a quantized template is never reused. Where
      stability is otherwise proven and the merge is a torch `out=` operator,
      which resizes its output to the result's shape (broadcasting), the guard
      compares shapes only (`if T is None or T.shape != X.shape:`); with a
      restart or an unproven template, an `out=` merge gets the full guard.
      `torch.fx.symbolic_trace` cannot trace an `if` on tensor metadata, so in a
      method of a class deriving directly from a `torch.nn` class, or of a class
      or function passed to `torch.fx.symbolic_trace` in the module, a guarded
      fix is unsafe; elsewhere it assumes the code is not FX-traced (a module
      whose `torch.nn` base comes from another file, traced from another file).
    - **Re-initialised**: with an initialising allocator (`zeros*`, `ones*`,
      `full*`, e.g. from `extra-allocators`) a reused buffer gets `T.zero_()` /
      `T.fill_(v)` in an `else:` of the lazy `if`, whatever the merge: a kernel
      may accumulate into its output (`v_merged += w * v`) and so read the zeros
      the original gave it, and the re-initialisation costs what the original's
      initialising allocation did.

    No fix is offered in a function TorchScript compiles (it rejects a variable
    that is None and then a tensor): one decorated with `torch.jit.*` (other than
    `ignore` and `unused`), a method of a class so decorated or deriving from
    `torch.jit.ScriptModule`, a function or class passed by name to
    `torch.jit.script(...)` in the module (any other argument: every `torch.nn`
    subclass of the module), and what those call by name.

    **1. Every use is one of a closed list of kinds.** Each occurrence of each
    accumulator and temporary in the loop (body, `while` test, `for` target; a
    `for` iterable runs once, before the loop), of the template and of every name
    in the allocator's arguments is classified by its immediate context
    (`alloc_lint/analysis/uses.py`). A value that may share storage with the
    tensor (`acc[0]`, `acc.T`, `acc.view(...)`, `acc.float()`, `acc or x`, `+acc`)
    is followed to where it ends up, with the same rules. Harmless kinds:
    - *merge argument*: of the pattern's merge call when it is a known merge kernel,
      a configured `extra-merge-functions` entry (you vouch that it keeps no
      reference to its arguments, writes its outputs in full and is not
      differentiated through), or a `torch.*`, `torch.linalg.*`, `torch.special.*`,
      `torch.fft.*` function given `out=T` (never `torch.ops.*`). A kernel must
      receive the temporary where it writes: by position, or under an output's
      keyword, which is exactly `out`, `output`, `merged`, `dst`, `dest` or
      `result`, or two words joined by `_` where the first is one of those but
      `merged` (`output_lse`) or the second is `out`, `output` or `merged`
      (`lse_out`, `v_merged`), neither word being `prefix`, `suffix`, `in`,
      `input`, `src`, `lhs`, `rhs`, `not`, `unused`, `scratch`, `tmp`, `temp`,
      `old` or `prev`. Any other keyword (`prefix_output=T`, `suffix_output=T`,
      `output_prefix=T`, `o=T`) is an input, so it gets no safe fix;
    - *allocation template* and the allocator's own arguments;
    - *metadata read*: `.shape .dtype .device .ndim .layout .is_cuda .requires_grad`
      (and `.is_sparse .is_leaf .names .is_nested .is_quantized .is_meta .is_cpu .itemsize .nbytes`),
      `.size() .numel() .dim() .stride() .is_contiguous() .element_size()`, `len(x)`,
      `isinstance(x, C)` where `C` is a builtin or torch class (or a tuple of
      them: any other class's `__instancecheck__` is user code given `x`),
      `x is None`, `x is not None`;
    - *rebinding* and *deletion* (judged by the ownership and stability proofs);
    - *non-aliasing read*: arithmetic, bitwise and comparison operators, `-x`, `not x`,
      f-strings, `print`/`str`/`float`, `.item() .tolist() .sum() .mean() .clone()`,
      `torch.exp/sum/isnan/equal/...`, the inputs of a torch `out=` operator;
    - *in-place write*: `x += y`, `x[i] = v`, `x.add_(y)`-style value-only methods
      (never `resize_ set_ as_strided_ t_ squeeze_ ...`), and `out=x` of a torch
      operator as a statement of its own; subject to rule 2. Like an in-place
      method, such a call returns `x` itself: its result, where used
      (`keep.append(torch.add(a, b, out=x))`), is followed like a view.

    Anything else is an *unknown use* (blocks the safe fix; the unsafe fix states
    the assumption): a call to anything not above (`keep(acc)`, `pool.submit(...)`,
    `operator.setitem(...)`, `log.debug("%s", acc)`, `torch.ops.mylib.append(acc)`),
    a method not on the lists (`snapshot.set_(acc)`), identity (`acc is x`,
    `id(acc)`, `acc.data_ptr()`), any attribute that is neither a metadata read
    above nor `.T .mT .H .mH .data .grad .real .imag` (followed like a view):
    `acc._version`, `acc._cdata`, `acc.__array_interface__`, which buffer reuse
    changes; use as a key, `locals()`/`eval`/frame access
    (found by name anywhere in the function, nested lambdas and functions
    included: `sys._getframe` under any alias, `getattr(sys, "_getframe")`,
    `f_locals`, `f_back`, `__traceback__`, `settrace`, `__import__`,
    `importlib.import_module`, `sys.modules`, `inspect.currentframe`, ...)
    or a `resize_` (which exposes uninitialised memory) anywhere in the
    function, or a use inside a `with` whose context manager is not known to leave
    CUDA streams alone (known: `torch.no_grad`, `torch.inference_mode`,
    `torch.enable_grad`, `torch.set_grad_enabled`, `record_function`, NVTX ranges,
    `torch.autocast`, `contextlib.nullcontext`). An *asynchronous use* gets no fix
    at all: `acc.record_stream(s)`, any `non_blocking=` copy, or a use inside
    `with torch.cuda.stream(...)`: another stream may still read the buffer when
    the next merge overwrites it. A merge call to an unknown function makes every
    fix unsafe; the message says to add it to `extra-merge-functions`.

    **2. Autograd.** The merge is not differentiated through (a known or configured
    kernel; a torch `out=` operator refuses autograd), so the buffers a fix reuses
    never require grad (for the swap's first value, rule 3 proves it). Where grad
    is recorded, two uses still block the safe fix, with
    a message naming the use, its line and the context that would make it safe:
    - a read that autograd may save for backward: `acc * w`, `acc / w`, `acc % w`,
      `acc ** y`, `acc @ w`, `acc.abs()`, `acc.norm()`, `torch.maximum(acc, w)`.
      A later merge overwrites the reused buffer, so `backward()` raises, or
      silently computes wrong gradients with a kernel that bumps no version
      counter (any CUDA kernel). These save nothing of it: `+`, `-`, `//` (no
      derivative), bitwise and shift operators (integer tensors cannot require
      grad), comparisons, `-x`, `.sum()`, `.clone()`, `.exp()` (it saves its
      result), `.item()`, f-strings;
      and `x * c`, `x / c`, `x % c` with a numeric constant `c` (audited against
      torch's autograd nodes by `tests/test_safety_autograd.py`);
    - an in-place write unless every operand that could carry grad is a numeric
      constant (`acc += 1`, `acc[0] = 0`, `acc.mul_(2)`, `acc.exp_()`): `acc += bias`
      puts the buffer in a graph, a merge into the reused buffer leaves that graph
      in place, and gradients come out silently wrong. Before a torch `out=` merge
      such a write is harmless when both run in the same grad mode (no grad-mode
      context around either, no switch in the loop): the operator then raises
      before any reuse.

    Grad is not recorded under `torch.no_grad()` / `torch.inference_mode()` /
    `torch.set_grad_enabled(False)` written as a `with` block around the use, or as
    the innermost decorator of a plain `def` that is not a generator function (on an
    `async def` torch wraps only the call that creates the coroutine). Grad mode is
    dynamic, thread-local state, so such a context counts only where its argument
    decides the mode and nothing can change it: no argument, or only the
    constant `True` for `inference_mode` (`False` for `set_grad_enabled`),
    positional or as `mode=` (`inference_mode(mode=False)` records grad;
    `inference_mode(**kw)`, `inference_mode(flag)` may, so neither counts); its
    block (or the decorated function) holds no `yield`, `await`, `async for`,
    `async with` or async comprehension (`[c async for c in src]`; the caller may
    resume it in another grad mode), no
    reference to a grad-mode switch outside a `with` item (`torch.set_grad_enabled(flag)`
    or `torch.autograd.set_grad_enabled(...)` as a call, `torch._C._set_grad_enabled`,
    `torch.autograd.grad_mode.*`, an alias of one), no hand-called `__enter__`/`__exit__`,
    and no `with` entered inside it whose context manager is not known to leave grad
    mode alone. A `yield`/`await` (or any suspension point above) inside the loop
    itself makes every fix unsafe: a buffer allocated while the caller is in
    inference mode cannot be written after it resumes the loop outside it. For the
    same reason an allocation under `torch.inference_mode(flag)` whose mode is not
    a constant (`inference_mode(i % 3 == 0)`, around the loop or inside it) gets
    no safe fix: a buffer made in inference mode may be reused outside it. An allocation with `requires_grad=True` (or a
    non-constant `requires_grad=`) makes each buffer a new autograd leaf; reused, one
    leaf would collect the gradients of several iterations, so it gets no fix unless
    the loop runs where no grad is recorded (and then ping-pong: the swap could
    return the first value, which is not such a leaf).

    **3. Ownership of the first value (the swap's proof).** Every binding of the
    accumulator other than the rebinding is a seed. The swap is safe only when
    every seed is a fresh dense tensor the function made that does not require
    grad: the whole right-hand
    side of an assignment to the accumulator alone (`a, b = f1, f2` element-wise;
    not `acc = base = ...`, not a walrus) that is `torch.zeros/ones/empty/full/
    rand/randn(...)`, `torch.*_like(y)`, `y.clone()`, binary arithmetic,
    `torch.cat/stack`, without `out=` or `requires_grad`; with the dtype, device,
    shape and strides the buffers will have (the allocation is exactly `ALLOC(A)`,
    or `ALLOC(X)` with the seed `torch.zeros_like(X)` / `X.clone()`, or the form
    is guarded); not used before the loop or in a `for` iterable except by
    harmless kinds (`register(acc)` blocks it; so does an in-place write whose
    operand may require grad, `acc.copy_(x * 2)`, outside a no-grad context
    under rule 2); lexically inside `inference_mode` exactly when the loop is,
    with no `yield`/`await` between the seed and the loop; not computed from
    tensors that may require grad (arithmetic on anything but constants and
    factory calls, `x.clone()`, `torch.cat`) unless it is made under a no-grad
    context that decides grad mode (rule 2): `x * 2` of a parameter in training
    requires grad, and the swap would write merges into it and could return it
    with its history; not carried over from an earlier pass of an enclosing
    loop (a binding after the loop, outside any enclosing loop, is no seed).
    The longhand spellings (`torch.empty(X.shape)`, `X.new_empty(...)`) always
    give contiguous buffers, so they get the swap only as an unsafe fix. A parameter, global or attribute first value never
    gets the swap (it is the caller's tensor); another name or an opaque call's
    result gets the swap only as an *unsafe* fix, whose message states the
    assumption (referenced nowhere else, the layout of a fresh `empty_like`
    buffer: vLLM's padded-V views broke it, PR #42642; not requiring grad: a
    chunk output in training does), next to the safe ping-pong.

    **4. Stability.** Reuse needs the same shape, dtype, device and strides at
    every merge of one entry into the loop. Proven when the template is the
    pair's own accumulator and nothing rebinds it after a merge (a seed under
    `if A is None:` or under `if i == 0:` of `for i in range(n)` /
    `enumerate(...)`, placed before the allocation, runs only before the first
    merge) and nothing resizes it; or when the template is a local that every
    binding makes a fresh tensor (not a parameter, not `x = ws.buf`, not an
    opaque call's result: someone else may hold those and change them through
    another reference the loop touches, `ws.buf.data = ws.buf.data.double()`),
    that the loop never rebinds, that no nested scope sees, that is not aliased
    before the loop, and whose every use keeps its metadata. Every other
    argument and keyword of the allocator must be built from constants and
    names the loop never rebinds, whose every use keeps their metadata; not an
    item of a container (`opts['dtype']`, `dts[0]`: the loop may store into it
    without rebinding the name), unless the fix can be guarded; a
    tensor read there for its metadata (`y.dtype`, `x.shape[-1]`) is held to
    the template's rule, and a plain name someone else may hold (`n`) to the
    loop calling nothing that could change it in place (an unknown function or
    method: `regrow(state)`). Where only the
    template's metadata is unproven (a restart, a global template, a template
    someone else may hold, one passed to an unknown call or resized) and a fresh
    buffer's metadata is the template's alone (`torch.*_like(X)`,
    `torch.empty(X.shape, dtype=X.dtype, device=X.device)`,
    `X.new_empty(X.shape)`), the fix is **guarded**; otherwise no fix is offered
    and the message says why. A torch `out=` merge may resize the buffer, so
    its fixes are always guarded (shape only), and an allocation whose shape
    is not the template's (`torch.empty(n, d)`) gets no fix there. A random allocator (`randn_like`)
    gets no fix: reuse would skip the draw. A factory allocator without `dtype=`
    or `device=` (`torch.empty(X.shape)`, `torch.zeros(n)`) takes them from
    torch's global defaults, and a call among the allocator's arguments
    (`dtype=torch.get_default_dtype()`) may read any state: where the loop
    references `torch.set_default_dtype`/`set_default_device`/
    `set_default_tensor_type` or calls code that could change them (an unknown
    function or method), such an allocation gets no fix (a guard on a tensor's
    metadata does not restore a default).

    **5. `# noqa`.** A `# noqa: ALC001` on any line of an allocation statement of
    a group leaves the whole group unfixed; its other allocations are reported
    without a fix. A `# noqa` on any line of a statement that spans several
    lines suppresses the findings reported on its lines, in `alloc-lint check`
    and in the flake8 plugin alike (flake8 alone reads a bracketed statement's
    lines one by one).

    **Cost, as measured** (`bench/alc001_safety.py`, CPU, `bench/out/alc001_safety.txt`;
    GPU runs in `examples/RESULTS.md`). Over a vLLM-shaped loop whose chunk
    outputs are fresh kernel results, every form gives bitwise-equal results and
    a constant number of allocator calls (2 per accumulator for ping-pong, 1 for
    the swap). Peak live memory equals the original's for 2 and 3 chunks; from
    the 4th chunk on, any reuse form (the swap too) holds its scratch buffer
    while the next chunk output is computed and the previous one is still bound:
    one buffer per accumulator above the original. Allocating ping-pong's second
    buffer at the first merge would cost that buffer from the first merge on, and
    keeping the scratch after the loop would cost it during the work after the
    loop. The guard costs about 1 µs of Python per merge (the allocation it
    replaces: 1-17 µs on the CPU); it is emitted only where stability cannot be
    proven.

    **Assumptions of every fix**: code that the function calls leaves grad and
    inference mode as it found them when it returns (torch's own switches, named
    in rule 2, excepted); a known merge kernel given the temporary by
    position writes it there; what it reads there first is the allocator's:
    undefined with `empty*` (in the original too), and the re-initialisation's
    zeros or fill with an initialising allocator. The tensors are plain
    `torch.Tensor`s of the strided layout (dense or quantized), not nested
    (`torch.nested` tensors are strided too, but the guard's `.shape` raises on
    them; a reference to `torch.nested.*` in the function makes every fix
    unsafe): a `__torch_function__`
    subclass may run user code on any operation, `len` and `print` included,
    and a sparse template's strides cannot be compared. No `TorchDispatchMode`
    or `TorchFunctionMode` active around the function keeps references to the
    tensors it sees (a write log, an activation recorder): a mode sees every
    buffer, and a reused buffer's later merges would overwrite what it kept. Operands of arithmetic
    are tensors or numbers (an object whose operator keeps its argument is not
    detected). No code reads the function's variables through frames other than
    by the names the check looks for (a callee walking `f_back`, a debugger, a
    tracer or profiler installed elsewhere). Names are resolved through the
    module's imports; a name the module may rebind (a `global`/`nonlocal`
    declaration in a nested function, `globals()[...] = ...`, `exec`/`eval` of
    code that may bind names, a second import, `del`, a `for`/`with`/`match`
    target, a star import not from torch and not followed by the name's own
    import) resolves to nothing, and so does anything under an attribute the
    module assigns (`torch.exp = shim`, `setattr(torch, ...)`, `builtins.len =
    f`; `torch.Tensor.X = f` makes every fix unsafe); no other module rebinds
    this module's names, torch's functions or tensor methods.
    Code compiled by TorchScript or traced by `torch.fx` from another module is
    not seen. Known merge kernels are matched by name.

    ## Options
    In `[tool.alloc-lint]` of `pyproject.toml`:

    - `extra-allocators`: more allocator functions, by qualified name
      (`["mylib.ops.empty_like"]`); a name ending in `_like` takes its first
      argument as the template. `torch.empty_like` is always one; an initialising
      one (`torch.zeros_like`, `torch.full_like`) gets its initialisation kept on
      reuse, a random one (`torch.randn_like`) no fix. An allocator is known by its
      last name: `empty*` gives uninitialised memory, `zeros*`/`ones*`/`full*`
      initialise, `rand*` draw; listing one with another name
      (`mylib.ops.make_buffer`) vouches that it returns a fresh buffer whose
      contents a merge kernel never reads (without a trusted merge kernel, its fix
      is unsafe).
    - `extra-merge-functions`: more calls that merge into the temporary under any
      keyword (`["combine_states"]`), besides `merge_attn_states`, `merge_state`,
      `merge_state_v2` and `merge_states`. Listing one vouches that it keeps no
      reference to its arguments, writes its outputs in full (receiving the
      temporary only where it writes) and is not differentiated through; without
      that, a fix that merges through it is unsafe.
    """

    code = "ALC001"
    name = "alloc-in-loop-merge"
    summary = "Buffer allocated on every loop iteration only to merge into it and rebind the accumulator"
    fix_availability = "sometimes"
    options = ("extra-allocators", "extra-merge-functions")

    # The longhand spellings (issue 10), for the text prefilter: `torch.empty(X.shape,
    # ...)` and `X.new_empty(...)`-style methods on any receiver (`allocation_kind`).
    shape_allocators = tuple(sorted(SHAPE_SPELLINGS))
    method_allocators = tuple(sorted(METHOD_ALLOCATORS))

    def might_match(self, text: str, config) -> bool:
        return might_have_finding(text, *self.callee_names(config))

    def callee_names(self, config) -> tuple[frozenset, frozenset]:
        """Last names of the allocator functions, and of method allocators
        (`new_empty`, and configured ones on a class: `torch.Tensor.new_zeros`)."""
        return _callee_names(tuple(config.allocators) + self.shape_allocators, self.method_allocators)

    def check(self, ctx: FileContext) -> list[Diagnostic]:
        allocators = frozenset(ctx.config.allocators)
        functions, methods = self.callee_names(ctx.config)
        if not any(n in ctx.text for n in functions | methods):
            return []
        diagnostics: list[Diagnostic] = []
        claimed: set = set()  # statements already rewritten by a group's fix
        facts: dict = {}  # per scope: names, classifier, identifiers (and spare names handed out)
        compilation = Compilation(ctx.index, ctx.resolver)
        for loop in ctx.index.loops:
            for block in loop.blocks:
                for group in _find_groups(block, loop, ctx, allocators):
                    scope_node = loop.scope.node
                    if id(scope_node) not in facts:
                        facts[id(scope_node)] = _scope_facts(loop, ctx, compilation)
                    diagnostics.extend(_diagnose(group, loop, ctx, claimed, facts[id(scope_node)]))
        return diagnostics


@lru_cache(maxsize=16)
def _callee_names(allocators: tuple, method_allocators: tuple) -> tuple[frozenset, frozenset]:
    methods = {q.rsplit(".", 1)[-1] for q in allocators if "." in q and q.split(".")[-2][:1].isupper()}
    return last_names(allocators), frozenset(method_allocators) | frozenset(methods)


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
    allocs: dict[str, list[tuple[int, ast.stmt]]] = {}
    for i, stmt in enumerate(block):
        target = alloc_target(stmt)
        if target is not None and isinstance(stmt.value, ast.Call) \
                and not any(isinstance(a, ast.Starred) for a in stmt.value.args) \
                and all(k.arg for k in stmt.value.keywords):
            allocs.setdefault(target.id, []).append((i, stmt))
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
        pairs, unpaired = [], []
        for temp, found in allocs.items():
            before = [(i, s) for i, s in found if i < m]
            if temp not in passed or not before:
                continue
            arg_node, keyword = passed[temp][0]
            if keyword and not known_merge and not _out_like(keyword):
                continue
            alloc_index, alloc = before[-1]
            if allocation_kind(alloc.value, ctx, loop, allocators) is None:
                continue
            pair = _find_rebinding(block, m, temp, passed)
            if pair is None:
                unpaired.append(temp)
                continue
            rebind, target, value = pair
            deletes = [s for s in block[block.index(rebind) + 1:]
                       if isinstance(s, ast.Delete) and any(isinstance(t, ast.Name) and t.id == temp
                                                             for t in _del_names(s))]
            pairs.append(Pair(temp, target.id, alloc, alloc_index, arg_node, rebind, value, target, deletes))
        # One group, one fix: a temporary of the same merge that is read again
        # elsewhere (its accumulator rebound in a nested block, say) belongs to
        # the group, which then cannot be fixed in part.
        merge_args = {id(n) for found in passed.values() for n, _ in found}
        if pairs and any(n.id in unpaired and isinstance(n.ctx, ast.Load) and id(n) not in merge_args
                         for n in walk_scope(loop.scope.node) if isinstance(n, ast.Name)):
            continue
        if pairs:
            yield pairs


def alloc_target(stmt: ast.stmt) -> ast.Name | None:
    """The name a statement binds, for `T = f(...)` and `T: type = f(...)`."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0]
    if isinstance(stmt, ast.AnnAssign) and stmt.simple and isinstance(stmt.target, ast.Name) and stmt.value:
        return stmt.target
    return None




def _shape_of_name(node: ast.AST) -> bool:
    """`X.shape` or `X.size()` of a plain name."""
    if isinstance(node, ast.Attribute) and node.attr == "shape":
        return isinstance(node.value, ast.Name)
    return isinstance(node, ast.Call) and not node.args and not node.keywords \
        and isinstance(node.func, ast.Attribute) and node.func.attr == "size" and isinstance(node.func.value, ast.Name)


def allocation_kind(call: ast.Call, ctx: FileContext, loop: Loop, allocators: frozenset) -> str | None:
    """The allocator a call stands for (a qualified name, or `Tensor.new_empty`
    for the method spellings), or None when it is not one ALC001 knows."""
    qualified = ctx.resolver.qualified_name(call.func, loop.scope) or ""
    if qualified in allocators:
        if qualified.endswith("_like") and not (call.args or any(k.arg == "input" for k in call.keywords)):
            return None
        return qualified
    if qualified in SHAPE_SPELLINGS and call.args and _shape_of_name(call.args[0]):
        return qualified
    if isinstance(call.func, ast.Attribute) and call.func.attr in METHOD_ALLOCATORS \
            and isinstance(call.func.value, ast.Name) and not qualified and (call.args or call.keywords):
        return f"Tensor.{call.func.attr}"
    return None


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


# --- facts about a scope, computed once ------------------------------------------------


@dataclass(eq=False)
class ScopeFacts:
    node: ast.AST
    params: set
    local_names: set  # names bound in the scope itself (not in nested scopes)
    captured: set  # names other scopes may see (closures, global/nonlocal)
    identifiers: set  # every identifier: fresh names must avoid them
    classifier: UseClassifier
    # A call that can reach every variable (`locals()`, `eval`, frames) or that
    # exposes uninitialised memory (`resize_`): no fix in the scope is safe.
    dynamic: str | None = None
    torchscript: str | None = None  # compiled by TorchScript: no rewrite compiles
    fx: str | None = None  # may be traced by torch.fx: a guard cannot be


def _scope_facts(loop: Loop, ctx: FileContext, compilation: Compilation) -> ScopeFacts:
    node = loop.scope.node
    params = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        params = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x}
    local_names = {n.id for n in walk_scope(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    classifier = classifier_for(ctx, loop.scope)
    captured = captured_names(node, NESTED_SCOPES)
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        # Module (or class) level: every function of the module may read these names.
        index = node_index(ctx.tree)
        captured |= {n.id for n in index.of_type(ast.Name) if _inside_other_scope(n, node, index.parents)}
    # Tensor methods are judged by name: a module that replaces one (`torch.Tensor.add_ = f`)
    # makes every method call a call of unknown code.
    patched = next((p for p in sorted(ctx.resolver.patched(loop.scope))
                    if p in ("torch", "torch.Tensor") or p.startswith("torch.Tensor.")), None)
    patched = patched and f"the module assigns `{patched}`: tensor methods may not be torch's"
    return ScopeFacts(node, params, local_names, captured, _identifiers(node), classifier,
                      dynamic_access(node, classifier) or uninitialised_growth(node, classifier) or patched,
                      compilation.torchscript(loop.scope), compilation.fx(loop.scope))


def _inside_other_scope(name: ast.Name, scope_node: ast.AST, parents: dict) -> bool:
    """Is `name` inside a function, class or lambda other than `scope_node`?"""
    node = parents.get(name)
    while node is not None:
        if isinstance(node, SCOPE_NODES) and node is not scope_node:
            return True
        node = parents.get(node)
    return False


# --- the pieces of a group -----------------------------------------------------------

LIKE = "like"  # allocators whose first argument is a template tensor
INITIALISATION = {  # last name of an allocator -> how a reused buffer is re-initialised
    "empty_like": None, "empty": None, "new_empty": None,
    "zeros_like": "zero", "zeros": "zero", "new_zeros": "zero",
    "ones_like": "one", "ones": "one", "new_ones": "one",
    "full_like": "fill", "full": "fill", "new_full": "fill",
}
RANDOM_ALLOCATORS = frozenset({"rand_like", "randn_like", "randint_like", "rand", "randn", "randint",
                               "bernoulli", "normal"})


TORCH_LIKE_ALLOCATORS = frozenset({"torch.empty_like", "torch.zeros_like", "torch.ones_like", "torch.full_like"})


def _allocator(pair: Pair, ctx: FileContext, loop: Loop) -> str:
    return allocation_kind(pair.alloc.value, ctx, loop, frozenset(ctx.config.allocators)) or ""


def _template(pair: Pair, ctx: FileContext, loop: Loop):
    """The template argument of a `*_like` allocator (positional or `input=`), or None."""
    call = pair.alloc.value
    if _allocator(pair, ctx, loop).endswith("_like"):
        if call.args:
            return call.args[0]
        return next(k.value for k in call.keywords if k.arg == "input")
    return None


def _fill_value(call: ast.Call):
    """The fill value of `full`/`full_like`/`new_full`, or None."""
    if call.args[1:2]:
        return call.args[1]
    return next((k.value for k in call.keywords if k.arg == "fill_value"), None)


def _exact_like_call(pair: Pair, ctx: FileContext, loop: Loop) -> bool:
    """`ALLOC(X)` (or `full_like(X, v)`): a template name and nothing else, so
    the buffer has X's dtype, device, shape and strides (for a dense X)."""
    call = pair.alloc.value
    allocator = _allocator(pair, ctx, loop)
    if allocator not in TORCH_LIKE_ALLOCATORS:
        return False  # another library's `*_like`: what it gives is not known
    template = _template(pair, ctx, loop)
    others = [a for a in (*call.args, *(k.value for k in call.keywords)) if a is not template]
    expected = [_fill_value(call)] if allocator == "torch.full_like" else []
    return isinstance(template, ast.Name) and others == expected


def _other_arguments(pair: Pair, ctx: FileContext, loop: Loop) -> list:
    """Every argument but the template, and a method allocator's receiver."""
    call = pair.alloc.value
    template = _template(pair, ctx, loop)
    found = [a for a in (*call.args, *(k.value for k in call.keywords)) if a is not template]
    if _allocator(pair, ctx, loop).startswith("Tensor."):
        found.append(call.func.value)
    return found


def _loop_region(loop: ast.AST) -> list:
    """What runs on every iteration: the body, a `while` test, a `for` target."""
    parts = list(loop.body)
    if isinstance(loop, ast.While):
        parts.append(loop.test)
    else:
        parts.append(loop.target)
    return parts


def _bound_in(parts, name: str, exclude=()) -> bool:
    for tree in parts:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load) \
                    and node not in exclude:
                return True
        if flow.binds_otherwise(tree, name):
            return True
    return False


def _merge_trust(call: ast.Call, group: list, ctx: FileContext, loop: Loop) -> str | None:
    """How the merge call is known to keep no reference, write its outputs in
    full and not be differentiated through: 'kernel' (a known or configured
    merge kernel), 'out' (a torch operator writing its `out=`), or None."""
    qualified = ctx.resolver.qualified_name(call.func, loop.scope) or ""
    namespace, _, last = qualified.rpartition(".")
    if namespace in TORCH_NAMESPACES:
        outs = [k for k in call.keywords if k.arg == "out"]
        if len(group) == 1 and outs and outs[0].value is group[0].merge_arg:
            return "out"
        return None
    if flow.callee_name(call) in last_names(ctx.config.merge_functions):
        return "kernel"
    return None


def _keyword_of(arg: ast.Name, parents: dict) -> str | None:
    parent = parents.get(arg)
    return parent.arg if isinstance(parent, ast.keyword) else None


OUTPUT_WORDS = frozenset({"out", "output", "merged", "dst", "dest", "result"})
INPUT_WORDS = frozenset({"prefix", "suffix", "in", "input", "src", "lhs", "rhs", "not", "unused", "scratch",
                         "tmp", "temp", "old", "prev"})


def _output_keyword(keyword: str) -> bool:
    """Does a keyword name an output of a merge kernel, rather than an input?
    Exactly: one of `out`, `output`, `merged`, `dst`, `dest`, `result`; or two
    words joined by `_`, the first of those words followed by another
    (`output_lse`, `out_v`), or another followed by `out`, `output` or
    `merged` (`lse_out`, `v_merged`), the other word not one of INPUT_WORDS
    (`prefix_output`, `output_prefix`, `not_output`, `output_scratch` are
    inputs). Positional arguments carry no name; a known kernel is assumed to
    receive the temporary only where it writes."""
    parts = keyword.lower().split("_")
    if len(parts) == 1:
        return parts[0] in OUTPUT_WORDS
    if len(parts) != 2 or not all(parts) or any(p in INPUT_WORDS for p in parts):
        return False
    first, second = parts
    return first in OUTPUT_WORDS - {"merged"} or second in ("out", "output", "merged")


def _noqa_line(pairs: list, ctx: FileContext) -> int | None:
    from ..engine import is_suppressed  # the engine imports the rules

    for p in pairs:  # any line of the allocation statement, as flake8 reads a logical line
        for line in range(p.alloc.lineno, p.alloc.end_lineno + 1):
            if 0 < line <= len(ctx.lines) and is_suppressed(ctx.lines[line - 1], "ALC001"):
                return line
    return None


def _temp_is_private(pair: Pair, scope_node: ast.AST) -> bool:
    """T occurs nowhere but in its allocation, the merge call, the rebinding
    and `del T`: it is never read later, never escapes, and the code is not
    already in the lazy-init form (which reads `T is None`)."""
    allowed = {id(alloc_target(pair.alloc)), id(pair.merge_arg), id(pair.rebind_value)}
    for stmt in pair.deletes:
        allowed.update(id(t) for t in _del_names(stmt))
    if any(id(n) not in allowed for n in flow.name_nodes(scope_node, pair.temp)):
        return False
    return not flow.binds_otherwise(scope_node, pair.temp)


def _reassigned_before(loop: Loop, acc: str) -> bool:
    """Is A bound by a statement of the loop's own block, before the loop (so
    every entry starts from that value, not from an earlier pass)?"""
    for stmt in loop.container[:loop.container.index(loop.node)]:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                elts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                if any(isinstance(e, ast.Name) and e.id == acc for e in elts):
                    return True
    return False


# --- the analysis of a group ---------------------------------------------------------


@dataclass
class Verdict:
    """What the analysis proved about one group."""

    no_fix: list = field(default_factory=list)  # reasons no fix can be offered
    unsafe: list = field(default_factory=list)  # reasons no fix is safe
    guard: list = field(default_factory=list)  # (temp, template name, full check or shape only)
    guard_reason: str | None = None
    reinit: list = field(default_factory=list)  # statements re-initialising a reused buffer
    swap: str = "safe"  # "safe" | "unsafe" | "never"
    swap_reason: str | None = None
    # Why an exception raised between the group's allocations may be caught in
    # the loop (a `try`, a context manager that may swallow it): then the lazy
    # test must cover every temporary, not the first one alone.
    catchable: str | None = None


def _analyse(group: list, loop: Loop, ctx: FileContext, facts: ScopeFacts):
    """None when the allocation is needed (report nothing); else a Verdict."""
    scope_node, parents, classifier = facts.node, ctx.index.parents, facts.classifier
    temps, accs = [p.temp for p in group], [p.acc for p in group]
    if len(set(accs)) != len(accs) or set(temps) & set(accs):
        return None
    if any(not _temp_is_private(p, scope_node) for p in group):
        return None
    if (set(accs) | set(temps)) & facts.captured:
        return None
    region = _loop_region(loop.node)
    templates = {}
    for p in group:
        template = _template(p, ctx, loop)
        if template is not None:
            if not isinstance(template, ast.Name) or template.id in temps:
                return None
            if template.id not in accs and _bound_in(region, template.id):
                return None  # a per-iteration template: the allocation may be needed
            templates[p.temp] = template.id
        names = set()
        for arg in _other_arguments(p, ctx, loop):
            for n in ast.walk(arg):
                if isinstance(n, ast.Name) and (n.id in temps or n.id not in accs and _bound_in(region, n.id)):
                    return None  # a per-iteration size, dtype or device
                if isinstance(n, ast.Name) and ctx.resolver.qualified_name(n, loop.scope) is None \
                        and not ctx.resolver.is_builtin(n.id, loop.scope):
                    names.add(n.id)
        if template is None and len(names) == 1:
            templates[p.temp] = names.pop()  # `torch.empty(X.shape, dtype=X.dtype)`: X's metadata alone

    merge_call = parents[group[0].merge_arg]
    if isinstance(merge_call, ast.keyword):
        merge_call = parents[merge_call]
    trust = _merge_trust(merge_call, group, ctx, loop)
    preassigned = {id(alloc_target(p.alloc)): Kind.REBIND for p in group}
    preassigned.update({id(p.rebind_value): Kind.REBIND for p in group})
    for p in group:  # the allocation's own arguments: read for their metadata or value
        for arg in (*p.alloc.value.args, *(k.value for k in p.alloc.value.keywords)):
            preassigned[id(arg)] = Kind.TEMPLATE
        if _allocator(p, ctx, loop).startswith("Tensor."):
            preassigned[id(p.alloc.value.func.value)] = Kind.TEMPLATE  # `X.new_empty(...)` reads X's metadata
    merge_args = [a for a in (*merge_call.args, *(k.value for k in merge_call.keywords)) if isinstance(a, ast.Name)]
    if trust:
        preassigned.update({id(a): Kind.MERGE_ARG for a in merge_args})

    uses = classifier.uses(set(accs) | set(temps), region, boundary=loop.node, preassigned=preassigned)
    if any(u.kind is Kind.ESCAPE for u in uses):
        return None

    verdict = Verdict()
    if not isinstance(scope_node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        where = "in a class body" if isinstance(scope_node, ast.ClassDef) else "at module level"
        verdict.unsafe.append(f"the loop runs {where}, where its variables are attributes that other code may "
                              "read (the temporary's value after the loop changes); move it into a function")
    if facts.dynamic:
        verdict.unsafe.append(facts.dynamic)
    callee = ast.unparse(merge_call.func)
    if trust is None:
        short = callee.rsplit(".", 1)[-1]
        verdict.unsafe.append(
            f"`{callee}` (line {merge_call.lineno}) is not a known merge kernel: it may keep a reference to its "
            f"arguments, not write its output in full, or be differentiated through; if it does none of these, "
            f"add `{short}` to `extra-merge-functions` in `[tool.alloc-lint]`")
    if trust == "kernel":
        for p in group:
            keyword = _keyword_of(p.merge_arg, parents)
            if keyword is not None and not _output_keyword(keyword):
                verdict.unsafe.append(
                    f"`{p.temp}` is passed to `{callee}` (line {merge_call.lineno}) as `{keyword}=`, a name for "
                    f"an input: a merge kernel is trusted to write its outputs in full, not to write what it reads")
    merge_arg_ids = {id(a) for a in merge_args}
    # An in-place write that autograd records makes the tensor require grad, and
    # a torch `out=` merge then raises before any reuse: when both run in the
    # same grad mode (no grad-mode context around either, nothing in the loop
    # that switches it).
    out_raises = trust == "out" and classifier.grad_context(merge_call) == (None, None) \
        and classifier.grad_breaker(loop.node, loop.node.body) is None
    for use in uses:
        if use.kind is Kind.ASYNC:
            verdict.no_fix.append(use.reason)
        elif use.grad and use.kind is Kind.INPLACE and out_raises \
                and classifier.grad_context(use.node) == (None, None):
            continue
        elif not use.harmless and not (trust is None and id(use.node) in merge_arg_ids):
            verdict.unsafe.append(use.reason)

    suspended = suspension_point(region + ([loop.node.iter] if isinstance(loop.node, ast.AsyncFor) else []))
    if suspended is not None or isinstance(loop.node, ast.AsyncFor):
        where = suspension_text(suspended) if suspended is not None else f"`async for` (line {loop.node.lineno})"
        verdict.unsafe.append(f"{where} suspends the loop: its caller may resume it in another grad or inference "
                              "mode, and a buffer made in inference mode cannot be written outside it")

    for p in group:
        undecided = classifier.undecided_inference(p.alloc)
        if undecided is not None:
            verdict.unsafe.append(f"`{p.temp}` is allocated under {undecided}, whose mode is not a constant: a "
                                  "buffer made in inference mode cannot be written by a later merge outside it")
            break

    _check_stability(group, loop, ctx, facts, templates, preassigned, uses, trust, merge_call, verdict)
    nested = next((n for n in walk_scope(facts.node) if isinstance(n, (ast.Attribute, ast.Name))
                   and (classifier.qualify(n) or "").startswith("torch.nested.")), None)
    if nested is not None:
        verdict.unsafe.append(f"`{classifier.quote(nested)}` (line {nested.lineno}) makes nested tensors, which "
                              "the fix assumes it never sees (a guard's `.shape` raises on them)")
    if facts.torchscript:
        verdict.no_fix.append(f"{facts.torchscript}, which rejects a variable that is None and then a tensor")
    if verdict.guard and facts.fx:
        verdict.unsafe.append(f"{facts.fx}, and the guard's `if` on tensor metadata cannot be traced; the fix "
                              "assumes it is not traced")
    _check_initialisation(group, loop, ctx, trust, verdict)
    _check_leaves(group, facts, verdict)
    verdict.catchable = _caught_in_loop(group, loop, ctx, classifier) if len(group) > 1 else None
    _check_ownership(group, loop, ctx, facts, templates, verdict)
    verdict.no_fix = list(dict.fromkeys(verdict.no_fix))
    verdict.unsafe = list(dict.fromkeys(verdict.unsafe))
    return verdict


def _caught_in_loop(group, loop, ctx, classifier) -> str | None:
    """A statement between the allocations and the loop that may catch an
    exception (an out-of-memory error) raised by one of them and let the loop
    go on: a `try`, or a `with` not known to let exceptions through."""
    current, parent = group[0].alloc, ctx.index.parents.get(group[0].alloc)
    while parent is not None and parent is not loop.node:
        if isinstance(parent, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            return f"the `try` (line {parent.lineno})"
        if isinstance(parent, (ast.With, ast.AsyncWith)):
            for item in parent.items:
                if (classifier.context_name(item.context_expr) or "") not in {*GRAD_CONTEXTS, *HARMLESS_CONTEXTS}:
                    return f"`with {classifier.quote(item.context_expr)}:` (line {parent.lineno})"
        current, parent = parent, ctx.index.parents.get(parent)
    return None


def _check_stability(group, loop, ctx, facts, templates, preassigned, uses, trust, merge_call, verdict):
    """Same shape, dtype, device and strides at every merge of one entry: proven,
    or guarded by a metadata check (only `ALLOC(X)` alone), or no fix."""
    accs = {p.acc for p in group}
    parents, classifier = ctx.index.parents, facts.classifier
    region = _loop_region(loop.node)
    header = [loop.node.iter] if isinstance(loop.node, (ast.For, ast.AsyncFor)) else []
    loop_target = loop.node.target if isinstance(loop.node, (ast.For, ast.AsyncFor)) else None

    def bound_in_loop(name, exclude_target=False):
        exclude = set(ast.walk(loop_target)) if exclude_target and loop_target is not None else ()
        return _bound_in(region, name, exclude)

    qualify = classifier.qualify
    private: dict = {}
    first_line = min(p.alloc.lineno for p in group)
    restarts = Restarts(loop.node, parents, accs, {id(p.rebind_target) for p in group}, first_line, bound_in_loop)
    template_of = {p.acc: templates.get(p.temp) for p in group}

    def unproven(name, is_template=False):
        """Why `name`'s metadata may change between merges, or None."""
        if name in accs:
            restart = restarts.restarts(name)
            if restart:
                stmt = parents.get(restart[0])
                stmt = parents.get(stmt) if isinstance(stmt, (ast.Tuple, ast.List)) else stmt
                return (f"`{ast.unparse(stmt).splitlines()[0]}` (line {restart[0].lineno}) may rebind `{name}` "
                        "after a merge")
            if template_of.get(name) != name:
                return f"`{name}` is another accumulator, whose shape is not proven constant"
            resized = next((u for u in uses if u.name == name and u.resizes and u.harmless), None)
            if resized is not None:
                where = classifier.quote(classifier.expression_of(resized.node))
                return f"`{where}` (line {resized.line}) may resize `{name}`"
            return None
        reason = name_is_owned_local(name, facts.node, facts.params, facts.local_names, facts.captured)
        if reason:
            return reason
        use = metadata_changing_use(classifier.uses({name}, region + header, boundary=loop.node,
                                                    preassigned=preassigned))
        if use is not None:
            return use.reason or f"`{name}` may change at line {use.line}"
        # Before the loop (or between two entries into it, inside an enclosing
        # loop), only bindings and harmless reads: an alias made there
        # (`holder = [tpl]`) could let code in the loop resize it.
        inside = {id(n) for tree in region + header for n in ast.walk(tree)}
        for node in walk_scope(facts.node):
            if isinstance(node, ast.Name) and node.id == name and id(node) not in inside \
                    and isinstance(node.ctx, ast.Load) and (node.lineno < loop.node.lineno or loop.enclosing):
                use = classifier.classify(node, preassigned=preassigned)
                if not use.keeps_metadata:
                    return use.reason or f"`{name}` may change at line {use.line}"
        # A tensor someone else may hold (a parameter, an attribute's value, an
        # opaque call's result) can be changed in place by code the loop calls
        # without passing it (`regrow(state)` resizing `state.buf`), or through
        # another reference the loop touches (`ws.buf.data = ws.buf.data.double()`
        # with `x = ws.buf`): only a fresh local's metadata is proven constant.
        if not private.setdefault(name, _private_value(name, facts, parents, qualify)):
            call = opaque_call(region + header, classifier, classifier.merge_names,
                               ignore=[merge_call, *(p.alloc.value for p in group)])
            if call is not None:
                return (f"`{name}` may be reachable from outside the function, and "
                        f"`{classifier.quote(call)}` (line {call.lineno}) could change it")
            if is_template:
                return (f"`{name}` may be reachable from outside the function (a parameter, an attribute's value, "
                        "a call's result), and the loop could change it through another reference")
        return None

    callee = ast.unparse(merge_call.func)
    allocs = [p.alloc.value for p in group]
    for p in group:
        template = templates.get(p.temp)
        follows = _global_state_read(p, ctx, loop)
        if follows is not None:
            changer = _global_state_changer(region + header, classifier, ignore=[merge_call, *allocs])
            if changer is not None:
                verdict.no_fix.append(
                    f"the buffer's dtype or device may change between merges: `{classifier.quote(p.alloc.value)}` "
                    f"(line {p.alloc.lineno}) {follows}, which `{classifier.quote(changer)}` (line {changer.lineno}) "
                    "may change; a guard on a tensor's metadata does not restore it (pass `dtype=` and `device=` "
                    "from a tensor)")
                continue
        reasons = [unproven(template, is_template=True)] if template is not None else []
        for arg in _other_arguments(p, ctx, loop):
            for n in ast.walk(arg):
                if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load) and not _metadata_tuple(n.value):
                    # `opts['dtype']`, `dts[0]`: the loop may store into the container
                    # without rebinding its name (`opts['dtype'] = torch.float64`).
                    reasons.append(f"`{classifier.quote(n)}` (line {n.lineno}) is read from a container item, "
                                   "which the loop could store into")
                if isinstance(n, ast.Name) and ctx.resolver.qualified_name(n, loop.scope) is None \
                        and not ctx.resolver.is_builtin(n.id, loop.scope):
                    # `y.dtype`, `y.shape`: a tensor's metadata, which another reference may change
                    tensor = isinstance(parents.get(n), ast.Attribute)
                    reasons.append(unproven(n.id, is_template=tensor))
        reasons = [r for r in reasons if r]
        if reasons:
            if _guardable(p, ctx, loop, template):
                verdict.guard.append((p.temp, template, True))
                verdict.guard_reason = verdict.guard_reason or reasons[0]
            else:
                verdict.no_fix.append(f"the buffer's shape, dtype or device may change between merges: "
                                      f"{reasons[0]}")
        elif trust == "out":
            # An `out=` operator resizes its output to the result's shape when
            # they differ (broadcasting): a reused buffer would then keep a shape a
            # fresh one does not have. Everything else about the buffer is proven
            # constant, so comparing shapes decides reuse.
            reason = f"`{callee}` resizes its `out=` tensor to the result's shape"
            if template is not None and _shape_is_template(p, ctx, loop, template):
                verdict.guard.append((p.temp, template, False))
                verdict.guard_reason = verdict.guard_reason or reason
            else:
                verdict.no_fix.append(f"the buffer's shape may change between merges: {reason}")


def _metadata_tuple(node: ast.AST) -> bool:
    """`X.shape`, `X.size()`, `X.stride()` of a plain name: an immutable tuple."""
    return _shape_of_name(node) or isinstance(node, ast.Call) and not node.args and not node.keywords \
        and isinstance(node.func, ast.Attribute) and node.func.attr == "stride" and isinstance(node.func.value, ast.Name)


# Builtins that read only their arguments (`torch.empty(len(xs), d)`).
PLAIN_BUILTINS = frozenset({"len", "int", "float", "bool", "max", "min", "abs", "round", "tuple"})


def _global_state_read(pair, ctx, loop) -> str | None:
    """How a fresh buffer's dtype or device depends on global state: a factory
    (`torch.empty(X.shape)`, `torch.zeros(n)`) without `dtype=` or `device=`
    follows torch's defaults; a call among the allocator's arguments
    (`dtype=torch.get_default_dtype()`) may read anything. None if neither."""
    call, allocator = pair.alloc.value, _allocator(pair, ctx, loop)
    for arg in _other_arguments(pair, ctx, loop):
        for n in ast.walk(arg):
            if isinstance(n, ast.Call) and not _metadata_tuple(n) and not (
                    isinstance(n.func, ast.Attribute) and n.func.attr in ("size", "stride", "dim", "numel")
                    and isinstance(n.func.value, ast.Name)) and not (
                    isinstance(n.func, ast.Name) and n.func.id in PLAIN_BUILTINS
                    and ctx.resolver.is_builtin(n.func.id, loop.scope)):
                return f"takes an argument from the call `{ast.unparse(n)}`, which may read global state"
    if allocator.endswith("_like") or allocator.startswith("Tensor."):
        return None  # dtype and device come from the template or the receiver
    keywords = {k.arg for k in call.keywords}
    missing = [what for what in ("dtype", "device") if what not in keywords]
    if missing:
        return f"takes its {' and '.join(missing)} from torch's global default{'s' if len(missing) > 1 else ''}"
    return None


def _global_state_changer(region, classifier, ignore):
    """The first call in the region that may change torch's default dtype or
    device: `torch.set_default_dtype`/`set_default_device`/
    `set_default_tensor_type`, or any call that is not a builtin, a torch
    function or a tensor method known to keep metadata (`opaque_call`)."""
    for tree in region:
        for n in ast.walk(tree):
            if isinstance(n, (ast.Attribute, ast.Name)) and isinstance(n.ctx, ast.Load) \
                    and (classifier.qualify(n) or "").rsplit(".", 1)[-1].startswith("set_default_"):
                return classifier.parents.get(n) if isinstance(classifier.parents.get(n), ast.Call) else n
    return opaque_call(region, classifier, classifier.merge_names, ignore=ignore)


def _shape_is_template(pair, ctx, loop, template) -> bool:
    """Does a fresh buffer take its shape from `template` (`*_like(X, ...)`,
    `torch.empty(X.shape, ...)`, `Y.new_empty(X.size(), ...)`)?"""
    call = pair.alloc.value
    if _template(pair, ctx, loop) is not None:
        return True
    return bool(call.args) and _shape_of_name(call.args[0]) and ast.unparse(call.args[0]).startswith(template + ".")


def _private_value(name: str, facts: ScopeFacts, parents: dict, qualify) -> bool:
    """Is every value `name` is bound to in the function a fresh tensor (so that
    only this function can reach it)? Its uses are checked separately."""
    if name in facts.params:
        return False
    bindings = [n for n in walk_scope(facts.node)
                if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)]
    return bool(bindings) and all(seed_of(n, parents, facts.params, facts.local_names, qualify).origin
                                  in (Origin.OWNED, Origin.NONE) for n in bindings)


def _guardable(pair, ctx, loop, template) -> bool:
    """Is a fresh buffer's metadata that of `template` alone, so that the guard
    `T.shape != X.shape or ... or T.stride() != X.stride()` decides reuse?
    `torch.*_like(X)`, `torch.empty(X.shape, dtype=X.dtype, device=X.device)`,
    `X.new_empty(X.shape)`."""
    if template is None:
        return False
    if _exact_like_call(pair, ctx, loop):
        return True
    call, allocator = pair.alloc.value, _allocator(pair, ctx, loop)

    def of_template(node, attr):
        return isinstance(node, ast.Attribute) and node.attr == attr and isinstance(node.value, ast.Name) \
            and node.value.id == template

    shape = call.args[0] if len(call.args) == 1 else None
    shape_ok = shape is not None and _shape_of_name(shape) and ast.unparse(shape).startswith(template + ".")
    if allocator == "torch.empty":
        keywords = {k.arg: k.value for k in call.keywords}
        return shape_ok and set(keywords) == {"dtype", "device"} and of_template(keywords["dtype"], "dtype") \
            and of_template(keywords["device"], "device")
    if allocator == "Tensor.new_empty":
        return shape_ok and not call.keywords and call.func.value.id == template
    return False


def _check_initialisation(group, loop, ctx, trust, verdict):
    """A reused buffer must hold what a fresh one would, where the merge might read it."""
    for p in group:
        allocator = _allocator(p, ctx, loop)
        last = allocator.rsplit(".", 1)[-1]
        func = ast.unparse(p.alloc.value.func)
        if last in RANDOM_ALLOCATORS:
            verdict.no_fix.append(f"`{func}` draws random numbers: a reused buffer would skip the draw")
            continue
        if last not in INITIALISATION:
            if trust is None:  # a trusted merge writes every element: the contents do not matter
                verdict.unsafe.append(f"`{func}` is assumed to return a fresh buffer whose contents the merge "
                                      "never reads")
            continue
        kind = INITIALISATION[last]
        if kind is None:
            continue  # uninitialised: what a merge reads there is undefined in the original too
        # Kept whatever the merge: a kernel that accumulates into its output
        # (`v_merged += w * v`) reads the zeros the original gave it, and the
        # re-initialisation costs what the original's initialising allocation did.
        reinit = reinitialisation(p.temp, allocator, p.alloc.value)
        if reinit is None:
            verdict.no_fix.append(f"the fill value of `{func}` could not be read")
        else:
            verdict.reinit.append(reinit)


def _requires_grad(call: ast.Call):
    """The allocator's `requires_grad=` keyword unless it is the constant False."""
    value = next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
    return None if value is None or isinstance(value, ast.Constant) and value.value is False else value


def _check_leaves(group, facts, verdict):
    """`requires_grad=True` makes every buffer a new autograd leaf: reused, one
    leaf would collect the gradients of several iterations. Only where no
    gradient is recorded (a loop under a no-grad context that decides grad
    mode) is a leaf's reuse invisible; even there the swap could return the
    first value, which is not such a leaf (`_check_ownership`)."""
    for p in group:
        if _requires_grad(p.alloc.value) is None:
            continue
        mode, not_counted = facts.classifier.grad_context(p.alloc)
        if mode not in ("no_grad", "inference"):
            where = f" ({not_counted})" if not_counted else ""
            verdict.no_fix.append(
                f"`{facts.classifier.quote(p.alloc.value)}` (line {p.alloc.lineno}) makes every buffer a new "
                f"autograd leaf: a reused one would collect the gradients of several iterations; only a loop "
                f"under `torch.no_grad()` or `torch.inference_mode()`{where} records none")


def _check_ownership(group, loop, ctx, facts, templates, verdict):
    """The swap writes into the accumulator's first value from the second merge
    on: safe only when every seed is a fresh tensor nothing else references,
    with the temporaries' dtype, device, shape and strides."""
    parents, classifier = ctx.index.parents, facts.classifier
    qualify = facts.classifier.qualify
    merge_mode = classifier.lexical_grad_mode(group[0].alloc)
    worst_origin, reason = Origin.NONE, None

    def note(origin, why):
        nonlocal worst_origin, reason
        if _RANK_ORIGIN[origin] > _RANK_ORIGIN[worst_origin]:
            worst_origin, reason = origin, why

    for p in group:
        if p.acc in facts.params:
            note(Origin.EXTERNAL, f"`{p.acc}` is a parameter: the caller's tensor")
            continue
        if p.acc not in facts.local_names:
            note(Origin.EXTERNAL, f"`{p.acc}` is a global")
            continue
        seeds = []
        for name in walk_scope(facts.node):
            if isinstance(name, ast.Name) and name.id == p.acc and isinstance(name.ctx, ast.Store) \
                    and name is not p.rebind_target and not isinstance(parents.get(name), ast.AugAssign):
                seeds.append(seed_of(name, parents, facts.params, facts.local_names, qualify, ctx.lines))
        if not seeds:
            note(Origin.EXTERNAL, f"`{p.acc}` is never bound in the function")
            continue
        for seed in seeds:
            if not loop.enclosing and seed.target.lineno > loop.node.end_lineno:
                continue  # bound after the loop, which never runs again in this call
            where = f"`{seed.text}` (line {seed.target.lineno})"
            if seed.origin is not Origin.OWNED:
                if seed.origin is not Origin.NONE:
                    note(seed.origin, f"{where}: {seed.reason}")
                continue
            mode, not_counted = classifier.grad_context(seed.target)
            grad_free = ("no_grad", "inference")
            suspended = _suspended_between(seed.target, loop, facts)
            undecided = [why for node in (seed.target, group[0].alloc)
                         for lexical, (decided, why) in [(classifier.lexical_grad_mode(node),
                                                          classifier.grad_context(node))]
                         if lexical == "inference" and decided != "inference"]
            undecided += [f"{flag}, whose mode is not a constant" for flag in
                          [classifier.undecided_inference(seed.target)] if flag]
            if suspended or undecided:
                note(Origin.OPAQUE, f"{where} may be made in another grad or inference mode than the loop's "
                                    f"buffers ({suspended or undecided[0]})")
            elif (classifier.lexical_grad_mode(seed.target) == "inference") != (merge_mode == "inference"):
                # An inference tensor cannot be written outside inference mode, and a
                # buffer made outside it is not an inference tensor as the merge's are.
                note(Origin.OPAQUE, f"{where} is created {'inside' if mode == 'inference' else 'outside'} "
                                    "`torch.inference_mode()` and the loop is not")
            elif mode not in grad_free and _inherits_grad(seed.value, qualify):
                # `x * 2`, `x.clone()`, `torch.cat(...)` of a tensor that requires grad
                # requires grad too, with a grad_fn; the merges' buffers never do. The
                # swap writes merges into it and may return it: a result that requires
                # grad, with a history the original never had.
                outside = f"outside a no-grad context ({not_counted})" if not_counted else "outside a no-grad context"
                note(Origin.OPAQUE, f"{where} may require grad (it is computed from tensors that may, {outside}): "
                                    "the swap would write merges into it and could return it, requiring grad "
                                    "with a history the original result does not have")
            elif any(_requires_grad(q.alloc.value) is not None for q in group if q.acc == p.acc):
                note(Origin.OPAQUE, f"{where} does not require grad, while the buffers the loop allocates "
                                    "with `requires_grad=` do: the swap could return it")
            elif not _fits_buffers(p, seed, ctx, loop, templates, verdict):
                func = ast.unparse(p.alloc.value.func)
                note(Origin.OPAQUE, f"{where} may not have the dtype, device, shape or strides of the buffers "
                                    f"`{ast.unparse(p.alloc.value)}` allocates" if _template(p, ctx, loop) is not None
                     else f"{where} may not have the layout of the buffers `{func}` allocates")
        if loop.enclosing and not _reassigned_before(loop, p.acc):
            note(Origin.OPAQUE, f"`{p.acc}` may start from an earlier pass of the enclosing loop")
        # Nothing may keep the first value before the loop (or in a `for` iterable).
        before = [n for n in walk_scope(facts.node)
                  if isinstance(n, ast.Name) and n.id == p.acc and isinstance(n.ctx, ast.Load)
                  and n.lineno < loop.node.lineno]
        if isinstance(loop.node, (ast.For, ast.AsyncFor)):
            before += [n for n in ast.walk(loop.node.iter) if isinstance(n, ast.Name) and n.id == p.acc]
        for n in before:
            use = classifier.classify(n)
            if not use.harmless or use.kind is Kind.ESCAPE:
                note(Origin.OPAQUE, use.reason or f"line {use.line} uses the first value of `{p.acc}`")
    if worst_origin is Origin.EXTERNAL:
        verdict.swap, verdict.swap_reason = "never", reason
    elif worst_origin is Origin.OPAQUE:
        verdict.swap, verdict.swap_reason = "unsafe", reason


def _suspended_between(seed: ast.Name, loop: Loop, facts: ScopeFacts) -> str | None:
    """A suspension point after the seed's binding and before the loop: the
    caller may resume the function in another grad or inference mode."""
    points = [n for n in walk_scope(facts.node) if is_suspension(n)
              and (seed.lineno, seed.col_offset) < (n.lineno, n.col_offset) < (loop.node.lineno, loop.node.col_offset)]
    return f"{suspension_text(points[0])} lies between them" if points else None


def _inherits_grad(value: ast.expr, qualify) -> bool:
    """Is an owned seed computed from other tensors (so it requires grad when
    they do), rather than made by a factory (`torch.zeros`, `torch.*_like`)?"""
    if isinstance(value, ast.Call):
        name = qualify(value.func) or ""
        return not (name.startswith("torch.") and name.rsplit(".", 1)[-1] in
                    {"empty", "zeros", "ones", "full", "rand", "randn", "randint", "empty_like", "zeros_like",
                     "ones_like", "full_like", "rand_like", "randn_like", "randint_like"})
    if isinstance(value, ast.IfExp):
        return _inherits_grad(value.body, qualify) or _inherits_grad(value.orelse, qualify)
    if isinstance(value, ast.BinOp):  # `torch.zeros_like(x) + 1`: only its operands can bring grad
        return _inherits_grad(value.left, qualify) or _inherits_grad(value.right, qualify)
    if isinstance(value, ast.UnaryOp):
        return _inherits_grad(value.operand, qualify)
    return not isinstance(value, ast.Constant)


def _fits_buffers(pair, seed, ctx, loop, templates, verdict) -> bool:
    """Does an owned seed have the dtype, device, shape and strides of the
    buffers the allocation gives? Proven by syntax (`ALLOC(A)` alone, or a
    seed `torch.zeros_like(X)` / `X.clone()` for `ALLOC(X)` alone), or checked
    at run time by the guard."""
    if not _exact_like_call(pair, ctx, loop):
        return False  # the longhand spellings give contiguous buffers, whatever the seed's strides
    if any(t == pair.temp and full for t, _, full in verdict.guard):
        return True
    template = templates[pair.temp]
    return template == pair.acc or matches_template(seed.value, template, lambda e: ctx.resolver.qualified_name(
        e, loop.scope))


_RANK_ORIGIN = {Origin.NONE: 0, Origin.OWNED: 1, Origin.OPAQUE: 2, Origin.EXTERNAL: 3}


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


def _release_after(loop: Loop) -> bool:
    """Drop the scratch buffers after the loop unless nothing runs there but a
    plain return (the function's end frees them anyway)."""
    container, node = loop.container, loop.node
    after = container[container.index(node) + 1:]
    if not after:
        return bool(loop.enclosing) or container is not getattr(loop.scope.node, "body", None)
    nxt = after[0]
    if isinstance(nxt, ast.Return):
        value = nxt.value
        elts = value.elts if isinstance(value, ast.Tuple) else [value]
        return not all(e is None or isinstance(e, (ast.Name, ast.Constant)) for e in elts)
    return True


def _diagnose(pairs: list, loop: Loop, ctx: FileContext, claimed: set, facts: ScopeFacts):
    # A group is reported whole or not at all: if one accumulator of a merge
    # needs its fresh buffer, the pattern is not the wasteful one.
    group = pairs
    verdict = _analyse(group, loop, ctx, facts)
    if verdict is None:
        return []

    statements = [p.alloc for p in group] + [p.rebind for p in group] + [d for p in group for d in p.deletes]
    indices = sorted(p.alloc_index for p in group)
    noqa = _noqa_line(group, ctx)
    no_fix = list(verdict.no_fix)
    if noqa is not None:
        no_fix.insert(0, f"`# noqa` on line {noqa} suppresses an allocation of this group, which is fixed "
                         "whole or not at all")
    if indices != list(range(indices[0], indices[0] + len(indices))):
        no_fix.append("the group's allocations are not adjacent statements")
    elif not all(_alone_on_lines(s, ctx) for s in statements):
        no_fix.append("a statement of the pattern shares its line with another statement")
    elif any(id(s) in claimed for s in statements):
        no_fix.append("a statement of the pattern belongs to another group's fix")
    elif verdict.swap != "safe" and not _rebindings_adjacent(group, loop):
        no_fix.append("the group's rebindings are not adjacent statements (a statement between them could "
                      "skip some, and the two buffers of each accumulator rotate together)")
    fixes = [] if no_fix else _fixes(group, loop, verdict, facts.identifiers, ctx.lines)
    if fixes:
        claimed.update(id(s) for s in statements)
    reason = no_fix[0] if no_fix else None

    diagnostics = []
    for p in group:
        call = p.alloc.value
        func = ast.unparse(call.func)
        message = (f"`{func}` allocates `{p.temp}` on every loop iteration only to merge into it "
                   f"and rebind `{p.acc}`; allocate it once and reuse it")
        if reason:
            message += f" (no automatic fix: {reason})"
        elif verdict.unsafe:
            message += f" (no safe fix: {verdict.unsafe[0]}; `--unsafe-fixes` applies one that assumes it does not)"
        diagnostics.append(Diagnostic(
            code="ALC001", name="alloc-in-loop-merge", filename=ctx.filename,
            line=call.lineno, column=ctx.char_column(call.lineno, call.col_offset) + 1,
            end_line=call.end_lineno, end_column=ctx.char_column(call.end_lineno, call.end_col_offset) + 1,
            message=message, fixes=fixes, no_fix_reason=reason,
        ))
    return diagnostics


def _rebindings_adjacent(group: list, loop: Loop) -> bool:
    """The group's rebindings run together: one statement, or adjacent ones.
    Ping-pong needs it: its lazy allocation tests the first temporary only, so
    a rotation skipped for one accumulator (`A = T; if c: continue; B = U`)
    would leave another temporary None at the next merge."""
    rebinds = list({id(p.rebind): p.rebind for p in group}.values())
    if len(rebinds) == 1:
        return True
    block = next(b for b in loop.blocks if any(s is group[0].alloc for s in b))
    where = sorted(next(i for i, s in enumerate(block) if s is r) for r in rebinds)
    return where == list(range(where[0], where[0] + len(where)))


def _plan(form: str, group: list, loop: Loop, verdict: Verdict, names_in_use: set) -> FixPlan:
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
    guard = None
    if verdict.guard:
        # `empty_like` also copies a quantized template's quantizer (scale, zero
        # point), which no comparison here sees: a quantized template is never reused.
        guard = " or ".join(metadata_differs(t, x, FULL_METADATA) + f" or {x}.is_quantized" if full
                            else metadata_differs(t, x, ("shape",)) for t, x, full in verdict.guard)
    scratch = tuple(temp for _, temp, _ in pairs)
    released = tuple(name for _, temp, spare in pairs for name in (temp, spare) if name)
    return FixPlan(form, loop.node, [p.alloc for p in ordered], pairs, rebinds, deletes, ordered[0].temp,
                   guard=guard, drop=scratch if guard else (), reinit=tuple(verdict.reinit),
                   release=released if _release_after(loop) else (), test_all=verdict.catchable is not None)


FULL_METADATA = ("shape", "dtype", "device", "stride()")


def metadata_differs(temp: str, template: str, checks=("shape", "dtype", "device")) -> str:
    """A guard for FixPlan.guard: `temp` no longer has the metadata a fresh
    `empty_like(template)` would have. Join one per pair with " or "."""
    return " or ".join(f"{temp}.{c} != {template}.{c}" for c in checks)


def reinitialisation(temp: str, qualified: str, call: ast.Call) -> str | None:
    """The statement that gives a reused buffer what the initialising allocator
    `qualified` (e.g. "torch.zeros_like") gave it: for FixPlan.reinit. None if
    the allocator does not initialise (empty*), is not known here, or its fill
    value cannot be read."""
    kind = INITIALISATION.get(qualified.rsplit(".", 1)[-1])
    if kind == "zero":
        return f"{temp}.zero_()"
    if kind == "one":
        return f"{temp}.fill_(1)"
    value = _fill_value(call) if kind == "fill" else None
    return f"{temp}.fill_({ast.unparse(value)})" if value is not None else None


def _operations(plan: FixPlan, lines: list) -> tuple:
    """The edit operations (alloc_lint.edits) that carry out `plan`:

    - before the loop, `T = None` (and ping-pong's `T_alt = None`): every entry
      into the loop starts without buffers;
    - the allocations wrapped in `if T is None:` (with a guard, `if T is None
      or <T's metadata differs from X's>:`, whose block first drops the old
      buffers so none is held while the new ones are allocated), and an
      `else:` re-initialising a reused buffer where the allocator initialises;
    - each rebinding replaced by the swap or the rotation; `del T` dropped;
    - after the loop, the scratch buffers released (`T = None`)."""
    at = lambda stmt: position(stmt, lines)  # noqa: E731
    spares = [spare for _, _, spare in plan.pairs if spare]
    ops = [InsertBefore(at(plan.loop), " = ".join([*spares, "None"]))] if spares else []
    tested = [temp for _, temp, _ in plan.pairs] if plan.test_all else [plan.first_temp]
    ops.append(InsertBefore(at(plan.loop), " = ".join([*tested, "None"])))
    header = "if " + " or ".join(f"{temp} is None" for temp in tested)
    if plan.guard:
        header += f" or {plan.guard}"
    if plan.drop:
        ops.append(InsertBefore(at(plan.allocs[0]), f"{' = '.join(plan.drop)} = None  # not held while reallocating"))
    ops.append(Wrap(tuple(at(s) for s in plan.allocs), header, orelse="\n".join(plan.reinit)))
    ops += [Replace(at(s), _rebinding(s, plan.pairs, plan.form)) for s in plan.rebinds]
    temps = {temp for _, temp, _ in plan.pairs}
    ops += [Replace(at(s), _without_temps(s, temps) or "") for s in plan.deletes]
    if plan.release:
        ops.append(InsertAfter(at(plan.loop), f"{' = '.join(plan.release)} = None"))
    return tuple(ops)


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


def _fixes(group: list, loop: Loop, verdict: Verdict, names_in_use: set, lines: list) -> list[Fix]:
    accs = ", ".join(f"`{p.acc}`" for p in group)
    temps = ", ".join(f"`{p.temp}`" for p in group)
    swap_message = f"Allocate {temps} once, lazily, and swap with {accs} after each merge"
    pingpong_message = (f"Allocate two buffers per accumulator once, lazily, and alternate them "
                        f"(the first value of {accs} is only read)")
    extra = ""
    if verdict.guard:
        what = "shape, dtype, device or strides" if any(full for _, _, full in verdict.guard) else "shape"
        extra += f"; reallocate when the template's {what} changes ({verdict.guard_reason})"
    if verdict.reinit:
        extra += f"; re-initialise a reused buffer ({', '.join(f'`{r}`' for r in verdict.reinit)})"
    assumptions = "; ".join(verdict.unsafe)
    safety = "unsafe" if verdict.unsafe else "safe"
    suffix = f"; assumes that none of this happens: {assumptions}" if assumptions else ""

    def fix(applicability, form, message):
        plan = _plan(form, group, loop, verdict, names_in_use)
        return Fix(applicability, message + extra + (suffix if applicability == "unsafe" else ""), form,
                   _operations(plan, lines))

    if verdict.swap == "safe":
        return [fix(safety, "swap", swap_message)]
    if verdict.swap == "never":
        return [fix(safety, "pingpong", pingpong_message + f"; a swap would overwrite the first value "
                                                           f"({verdict.swap_reason})")]
    swap_assumption = (f"; assumes the first value of {accs} ({verdict.swap_reason}) is referenced nowhere "
                       "else, has the layout of a fresh buffer and does not require grad (the swap writes "
                       "merges into it and may return it)")
    return [fix("unsafe", "swap", swap_message + swap_assumption),
            fix(safety, "pingpong", pingpong_message)]
