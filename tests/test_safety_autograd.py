"""Autograd and grad mode: hostile programs for ALC001's fix, run original against fixed.

The merge kernels here keep the contract of a known kernel: they keep no
reference, write their outputs in full and are not differentiated through
(they write under `torch.no_grad()`, as a CUDA kernel would). What breaks a
reuse is autograd around them:

- a first value that requires grad becomes, under the swap, a buffer the
  merges write into and the function may return (the result then requires
  grad, with a history the original result does not have);
- a read that saves the accumulator for backward (`acc % w`, `acc * w`) sees
  the buffer overwritten by a later merge: backward() raises, or silently
  computes wrong gradients with a kernel that bumps no version counter;
- an in-place write whose operand requires grad (`acc += bias`) puts the buffer
  in a graph that the kernel's overwrite leaves in place: silent wrong grads;
- a `requires_grad=True` allocation is a new autograd leaf per iteration;
- a no-grad context counts only where it decides grad mode: not across a
  `yield`/`await`, not around a grad-mode switch, not as a decorator of an
  `async def` or below another decorator.

Each case asserts what the tool offers and, where a fix is safe, that the fixed
program keeps everything observable; where the case says so, the withheld
rewrite is run too and must change the program (proof the test can fail).
"""
from __future__ import annotations

import ast
import operator
import textwrap

import pytest

torch = pytest.importorskip("torch")

from alloc_lint import check_source, fix_source  # noqa: E402
from alloc_lint.analysis import uses  # noqa: E402

from test_safety import Case, compare, fixed_text, forced, offered, params, FIX_FORMS  # noqa: E402

KERNEL = """
import asyncio
import threading

def merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged):
    with torch.no_grad():  # not differentiated through, as a CUDA kernel
        v_merged.copy_(v_a + v_b)
        s_merged.copy_(torch.maximum(s_a, s_b))

def merge_state_unversioned(v_a, s_a, v_b, s_b, v_merged, s_merged):
    # writes the memory and bumps no version counter, as a CUDA kernel does
    v_merged.data.copy_(v_a.data + v_b.data)
    s_merged.data.copy_(torch.maximum(s_a.data, s_b.data))
"""


def grad_args(n, seed):
    """x that requires grad (a parameter in training), and n chunks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g).requires_grad_()
    return x, [torch.randn(4, 3, generator=g) for _ in range(n)]


def case(name, body, offer, names=(), breaks=None, **kw):
    return Case(name, KERNEL + textwrap.dedent(body), offer, names, breaks, args=kw.pop("args", grad_args),
                sizes=kw.pop("sizes", (1, 2, 3, 4)), **kw)


def _loop(indent: str, extra: str = "", base: str = " " * 8) -> str:
    """The merge loop (a `merge_state` kernel, `output`/`lse` accumulators),
    `extra` lines appended to its body; indented for a case's body text."""
    body = ["for p in parts:", "    out_tmp = torch.empty_like(output)", "    lse_tmp = torch.empty_like(lse)",
            "    merge_state(output, lse, p, p.sum(-1), out_tmp, lse_tmp)", "    output = out_tmp",
            "    lse = lse_tmp"] + [f"    {line}" for line in extra.splitlines() if line]
    # The first line follows the closing quotes' indentation of the text before it.
    return "\n".join((base if i else "") + indent + line for i, line in enumerate(body)) + "\n"


CASES = [
    # --- c01: a computed first value may require grad -------------------------------------
    case("arithmetic_seed_of_parameter", """
        def run(x, parts):
            output = x * 2
            lse = torch.zeros(4)
        """ + _loop("    ") + """
            return output
        """, "pingpong", ("`output = x * 2`", "may require grad"), "unsafe"),
    case("clone_seed_of_parameter", """
        def run(x, parts):
            output = x.clone()
            lse = torch.zeros(4)
        """ + _loop("    ") + """
            return output
        """, "pingpong", ("`output = x.clone()`", "may require grad"), "unsafe"),
    case("seed_written_from_parameter_before_loop", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            output.copy_(x * 2)
            lse = torch.zeros(4)
        """ + _loop("    ") + """
            return output
        """, "pingpong", ("output.copy_(x * 2)", "autograd"), "unsafe"),
    case("arithmetic_seed_and_loop_under_no_grad", """
        def run(x, parts):
            with torch.no_grad():
                output = x * 2
                lse = torch.zeros(4)
        """ + _loop("        ") + """
            return output
        """, "swap"),
    # Made under no_grad, the seed does not require grad, whatever the loop's grad mode.
    case("arithmetic_seed_under_no_grad_loop_outside", """
        def run(x, parts):
            with torch.no_grad():
                output = x * 2
            lse = torch.zeros(4)
            loss = 0
        """ + _loop("    ", "loss = loss + (output + x).sum()") + """
            loss.backward()
            return output, loss, x.grad
        """, "swap"),
    case("constant_arithmetic_on_factory_seed", """
        def run(x, parts):
            output = torch.zeros(4, 3) + 1
            lse = torch.zeros(4)
        """ + _loop("    ") + """
            return output
        """, "swap"),
    # --- c02: `%` saves its operand ----------------------------------------------------------
    case("remainder_saves_accumulator", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            loss = 0
        """ + _loop("    ", "loss = loss + (output % x).sum()") + """
            loss.backward()
            return output, loss, x.grad
        """, "unsafe-swap", ("output % x", "autograd", "silently"), "unsafe"),
    case("remainder_by_constant", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            loss = 0
        """ + _loop("    ", "loss = loss + (output % 1.5).sum() * x.sum()") + """
            loss.backward()
            return output, loss, x.grad
        """, "swap"),
    # --- c03: in-place writes whose operand may require grad ---------------------------------
    case("inplace_add_of_parameter", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
        """ + _loop("    ", "output += x") + """
            output.sum().backward()
            return output, x.grad
        """, "unsafe-swap", ("output += x", "silently"), "unsafe"),
    case("inplace_method_of_parameter", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
        """ + _loop("    ", "output.add_(x)") + """
            output.sum().backward()
            return output, x.grad
        """, "unsafe-swap", ("output.add_(x)",), "unsafe"),
    case("setitem_of_parameter", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
        """ + _loop("    ", "output[0] = output[0] + x[0]") + """
            output.sum().backward()
            return output, x.grad
        """, "unsafe-swap", ("output[0] = output[0] + x[0]",), "unsafe"),
    case("inplace_constant_operands", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
        """ + _loop("    ", "output += 1\noutput[0] = 0\noutput.mul_(2)\noutput.exp_()") + """
            return output
        """, "swap"),
    # Found while attacking the out= exception: the write records grad, the merge does not raise.
    case("inplace_with_grad_before_out_merge_in_another_grad_mode", """
        def run(x, parts):
            acc = torch.zeros(4, 3)
            loss = 0
            with torch.no_grad():
                for p in parts:
                    with torch.enable_grad():
                        acc.add_(x)
                        loss = loss + acc.sum()
                    tmp = torch.empty_like(acc)
                    torch.add(acc, p, out=tmp)
                    acc = tmp
            loss.backward()
            return loss, x.grad
        """, "unsafe-swap", ("acc.add_(x)", "silently"), "unsafe"),
    case("inplace_with_grad_before_out_merge_raises_before_reuse", """
        def run(x, parts):
            acc = torch.zeros(4, 3)
            for p in parts:
                acc.add_(x)
                tmp = torch.empty_like(acc)
                torch.add(acc, p, out=tmp)
                acc = tmp
            return acc
        """, "swap"),
    # --- c06 / c07 / c08: where a no-grad context does not decide grad mode -------------------
    case("no_grad_decorator_on_async_def", """
        @torch.no_grad()
        async def combine(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
        """ + _loop("    ", "score = score + (output * x).sum()") + """
            return output, score
        def run(x, parts):
            output, score = asyncio.run(combine(x, parts))
            if torch.is_tensor(score):
                score.backward()
            return output, score, x.grad
        """, "unsafe-swap", ("async def", "autograd"), "unsafe"),
    case("no_grad_decorator_on_plain_def", """
        @torch.no_grad()
        def combine(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
        """ + _loop("    ", "score = score + (output * x).sum()") + """
            return output, score
        def run(x, parts):
            return combine(x, parts)
        """, "swap"),
    case("no_grad_decorator_above_a_thread", """
        def in_thread(fn):
            def call(*args):
                box = []
                worker = threading.Thread(target=lambda: box.append(fn(*args)))
                worker.start()
                worker.join()
                return box[0]
            return call
        @torch.no_grad()
        @in_thread
        def combine(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
        """ + _loop("    ", "score = score + (output * x).sum()") + """
            return output, score
        def run(x, parts):
            output, score = combine(x, parts)
            if torch.is_tensor(score):
                score.backward()
            return output, score, x.grad
        """, "unsafe-swap", ("innermost",), "unsafe"),
    # The innermost decorator is the context the body runs in (found while attacking
    # the decorator rule: the outermost one used to decide).
    case("enable_grad_decorator_below_no_grad", """
        @torch.no_grad()
        @torch.enable_grad()
        def combine(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
        """ + _loop("    ", "score = score + (output * x).sum()") + """
            return output, score
        def run(x, parts):
            output, score = combine(x, parts)
            if torch.is_tensor(score):
                score.backward()
            return output, score, x.grad
        """, "unsafe-swap", ("autograd may save `output`",), "unsafe"),
    case("set_grad_enabled_call_in_no_grad", """
        def run(x, parts, train=True):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
            with torch.no_grad():
        """ + _loop("        ", "torch.set_grad_enabled(train)\nscore = score + (output * x).sum()\n"
                    "torch.set_grad_enabled(False)") + """
            if torch.is_tensor(score):
                score.backward()
            return output, score, x.grad
        """, "unsafe-swap", ("torch.set_grad_enabled(train)",), "unsafe"),
    case("generator_resumed_with_grad", """
        def stream(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            with torch.no_grad():
        """ + _loop("        ", "yield (output * x).sum()") + """
        def run(x, parts):
            scores = []
            g = stream(x, parts)
            while True:
                with torch.enable_grad():
                    try:
                        scores.append(next(g))
                    except StopIteration:
                        break
            total = sum(s for s in scores if s.requires_grad)
            if torch.is_tensor(total):
                total.backward()
            return scores, x.grad
        """, "unsafe-swap", ("yield",), "unsafe"),
    case("coroutine_interleaved_with_enable_grad", """
        async def combine(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
            with torch.no_grad():
        """ + _loop("        ", "await asyncio.sleep(0)\nscore = score + (output * x).sum()") + """
            return output, score
        async def trainer(n):
            for _ in range(n):
                with torch.enable_grad():
                    await asyncio.sleep(0)
        async def both(x, parts):
            return await asyncio.gather(combine(x, parts), trainer(3 * len(parts) + 3))
        def run(x, parts):
            with torch.enable_grad():  # the interleaving leaves grad mode as the last `with` to exit found it
                (output, score), _ = asyncio.run(both(x, parts))
            if torch.is_tensor(score) and score.requires_grad:
                score.backward()
            return output, score, x.grad
        """, "unsafe-swap", ("await",), "unsafe"),
    # A suspension point in the loop: a buffer made in inference mode cannot be written outside it.
    case("generator_resumed_in_and_out_of_inference_mode", """
        def stream(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
        """ + _loop("    ", "yield output.sum().item()") + """
        def run(x, parts):
            got = []
            g = stream(x.detach(), parts)
            for i in range(len(parts)):
                with torch.inference_mode(i % 2 == 0):
                    got.append(next(g))
            return got
        """, "unsafe-swap", ("yield", "inference"), "unsafe", sizes=(3, 4)),
    # --- c18: each `requires_grad=True` buffer is a new leaf ---------------------------------
    case("requires_grad_allocation_in_training", """
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            total = 0
            for p in parts:
                out_tmp = torch.empty_like(output, requires_grad=True)
                lse_tmp = torch.empty_like(lse)
                merge_state(output, lse, p, p.sum(-1), out_tmp, lse_tmp)
                output = out_tmp
                lse = lse_tmp
                total = total + output.sum()
            total.backward()
            return output, output.grad
        """, "none", ("autograd leaf",)),
]


@pytest.mark.parametrize("case", params(CASES))
def test_offer_and_message(case):
    diagnostics, forms = offered(case)
    assert diagnostics and all(f == FIX_FORMS[case.offer] for f in forms), forms
    text = " ".join([d.message for d in diagnostics] + [f.message for d in diagnostics for f in d.fixes])
    for name in case.names:
        assert name in text, (name, text)


@pytest.mark.parametrize("case", params([c for c in CASES if any(a == "safe" for a, _ in FIX_FORMS[c.offer])]))
def test_safe_fix_keeps_everything_observable(case):
    result = fixed_text(case, unsafe=False)
    assert result.fixed and not result.remaining
    assert compare(case, case.source, result.text) == []


@pytest.mark.parametrize("case", params([c for c in CASES if c.breaks]))
def test_withheld_form_really_breaks_the_program(case):
    rewritten = fixed_text(case, unsafe=True).text if case.breaks == "unsafe" else forced(case, case.breaks)
    assert rewritten != case.source
    assert compare(case, case.source, rewritten), "the withheld rewrite did not change the program"


def test_requires_grad_leaves_reused_change_gradients():
    """c18's proof: the ping-pong the tool withholds, written by hand, changes
    the gradient of the returned leaf (one leaf collects several iterations')."""
    source = CASES[-1].source
    rewritten = source.replace(
        "    for p in parts:\n        out_tmp = torch.empty_like(output, requires_grad=True)\n"
        "        lse_tmp = torch.empty_like(lse)\n",
        "    out_tmp = out_tmp_alt = lse_tmp = lse_tmp_alt = None\n    for p in parts:\n"
        "        if out_tmp is None:\n            out_tmp = torch.empty_like(output, requires_grad=True)\n"
        "            lse_tmp = torch.empty_like(lse)\n").replace(
        "        output = out_tmp\n        lse = lse_tmp\n        total",
        "        output, out_tmp, out_tmp_alt = out_tmp, out_tmp_alt, out_tmp\n"
        "        lse, lse_tmp, lse_tmp_alt = lse_tmp, lse_tmp_alt, lse_tmp\n"
        "        if out_tmp is None:\n            out_tmp = torch.empty_like(output, requires_grad=True)\n"
        "            lse_tmp = torch.empty_like(lse)\n        total")
    assert rewritten != source
    ast.parse(rewritten)
    differences = [d for d in compare(CASES[-1], source, rewritten) if "allocations" not in str(d[2])]
    assert differences and all(n >= 3 for n, *_ in differences), differences


def test_requires_grad_allocation_under_no_grad_keeps_ping_pong():
    """Under a no-grad context that decides grad mode nothing is recorded, so
    reusing the leaves is invisible (ping-pong, which returns only allocated
    buffers); the swap could return the first value, not such a leaf."""
    source = "import torch\n" + KERNEL + textwrap.dedent("""
        @torch.no_grad()
        def run(x, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            for p in parts:
                out_tmp = torch.empty_like(output, requires_grad=True)
                lse_tmp = torch.empty_like(lse)
                merge_state(output, lse, p, p.sum(-1), out_tmp, lse_tmp)
                output = out_tmp
                lse = lse_tmp
            return output
        """)
    forms = [[(f.applicability, f.form) for f in d.fixes] for d in check_source(source)]
    assert forms and all(f == FIX_FORMS["pingpong"] for f in forms), forms
    c = Case("leaf_under_no_grad", source[len("import torch\n"):], "pingpong", args=grad_args)
    assert compare(c, c.source, fix_source(c.source, config=c.config).text) == []


# --- the lexical no-grad rule, spelling by spelling (static) ------------------------------------

BREAKERS = {
    "set_grad_enabled_call": "torch.set_grad_enabled(True)",
    "autograd_set_grad_enabled": "torch.autograd.set_grad_enabled(True)",
    "c_set_grad_enabled": "torch._C._set_grad_enabled(True)",
    "grad_mode_module": "torch.autograd.grad_mode.set_grad_enabled(True)",
    "enter_by_hand": "torch.enable_grad().__enter__()",
    "switch_by_alias": "switch = torch.set_grad_enabled\nswitch(True)",
    "exit_stack": "stack.enter_context(torch.enable_grad())",
    "yield": "yield",
    "getattr": 'getattr(torch, "set_grad_enabled")(True)',
}


def no_grad_program(extra: str, items: str = "torch.no_grad()") -> str:
    body = " " * 8 + _loop("", extra + "\nscore = score + (output * x).sum()")
    return ("import torch, contextlib\n" + KERNEL +
            "def run(x, parts, stack):\n    output = torch.zeros(4, 3)\n    lse = torch.zeros(4)\n"
            f"    score = 0\n    with {items}:\n{body}    return output, score\n")


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_grad_mode_switch_in_no_grad_region_withholds_the_safe_fix(name):
    source = no_grad_program(BREAKERS[name])
    diagnostics = check_source(source)
    assert diagnostics and all(d.fix_for(False) is None for d in diagnostics)
    assert all("autograd may save `output`" in d.message for d in diagnostics), diagnostics[0].message


@pytest.mark.parametrize("items", ["torch.no_grad()", "torch.inference_mode()", "torch.no_grad(), torch.autocast('cpu')",
                                   "torch.set_grad_enabled(False)"])
def test_no_grad_region_that_decides_keeps_the_safe_fix(items):
    diagnostics = check_source(no_grad_program("", items))
    assert diagnostics and all(d.fix_for(False) is not None for d in diagnostics)


def test_unknown_context_entered_inside_no_grad_withholds_the_safe_fix():
    source = no_grad_program("", "torch.no_grad(), stack")
    diagnostics = check_source(source)
    assert diagnostics and all(d.fix_for(False) is None for d in diagnostics)
    assert "not known to leave grad mode alone" in diagnostics[0].message


# --- the operator list, audited against autograd ------------------------------------------------

PYTHON_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
                    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.BitAnd: operator.and_,
                    ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.LShift: operator.lshift,
                    ast.RShift: operator.rshift}


def saved_storages(result):
    """Storage addresses of every tensor saved in `result`'s autograd graph."""
    found, todo, seen = set(), [result.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for attr in dir(node):
            if attr.startswith("_saved_"):
                values = getattr(node, attr)
                for value in values if isinstance(values, (tuple, list)) else [values]:
                    if isinstance(value, torch.Tensor):
                        found.add(value.untyped_storage().data_ptr())
        todo += [f for f, _ in node.next_functions]
    return found


def audit(op, constant=None):
    """(does `acc OP w` or `w OP acc` save acc's buffer for backward, with `w`
    a tensor that requires grad (or the numeric `constant`)?) for both sides;
    an operator torch refuses for such operands saves nothing."""
    saves = []
    for left in (True, False):
        acc = torch.rand(3, 3) + 1
        other = constant if constant is not None else (torch.rand(3, 3) + 1).requires_grad_()
        try:
            result = op(acc, other) if left else op(other, acc)
        except (RuntimeError, NotImplementedError, TypeError):
            saves.append(False)
            continue
        saves.append(result.grad_fn is not None and acc.untyped_storage().data_ptr() in saved_storages(result))
    return any(saves)


def test_operator_autograd_audit():
    """What uses.py calls never saving (`_NEVER_SAVES`), or saving nothing with
    a numeric constant as the other operand (`_SAVES_UNLESS_CONSTANT`), holds
    in this torch; and the audit can fail: `%`, `*` and `/` with a tensor
    operand that requires grad do save the accumulator."""
    torch.set_grad_enabled(True)
    for op_type in uses._NEVER_SAVES:
        assert not audit(PYTHON_OPERATORS[op_type]), op_type.__name__
    for op_type in uses._SAVES_UNLESS_CONSTANT:
        assert not audit(PYTHON_OPERATORS[op_type], constant=1.5), op_type.__name__
        assert audit(PYTHON_OPERATORS[op_type]), op_type.__name__


# --- messages that state the real hazard (the unsafe fixes) -------------------------------------

def _messages(source):
    diagnostics = check_source("import torch\n" + KERNEL + textwrap.dedent(source))
    return " ".join([d.message for d in diagnostics] + [f.message for d in diagnostics for f in d.fixes])


def test_augmented_assignment_message_names_autograd():
    text = _messages("""
        def run(w, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            y = w * 1
        """ + _loop("    ", "y *= output") + """
            return output, y
        """)
    assert "`y *= output`" in text and "autograd" in text


def test_opaque_first_value_message_says_it_must_not_require_grad():
    text = _messages("""
        def run(q, w, parts):
            output = None
            lse = torch.zeros(4)
            for p in parts:
                chunk = q @ w
                if output is None:
                    output = chunk
                    continue
                out_tmp = torch.empty_like(output)
                lse_tmp = torch.empty_like(lse)
                merge_state(output, lse, chunk, p.sum(-1), out_tmp, lse_tmp)
                output = out_tmp
                lse = lse_tmp
            return output
        """)
    assert "does not require grad" in text


def test_saved_read_message_says_gradients_may_be_silently_wrong():
    text = _messages("""
        def run(w, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            score = 0
        """ + _loop("    ", "score = score + (output * w).sum()") + """
            return output, score
        """)
    assert "backward() raises, or silently computes wrong gradients" in text


def test_tensor_method_of_another_tensor_message_names_autograd():
    text = _messages("""
        def run(w, parts):
            output = torch.zeros(4, 3)
            lse = torch.zeros(4)
            y = w * 1
        """ + _loop("    ", "y.mul_(output)") + """
            return output, y
        """)
    assert "`y.mul_(output)`" in text and "autograd" in text
