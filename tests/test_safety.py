"""Hostile programs for every class of failure of issue 8, run original against fixed.

Each case is a program written to break one safety claim of ALC001's fix. For
each, the test asserts what the tool offers (the fix forms, and that a
withheld or unsafe fix names the use that blocks it), then RUNS the program:

- a safe fix must keep everything observable: the results (bitwise, with
  dtype, strides and requires_grad), the caller's arguments after the call,
  everything the program stored (its TRACE), and whether (and what) it raises;
- where the case says so, the unsafe fix (or a form the tool refused to emit:
  a swap, or the same fix without its guard or re-initialisation) is run too
  and must visibly change the program: proof that the test can fail.
"""
from __future__ import annotations

import ast
import dataclasses
import textwrap
import warnings
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")

from alloc_lint import Config, check_source, engine, fix_source  # noqa: E402
from alloc_lint.config import DEFAULT_ALLOCATORS  # noqa: E402
from alloc_lint.edits import InsertBefore, Replace, Wrap, apply_operations  # noqa: E402

from runtime import TRUSTED, CountAllocations, LiveBytes, flatten, load  # noqa: E402

# A torch operator that keeps its argument (class 1: `torch.ops.*` is not trusted).
OP_TRACE: list = []


@torch.library.custom_op("alloc_lint_test::keep", mutates_args=())
def _keep_op(x: torch.Tensor) -> None:
    OP_TRACE.append(x)


@dataclass
class Case:
    name: str
    source: str
    offer: str  # the fixes offered, as in tests/fixtures/alc001 (`swap`, `pingpong`, ..., `none`, `nodiag`)
    names: tuple = ()  # what the diagnostic's or the fixes' messages must name
    breaks: str | None = None  # "unsafe": --unsafe-fixes changes the program; "swap": a forced swap does;
    #                             "unguarded" / "no-reinit": the fix without its guard / re-initialisation does
    config: Config = field(default_factory=lambda: TRUSTED)
    args: object = None  # (n, seed) -> arguments; default (x, parts)
    sizes: tuple = (1, 2, 3, 4, 5)
    extras: frozenset = frozenset()  # "guard", "reinit" expected in the fix's plan
    gap: str | None = None  # a known gap outside the analysis (the tests are strict xfails until it closes)

    def __post_init__(self):
        self.source = "import torch\n" + textwrap.dedent(self.source)


def default_args(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, generator=g), [torch.randn(4, 3, generator=g) for _ in range(n)]


FIX_FORMS = {
    "swap": [("safe", "swap")],
    "pingpong": [("unsafe", "swap"), ("safe", "pingpong")],
    "pingpong-only": [("safe", "pingpong")],
    "unsafe-swap": [("unsafe", "swap")],
    "unsafe-pingpong": [("unsafe", "swap"), ("unsafe", "pingpong")],
    "unsafe-pingpong-only": [("unsafe", "pingpong")],
    "none": [],
}

CASES = [
    # --- 1. unknown calls keep references -------------------------------------------
    Case("keep_helper", """
        KEPT = []
        def keep(t):
            KEPT.append(t)
        def run(x, parts):
            KEPT.clear()
            acc = torch.zeros_like(x)
            for p in parts:
                keep(acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            TRACE.extend(KEPT)
            return acc
        """, "unsafe-swap", ("`keep(acc)`", "line 10"), "unsafe", extras=frozenset({"shape-guard"})),
    Case("pool_submit", """
        class Pool:
            def __init__(self):
                self.jobs = []
            def submit(self, fn, *args):
                self.jobs.append((fn, args))
        def run(x, parts):
            pool = Pool()
            acc = torch.zeros_like(x)
            for p in parts:
                pool.submit(torch.sum, acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, [fn(*a) for fn, a in pool.jobs]
        """, "nodiag"),
    Case("operator_setitem", """
        import operator
        def run(x, parts):
            cache = {}
            acc = torch.zeros_like(x)
            for i, p in enumerate(parts):
                operator.setitem(cache, i, acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, list(cache.values())
        """, "unsafe-swap", ("operator.setitem(cache, i, acc)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("data_ptr_identity", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            seen = set()
            for p in parts:
                seen.add(acc.data_ptr())
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, len(seen)
        """, "unsafe-swap", ("acc.data_ptr()", "address"), "unsafe", extras=frozenset({"shape-guard"})),
    Case("snapshot_set", """
        def run(x, parts):
            snap = torch.empty(0)
            acc = torch.zeros_like(x)
            for i, p in enumerate(parts):
                if i == 1:
                    snap.set_(acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, snap
        """, "unsafe-swap", ("snap.set_(acc)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("logger_debug", """
        import logging
        class Buffer(logging.Handler):
            def __init__(self):
                super().__init__()
                self.records = []
            def emit(self, record):
                self.records.append(record)
        def run(x, parts):
            log = logging.getLogger("alloc-lint-safety")
            log.setLevel(logging.DEBUG)
            log.propagate = False
            handler = Buffer()
            log.addHandler(handler)
            try:
                acc = torch.zeros_like(x)
                for p in parts:
                    log.debug("%s", acc)
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            finally:
                log.removeHandler(handler)
            return acc, [r.args[0] for r in handler.records]
        """, "unsafe-swap", ('`log.debug("%s", acc)` (line 19)',), "unsafe", extras=frozenset({"shape-guard"})),
    Case("torch_ops_custom", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                torch.ops.alloc_lint_test.keep(acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "unsafe-swap", ("torch.ops.alloc_lint_test.keep(acc)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("register_before_loop", """
        REGISTERED = []
        def register(t):
            REGISTERED.append(t)
        def run(x, parts):
            REGISTERED.clear()
            acc = torch.zeros_like(x)
            register(acc)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            TRACE.extend(REGISTERED)
            return acc
        """, "pingpong", ("register(acc)",), "unsafe", extras=frozenset({"shape-guard"})),
    # --- 2. the merge call keeps its output ---------------------------------------------
    Case("merge_keeps_output", """
        def merge_keep(out, a, b):
            torch.add(a, b, out=out)
            TRACE.append(out)
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc)
                merge_keep(tmp, acc, p)
                acc = tmp
            return acc
        """, "unsafe-swap", ("`merge_keep`", "extra-merge-functions"), "unsafe"),
    Case("temporary_in_an_input_position", """
        def run(x, parts):
            acc = torch.zeros(4, 3)
            lse = torch.zeros(4)
            for p in parts:
                tmp = torch.empty_like(acc)
                tmp_lse = torch.empty_like(lse)
                merge_attn_states(output=acc, output_lse=lse, prefix_output=tmp, prefix_lse=tmp_lse,
                                  suffix_output=p, suffix_lse=p.sum(-1))
                acc, lse = tmp, tmp_lse
            return acc, lse
        """, "unsafe-swap", ("as `prefix_output=`",)),
    # --- 3. "owned" first values that are not owned --------------------------------------
    Case("chained_seed", """
        def run(x, parts):
            acc = base = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, base
        """, "pingpong", ("acc = base = torch.zeros_like(x)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("unary_plus_seed", """
        def run(x, parts):
            acc = +x
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong-only", ("+x",), "swap", extras=frozenset({"shape-guard"})),
    Case("out_seed", """
        def run(x, parts):
            acc = torch.zeros(4, 3, out=x)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("out=",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("requires_grad_seed", """
        @torch.no_grad()
        def run(x, parts):
            acc = torch.zeros(4, 3, requires_grad=True)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("requires_grad",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("inference_mode_seed", """
        def run(x, parts):
            with torch.inference_mode():
                acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("inference",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("inference_mode_seed_and_loop", """
        @torch.inference_mode()
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc.clone()
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("loop_under_inference_mode_seed_outside", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            with torch.inference_mode():
                for p in parts:
                    tmp = torch.empty_like(acc)
                    torch.mul(acc, 0.5, out=tmp)
                    acc = tmp
            return acc, acc.is_inference()
        """, "pingpong", ("inference_mode",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("loop_under_no_grad_seed_may_require_grad", """
        def run(x, parts):
            x = x.requires_grad_()
            acc = x.clone()
            with torch.no_grad():
                for p in parts:
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            return acc
        """, "pingpong", ("may require grad",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("loop_under_no_grad_factory_seed", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            with torch.no_grad():
                for p in parts:
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    # --- 4. the loop header -------------------------------------------------------------
    Case("while_test_unknown_call", """
        SEEN = []
        def keep_going(t, i, n):
            SEEN.append(t)
            return i < n
        def run(x, parts):
            SEEN.clear()
            acc = torch.zeros_like(x)
            i = 0
            while keep_going(acc, i, len(parts)):
                tmp = torch.empty_like(acc)
                torch.add(acc, parts[i], out=tmp)
                acc = tmp
                i += 1
            TRACE.extend(SEEN)
            return acc
        """, "unsafe-swap", ("keep_going(acc, i, len(parts))",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("for_iterable_holds_first_value", """
        def shifted(acc, parts):
            for p in parts:
                yield p + acc
        def run(x, parts):
            acc = torch.zeros_like(x) + 1
            for q in shifted(acc, parts):
                tmp = torch.empty_like(acc)
                torch.add(acc, q, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("shifted(acc, parts)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("walrus_in_while_test", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            snaps = []
            i = 0
            while (snap := acc) is not None and i < len(parts):
                snaps.append(snap.sum())
                tmp = torch.empty_like(acc)
                torch.add(acc, parts[i], out=tmp)
                acc = tmp
                i += 1
            return acc, snap
        """, "nodiag"),
    Case("template_bound_by_walrus_in_header", """
        def run(x, parts):
            it = iter(parts)
            acc = torch.zeros_like(x)
            while (p := next(it, None)) is not None:
                tmp = torch.empty_like(p)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "nodiag"),
    Case("walrus_in_for_iterable_binds_once", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in (ps := parts):
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, len(ps)
        """, "swap", extras=frozenset({"shape-guard"})),
    # --- 5. the allocator's keywords ------------------------------------------------------
    Case("dtype_keyword", """
        def run(x, parts):
            acc = torch.zeros(4, 3, dtype=torch.bfloat16)
            for p in parts:
                tmp = torch.empty_like(acc, dtype=torch.float32)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("torch.empty_like(acc, dtype=torch.float32)",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("memory_format_keyword", """
        def run(x, parts):
            acc = torch.zeros(2, 3, 4, 5)
            for p in parts:
                tmp = torch.empty_like(acc, memory_format=torch.channels_last)
                torch.add(acc, p.sum(), out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("memory_format",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("device_keyword", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc, device="cpu")
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("device=",), extras=frozenset({"shape-guard"})),
    Case("requires_grad_keyword", """
        @torch.no_grad()
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc, requires_grad=True)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("requires_grad",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("broadcast_first_value", """
        def run(x, parts):
            acc = torch.zeros(1, 4, 3)
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p.expand(5, 4, 3), out=tmp)
                acc = tmp
            return acc
        """, "swap", ("resizes its `out=` tensor",), "unguarded", extras=frozenset({"shape-guard"})),
    Case("shape_grows_by_broadcasting_after_the_first_merge", """
        def run(x, parts):
            acc = torch.zeros(1, 3)
            for i, p in enumerate(parts):
                tmp = torch.empty_like(acc)
                torch.add(acc, p if i else p[:1], out=tmp)
                acc = tmp
            return acc
        """, "swap", (), "unguarded", extras=frozenset({"shape-guard"})),
    # --- 6. "the template is stable" -----------------------------------------------------
    Case("dtype_changes_per_iteration", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for i, p in enumerate(parts):
                tmp = torch.empty_like(acc, dtype=torch.float16 if i < 2 else torch.float32)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "nodiag"),
    Case("restart_with_another_shape", """
        def merge_rows(out, a, b):
            out.copy_(a + b)
        @torch.no_grad()  # the seed `p.clone()` would otherwise get the swap only as unsafe (it may require grad)
        def run(x, parts):
            acc = None
            sums = []
            for p in parts:
                if acc is None or acc.shape != p.shape:
                    if acc is not None:
                        sums.append(acc.sum())
                    acc = p.clone()
                    continue
                tmp = torch.empty_like(acc)
                merge_rows(tmp, acc, p)
                acc = tmp
            return acc, sums
        """, "swap", (), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_rows",)),
         args=lambda n, seed: (None, [torch.randn(s, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i, s in enumerate([4, 4, 4, 2, 2, 2, 4, 4, 3][:n + 4])])),
    Case("temporaries_take_each_others_template", """
        def rotate(o1, o2, o3, a1, a2, a3, p):
            o1.copy_(a2 * 2 + p)
            o2.copy_(a3 - p)
            o3.copy_(a1 + 1)
        def run(x, parts):
            a1 = torch.zeros(2, 3)
            a2 = torch.ones(3, 2)
            a3 = torch.full((1, 6), 2.0)
            for p in parts:
                t1 = torch.empty_like(a2)
                t2 = torch.empty_like(a3)
                t3 = torch.empty_like(a1)
                rotate(t1, t2, t3, a1, a2, a3, p.sum())
                a1, a2, a3 = t1, t2, t3
            return a1, a2, a3
        """, "swap", (), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("rotate",))),
    Case("template_rebound_by_nonlocal_helper", """
        def merge_into(out, a, p):
            out.zero_()
            n = min(out.shape[0], a.shape[0])
            out[:n] = a[:n] + p[:n]
        def run(x, parts):
            tpl = torch.zeros(4, 3)
            def grow():
                nonlocal tpl
                tpl = torch.zeros(tpl.shape[0] + 1, 3)
            acc = torch.zeros(4, 3)
            for i, p in enumerate(parts):
                if i == 2:
                    grow()
                tmp = torch.empty_like(tpl)
                merge_into(tmp, acc, p)
                acc = tmp
            return acc
        """, "swap", (), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_into",)),
         args=lambda n, seed: (None, [torch.randn(8, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i in range(n)])),
    Case("template_resized_in_place", """
        def merge_into(out, a, p):
            out.zero_()
            n = min(out.shape[0], a.shape[0])
            out[:n] = a[:n] + p[:n]
        def run(x, parts):
            tpl = torch.zeros(4, 3)
            acc = torch.zeros(4, 3)
            for i, p in enumerate(parts):
                if i == 2:
                    tpl.resize_(6, 3)
                tmp = torch.empty_like(tpl)
                merge_into(tmp, acc, p)
                acc = tmp
            return acc
        """, "unsafe-swap", ("tpl.resize_(6, 3)",), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_into",)),
         args=lambda n, seed: (None, [torch.randn(8, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i in range(n)])),
    Case("template_aliased_before_the_loop", """
        def merge_into(out, a, p):
            out.zero_()
            n = min(out.shape[0], a.shape[0])
            out[:n] = a[:n] + p[:n]
        def run(x, parts):
            tpl = torch.zeros(4, 3)
            holder = [tpl]
            acc = torch.zeros(4, 3)
            for i, p in enumerate(parts):
                if i == 2:
                    holder[0].resize_(6, 3)
                tmp = torch.empty_like(tpl)
                merge_into(tmp, acc, p)
                acc = tmp
            return acc
        """, "unsafe-swap", ("holder = [tpl]", "uninitialised memory"), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_into",)),
         args=lambda n, seed: (None, [torch.randn(8, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i in range(n)])),
    Case("size_list_aliased_before_the_loop", """
        def merge_into(out, a, p):
            out.zero_()
            n = min(out.shape[0], a.shape[0])
            out[:n] = a[:n] + p[:n]
        def run(x, parts):
            dims = [4, 3]
            view = dims
            acc = torch.zeros(4, 3)
            for i, p in enumerate(parts):
                if i == 2:
                    view[0] = 5
                tmp = torch.empty(dims)
                merge_into(tmp, acc, p)
                acc = tmp
            return acc
        """, "none", ("view = dims",),
         config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.empty",),
                                    merge_functions=TRUSTED.merge_functions + ("merge_into",))),
    Case("template_changed_through_its_owner", """
        class State:
            def __init__(self):
                self.buf = torch.zeros(4, 3)
        def regrow(state):
            state.buf.data = torch.zeros(state.buf.shape[0] + 1, 3, dtype=torch.float64)
        def merge_into(out, a, p):
            out.zero_()
            n = min(out.shape[0], a.shape[0])
            out[:n] = a[:n] + p[:n]
        def run(x, parts):
            state = State()
            tpl = state.buf
            acc = torch.zeros(4, 3)
            for p in parts:
                tmp = torch.empty_like(tpl)
                merge_into(tmp, acc, p)
                acc = tmp
                regrow(state)
            return acc
        """, "swap", ("`regrow(state)` (line 20) could change it",), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_into",)),
         args=lambda n, seed: (None, [torch.randn(8, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i in range(n)])),
    Case("global_template", """
        TEMPLATE = torch.zeros(4, 3)
        def run(x, parts):
            acc = torch.zeros(4, 3)
            for p in parts:
                tmp = torch.empty_like(TEMPLATE)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", (), extras=frozenset({"guard"})),
    Case("template_passed_to_unknown_call", """
        def touch(t):
            return t
        def run(x, parts):
            tpl = torch.zeros(4, 3)
            acc = torch.zeros(4, 3)
            for p in parts:
                touch(tpl)
                tmp = torch.empty_like(tpl)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", (), extras=frozenset({"guard"})),
    Case("accumulator_resized_by_out", """
        def merge_rows(out, a, b):
            out.copy_(a + b)
        def run(x, parts):
            acc = torch.zeros(4, 3)
            for p in parts:
                torch.add(p, 1, out=acc)
                tmp = torch.empty_like(acc)
                merge_rows(tmp, acc, p)
                acc = tmp
            return acc
        """, "swap", ("may resize `acc`",), "unguarded", extras=frozenset({"guard"}),
         config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_rows",)),
         args=lambda n, seed: (None, [torch.randn(s, 3, generator=torch.Generator().manual_seed(seed + i))
                                      for i, s in enumerate([4, 4, 2, 2, 4, 3, 3][:n + 2])])),
    Case("two_groups_one_accumulator", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                t1 = torch.empty_like(acc)
                torch.add(acc, p, out=t1)
                acc = t1
                t2 = torch.empty_like(acc)
                torch.mul(acc, 0.5, out=t2)
                acc = t2
            return acc
        """, "pingpong", ("`acc = t1` (line 8)",), extras=frozenset({"guard"})),
    Case("locals_in_the_loop", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                TRACE.append(locals()["acc"])
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "unsafe-swap", ("locals()",), "unsafe", extras=frozenset({"shape-guard"})),
    Case("type_conversion_keeps_a_view", """
        def merge_rows(out, a, b):
            out.copy_(a + b)
        def run(x, parts):
            acc = torch.zeros_like(x)
            kept = []
            for p in parts:
                kept.append(acc.type(torch.float32))
                tmp = torch.empty_like(acc)
                merge_rows(tmp, acc, p)
                acc = tmp
            return acc, kept
        """, "nodiag", config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_rows",))),
    Case("type_name_is_metadata", """
        def merge_rows(out, a, b):
            out.copy_(a + b)
        def run(x, parts):
            acc = torch.zeros_like(x)
            names = []
            for p in parts:
                names.append(acc.type())
                tmp = torch.empty_like(acc)
                merge_rows(tmp, acc, p)
                acc = tmp
            return acc, names
        """, "swap", config=dataclasses.replace(TRUSTED, merge_functions=TRUSTED.merge_functions + ("merge_rows",))),
    Case("generator_expression_over_accumulator", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            rows = []
            for p in parts:
                rows.append(list(r for r in acc))
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, rows
        """, "nodiag"),
    # --- 7. autograd ---------------------------------------------------------------------
    Case("differentiable_merge", """
        W = torch.full((4, 3), 0.5, requires_grad=True)
        def mix(out, a, b):
            out.copy_(a * W + b)
        def run(x, parts):
            W.grad = None
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(acc)
                mix(tmp, acc, p)
                acc = tmp
            acc.sum().backward()
            return acc.detach(), W.grad
        """, "unsafe-swap", ("`mix`", "extra-merge-functions"), "unsafe", sizes=(3, 4, 5)),
    Case("read_saved_for_backward", """
        W = torch.full((4, 3), 0.5, requires_grad=True)
        def run(x, parts):
            W.grad = None
            total = torch.zeros(())
            acc = torch.zeros_like(x)
            for p in parts:
                total = total + (acc * W).sum()
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            total.backward()
            return acc, W.grad
        """, "unsafe-swap", ("autograd", "acc * W"), "unsafe", sizes=(3, 4, 5), extras=frozenset({"shape-guard"})),
    Case("read_under_no_grad", """
        W = torch.full((4, 3), 0.5, requires_grad=True)
        def run(x, parts):
            total = torch.zeros(())
            acc = torch.zeros_like(x)
            with torch.no_grad():
                for p in parts:
                    total = total + (acc * W).sum()
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            return acc, total
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("inplace_with_grad_operand_before_out_merge", """
        W = torch.full((4, 3), 0.5, requires_grad=True)
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                acc.mul_(W)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    # --- 9. configured allocators --------------------------------------------------------
    Case("zeros_like_allocator_accumulating_merge", """
        def accumulate(out, a, b):
            out.add_(a)
            out.add_(b)
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.zeros_like(acc)
                accumulate(tmp, acc, p)
                acc = tmp
            return acc
        """, "unsafe-swap", ("`accumulate`",), "no-reinit", extras=frozenset({"reinit"}),
         config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.zeros_like",))),
    Case("zeros_like_allocator_full_write", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.zeros_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard", "reinit"}),
         config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.zeros_like",))),
    Case("full_like_allocator_accumulating_merge", """
        def accumulate(out, a, b):
            out.add_(a)
            out.add_(b)
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.full_like(acc, 0.5)
                accumulate(tmp, acc, p)
                acc = tmp
            return acc
        """, "unsafe-swap", ("`accumulate`",), "no-reinit", extras=frozenset({"reinit"}),
         config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.full_like",))),
    Case("empty_allocator_stable_arguments", """
        def run(x, parts):
            n, width = x.shape
            acc = torch.zeros(n, width)
            for p in parts:
                tmp = torch.empty(n, width)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "none", ("`torch.add` resizes its `out=` tensor",),
         config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.empty",))),
    Case("empty_allocator_per_iteration_size", """
        def run(x, parts):
            acc = torch.zeros(4, 3)
            for i, p in enumerate(parts):
                n = 4 if i < 2 else 4
                tmp = torch.empty(n, 3)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "nodiag", config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + ("torch.empty",))),
    Case("random_allocator", """
        def run(x, parts):
            torch.manual_seed(0)
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.randn_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc, torch.randn(2)
        """, "none", ("random",), config=dataclasses.replace(TRUSTED, allocators=DEFAULT_ALLOCATORS + (
            "torch.randn_like",))),
    # --- issue 10's spellings ------------------------------------------------------------
    Case("empty_from_shape_strided_first_value", """
        def run(x, parts):
            acc = x.t() * 1.0
            for p in parts:
                tmp = torch.empty(acc.shape, dtype=acc.dtype, device=acc.device)
                merge_strided(tmp, acc, p)
                acc = tmp
            return acc
        """, "pingpong", (), "unsafe", sizes=(3, 4, 5),
         args=lambda n, seed: (torch.randn(4, 3, generator=torch.Generator().manual_seed(seed)),
                               [torch.randn(3, 4, generator=torch.Generator().manual_seed(seed + i + 1))
                                for i in range(n)])),
    Case("new_empty_of_accumulator", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = acc.new_empty(acc.shape)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", extras=frozenset({"shape-guard"})),
    Case("empty_like_input_keyword", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp = torch.empty_like(input=acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("annotated_temporary", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                tmp: torch.Tensor = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("empty_from_shape_restarted", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                if p.shape != acc.shape:
                    acc = torch.zeros_like(p)
                tmp = torch.empty(acc.shape, dtype=acc.dtype)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "none", ("acc = torch.zeros_like(p)",)),
    # --- 11. `# noqa` stops the group's fix -----------------------------------------------
    Case("noqa_on_one_allocation", """
        def run(x, parts):
            acc = torch.zeros_like(x)
            lse = torch.zeros(4)
            for p in parts:
                tmp = torch.empty_like(acc)  # noqa: ALC001
                tmp_lse = torch.empty_like(lse)
                merge(tmp, tmp_lse, acc, lse, p, p.sum(-1))
                acc, lse = tmp, tmp_lse
            return acc, lse
        """, "none", ("noqa",)),
    # --- the swap's ownership proofs that hold -----------------------------------------------
    Case("clone_seed", """
        @torch.no_grad()  # outside no-grad `x.clone()` may require grad: tests/test_safety_autograd.py
        def run(x, parts):
            acc = x.clone()
            for p in parts:
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("template_seed_matches", """
        def run(x, parts):
            out = torch.empty(4, 3, dtype=torch.float64)
            acc = torch.zeros_like(out)
            for p in parts:
                tmp = torch.empty_like(out)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap", extras=frozenset({"shape-guard"})),
    Case("template_seed_does_not_match", """
        def run(x, parts):
            out = torch.empty(4, 3, dtype=torch.float64)
            acc = torch.zeros(4, 3)
            for p in parts:
                tmp = torch.empty_like(out)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "pingpong", ("acc = torch.zeros(4, 3)",), "unsafe", extras=frozenset({"shape-guard"})),
]


def params(cases):
    return [pytest.param(c, id=c.name) for c in cases]


# --- running --------------------------------------------------------------------------


def check(case):
    """The analysis's findings, whether or not the text prefilter would let the file through."""
    return engine.check_text(case.source, "case.py", case.config, prefilter=False)


def offered(case):
    diagnostics = check(case)
    return diagnostics, [[(f.applicability, f.form) for f in d.fixes] for d in diagnostics]


def args_for(case, n, seed):
    return (case.args or default_args)(n, seed)


def observe(source, args):
    """Everything a caller can see: the result, the arguments after the call,
    what the program stored, and what it raised."""
    OP_TRACE.clear()
    namespace = load(source)
    namespace["TRACE"] = []
    counter = CountAllocations()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with counter:
                result = namespace["run"](*args)
            error = None
        except Exception as exc:  # the fixed program must raise the same
            result, error = None, type(exc).__name__
    return {"result": result, "args": args, "trace": list(namespace["TRACE"]) + list(OP_TRACE),
            "error": error, "warnings": [(w.category.__name__, str(w.message)) for w in caught]}, counter.calls


def _same_value(x, y) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            return False
        if (x.shape, x.dtype, x.stride(), x.requires_grad) != (y.shape, y.dtype, y.stride(), y.requires_grad):
            return False
        a, b = x.detach().contiguous().reshape(-1), y.detach().contiguous().reshape(-1)
        return torch.equal(a.view(torch.uint8) if a.dtype != torch.bool else a,
                           b.view(torch.uint8) if b.dtype != torch.bool else b)
    return type(x) is type(y) and x == y


def same_observation(a, b) -> bool:
    if a["error"] != b["error"] or a["warnings"] != b["warnings"]:
        return False
    for key in ("result", "args", "trace"):
        xs, ys = flatten(a[key]), flatten(b[key])
        if len(xs) != len(ys) or not all(_same_value(x, y) for x, y in zip(xs, ys)):
            return False
    return True


def fixed_text(case, unsafe):
    result = fix_source(case.source, config=case.config, unsafe_fixes=unsafe)
    assert result.error is None, result.error
    if case.gap:  # fix_source does not see the finding yet: apply the fix's operations directly
        assert not result.fixed, f"the gap is closed ({case.gap}): drop `gap=` from the case"
        operations = []
        for d in check(case):
            fix = d.fix_for(unsafe)
            if fix is not None and fix.operations not in operations:
                operations.append(fix.operations)
        text = apply_operations(case.source, [op for ops in operations for op in ops])
        result = dataclasses.replace(result, text=text, fixed=len(check(case)), remaining=[])
    return result


def compare(case, original, rewritten):
    """Differences between the two programs over every size and two seeds."""
    differences = []
    for n in case.sizes:
        for seed in (0, 1):
            expected, calls = observe(original, args_for(case, n, seed))
            got, new_calls = observe(rewritten, args_for(case, n, seed))
            if not same_observation(expected, got):
                differences.append((n, seed, expected["error"], got["error"]))
            elif new_calls > calls:
                differences.append((n, seed, f"{calls} allocations", f"{new_calls} allocations"))
    return differences


def extras_of(fix) -> set:
    """`guard` and `reinit`, read from the fix's edit operations."""
    wraps = [op for op in fix.operations if isinstance(op, Wrap)]
    found = {"guard"} if any(".stride() != " in op.header for op in wraps) else \
        {"shape-guard"} if any(".shape != " in op.header for op in wraps) else set()
    return found | ({"reinit"} if any(op.orelse for op in wraps) else set())


def _as_swap(op):
    """Ping-pong's rotation `A, T, T_alt = T, T_alt, T` as the swap `A, T = T, A`."""
    assign = ast.parse(op.code).body[0]
    targets = [ast.unparse(t) for t in assign.targets[0].elts]
    values = [ast.unparse(v) for v in assign.value.elts]
    pairs = dict(zip(targets, values))
    kept = [t for t in targets if not t.endswith("_alt")]
    accs = {pairs[t]: t for t in kept if pairs[t] + "_alt" in targets}  # temp -> acc
    new_values = [accs.get(t, pairs[t]) if t in accs else pairs[t] for t in kept]
    return dataclasses.replace(op, code=f"{', '.join(kept)} = {', '.join(new_values)}")


def forced(case, how):
    """A rewrite the tool refused to make: the swap, or the fix without its
    guard or re-initialisation."""
    operations = list(check(case)[0].fixes[-1].operations)
    if how == "swap":
        first = operations[0]
        operations[0] = dataclasses.replace(first, code=first.code.splitlines()[0])
        operations = [_as_swap(op) if isinstance(op, Replace) and "_alt" in op.code else op for op in operations]
    elif how == "unguarded":
        operations = [op for op in operations if not (isinstance(op, InsertBefore) and "reallocating" in op.code)]
        operations = [dataclasses.replace(op, header=op.header.split(" or ")[0]) if isinstance(op, Wrap) else op
                      for op in operations]
    elif how == "no-reinit":
        operations = [dataclasses.replace(op, orelse="") if isinstance(op, Wrap) else op for op in operations]
    return apply_operations(case.source, operations)


@pytest.mark.parametrize("case", params(CASES))
def test_offer_and_message(case):
    diagnostics, forms = offered(case)
    if case.offer == "nodiag":
        assert diagnostics == []
        return
    assert diagnostics and all(f == FIX_FORMS[case.offer] for f in forms), forms
    text = " ".join([d.message for d in diagnostics] + [f.message for d in diagnostics for f in d.fixes])
    for name in case.names:
        assert name in text, (name, text)
    for d in diagnostics:
        assert set().union(*(extras_of(f) for f in d.fixes)) == set(case.extras)
        if not d.fixes:
            assert d.no_fix_reason and d.no_fix_reason in d.message
        elif d.fix_for(False) is None:
            assert "no safe fix" in d.message


SAFE = [c for c in CASES if any(a == "safe" for a, _ in FIX_FORMS.get(c.offer, []))]


@pytest.mark.parametrize("case", params(SAFE))
def test_safe_fix_keeps_everything_observable(case):
    result = fixed_text(case, unsafe=False)
    assert result.fixed and not result.remaining
    assert compare(case, case.source, result.text) == []
    # The rewrite leaves no finding and fixing it again changes nothing.
    assert engine.check_text(result.text, "case.py", case.config, prefilter=False) == []
    assert fix_source(result.text, config=case.config).text == result.text


UNSAFE_ONLY = [c for c in CASES if c.offer.startswith("unsafe")]


@pytest.mark.parametrize("case", params(UNSAFE_ONLY))
def test_unsafe_only_is_not_applied_by_fix(case):
    assert fix_source(case.source, config=case.config).text == case.source


NO_FIX = [c for c in CASES if c.offer in ("none", "nodiag")]


@pytest.mark.parametrize("case", params(NO_FIX))
def test_nothing_is_rewritten(case):
    for unsafe in (False, True):
        assert fix_source(case.source, config=case.config, unsafe_fixes=unsafe).text == case.source


BREAKING = [c for c in CASES if c.breaks]


@pytest.mark.parametrize("case", params(BREAKING))
def test_withheld_form_really_breaks_the_program(case):
    """Proof that the tests above can fail: what the tool withheld (the unsafe
    fix, a swap, the fix without its guard or re-initialisation) changes what
    the program computes, stores or raises."""
    if case.breaks == "unsafe":
        rewritten = fixed_text(case, unsafe=True).text
    else:
        rewritten = forced(case, case.breaks)
    assert rewritten != case.source
    assert compare(case, case.source, rewritten), "the withheld rewrite did not change the program"


@pytest.mark.parametrize("case", params([c for c in CASES if c.breaks in ("unguarded", "no-reinit")]))
def test_unsafe_fix_with_its_guard_or_reinit_keeps_the_program(case):
    """The guard and the re-initialisation are what make these fixes right:
    even the unsafe fix keeps the program where only trust was assumed."""
    rewritten = fixed_text(case, unsafe=True).text
    assert compare(case, case.source, rewritten) == []


# --- 8. CUDA streams (static: no GPU here) ------------------------------------------------

STREAM_PROGRAMS = {
    "record_stream": """
        def run(x, parts, side):
            acc = torch.zeros_like(x)
            for p in parts:
                acc.record_stream(side)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """,
    "non_blocking_copy": """
        def run(x, parts, host):
            acc = torch.zeros_like(x)
            for p in parts:
                host.copy_(acc, non_blocking=True)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """,
    "non_blocking_to": """
        def run(x, parts, host):
            acc = torch.zeros_like(x)
            for p in parts:
                host.append(acc.to("cpu", non_blocking=True).sum())
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """,
    "side_stream_read": """
        def run(x, parts, side, sink):
            acc = torch.zeros_like(x)
            for p in parts:
                with torch.cuda.stream(side):
                    sink.add_(acc)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """,
}


@pytest.mark.parametrize("name", sorted(STREAM_PROGRAMS))
def test_stream_uses_get_no_fix(name):
    source = "import torch\n" + textwrap.dedent(STREAM_PROGRAMS[name])
    diagnostics = check_source(source)
    assert diagnostics and all(d.fixes == [] for d in diagnostics)
    assert all("stream" in d.no_fix_reason or "asynchronously" in d.no_fix_reason for d in diagnostics)
    assert fix_source(source, unsafe_fixes=True).text == source


def test_unknown_context_manager_makes_the_fix_unsafe():
    source = "import torch\n" + textwrap.dedent("""
        def run(x, parts, timer):
            acc = torch.zeros_like(x)
            for p in parts:
                with timer("merge"):
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            return acc
        """)
    diagnostics = check_source(source)
    assert [[(f.applicability, f.form) for f in d.fixes] for d in diagnostics] == [[("unsafe", "swap")]]
    assert 'with timer("merge"):' in diagnostics[0].message


def test_known_context_managers_keep_the_fix_safe():
    source = "import torch\n" + textwrap.dedent("""
        def run(x, parts):
            acc = torch.zeros_like(x)
            for p in parts:
                with torch.autograd.profiler.record_function("merge"), torch.no_grad():
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            return acc
        """)
    diagnostics = check_source(source)
    assert [[(f.applicability, f.form) for f in d.fixes] for d in diagnostics] == [[("safe", "swap")]]


# --- 11. noqa: the suppressed allocation is not reported, the rest is, without a fix -------


def test_noqa_on_one_allocation_keeps_the_whole_group_unfixed():
    case = next(c for c in CASES if c.name == "noqa_on_one_allocation")
    diagnostics = check_source(case.source, config=case.config)
    assert [d.line for d in diagnostics] == [8]  # the `tmp_lse` allocation; `tmp`'s is suppressed
    assert "line 7" in diagnostics[0].message


# --- 12. peak memory: the lazy second buffer and the release after the loop ----------------

PEAK_PROGRAM = """
import torch

def chunk(outs, i):
    return outs[i] * 1.0  # a kernel's fresh output

def run(outs, lses):
    output = None
    for i in range(len(outs)):
        attn_output, attn_lse = chunk(outs, i), lses[i] * 1.0
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output_tmp, output_lse_tmp, output, output_lse, attn_output, attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    after = output * 2.0  # the function goes on working after the loop
    return after, output_lse
"""


def peak_and_calls(source, n):
    g = torch.Generator().manual_seed(n)
    outs = [torch.randn(64, 8, 16, generator=g) for _ in range(n)]
    lses = [torch.randn(64, 8, generator=g) for _ in range(n)]
    namespace = load(source)
    live, counter = LiveBytes(), CountAllocations()
    with live, counter:
        result = namespace["run"](outs, lses)
    return live.peak, counter.calls, result


def variants(n_values=(2, 3, 4, 8)):
    safe = fix_source(PEAK_PROGRAM).text
    eager = safe.replace("            if output_tmp is None:\n",
                         "            if output_tmp is None:\n"
                         "                output_tmp_alt = torch.empty_like(output)\n"
                         "                output_lse_tmp_alt = torch.empty_like(output_lse)\n")
    kept = safe.replace("    output_tmp = output_tmp_alt = output_lse_tmp = output_lse_tmp_alt = None\n", "")
    assert len({safe, eager, kept}) == 3
    return {"original": PEAK_PROGRAM, "safe": safe, "eager second buffer": eager, "not released": kept,
            "swap": fix_source(PEAK_PROGRAM, unsafe_fixes=True).text}


BUFFER = 64 * 8 * 16 * 4 + 64 * 8 * 4  # one output and one lse of PEAK_PROGRAM


def test_peak_memory_of_the_safe_fix():
    """Fresh chunk outputs, as a real kernel returns them. Measured (live
    storage bytes, CPU): the lazy second buffer keeps the peak of the first
    merges equal to the original's, where allocating both buffers at the first
    merge does not; releasing the scratch after the loop keeps the work after
    it at the original's peak. From the third chunk on, any reuse form holds
    its scratch buffer while the next chunk output is computed and the
    previous one is still bound: the peak is then higher by up to one buffer
    per accumulator (the swap's too). This test pins those numbers."""
    forms = variants()
    peaks = {n: {name: peak_and_calls(text, n)[0] for name, text in forms.items()} for n in (2, 3, 4, 8)}
    for n, p in peaks.items():
        assert p["eager second buffer"] > p["original"], "allocating both buffers at once costs a buffer"
        assert p["safe"] <= p["original"] + BUFFER and p["safe"] <= p["swap"]
    assert peaks[2]["safe"] == peaks[3]["safe"] == peaks[2]["original"] == peaks[3]["original"]
    assert peaks[3]["not released"] > peaks[3]["safe"], "the release after the loop matters"
    assert peaks[8]["safe"] > peaks[8]["original"], "if this holds no more, the rule page's memory note is stale"


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_safe_fix_results_and_allocations(n):
    fixed = fix_source(PEAK_PROGRAM).text
    _, calls, expected = peak_and_calls(PEAK_PROGRAM, n)
    _, new_calls, got = peak_and_calls(fixed, n)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert new_calls == min(calls, 4)  # two buffers per accumulator, the second at the second merge
