"""ALC002's fix against the loops written to break it (a red team given only the
rule page; /work/redteam2/FINDINGS.md at the time). Each program here either gets
no fix (the message says why), or the unsafe fix whose message names the
assumption that fails there and, forced, really changes the program; or the fix
now keeps the program, run on the same inputs (original and rewritten).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from alloc_lint import check_source  # noqa: E402

from test_alc002_fix import ONLY, _equal, assert_same_program, fix_kind, fixed, load, run  # noqa: E402


def _only_diagnostic(source: str):
    [d] = check_source(source, "program.py", config=ONLY)
    return d


def _no_fix(source: str, words: str) -> None:
    d = _only_diagnostic(source)
    assert not d.fixes and words in d.no_fix_reason, (d.fixes, d.no_fix_reason)
    assert fixed(source, unsafe=True) == source


def _unsafe_naming(source: str, words: str) -> str:
    d = _only_diagnostic(source)
    assert d.fixes and d.fixes[0].applicability == "unsafe" and words in d.fixes[0].message, d.fixes
    assert fixed(source, unsafe=False) == source
    return fixed(source, unsafe=True)


# --- the loop's `else:` jumping over the concatenation placed after the loop ----------

ELSE_JUMPS = {
    "for-else-break": '''import torch
def run(n):
    while True:
        acc = torch.zeros(0, device="cpu")
        for i in range(n):
            acc = torch.cat([acc, torch.ones(1, device="cpu")])
        else:
            break
    return acc
''',
    "while-else-continue": '''import torch
def run(n):
    out = []
    for k in range(2):
        acc = torch.zeros(0, device="cpu")
        i = 0
        while i < n:
            acc = torch.cat([acc, torch.ones(1, device="cpu")])
            i += 1
        else:
            out.append(k)
            continue
    return acc
''',
}


@pytest.mark.parametrize("name", sorted(ELSE_JUMPS))
def test_a_break_or_continue_in_the_loops_else_withholds_the_fix(name):
    _no_fix(ELSE_JUMPS[name], "`else:` has a")


def test_an_else_that_only_returns_keeps_the_fix():
    source = ELSE_JUMPS["for-else-break"].replace("            break\n", "            pass\n").replace(
        "    while True:\n", "    if True:\n")
    assert fix_kind(source) == {"safe"}
    for n in (0, 1, 3):
        assert_same_program(source, fixed(source, unsafe=False), (n,))


# --- errors moved after the loop: only unsafe now -------------------------------------

MISFIT_LOOPS = {  # (program, arguments, what the caller sees differ when the fix is forced)
    "global": ('''import torch
counter = 0
def run():
    global counter
    acc = torch.zeros(0, 3)
    for i in range(3):
        counter += 1
        acc = torch.cat([acc, torch.zeros(2)])
    return acc
def probe():
    try:
        run()
    except RuntimeError:
        pass
    return counter
''', ()),
    "nonlocal": ('''import torch
def probe():
    counter = 0
    def run():
        nonlocal counter
        acc = torch.zeros(0, 3)
        for i in range(3):
            counter += 1
            acc = torch.cat([acc, torch.zeros(2)])
        return acc
    try:
        run()
    except RuntimeError:
        pass
    return counter
''', ()),
    "cell": ('''import torch
def run(hooks):
    n = 0
    hooks.append(lambda: n)
    acc = torch.zeros(0, 3)
    for i in range(3):
        n += 1
        acc = torch.cat([acc, torch.zeros(2)])
    return acc
def probe():
    hooks = []
    try:
        run(hooks)
    except RuntimeError:
        pass
    return hooks[0]()
''', ()),
    "bare-raise": ('''import torch
def run():
    acc = torch.zeros(0, 3)
    for i in range(3):
        if i == 2:
            raise KeyError
        acc = torch.cat([acc, torch.zeros(2)])
    return acc
def probe():
    try:
        run()
    except Exception as exc:
        return type(exc).__name__
''', ()),
    "subscript": ('''import torch
def run(xs):
    acc = torch.zeros(0, 3)
    for i in range(3):
        x = xs[i]
        acc = torch.cat([acc, torch.zeros(2)])
    return acc
def probe():
    try:
        run([1, 2])
    except Exception as exc:
        return type(exc).__name__
''', ()),
    "float-hook": ('''import torch
class Loud:
    def __init__(self, log):
        self.log = log
    def __float__(self):
        self.log.append("converted")
        return 1.0
def run(objs):
    acc = torch.zeros(0, 3)
    for i in range(3):
        acc = torch.cat([acc, torch.tensor([objs[i]], dtype=torch.float32)])
    return acc
def probe():
    log = []
    try:
        run([Loud(log) for _ in range(3)])
    except RuntimeError:
        pass
    return len(log)
''', ()),
}


@pytest.mark.parametrize("name", sorted(MISFIT_LOOPS))
def test_a_part_that_may_not_fit_makes_the_fix_unsafe_and_forcing_it_shows(name):
    # All were safe fixes under the former proof ("a pure loop: only the error's message and
    # when it comes differ"); a misfit part is concatenated after the loop's later iterations.
    source, args = MISFIT_LOOPS[name]
    rewritten = _unsafe_naming(source, "every part fits")
    assert load(source)["probe"](*args) != load(rewritten)["probe"](*args)


# --- generated code names nothing the function can shadow ------------------------------

SHADOWING = {
    "len-parameter": '''import torch
def run(n, len=3):
    acc = torch.zeros(0, device="cpu")
    for i in range(n):
        acc = torch.cat([acc, torch.ones(2, device="cpu")])
    return acc
''',
    "len-global": '''import torch
def len(x):
    return 0
def run(n):
    acc = torch.zeros(0, device="cpu")
    for i in range(n):
        acc = torch.cat([acc, torch.ones(2, device="cpu")])
    return acc
''',
    "reversed-parameter": '''import torch
def run(n, reversed=None):
    acc = torch.zeros(0, device="cpu")
    for i in range(n):
        acc = torch.cat([torch.ones(1, device="cpu"), torch.zeros(1, device="cpu"), acc])
    return acc
''',
}


@pytest.mark.parametrize("name", sorted(SHADOWING))
def test_the_fix_calls_no_builtin_by_name(name):
    source = SHADOWING[name]
    assert fix_kind(source) == {"safe"}
    rewritten = fixed(source, unsafe=False)
    added = set(rewritten.splitlines()) - set(source.splitlines())
    assert not any("len(" in line or "reversed(" in line for line in added), added
    for n in (0, 1, 2, 5):
        assert_same_program(source, rewritten, (n,))


# --- prepending: the order inside a starred part, and the order of evaluation ----------

PREPEND = {
    "starred": '''import torch
def run(xs):
    acc = torch.zeros(0)
    for i in range(len(xs)):
        acc = torch.cat([*xs[i], acc])
    return acc
''',
    "mixed": '''import torch
def run(xs):
    acc = torch.zeros(0)
    for i in range(len(xs)):
        acc = torch.cat([xs[i][0], *xs[i][1:], acc])
    return acc
''',
    "several-evaluated-in-order": '''import torch
def run(xs, log):
    acc = torch.zeros(0)
    for x in xs:
        acc = torch.cat([(log.append(1), x)[1], (log.append(2), x + 1)[1], acc])
    return acc, log
''',
}


@pytest.mark.parametrize("name", sorted(PREPEND))
def test_prepended_parts_keep_their_order(name):
    source = PREPEND[name]
    rewritten = fixed(source, unsafe=True)
    assert rewritten != source
    rows = [[torch.tensor([float(4 * k + j)]) for j in range(3)] for k in range(3)]
    for n in (0, 1, 3):
        args = (rows[:n], []) if "log" in source else (rows[:n],)
        if "log" in source:
            args = ([torch.tensor([float(k)]) for k in range(n)], [])
        assert_same_program(source, rewritten, args)


# --- assumptions the unsafe message now names, each shown to matter -------------------

SEEDED_NONE_PART = '''import torch
def run(d):
    acc = None
    for i in range(3):
        x = d.get(i)
        acc = x if acc is None else torch.cat([acc, x])
    return acc
'''


def test_a_seed_that_may_be_none_is_named():
    rewritten = _unsafe_naming(SEEDED_NONE_PART, "the first part is not None")
    d = {1: torch.ones(1), 2: torch.zeros(1)}
    a, _, _, err_a = run(SEEDED_NONE_PART, (d,))
    _, _, _, err_b = run(rewritten, (d,))
    assert err_a is None and isinstance(err_b, TypeError)


GRAD_TOGGLE = '''import torch
def run(xs):
    acc = torch.zeros(0)
    for i, x in enumerate(xs):
        torch.set_grad_enabled(i > 0)
        acc = torch.cat([acc, x])
    torch.set_grad_enabled(True)
    return acc
'''


def test_grad_mode_switched_by_a_call_seen_in_the_loop_withholds_the_fix():
    _no_fix(GRAD_TOGGLE, "switches grad or inference mode")
    _no_fix(GRAD_TOGGLE.replace("torch.set_grad_enabled(i > 0)", "torch.no_grad().__enter__()"),
            "switches grad or inference mode")
    scoped = GRAD_TOGGLE.replace("        torch.set_grad_enabled(i > 0)\n",
                                 "        with torch.set_grad_enabled(i > 0):\n            y = x * 2\n")
    assert fix_kind(scoped) == {"unsafe"}  # a `with` item restores the mode after its block


def test_grad_mode_switched_by_code_not_seen_is_named():
    source = GRAD_TOGGLE.replace("torch.set_grad_enabled(i > 0)", "switch(i > 0)").replace(
        "import torch\n", "import torch\ndef switch(on):\n    torch.set_grad_enabled(on)\n")
    rewritten = _unsafe_naming(source, "grad mode")
    grads = []
    for source in (source, rewritten):
        xs = [torch.ones(1, requires_grad=True) for _ in range(3)]
        load(source)["run"](xs).sum().backward()
        grads.append([x.grad is None for x in xs])
    assert grads[0] != grads[1]


HSTACK_EMPTY_1D = '''import torch
def run():
    acc = torch.zeros(0)
    for i in range(2):
        acc = torch.hstack([acc, torch.zeros(2, 3)])
    return acc
'''


def test_hstack_onto_an_empty_1d_start_is_named():
    rewritten = _unsafe_naming(HSTACK_EMPTY_1D, "`hstack` of an empty 1-D start")
    assert load(HSTACK_EMPTY_1D)["run"]().shape != load(rewritten)["run"]().shape


def test_a_default_device_part_is_not_proven_to_fit():
    source = SHADOWING["len-global"].replace(', device="cpu"', "")
    rewritten = _unsafe_naming(source, "every part fits")
    for n in (0, 2):
        assert_same_program(source, rewritten, (n,))  # where it fits, the same


# --- reads the uses check cannot see, and an accumulator that may be unbound -----------

LAZY_AND_UNBOUND = {
    "generator-in-header": ('''import torch
def run():
    acc = torch.zeros(0)
    for n in (acc.numel() for _ in range(3)):
        acc = torch.cat([acc, torch.full((1,), float(n))])
    return acc
''', "reads `acc` lazily"),
    "generator-before-loop": ('''import torch
def run(xs):
    acc = torch.zeros(0)
    sizes = (acc.numel() for _ in xs)
    for x in xs:
        acc = torch.cat([acc, x * next(sizes)])
    return acc
''', "reads `acc` lazily"),
    "frame": ('''import sys
import torch
def run(xs):
    acc = torch.zeros(0)
    sizes = []
    for x in xs:
        sizes.append(sys._getframe().f_locals["acc"].numel())
        acc = torch.cat([acc, x])
    return acc, sizes
''', "by name"),
    "conditional-del": ('''import torch
def run(k, n):
    acc = torch.zeros(0)
    if not k:
        del acc
    for i in range(n):
        acc = torch.cat([acc, torch.ones(1)])
    return n
''', "`del acc` at line 5"),
    "except-as": ('''import torch
def run(xs, f):
    acc = torch.zeros(0)
    try:
        f()
    except ValueError as acc:
        pass
    for x in xs:
        acc = torch.cat([acc, x])
    return acc
''', "`except ... as acc`"),
}


@pytest.mark.parametrize("name", sorted(LAZY_AND_UNBOUND))
def test_no_fix_for_lazy_reads_and_unbinding(name):
    source, words = LAZY_AND_UNBOUND[name]
    _no_fix(source, words)


def test_a_generator_or_del_after_a_loop_that_runs_once_keeps_the_fix():
    source = '''import torch
def run(xs):
    acc = torch.zeros(0)
    for x in xs:
        acc = torch.cat([acc, x])
    total = sum(t.numel() for t in acc)
    out = acc
    del acc
    return out, total
'''
    rewritten = _unsafe_naming(source, "every part fits")
    for n in (0, 1, 3):
        assert_same_program(source, rewritten, ([torch.ones(2) for _ in range(n)],))


# --- NumPy's append converts each value first: Python numbers are not weak scalars ---

NP_APPEND = '''import numpy as np
def run(vals, dtype):
    acc = np.zeros(0, dtype=dtype)
    for v in vals:
        acc = np.append(acc, v)
    return acc
'''


@pytest.mark.parametrize("vals, dtype", [
    ([1, 300], "uint8"),  # was uint8 [1, 44] after the fix: 300 wrapped
    ([0.1, 1e40], "float32"),  # was float32 [0.1, inf]
    ([0, 1, 2], "int8"),  # was int8, the original gives int64
    ([[1.5, 2.5], 3], "float16"),
])
def test_numpy_append_of_python_numbers_keeps_the_dtype(vals, dtype):
    rewritten = _unsafe_naming(NP_APPEND, "every part fits")
    for n in range(len(vals) + 1):
        a, *_ = run(NP_APPEND, (vals[:n], dtype))
        b, *_ = run(rewritten, (vals[:n], dtype))
        assert _equal(a, b) and (a is b or a.dtype == b.dtype), (a, b)


def test_a_header_iterating_the_start_itself_sees_the_same_object_after_the_fix():
    # `zip(acc, xs)` keeps the start tensor, not the name: both programs walk its rows.
    source = '''import torch
def run(xs):
    acc = torch.arange(3.0).reshape(3, 1)
    rows = []
    for a, x in zip(acc, xs):
        rows.append(float(a))
        acc = torch.cat([acc, x])
    return acc, rows
'''
    rewritten = _unsafe_naming(source, "nothing writes the start value")
    for n in (0, 2, 5):
        assert_same_program(source, rewritten, ([torch.full((1, 1), float(k)) for k in range(n)],))


def test_a_break_in_a_handler_or_case_of_the_else_withholds_the_fix():
    source = ELSE_JUMPS["for-else-break"].replace(
        "            break\n", "            try:\n                pass\n            except ValueError:\n"
        "                pass\n            finally:\n                break\n")
    _no_fix(source, "`else:` has a `break`")
    source = ELSE_JUMPS["for-else-break"].replace(
        "            break\n", "            match n:\n                case _:\n                    break\n")
    _no_fix(source, "`else:` has a `break`")


@pytest.mark.parametrize("call, fits", [
    ("torch.cat([acc, torch.ones(2, device='cpu')], 0)", True),
    ("torch.cat(tensors=[acc, torch.ones(2, device='cpu')], axis=0)", True),
    ("torch.cat([acc, torch.ones(2, device='cpu')], 0, dim=0)", False),  # TypeError on every call
    ("torch.cat([acc, torch.ones(2, device='cpu')], dim=0, axis=0)", False),
    ("torch.cat([acc, torch.ones(2, device='cpu')], dim=1)", False),  # out of range for 1-D
])
def test_the_fits_proof_takes_only_arguments_cat_accepts(call, fits):
    source = (f"import torch\ndef run(n):\n    acc = torch.zeros(0, device='cpu')\n    for i in range(n):\n"
              f"        acc = {call}\n    return acc\n")
    found = check_source(source, "program.py", config=ONLY)
    kinds = {d.fixes[0].applicability if d.fixes else "none" for d in found}
    assert kinds == ({"safe"} if fits else {"unsafe"}) or (not fits and kinds <= {"unsafe", "none"}), kinds
    if fits:
        for n in (0, 1, 3):
            assert_same_program(source, fixed(source, unsafe=False), (n,))


def test_uninitialised_parts_are_not_proven():
    # `torch.empty` holds what the memory held; the list keeps every part alive, so later
    # parts get other memory than in the loop that freed each part once copied.
    source = SHADOWING["len-global"].replace("torch.ones(2, ", "torch.empty(2, ")
    assert fix_kind(source) == {"unsafe"}
    assert fix_kind(source.replace("torch.empty(2, ", "torch.empty(0, ")) == {"safe"}
