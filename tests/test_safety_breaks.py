"""Safe fixes that once changed a program, and the claims of the rule page they
broke (out= results, rebound module names, initialising allocators, templates
held elsewhere, quantized templates, frame access, TorchScript, torch.fx,
isinstance, noqa, groups, module-level loops, output keywords).

Each program is run from a real file (TorchScript reads the source), original
and rewritten on the same fresh inputs, and everything it returns or keeps is
compared bitwise; or the test asserts that the safe fix is withheld and that
the message names what blocks it. Where a rewrite is withheld, the withheld
rewrite (the unsafe fix) is run too where it can run, and must change the
program: proof that the comparison can fail.
"""
from __future__ import annotations

import importlib.util
import itertools
import re
import textwrap
import warnings

import pytest

torch = pytest.importorskip("torch")

from alloc_lint import Config, check_source, fix_source  # noqa: E402
from alloc_lint.config import DEFAULT_ALLOCATORS  # noqa: E402

from runtime import flatten, same  # noqa: E402

_counter = itertools.count()

MERGE = '''
import torch
def merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged):
    with torch.no_grad():  # keeps no reference, writes its outputs in full
        v_merged.copy_(v_a + v_b)
        s_merged.copy_(torch.maximum(s_a, s_b))
'''


def program(body: str) -> str:
    return MERGE + textwrap.dedent(body)


def load_file(source: str, tmp_path):
    path = tmp_path / f"program_{next(_counter)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def observe(source, drive, tmp_path):
    """What the program returns and keeps, or the exception it raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return drive(load_file(source, tmp_path)), None
        except Exception as exc:  # the rewritten program must raise the same
            return None, f"{type(exc).__name__}: {exc}"


def same_behaviour(original, rewritten, drive, tmp_path) -> bool:
    a, b = observe(original, drive, tmp_path), observe(rewritten, drive, tmp_path)
    if a[1] or b[1]:
        return a[1] == b[1]
    return same(flatten(a[0]), flatten(b[0])) and all(
        x.stride() == y.stride() for x, y in zip(flatten(a[0]), flatten(b[0])) if isinstance(x, torch.Tensor))


def unguarded(text: str) -> str:
    """The fix without its guard: `if T is None or <metadata differs>:` -> `if T is None:`."""
    text = re.sub(r"if \(\n\s+(\w+) is None\n.*?\):", r"if \1 is None:", text, flags=re.DOTALL)
    return re.sub(r"if (\w+) is None or [^\n]*:", r"if \1 is None:", text)


def forms(source, config=None):
    return [[(f.applicability, f.form) for f in d.fixes] for d in check_source(source, config=config)]


def messages(source, config=None) -> str:
    return " ".join(d.message for d in check_source(source, config=config))


def chunks(n=4):
    return [(torch.full((3,), 1.0 + i), torch.zeros(3)) for i in range(n)]


# --- c04: a torch out= call returns its out tensor ------------------------------------------

OUT_RESULT_KEPT = program('''
def combine(chunks, history):
    output = torch.zeros(3)
    lse = torch.zeros(3)
    for o, s in chunks:
        out_tmp = torch.empty_like(output)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
        history.append(torch.clamp(output, min=0, out=output))
    return output
''')


def drive_history(ns):
    history = []
    return ns["combine"](chunks(), history), history


@pytest.mark.parametrize("spelling", ["torch.clamp(output, min=0, out=output)", "torch.add(output, 0, out=output)",
                                      "torch.add(output, 0, out=output[:])"])
def test_out_call_result_kept_in_the_loop_is_an_escape(spelling):
    source = OUT_RESULT_KEPT.replace("torch.clamp(output, min=0, out=output)", spelling)
    assert check_source(source) == []  # the buffer is kept: the allocation is needed
    assert fix_source(source, unsafe_fixes=True).text == source


def test_out_call_result_kept_before_the_loop_blocks_the_swap(tmp_path):
    source = OUT_RESULT_KEPT.replace("    lse = torch.zeros(3)\n    for",
                                     "    lse = torch.zeros(3)\n    history.append(torch.mul(output, 1, out=output))\n"
                                     "    for").replace("        history.append(torch.clamp(output, min=0, out=output))\n",
                                                       "")
    assert forms(source) == [[("unsafe", "swap"), ("safe", "pingpong")]] * 2
    assert "torch.mul(output, 1, out=output)" in " ".join(f.message for d in check_source(source) for f in d.fixes)
    fixed = fix_source(source).text
    assert fixed != source and same_behaviour(source, fixed, drive_history, tmp_path)
    swapped = fix_source(source, unsafe_fixes=True).text
    assert not same_behaviour(source, swapped, drive_history, tmp_path)  # the snapshot is overwritten


def test_out_call_result_used_as_a_value_keeps_the_resize():
    """`torch.add(acc, 0, out=acc).sum()`: the result is followed (a harmless
    read here), and the out= write may still resize `acc`: guarded."""
    source = program('''
    def run(parts):
        acc = torch.zeros(3)
        lse = torch.zeros(3)
        for p in parts:
            n = torch.add(acc, 0, out=acc).sum()
            tmp = torch.empty_like(acc)
            tmp_lse = torch.empty_like(lse)
            merge_state(acc, lse, p, p, tmp, tmp_lse)
            acc = tmp
            lse = tmp_lse
        return acc
    ''')
    assert forms(source) == [[("safe", "swap")]] * 2
    assert "may resize `acc`" in " ".join(f.message for d in check_source(source) for f in d.fixes)


# --- c10: a module name the resolver trusts, rebound ----------------------------------------

LOOP = '''
def combine(chunks):
    output = torch.zeros(3)
    lse = torch.zeros(3)
    for o, s in chunks:
        out_tmp = torch.empty_like(output)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
        y = torch.exp(output)
    return output, lse
'''

TRACING_SHIM = '''
SEEN = []
class _TracingTorch:
    def __init__(self, real):
        self._real = real
    def __getattr__(self, name):
        return getattr(self._real, name)
    def exp(self, x):
        SEEN.append(x)  # a tracer keeps the op's input
        return self._real.exp(x)
'''


def test_module_torch_rebound_through_global_gets_no_safe_fix(tmp_path):
    source = program(LOOP + TRACING_SHIM + "def install():\n    global torch\n    torch = _TracingTorch(torch)\n")
    assert fix_source(source).text == source

    def drive(ns):
        ns["install"]()
        return ns["combine"](chunks()), list(ns["SEEN"])

    # What resolving `torch` anyway would have done: the kept inputs are overwritten.
    plain = program(LOOP + TRACING_SHIM + "def install():\n    pass\n")
    rewritten = fix_source(plain).text.replace("def install():\n    pass\n",
                                               "def install():\n    global torch\n    torch = _TracingTorch(torch)\n")
    assert rewritten != source and not same_behaviour(source, rewritten, drive, tmp_path)


@pytest.mark.parametrize("rebinding", [
    "def install():\n    global torch\n    torch = None\n",
    "def install():\n    globals()['torch'] = None\n",
    "globals().update(torch=None)\n",
    "vars().update(torch=None)\n",
    "exec('torch = None')\n",
    "def install():\n    eval('(torch := None)')\n",
    "from tracing_shims import *\n",
    "match None:\n    case torch:\n        pass\n",
    "torch.exp = print\n",
    "torch.Tensor.add_ = print\n",
    "for torch in []:\n    pass\n",
])
def test_rebound_module_names_are_not_trusted(rebinding):
    source = program(LOOP) + rebinding
    assert not any(("safe", "swap") in f for f in forms(source)), forms(source)


@pytest.mark.parametrize("harmless", ["KEYS = globals()['torch']\n", "exec(SOURCE, {})\n", "eval('1 + 2')\n",
                                      "exec('print(1)')\n", "def show(a):\n    print('{a}'.format(**vars()))\n"])
def test_harmless_dynamic_code_keeps_names_trusted(harmless):
    source = program(LOOP) + harmless
    assert forms(source) == [[("safe", "swap")]] * 2


def test_star_import_before_the_import_keeps_names_trusted():
    source = "from tracing_shims import *\ntry:\n    from more_shims import *\nexcept ImportError:\n    pass\n" + \
        program(LOOP)
    assert forms(source) == [[("safe", "swap")]] * 2
    assert forms(source + "try:\n    from shims import *\nexcept ImportError:\n    pass\n") == []


@pytest.mark.parametrize("rebinding", ["def install():\n    global len\n    len = print\n",
                                       "import builtins\nbuiltins.len = print\n",
                                       "import builtins\nsetattr(builtins, 'len', print)\n",
                                       "__builtins__['len'] = print\n"])
def test_rebound_builtin_is_not_trusted(rebinding):
    source = program(LOOP.replace("y = torch.exp(output)", "y = len(output)"))
    assert forms(source) == [[("safe", "swap")]] * 2
    assert not any(("safe", "swap") in f for f in forms(source + rebinding))


# --- c11: an initialising allocator and a kernel that accumulates into its output -------------

ACCUMULATING = '''
import torch
def merge_states(v_merged, s_merged, *parts):
    vs, ss = parts[0::2], parts[1::2]
    with torch.no_grad():
        m = torch.stack(ss).amax(0)
        ws = [torch.exp(s - m) for s in ss]
        tot = sum(ws)
        for v, w in zip(vs, ws):
            v_merged += v * (w / tot)  # reads the zeros it was given
        s_merged += m + torch.log(tot)

def combine(chunks):
    output, lse = chunks[0]
    for o, s in chunks[1:]:
        out_tmp = torch.zeros_like(output)
        lse_tmp = torch.zeros_like(lse)
        merge_states(out_tmp, lse_tmp, output, lse, o, s)
        output = out_tmp
        lse = lse_tmp
    return output, lse
'''


def test_initialisation_is_kept_for_a_trusted_kernel(tmp_path):
    config = Config(allocators=DEFAULT_ALLOCATORS + ("torch.zeros_like",))
    fixed = fix_source(ACCUMULATING, config=config).text
    assert "out_tmp.zero_()" in fixed and "lse_tmp.zero_()" in fixed

    def drive(ns):
        return ns["combine"](chunks(5))

    assert same_behaviour(ACCUMULATING, fixed, drive, tmp_path)
    skipped = fixed.replace("out_tmp.zero_()", "pass").replace("lse_tmp.zero_()", "pass")
    assert not same_behaviour(ACCUMULATING, skipped, drive, tmp_path)


# --- c12b: a template someone else holds, changed through another reference ----------------

WORKSPACE = program('''
class Workspace:
    def __init__(self, n):
        self.buf = torch.zeros(n)

def combine(ws, chunks):
    x = ws.buf
    output = torch.zeros(3)
    lse = torch.zeros(3)
    for o, s in chunks:
        out_tmp = torch.empty_like(x)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
        ws.buf.data = ws.buf.data.double()  # the workspace switches to fp64
    return output, lse
''')


def test_template_held_elsewhere_is_guarded(tmp_path):
    fixed = fix_source(WORKSPACE).text
    assert "out_tmp.dtype != x.dtype" in fixed
    assert "may be reachable from outside the function" in " ".join(
        f.message for d in check_source(WORKSPACE) for f in d.fixes)

    def drive(ns):
        parts = [(torch.full((3,), 0.1 * (i + 1), dtype=torch.float64), torch.zeros(3)) for i in range(3)]
        return ns["combine"](ns["Workspace"](3), parts)

    assert same_behaviour(WORKSPACE, fixed, drive, tmp_path)
    assert unguarded(fixed) != fixed and not same_behaviour(WORKSPACE, unguarded(fixed), drive, tmp_path)


def test_longhand_buffer_does_not_fit_a_strided_seed(tmp_path):
    """`x.new_empty(x.shape)` is contiguous whatever x's strides; the guard
    compares strides with x's, so a swap would keep reusing a seed
    `torch.zeros_like(x)` with x's strides where the original merges into
    contiguous buffers."""
    source = "import torch\n" + textwrap.dedent('''
    def run(x, parts):
        acc = torch.zeros_like(x)
        for part in parts:
            acc_tmp = x.new_empty(x.shape)
            torch.add(acc, part, out=acc_tmp)
            acc = acc_tmp
        return acc
    ''')
    assert forms(source) == [[("unsafe", "swap"), ("safe", "pingpong")]]

    def drive(ns):
        return ns["run"](torch.randn(3, 4).t(), [torch.ones(4, 3)] * 4)

    assert same_behaviour(source, fix_source(source).text, drive, tmp_path)
    assert not same_behaviour(source, fix_source(source, unsafe_fixes=True).text, drive, tmp_path)


# --- c13: quantized templates --------------------------------------------------------------

QUANTIZED = '''
import torch
def merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged):
    with torch.no_grad():
        v_merged.copy_(v_a.dequantize() + v_b.dequantize())
        s_merged.copy_(torch.maximum(s_a, s_b))

def combine(chunks):
    output = None
    scale = None
    for o, s in chunks:
        if output is None or o.q_scale() != scale:
            output = o.clone()  # restart: a new segment at a new scale
            lse = s.clone()
            scale = o.q_scale()
            continue
        out_tmp = torch.empty_like(output)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
    return output.int_repr(), output.q_scale()
'''


def test_quantized_template_is_never_reused(tmp_path):
    fixed = fix_source(QUANTIZED).text
    assert "output.is_quantized" in fixed

    def drive(ns):
        def q(v, scale):
            return torch.quantize_per_tensor(torch.full((3,), v), scale, 0, torch.quint8)
        return ns["combine"]([(q(1.0, 0.5), torch.zeros(3))] * 3 + [(q(0.3, 0.1), torch.zeros(3))] * 3)

    assert same_behaviour(QUANTIZED, fixed, drive, tmp_path)
    without = re.sub(r"\s*or output\.is_quantized", "", fixed)
    assert without != fixed and not same_behaviour(QUANTIZED, without, drive, tmp_path)


# --- c15: frame access the function's text shows ------------------------------------------

FRAMES = program('''
import sys as _sys
SNAPSHOTS = []
def combine(chunks, debug=False):
    output = torch.zeros(3)
    lse = torch.zeros(3)
    for o, s in chunks:
        out_tmp = torch.empty_like(output)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
        if debug:
            SNAPSHOTS.append(dict(FRAME.f_locals))
    return output, lse
''')


@pytest.mark.parametrize("frame", ["(lambda: _sys._getframe(1))()", 'getattr(_sys, "_getframe")()',
                                   '__import__("sys")._getframe()', 'importlib.import_module("sys")._getframe()',
                                   "_sys.modules['sys']._getframe()", "inspect.currentframe()"])
def test_frame_access_blocks_the_safe_fix(frame, tmp_path):
    source = FRAMES.replace("FRAME", frame).replace("import sys as _sys", "import sys as _sys, importlib, inspect")
    assert fix_source(source).text == source
    assert "can reach every variable of the function" in messages(source)

    def drive(ns):
        out = ns["combine"](chunks(), debug=True)
        return out, [d["output"] for d in ns["SNAPSHOTS"]]

    assert not same_behaviour(source, fix_source(source, unsafe_fixes=True).text, drive, tmp_path)


@pytest.mark.parametrize("imported", ["import sys", "from sys import _getframe", "from inspect import currentframe"])
def test_frame_access_in_a_nested_function_blocks_the_safe_fix(imported):
    call = {"import sys": "sys._getframe(1)", "from sys import _getframe": "_getframe(1)",
            "from inspect import currentframe": "currentframe().f_back"}[imported]
    source = FRAMES.replace("SNAPSHOTS.append(dict(FRAME.f_locals))",
                            f"def peek():\n                {imported}\n                return {call}\n"
                            "            SNAPSHOTS.append(dict(peek().f_locals))")
    assert fix_source(source).text == source


# --- c16 / c17: TorchScript and torch.fx ---------------------------------------------------

RUNNING_SUM = '''
import torch
from typing import List

DECORATOR
def running_sum(chunks: List[torch.Tensor]) -> torch.Tensor:
    acc = torch.zeros(3)
    for c in chunks:
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
    return acc
'''


@pytest.mark.parametrize("decorator, after", [("@torch.jit.script", ""), ("", "scripted = torch.jit.script(running_sum)\n"),
                                              ("", "@torch.jit.script\ndef caller(c: List[torch.Tensor]) -> torch.Tensor:"
                                                   "\n    return running_sum(c)\n")])
def test_no_fix_where_torchscript_compiles_the_function(decorator, after, tmp_path):
    source = RUNNING_SUM.replace("DECORATOR", decorator) + after
    assert forms(source) == [[]] and "TorchScript" in messages(source)
    assert fix_source(source, unsafe_fixes=True).text == source
    # What the rewrite would have done: the module no longer compiles.
    plain = RUNNING_SUM.replace("DECORATOR", "")
    broken = fix_source(plain).text + after
    if decorator:
        broken = broken.replace("def running_sum", decorator + "\ndef running_sum")
    assert observe(broken, lambda ns: None, tmp_path)[1] is not None
    assert observe(source, lambda ns: None, tmp_path)[1] is None


def test_functions_torchscript_leaves_to_python_keep_their_fix():
    source = RUNNING_SUM.replace("DECORATOR", "@torch.jit.ignore")
    assert forms(source) == [[("safe", "swap")]]


FX_MODULE = '''
import torch
import torch.fx

class RunningSum(torch.nn.Module):
    def forward(self, x):
        with torch.no_grad():  # `x * 0` does not require grad: the swap's seed is owned
            acc = x * 0
            for i in range(3):
                tmp = torch.empty_like(acc)
                torch.add(acc, x, out=tmp)
                acc = tmp
        return acc
'''


def test_guard_in_a_torch_module_is_unsafe(tmp_path):
    assert forms(FX_MODULE) == [[("unsafe", "swap")]]
    assert "torch.fx.symbolic_trace" in messages(FX_MODULE)
    assert fix_source(FX_MODULE).text == FX_MODULE

    def drive(ns):
        return torch.fx.symbolic_trace(ns["RunningSum"]())(torch.ones(3))

    assert observe(FX_MODULE, drive, tmp_path)[1] is None
    assert "TraceError" in observe(fix_source(FX_MODULE, unsafe_fixes=True).text, drive, tmp_path)[1]


# --- c19: isinstance with a user class --------------------------------------------------------

INSTANCECHECK = program('''
class _Tracked(type):
    seen = []
    def __instancecheck__(cls, obj):
        cls.seen.append(obj)  # a type registry keeps what it is asked about
        return torch.is_tensor(obj)

class TensorLike(metaclass=_Tracked):
    pass

def combine(chunks):
    output = torch.zeros(3)
    lse = torch.zeros(3)
    for o, s in chunks:
        out_tmp = torch.empty_like(output)
        lse_tmp = torch.empty_like(lse)
        merge_state(output, lse, o, s, out_tmp, lse_tmp)
        output = out_tmp
        lse = lse_tmp
        assert isinstance(output, CLASS)
    return output, lse
''')


def test_isinstance_with_a_user_class_blocks_the_safe_fix(tmp_path):
    source = INSTANCECHECK.replace("CLASS", "TensorLike")
    assert fix_source(source).text == source and "__instancecheck__" in messages(source)

    def drive(ns):
        return ns["combine"](chunks()), list(ns["_Tracked"].seen)

    assert not same_behaviour(source, fix_source(source, unsafe_fixes=True).text, drive, tmp_path)


@pytest.mark.parametrize("cls", ["torch.Tensor", "(torch.Tensor, int)", "object"])
def test_isinstance_with_torch_or_builtin_classes_stays_harmless(cls):
    assert forms(INSTANCECHECK.replace("CLASS", cls)) == [[("safe", "swap")]] * 2


# --- page claims: noqa, groups, module-level loops, output keywords -----------------------------

GROUP = program('''
def run(x, parts):
    acc = torch.zeros_like(x)
    acc_lse = torch.zeros(4)
    for p in parts:
        tmp = torch.empty_like(
            acc
        )  # noqa: ALC001
        tmp_lse = torch.empty_like(acc_lse)
        merge_state(acc, acc_lse, p, p, tmp, tmp_lse)
        acc = tmp
        acc_lse = tmp_lse
    return acc
''')


def test_noqa_on_the_last_line_of_an_allocation_suppresses_it_and_its_group():
    diagnostics = check_source(GROUP)
    assert [d.line for d in diagnostics] == [GROUP.splitlines().index("        tmp_lse = torch.empty_like(acc_lse)") + 1]
    assert diagnostics[0].fixes == [] and "# noqa" in diagnostics[0].no_fix_reason
    assert fix_source(GROUP, unsafe_fixes=True).text == GROUP


def test_a_group_is_not_fixed_in_part():
    source = program('''
    def run(first, chunks):
        output = first
        lse = torch.zeros(3)
        for o, s in chunks:
            out_tmp = torch.empty_like(output)
            lse_tmp = torch.empty_like(lse)
            merge_state(output, lse, o, s, out_tmp, lse_tmp)
            for _ in range(1):
                output = out_tmp
            lse = lse_tmp
        return output, lse
    ''')
    assert check_source(source) == []


def test_module_level_loop_gets_only_unsafe_fixes():
    source = program('''
    acc = torch.zeros(3)
    for p in [torch.ones(3)] * 3:
        tmp = torch.empty_like(acc)
        torch.add(acc, p, out=tmp)
        acc = tmp
    ''')
    assert forms(source) == [[("unsafe", "swap")]] and "module level" in messages(source)
    assert fix_source(source).text == source


@pytest.mark.parametrize("keyword, output", [("v_merged", True), ("output_prefix", False), ("not_output", False),
                                             ("output_scratch", False), ("unused_output", False),
                                             ("suffix_output", False)])
def test_output_keywords_of_a_merge_kernel(keyword, output):
    source = program(f'''
    def run(x, parts):
        acc = torch.zeros_like(x)
        lse = torch.zeros_like(x)
        for p in parts:
            tmp = torch.empty_like(acc)
            tmp_lse = torch.empty_like(lse)
            merge_state(acc, lse, p, p, s_merged=tmp_lse, {keyword}=tmp)
            acc = tmp
            lse = tmp_lse
        return acc
    ''')
    offered = forms(source)
    assert offered and all(("safe", "swap") in f for f in offered) == output, offered


def test_guard_in_a_class_traced_in_the_module_is_unsafe():
    source = FX_MODULE.replace("class RunningSum(torch.nn.Module):", "class RunningSum(Base):") \
        .replace("import torch.fx\n", "import torch.fx\nfrom mylib.layers import Base\n")
    assert forms(source) == [[("safe", "swap")]]  # an indirect torch.nn subclass: the page's axiom
    traced = source + "GRAPH = torch.fx.symbolic_trace(RunningSum())\n"
    assert forms(traced) == [[("unsafe", "swap")]]
