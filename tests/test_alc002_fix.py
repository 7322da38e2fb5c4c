"""ALC002's fix proven by running it: the original and the rewritten program run
on the same inputs (CPU torch, NumPy); results must be equal (bitwise), the
caller's arguments untouched, and the rewritten loop must copy a linear number
of bytes with one concatenation, where the original copies a quadratic number
with one concatenation per iteration.

The hazards the rule page names are here too, each as a program: the tool must
not offer a safe fix there, and forcing the unsafe fix onto them must visibly
change the program (which proves the test can fail).
"""
from __future__ import annotations

import ast
import copy

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from alloc_lint import check_source, fix_source  # noqa: E402
from alloc_lint.config import Config  # noqa: E402

from runtime import same  # noqa: E402

ONLY = Config(select=("ALC002",))


class CountCopies(TorchDispatchMode):
    """Calls of concatenations and the bytes they write; every new storage."""

    def __init__(self):
        super().__init__()
        self.cats = 0
        self.cat_bytes = 0
        self.storages = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] in ("cat", "hstack", "vstack", "dstack", "column_stack"):
            self.cats += 1
            self.cat_bytes += out.untyped_storage().nbytes()
        if isinstance(out, torch.Tensor):
            self.storages += 1
        return out


def load(source: str) -> dict:
    namespace: dict = {"__name__": "program"}
    exec(compile(source, "<program>", "exec"), namespace)
    return namespace


def run(source: str, args, entry="run"):
    """(result, counter, the arguments after the call, exception or None)."""
    namespace = load(source)
    counter = CountCopies()
    args = copy.deepcopy(args)
    error = None
    with counter:
        try:
            result = namespace[entry](*args)
        except Exception as exc:  # noqa: BLE001 - compared between the two programs
            result, error = None, exc
    return result, counter, args, error


def fix_kind(source: str) -> set:
    found = check_source(source, "program.py", config=ONLY)
    assert found, "the program must be reported"
    return {d.fixes[0].applicability if d.fixes else "none" for d in found}


def fixed(source: str, unsafe: bool) -> str:
    result = fix_source(source, "program.py", config=ONLY, unsafe_fixes=unsafe)
    assert result.error is None, result.error
    return result.text


def assert_same_program(original: str, rewritten: str, args, entry="run"):
    a, _, args_a, err_a = run(original, args, entry)
    b, _, args_b, err_b = run(rewritten, args, entry)
    assert (err_a is None) == (err_b is None), (err_a, err_b)
    if err_a is not None:
        assert type(err_a) is type(err_b)
        return
    assert _equal(a, b)
    assert _equal(args_a, args_b)  # the caller's arguments are left as the original leaves them


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and same(a, b)
    if isinstance(a, np.ndarray):
        return _np_same(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _np_same(a, b):
    return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
        np.array_equal(a, b, equal_nan=True)


# --- the safe fix: no concatenation of the loop can raise --------------------------
# Fresh parts of constant sizes on one named device: moving the concatenation after the
# loop moves no error (what the loop's other statements do then does not matter).

PURE = '''import torch

def run(n, width):
    acc = torch.zeros(0, 4, device="cpu")  # the default dtype: a floating type
    for i in range(n):
        acc = torch.cat([acc, torch.full((2, 4), i, dtype=torch.float32, device="cpu")], dim=0)
    return acc
'''

PURE_SEEDED = '''import torch

def run(n, width):
    out = None
    for i in range(n):
        out = torch.ones(1, 4, 3, dtype=torch.float64, device="cpu") if out is None else torch.cat(
            [out, torch.ones(1, 4, 3, dtype=torch.float64, device="cpu")], dim=2)
    return out
'''


@pytest.mark.parametrize("source", [PURE, PURE_SEEDED], ids=["start-before-loop", "seeded"])
def test_safe_fix_is_the_same_program_and_copies_linearly(source):
    assert fix_kind(source) == {"safe"}
    rewritten = fixed(source, unsafe=False)
    assert rewritten != source
    assert not check_source(rewritten, "program.py", config=ONLY)
    assert fixed(rewritten, unsafe=False) == rewritten  # idempotent
    ast.parse(rewritten)
    sizes = []
    for n in (0, 1, 2, 16, 64):
        before, counted_before, _, err = run(source, (n, 4))
        after, counted_after, _, err2 = run(rewritten, (n, 4))
        assert err is None and err2 is None
        assert same(before, after)
        if n >= 2:
            assert counted_after.cats == 1 and counted_before.cats >= n - 1
            assert counted_after.cat_bytes == after.untyped_storage().nbytes()  # each byte copied once
            sizes.append((n, counted_before.cat_bytes, counted_after.cat_bytes))
    # Quadratic against linear: 4x the parts, about 16x against 4x the bytes.
    (_, b16, a16), (_, b64, a64) = sizes[-2:]
    assert a64 / a16 == pytest.approx(4, rel=0.1)
    assert b64 / b16 > 12


def test_comments_and_formatting_outside_the_changed_lines_are_kept():
    source = PURE.replace("    for i in range(n):", "    # the loop\n    for i in range(n):  # rows")
    rewritten = fixed(source, unsafe=False)
    assert "    # the loop\n" in rewritten and "  # rows\n" in rewritten
    assert "# the default dtype: a floating type" in rewritten


# --- unsafe fixes on realistic loops: the same results on these inputs -----------------

VAE_DECODE = '''import torch
import torch.nn.functional as F

def decode(z, weight):
    return F.conv_transpose3d(z, weight, stride=(1, 2, 2)).tanh()

def run(z, weight):
    out = None
    for i in range(z.shape[2]):
        frame = decode(z[:, :, i:i + 1], weight)
        out = frame if out is None else torch.cat([out, frame], dim=2)
    return out
'''

LOGITS = '''import torch

def step(hidden, lm_head):
    return (hidden @ lm_head.T).float()

def run(hidden, lm_head, steps):
    scores = torch.empty(hidden.shape[0], 0, lm_head.shape[0])
    for t in range(steps):
        hidden = torch.tanh(hidden + t)
        logits = step(hidden, lm_head)
        scores = torch.cat([scores, logits[:, None]], dim=1)
    return scores
'''

MULTI_PART_PREPEND = '''import torch

def run(xs, acc):
    for x in xs:
        acc = torch.cat([x * 2, x + 1, acc], dim=0)
    return acc
'''

STARRED = '''import torch

def run(groups, acc):
    for group in groups:
        acc = torch.cat([acc, *group])
    return acc
'''

IF_SEED_BREAK = '''import torch

def run(xs, limit):
    acc = None
    for x in xs:
        if x.sum() > limit:
            break
        y = x * 2
        if acc is None:
            acc = y
        else:
            acc = torch.cat([acc, y], dim=0)
    return acc
'''

RETURN_IN_LOOP = '''import torch

def run(xs, acc):
    for x in xs:
        if x.sum() > 100:
            return None
        acc = torch.cat([acc, x])
    return acc
'''

PER_BATCH = '''import torch

def run(batches, n):
    results = []
    for batch in batches:
        acc = batch[:0]
        for i in range(n):
            acc = torch.cat([acc, batch * i])
        results.append(acc)
    return results
'''

TWO_GROWTHS = '''import torch

def run(xs, acc):
    for x in xs:
        if x.shape[0] > 1:
            acc = torch.cat([acc, x[:1]])
        else:
            acc = torch.cat([acc, x])
    return acc
'''


def _vae_args(n):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 4, n, 3, 3, generator=g), torch.randn(4, 2, 1, 3, 3, generator=g))


def _rows(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(torch.randint(1, 3, (1,), generator=g)), 3, generator=g) for _ in range(n)]


CASES = [
    ("vae_decode", VAE_DECODE, _vae_args),
    ("logits", LOGITS, lambda n: (torch.randn(2, 8), torch.randn(11, 8), n)),
    ("multi_part_prepend", MULTI_PART_PREPEND, lambda n: (_rows(n), torch.zeros(1, 3))),
    ("starred", STARRED, lambda n: ([_rows(2, i) for i in range(n)], torch.zeros(0, 3))),
    ("if_seed_break", IF_SEED_BREAK, lambda n: (_rows(n), 3.0 if n < 24 else 1e9)),
    ("return_in_loop", RETURN_IN_LOOP, lambda n: (_rows(n), torch.ones(1, 3))),
    ("two_growths", TWO_GROWTHS, lambda n: (_rows(n), torch.ones(1, 3))),
    ("per_batch", PER_BATCH, lambda n: (_rows(3), n)),
]


@pytest.mark.parametrize("name, source, make_args", CASES, ids=[c[0] for c in CASES])
def test_unsafe_fix_keeps_results_where_its_assumptions_hold(name, source, make_args):
    assert fix_kind(source) == {"unsafe"}
    assert fixed(source, unsafe=False) == source  # safe mode leaves it alone
    rewritten = fixed(source, unsafe=True)
    assert not check_source(rewritten, "program.py", config=ONLY)
    assert fixed(rewritten, unsafe=True) == rewritten
    for n in (0, 1, 2, 5, 24):
        assert_same_program(source, rewritten, make_args(n))
    _, before, _, _ = run(source, make_args(24))
    _, after, _, _ = run(rewritten, make_args(24))
    assert after.cats < before.cats and after.cat_bytes < before.cat_bytes


def test_vae_decode_bytes_copied_linear_against_quadratic():
    rewritten = fixed(VAE_DECODE, unsafe=True)
    copied = {}
    for n in (16, 64):
        _, before, _, _ = run(VAE_DECODE, _vae_args(n))
        result, after, _, _ = run(rewritten, _vae_args(n))
        assert after.cat_bytes == result.untyped_storage().nbytes()
        copied[n] = (before.cat_bytes, after.cat_bytes)
    assert copied[64][1] == 4 * copied[16][1]
    assert copied[64][0] > 14 * copied[16][0]


# --- identity: zero iterations, one iteration --------------------------------------------

IDENTITY = '''import torch

def run(xs, acc):
    for x in xs:
        acc = torch.cat([acc, x])
    return acc
'''

IDENTITY_SEEDED = '''import torch

def run(xs):
    acc = None
    for x in xs:
        acc = x if acc is None else torch.cat([acc, x])
    return acc
'''


def test_zero_iterations_return_the_callers_own_tensor():
    rewritten = fixed(IDENTITY, unsafe=True)
    weight = torch.nn.Parameter(torch.ones(2, 3))
    assert load(IDENTITY)["run"]([], weight) is weight
    assert load(rewritten)["run"]([], weight) is weight


def test_one_seeded_iteration_returns_the_part_itself():
    rewritten = fixed(IDENTITY_SEEDED, unsafe=True)
    x = torch.ones(2, 3)
    assert load(IDENTITY_SEEDED)["run"]([x]) is x
    assert load(rewritten)["run"]([x]) is x
    assert load(rewritten)["run"]([]) is None


# --- the hazards: not safe, and the unsafe fix really changes them ----------------------

REUSED_BUFFER = '''import torch

class Step:
    """Returns its output buffer, reused on every call (as a CUDA graph runner does)."""
    def __init__(self):
        self.out = torch.zeros(1, 3)
    def __call__(self, i):
        self.out.fill_(i)
        return self.out

def run(n):
    step = Step()
    acc = torch.zeros(0, 3)
    for i in range(n):
        acc = torch.cat([acc, step(i)])
    return acc
'''

VIEW_OF_MUTATED_STATE = '''import torch

def run(n):
    state = torch.zeros(2, 3)
    acc = torch.zeros(0, 3)
    for i in range(n):
        state += 1
        acc = torch.cat([acc, state[:1]])
    return acc
'''

DTYPE_CHAIN = '''import torch

def run(parts):
    acc = torch.tensor([2 ** 24 + 1], dtype=torch.int64)
    for part in parts:
        acc = torch.cat([acc, part])
    return acc
'''

ERROR_MOVED = '''import torch

def run(parts, log):
    acc = torch.zeros(0, 3)
    for part in parts:
        acc = torch.cat([acc, part])
        log.append(part.shape[0])
    return acc
'''

HSTACK_LEGACY_EMPTY = '''import torch

def run(parts):
    acc = torch.tensor([])
    for part in parts:
        acc = torch.hstack([acc, part])
    return acc
'''


OUT_TARGET = '''import torch

def run(n, buf):
    acc = torch.zeros(0, 3)
    for i in range(n):
        acc = torch.cat([acc, torch.full((1, 3), i, dtype=torch.float32, out=buf)])
    return acc
'''


def test_an_out_target_part_is_not_fresh():
    assert fix_kind(OUT_TARGET) == {"unsafe"}
    a, *_ = run(OUT_TARGET, (3, torch.empty(1, 3)))
    b, *_ = run(fixed(OUT_TARGET, unsafe=True), (3, torch.empty(1, 3)))
    assert not same(a, b)


def test_a_part_written_later_changes_the_forced_fix():
    assert fix_kind(REUSED_BUFFER) == {"unsafe"}
    a, *_ = run(REUSED_BUFFER, (4,))
    b, *_ = run(fixed(REUSED_BUFFER, unsafe=True), (4,))
    assert not same(a, b)  # every row is the last value: the list kept one buffer four times


def test_a_view_of_mutated_state_changes_the_forced_fix():
    assert fix_kind(VIEW_OF_MUTATED_STATE) == {"unsafe"}
    a, *_ = run(VIEW_OF_MUTATED_STATE, (3,))
    b, *_ = run(fixed(VIEW_OF_MUTATED_STATE, unsafe=True), (3,))
    assert not same(a, b)


def test_dtype_promotion_step_by_step_rounds_otherwise():
    assert fix_kind(DTYPE_CHAIN) == {"unsafe"}
    parts = [torch.tensor([0.5], dtype=torch.float32), torch.tensor([0.25], dtype=torch.float64)]
    a, *_ = run(DTYPE_CHAIN, (parts,))
    b, *_ = run(fixed(DTYPE_CHAIN, unsafe=True), (parts,))
    assert a.dtype == b.dtype == torch.float64
    assert a[0].item() == 2 ** 24 and b[0].item() == 2 ** 24 + 1  # float32 rounding in the loop only


def test_an_error_moves_after_the_loops_side_effects():
    assert fix_kind(ERROR_MOVED) == {"unsafe"}
    parts = [torch.ones(1, 3), torch.ones(1, 4), torch.ones(2, 3)]
    _, _, (_, log_a), err_a = run(ERROR_MOVED, (parts, []))
    _, _, (_, log_b), err_b = run(fixed(ERROR_MOVED, unsafe=True), (parts, []))
    assert isinstance(err_a, RuntimeError) and isinstance(err_b, RuntimeError)
    assert log_a == [1] and log_b == [1, 1, 2]  # the fixed loop ran on past the bad part


def test_hstack_on_a_legacy_empty_start_joins_otherwise():
    assert fix_kind(HSTACK_LEGACY_EMPTY) == {"unsafe"}
    parts = [torch.ones(2, 2), torch.ones(2, 2)]
    a, *_ = run(HSTACK_LEGACY_EMPTY, (parts,))
    b, *_ = run(fixed(HSTACK_LEGACY_EMPTY, unsafe=True), (parts,))
    assert a.shape == (2, 4) and b.shape == (4, 2)


# --- no fix: the accumulator is visible mid-way, or the shape is not covered ----------

NO_FIX = {
    "read_in_loop": ('''import torch
def run(model, ids, n):
    for _ in range(n):
        ids = torch.cat([ids, model(ids)], dim=-1)
    return ids
''', "is read in the loop"),
    "shape_read_in_loop": ('''import torch
def run(xs, acc, limit):
    for x in xs:
        acc = torch.cat([acc, x])
        if acc.shape[0] > limit:
            break
    return acc
''', "is read in the loop"),
    "in_place_in_loop": ('''import torch
def run(xs, acc):
    for x in xs:
        acc *= 0.5
        acc = torch.cat([acc, x])
    return acc
''', "is read in the loop"),
    "loop_in_try": ('''import torch
def run(xs, acc):
    try:
        for x in xs:
            acc = torch.cat([acc, x])
    except RuntimeError:
        pass
    return acc
''', "inside the `try`"),
    "no_grad_in_body": ('''import torch
def run(xs, acc):
    for x in xs:
        with torch.no_grad():
            acc = torch.cat([acc, x])
    return acc
''', "under the `with`"),
    "try_in_body": ('''import torch
def run(xs, acc):
    for x in xs:
        try:
            acc = torch.cat([acc, x])
        except RuntimeError:
            continue
    return acc
''', "inside the `try`"),
    "loop_else": ('''import torch
def run(xs, acc):
    for x in xs:
        acc = torch.cat([acc, x])
    else:
        print(acc.shape)
    return acc
''', "`else:`"),
    "closure": ('''import torch
def run(xs, acc, log):
    def report():
        log.append(acc.shape[0])
    for x in xs:
        acc = torch.cat([acc, x])
        report()
    return acc
''', "nested function"),
    "locals_in_loop": ('''import torch
def run(xs, acc, log):
    for x in xs:
        acc = torch.cat([acc, x])
        log.append(len(locals()["acc"]))
    return acc
''', "can read `acc` by name"),
    "dim_varies": ('''import torch
def run(xs, acc, d):
    for x in xs:
        acc = torch.cat([acc, x], dim=d)
    return acc
''', "not a constant"),
    "middle": ('''import torch
def run(xs, acc):
    for x in xs:
        acc = torch.cat([x, acc, x])
    return acc
''', "middle"),
    "index_seed": ('''import torch
def run(xs):
    for i in range(len(xs)):
        if i == 0:
            acc = xs[i]
        else:
            acc = torch.cat([acc, xs[i]])
    return acc
''', "special-cased"),
    "unbound_before": ('''import torch
def run(xs, flag):
    if flag:
        acc = torch.zeros(0)
    for x in xs:
        acc = torch.cat([acc, x])
    return acc
''', "unbound"),
}


@pytest.mark.parametrize("name", sorted(NO_FIX))
def test_no_fix_where_it_could_change_the_program(name):
    source, reason = NO_FIX[name]
    found = check_source(source, "program.py", config=ONLY)
    assert len(found) >= 1 and all(not d.fixes and reason in d.no_fix_reason for d in found), \
        [(d.fixes, d.no_fix_reason) for d in found]
    assert fix_source(source, "program.py", config=ONLY, unsafe_fixes=True).text == source


def test_a_module_level_loop_gets_no_fix():
    source = "import torch\nacc = torch.zeros(0)\nfor x in xs:\n    acc = torch.cat([acc, x])\n"
    [d] = check_source(source, "program.py", config=ONLY)
    assert not d.fixes and "global" in d.no_fix_reason


# --- NumPy: unsafe fixes, results equal ---------------------------------------------

NUMPY = {
    "append_no_axis": '''import numpy as np
def run(rows):
    acc = np.zeros((0,))
    for row in rows:
        acc = np.append(acc, row)
    return acc
''',
    "append_axis": '''import numpy as np
def run(rows):
    acc = np.zeros((0, 3))
    for row in rows:
        acc = np.append(acc, row, axis=0)
    return acc
''',
    "vstack_1d_parts": '''import numpy as np
def run(rows):
    acc = np.zeros((0, 3))
    for row in rows:
        acc = np.vstack([acc, row[0]])
    return acc
''',
    "column_stack": '''import numpy as np
def run(rows):
    acc = np.zeros((3, 0))
    for row in rows:
        acc = np.column_stack([acc, row[0]])
    return acc
''',
    "concatenate_seeded": '''import numpy as np
def run(rows):
    acc = None
    for row in rows:
        acc = row if acc is None else np.concatenate((acc, row), axis=0)
    return acc
''',
}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_numpy_unsafe_fix_keeps_results(name):
    source = NUMPY[name]
    assert fix_kind(source) == {"unsafe"}
    rewritten = fixed(source, unsafe=True)
    assert not check_source(rewritten, "program.py", config=ONLY)
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7):
        rows = [rng.standard_normal((1, 3)) for _ in range(n)]
        a, _, _, err_a = run(source, (rows,))
        b, _, _, err_b = run(rewritten, (rows,))
        assert (err_a is None) == (err_b is None)
        if err_a is None and a is not None:
            assert _np_same(a, b), (a, b)
        else:
            assert a is b is None or err_a is not None


# --- random loops: every fix the tool calls safe is the same program ------------------

DTYPES = ("torch.float16", "torch.float32", "torch.float64", "torch.int64", "torch.int32", "torch.bool",
          "torch.bfloat16", None)


def _factory(rng, shape: str, dtype) -> str:
    kind = rng.choice(["zeros", "ones", "full", "arange"])
    if kind == "full":
        call = f"torch.full({shape}, {rng.choice(['i', '2 ** 24 + 1', '0.5', 'True'])}"
    elif kind == "arange":
        call = f"torch.arange({rng.choice(['6', 'i + 1', '2 ** 24, 2 ** 24 + 3'])}"
    else:
        call = f"torch.{kind}({shape}"
    call += f", dtype={dtype}" if dtype else ""
    return call + (', device="cpu")' if rng.random() < 0.8 else ")")  # else: the default device


def _random_program(rng) -> str:
    dim = rng.choice([0, -1])
    width = rng.choice(["3"] * 6 + ["4", "3 + (i == 2)"])  # sometimes a part that does not fit
    rows = rng.choice(["1", "2", "i % 2 + 1"])
    shape = f"({rows}, {width})" if dim == 0 else f"(3, {rows})"
    part = _factory(rng, shape, rng.choice(DTYPES)).replace("torch.arange(", "torch.arange(").strip()
    if "arange" in part:  # 1-D: keep it 2-D for the concatenation
        part = f"{part}.reshape(1, -1)" if dim == 0 else f"{part}.reshape(-1, 1)"
    start_shape = "(0, 3)" if dim == 0 else "(3, 0)"
    start = f"torch.{rng.choice(['zeros', 'ones', 'empty'])}({start_shape}" + (
        f", dtype={d}" if (d := rng.choice(DTYPES)) else "") + ', device="cpu")'
    body = []
    if rng.random() < 0.3:
        body.append("        if i == stop:\n            break")
    if rng.random() < 0.5:  # an exit the concatenation's error used to come before
        body.append(rng.choice(["        if i == stop + 1:\n            return None",
                                "        q = 1 // (stop - i)", "        assert i < stop + 2"]))
    other = _factory(rng, shape, rng.choice(DTYPES))
    if "arange" in other:
        other = f"{other}.reshape(1, -1)" if dim == 0 else f"{other}.reshape(-1, 1)"
    if rng.random() < 0.3:  # two growth statements, parts of two dtypes
        body.append(f"        if i % 2:\n            acc = torch.cat([acc, {part}], dim={dim})\n"
                    f"        else:\n            acc = torch.cat([acc, {other}], dim={dim})")
        init = f"    acc = {start}"
    elif rng.random() < 0.5:
        body.append(f"        acc = torch.cat([acc, {part}], dim={dim})")
        init = f"    acc = {start}"
    else:
        body.append(f"        acc = {part} if acc is None else torch.cat([acc, {part}], dim={dim})")
        init = "    acc = None"
    rng.shuffle(body)
    return ("import torch\n\ndef run(n, stop):\n" + init + "\n    for i in range(n):\n"
            + "\n".join(body) + "\n    return acc\n")


def test_random_loops_fixed_safely_keep_results():
    import random

    rng = random.Random(20261128)
    safe = 0
    for _ in range(150):
        source = _random_program(rng)
        try:
            found = check_source(source, "program.py", config=ONLY)
        except Exception as exc:  # pragma: no cover - a bad program is the generator's bug
            raise AssertionError(source) from exc
        if not found or not found[0].fixes or found[0].fixes[0].applicability != "safe":
            continue
        safe += 1
        rewritten = fixed(source, unsafe=False)
        for n, stop in ((0, 0), (1, 5), (3, 1), (5, 9)):
            a, _, _, err_a = run(source, (n, stop))
            b, _, _, err_b = run(rewritten, (n, stop))
            assert type(err_a) is type(err_b), (source, err_a, err_b)
            assert err_a is not None or _equal(a, b), source
    assert safe >= 20  # the generator reaches the safe form often enough to mean something


# --- the shared use classifier (analysis/uses.py): what it proves and what it blocks ----

NAMED_PART = '''import torch

def run(n, width):
    acc = torch.zeros(0, 3, device="cpu")
    for i in range(n):
        row = torch.full((1, 3), i, dtype=torch.float32, device="cpu")
        acc = torch.cat([acc, row])
        rows = len(row) + row.shape[0]
    return acc
'''


def test_a_named_fresh_part_only_read_afterwards_gets_the_safe_fix():
    # every use of `row` in the loop is classified METADATA / REBIND / CONCAT_ARG: kept values
    assert fix_kind(NAMED_PART) == {"safe"}
    rewritten = fixed(NAMED_PART, unsafe=False)
    assert "acc_parts.append(row)" in rewritten
    for n in (0, 1, 5):
        assert_same_program(NAMED_PART, rewritten, (n, 3))


BIND_ROW = "        row = torch.full((1, width), i, dtype=torch.float32)\n"
NAMED_PART_WRITES = {
    # written in place after the append: the list would see it
    "augmented": BIND_ROW + "        acc = torch.cat([acc, row])\n        row += 1\n",
    # the previous iteration's part (in the list) written before the rebinding
    "previous-iteration": "        row += 1\n" + BIND_ROW + "        acc = torch.cat([acc, row])\n",
    # a view of it bound to another name (ESCAPE), written later
    "view-alias": BIND_ROW + "        v = row[0]\n        acc = torch.cat([acc, row])\n        v += 7\n",
}


@pytest.mark.parametrize("name", sorted(NAMED_PART_WRITES))
def test_a_named_part_written_after_the_append_is_not_proven_fresh(name):
    source = ("import torch\n\ndef run(n, width):\n    acc = torch.zeros(0, width)\n"
              "    row = torch.zeros(1, width)\n    for i in range(n):\n" + NAMED_PART_WRITES[name]
              + "    return acc\n")
    assert fix_kind(source) == {"unsafe"}
    a, *_ = run(source, (3, 2))
    b, *_ = run(fixed(source, unsafe=True), (3, 2))
    assert not same(a, b)  # what the proof guards against: the forced fix changes the result


SEEDED_START_ALIASED = '''import torch

def run(acc, y):
    for i in range(3):
        y += 1
        acc = torch.zeros(1, 3) if acc is None else torch.cat([acc, torch.zeros(1, 3)])
    return acc
'''


def test_a_seeded_start_that_another_name_writes_is_not_owned():
    # Was a safe fix: the caller's tensor, kept in the list, is written by `y += 1`
    # on every iteration; the loop had copied it at its first concatenation.
    assert fix_kind(SEEDED_START_ALIASED) == {"unsafe"}
    [d] = check_source(SEEDED_START_ALIASED, "program.py", config=ONLY)
    assert "start value" in d.fixes[0].message
    t = torch.zeros(1, 3)
    a = load(SEEDED_START_ALIASED)["run"](t, t)
    t = torch.zeros(1, 3)
    b = load(fixed(SEEDED_START_ALIASED, unsafe=True))["run"](t, t)
    assert not same(a, b)


def test_a_seeded_start_from_the_caller_is_not_proven_to_fit():
    # Was a safe fix (a loop writing nothing in place): the caller's start may not fit the
    # parts, and its error would come after the loop's later iterations.
    source = SEEDED_START_ALIASED.replace("        y += 1\n", "        z = y + 1\n")
    assert fix_kind(source) == {"unsafe"}
    [d] = check_source(source, "program.py", config=ONLY)
    assert "every part fits" in d.fixes[0].message
    t = torch.zeros(1, 3)
    a = load(source)["run"](t, t.clone())
    b = load(fixed(source, unsafe=True))["run"](t, t.clone())
    assert same(a, b)  # where it fits, the forced fix keeps the result


ELSE_BEFORE_ERROR = '''import torch

def run(n, log):
    acc = torch.zeros(0, 4)
    for i in range(n):
        acc = torch.cat([acc, torch.zeros(1, 3)])
    else:
        log.append("done")
    return acc
'''

WHILE_STOPPED_BY_ERROR = '''import torch

def run(n, log):
    acc = torch.zeros(0, 4)
    i = 0
    while i < n:
        acc = torch.cat([acc, torch.zeros(1, 3)])
        i = i + 1
    return acc
'''


class Log(list):
    """A caller's object whose methods leave a trace (a context manager too)."""

    def __enter__(self):
        self.append("enter")

    def __exit__(self, *exc):
        self.append("exit")

    def __len__(self):
        self.append("len")
        return super().__len__()


HIDDEN_CODE = {  # statements that run code, or stop the loop, where a misfit part raised first
    "import": "        import json\n",  # runs the module (once)
    "with": "        with log:\n            pass\n",  # calls log.__enter__ and __exit__
    "class": "        class Step:\n            pass\n",  # runs the class body
    "augmented": "        log += [i]\n",  # writes the caller's object in place (a tensor: `x += 1`)
    "key": "        m = max([1, 2], key=lambda v: log.append(v) or v)\n",  # a builtin calling back
    "len": "        k = len(log)\n",  # runs the caller's __len__
    "return": "        if i == 1:\n            return log\n",  # a return instead of the error
    "floor-division": "        q = 1 // (2 - i)\n",  # another error, later
    "assert": "        assert i < 2\n",
}


@pytest.mark.parametrize("name", sorted(HIDDEN_CODE))
def test_a_part_that_may_not_fit_makes_the_fix_unsafe_whatever_the_loop_does(name):
    # Each of these was a safe fix (the red team's, and tests/fuzzing/corpus/e2-alc002-*):
    # the misfit part's error came after code the original never ran. The "errors are
    # harmless in a pure loop" proof is gone: the fix is safe only when no part can misfit.
    fits = "        acc = torch.cat([acc, torch.zeros(1, 4, device=\"cpu\")])\n"
    source = ("import torch\n\ndef run(n, log):\n    acc = torch.zeros(0, 4, device=\"cpu\")\n"
              "    for i in range(n):\n" + fits + HIDDEN_CODE[name] + "    return acc\n")
    assert fix_kind(source) == {"safe"}  # no concatenation can raise: what else runs does not matter
    for n in (0, 1, 2):
        assert_same_program(source, fixed(source, unsafe=False), (n, Log()))
    misfit = source.replace("torch.zeros(1, 4, device", "torch.zeros(1, 3, device")
    assert fix_kind(misfit) == {"unsafe"}
    [d] = check_source(misfit, "program.py", config=ONLY)
    assert "every part fits" in d.fixes[0].message
    if name in ("import", "class"):
        return  # nothing the caller sees (the module and class body run once more, unseen)
    a = run(misfit, (3, Log()))
    b = run(fixed(misfit, unsafe=True), (3, Log()))
    assert (type(a[3]), a[2][1]) != (type(b[3]), b[2][1])  # another error, or another trace


@pytest.mark.parametrize("source", [ELSE_BEFORE_ERROR, WHILE_STOPPED_BY_ERROR], ids=["loop-else", "while"])
def test_what_runs_before_a_moved_error_is_not_proven_harmless(source):
    # Both were safe fixes: the misfit part raised in the loop, before the `else:` ran
    # (or before the `while` loop ran on); after the fix it raises after them.
    assert fix_kind(source) == {"unsafe"}
    _, _, (_, log_a), err_a = run(source, (3, []))
    _, counted_b, (_, log_b), err_b = run(fixed(source, unsafe=True), (3, []))
    assert isinstance(err_a, RuntimeError) and isinstance(err_b, RuntimeError)
    assert log_a == [] and (log_b == ["done"] or counted_b.storages > 3)


@pytest.mark.parametrize("use, words", [
    ("print(acc.shape)", "a metadata read"),
    ("hist.append(acc)", "kept beyond its statement"),
    ("keep(acc)", "a use not known to be harmless"),
    ("acc.mul_(2)", "an in-place write"),
])
def test_the_withheld_fix_names_the_use_and_its_kind(use, words):
    source = ("import torch\n\ndef run(xs, acc, hist, keep):\n    for x in xs:\n"
              f"        acc = torch.cat([acc, x])\n        {use}\n    return acc\n")
    [d] = check_source(source, "program.py", config=ONLY)
    assert not d.fixes and "is read in the loop at line 6" in d.no_fix_reason and words in d.no_fix_reason
