"""Fixes proven by running them: the original and the rewritten program run on
the same inputs; results must be bitwise equal, the caller's tensors untouched,
and the rewritten loop must allocate a constant number of buffers (one per
accumulator for the swap, two for ping-pong) however many chunks it merges.

The cases where the swap is wrong are here too, and must be caught: the tool
must not offer the swap as a safe fix there, and a swap forced onto them must
visibly change the program.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")

from alloc_lint import check_source, fix_source  # noqa: E402

from runtime import TRUSTED, run, same  # noqa: E402

H, D = 3, 8


def chunk_inputs(n, seed=0, padded=False):
    g = torch.Generator().manual_seed(seed)
    if padded:  # every chunk a [N, H, D] view of a [N, H, D + 4] buffer
        outs = [torch.randn(5, H, D + 4, generator=g)[..., :D] for _ in range(n)]
    else:
        outs = [torch.randn(5, H, D, generator=g) for _ in range(n)]
    lses = [torch.randn(5, H, generator=g) for _ in range(n)]
    return outs, lses


@dataclass
class Program:
    name: str
    source: str
    safe_form: str
    unsafe_form: str | None  # the form --unsafe-fixes gives, where it differs
    accumulators: int
    setup_allocations: int  # allocations outside the merge loop, per call
    merges: object  # n chunks -> merges made by each entry into the merge loop


VLLM_STYLE = Program("vllm_style", '''import torch

def compute_chunk(outs, lses, i):
    return outs[i] * 1.0, lses[i] * 1.0  # a kernel's fresh output


def run(outs, lses):
    output = None
    for i in range(len(outs)):
        attn_output, attn_lse = compute_chunk(outs, lses, i)
        if output is None:
            output = attn_output
            output_lse = attn_lse
        else:
            # new buffers on every iteration
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(
                output=output_tmp,
                output_lse=output_lse_tmp,
                prefix_output=output,
                prefix_lse=output_lse,
                suffix_output=attn_output,
                suffix_lse=attn_lse,
            )
            output = output_tmp  # rebind
            output_lse = output_lse_tmp
    return output, output_lse
''', "pingpong", "swap", 2, 0, lambda n: [n - 1])

OWNED_SEED = Program("owned_seed", '''import torch

def run(outs, lses):
    acc = torch.zeros_like(outs[0])
    acc_lse = torch.full_like(lses[0], float("-inf"))
    for i in range(len(outs)):
        tmp = torch.empty_like(acc)
        tmp_lse = torch.empty_like(acc_lse)
        merge(tmp, tmp_lse, acc, acc_lse, outs[i], lses[i])
        acc, acc_lse = tmp, tmp_lse
        del tmp, tmp_lse
    return acc, acc_lse
''', "swap", None, 2, 2, lambda n: [n])

WHILE_CONTINUE = Program("while_continue", '''import torch

def run(outs, lses):
    i = 0
    acc = acc_lse = None
    while i < len(outs):
        c, l = outs[i] + 0, lses[i] + 0
        i += 1
        if acc is None:
            acc, acc_lse = c, l
            continue
        nxt = torch.empty_like(acc)
        nxt_lse = torch.empty_like(acc_lse)
        merge(nxt, nxt_lse, acc, acc_lse, c, l)
        acc, acc_lse = nxt, nxt_lse
        del nxt
    return acc, acc_lse
''', "pingpong", "swap", 2, 0, lambda n: [n - 1])

NESTED = Program("nested_batches", '''import torch

def run(outs, lses):
    results = []
    for b in range(2):
        acc = torch.zeros_like(outs[0])
        acc_lse = torch.full_like(lses[0], float("-inf"))
        for i in range(b, len(outs)):
            out = torch.empty_like(acc)
            out_lse = torch.empty_like(acc_lse)
            merge(out, out_lse, acc, acc_lse, outs[i], lses[i])
            acc = out
            acc_lse = out_lse
        results.append((acc, acc_lse))  # the final value may escape
    return results
''', "swap", None, 2, 4, lambda n: [n, n - 1])

# SGLang-style: the accumulator starts as the caller's tensor.
PARAMETER_SEED = Program("parameter_seed", '''import torch

def run(acc, acc_lse, outs, lses):
    for i in range(len(outs)):
        new = torch.empty_like(acc)
        new_lse = torch.empty_like(acc_lse)
        merge_attn_states(new, new_lse, acc, acc_lse, outs[i], lses[i])
        acc = new
        acc_lse = new_lse
    return acc, acc_lse
''', "pingpong", None, 2, 0, lambda n: [n])

# The first value is a padded view (as FlashAttention's padded V was) and the
# kernel reads its inputs with the prefix's strides (as vLLM's kernels did).
STRIDED_SEED = Program("strided_seed", '''import torch

def first_chunk(outs):
    return outs[0]


def run(outs):
    acc = first_chunk(outs)
    for i in range(1, len(outs)):
        acc_tmp = torch.empty_like(acc)
        merge_strided(acc_tmp, acc, outs[i])
        acc = acc_tmp
    return acc
''', "pingpong", "swap", 1, 0, lambda n: [n - 1])

PROGRAMS = [VLLM_STYLE, OWNED_SEED, WHILE_CONTINUE, NESTED, PARAMETER_SEED, STRIDED_SEED]


def args_for(program, n, seed):
    outs, lses = chunk_inputs(n, seed, padded=program is STRIDED_SEED)
    if program is PARAMETER_SEED:
        first = chunk_inputs(1, seed + 100)
        return (first[0][0], first[1][0], outs, lses)
    if program is STRIDED_SEED:
        return (outs,)
    return (outs, lses)


def clone_args(args):
    return [[t.clone() for t in a] if isinstance(a, list) else a.clone() for a in args]


def snapshot(args):
    return [t.clone() for a in args for t in (a if isinstance(a, list) else [a])]


def rewritten(program, unsafe):
    result = fix_source(program.source, config=TRUSTED, unsafe_fixes=unsafe)
    assert result.fixed == len(check_source(program.source, config=TRUSTED)) > 0
    return result.text


def form_of(text):
    return "pingpong" if "_alt" in text else "swap"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_fix_forms(program):
    assert form_of(rewritten(program, unsafe=False)) == program.safe_form
    assert form_of(rewritten(program, unsafe=True)) == (program.unsafe_form or program.safe_form)


@pytest.mark.parametrize("unsafe", [False, True], ids=["safe", "unsafe"])
@pytest.mark.parametrize("program", [p for p in PROGRAMS if p is not STRIDED_SEED], ids=lambda p: p.name)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_rewrite_keeps_results_and_allocates_once(program, unsafe, n):
    text = rewritten(program, unsafe)
    for seed in range(2):
        args = args_for(program, n, seed)
        before = snapshot(args)
        expected, calls, _ = run(program.source, "run", *clone_args(args))
        got, new_calls, _ = run(text, "run", *args)
        assert same(got, expected), f"results differ at n={n}"
        assert all(torch.equal(a, b) for a, b in zip(snapshot(args), before)), "caller's tensors changed"
        per_entry = program.merges(n)
        assert calls == program.setup_allocations + program.accumulators * sum(per_entry)
        # Each entry into the loop allocates afresh: the swap one buffer per
        # accumulator at its first merge, ping-pong a second one at its second.
        per_accumulator = 2 if form_of(text) == "pingpong" else 1
        buffers = sum(min(m, per_accumulator) for m in per_entry)
        assert new_calls == program.setup_allocations + program.accumulators * buffers


def test_parameter_seed_swap_would_overwrite_the_callers_tensor():
    """Caught: the tool never offers the swap here; a swap forced onto this
    loop writes into the tensor the caller passed in."""
    program = PARAMETER_SEED
    diagnostics = check_source(program.source, config=TRUSTED)
    assert diagnostics and all([(f.applicability, f.form) for f in d.fixes] == [("safe", "pingpong")]
                               for d in diagnostics)
    forced = _force_swap(program.source)
    args = args_for(program, 4, 0)
    before = snapshot(args)
    run(forced, "run", *args)
    assert not torch.equal(args[0], before[0]), "the forced swap should have overwritten the caller's tensor"
    args = args_for(program, 4, 0)
    run(rewritten(program, unsafe=False), "run", *args)
    assert torch.equal(args[0], before[0])


@pytest.mark.parametrize("n", [4, 5, 8])
def test_strided_seed_swap_changes_numbers_pingpong_does_not(n):
    """Caught: with a stride-bound kernel and a padded first value, the swap
    (offered only as unsafe) changes the result; the safe ping-pong does not."""
    args = args_for(STRIDED_SEED, n, 0)
    expected, calls, _ = run(STRIDED_SEED.source, "run", *args)
    safe, safe_calls, _ = run(rewritten(STRIDED_SEED, unsafe=False), "run", *args_for(STRIDED_SEED, n, 0))
    unsafe, _, _ = run(rewritten(STRIDED_SEED, unsafe=True), "run", *args_for(STRIDED_SEED, n, 0))
    assert same(safe, expected)
    assert not same(unsafe, expected)
    assert calls == n - 1 and safe_calls == 2  # the second buffer at the second merge


ALIASED_ACCUMULATOR = '''import torch

def run(outs):
    acc = torch.zeros_like(outs[0])
    history = []
    for c in outs:
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
        history.append(acc)  # outlives the iteration
    return acc, history
'''

TEMP_AFTER_LOOP = '''import torch

def run(outs):
    acc = torch.zeros_like(outs[0])
    for c in outs:
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
    tmp.mul_(2)  # the temporary is read after the loop
    return acc
'''

PREVIOUS_KEPT = '''import torch

def run(outs):
    acc = torch.zeros_like(outs[0])
    older = prev = None
    deltas = []
    for c in outs:
        older, prev = prev, acc  # names that outlive the iteration
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
        if older is not None:
            deltas.append(float((acc - older).abs().sum()))
    return acc, deltas
'''


@pytest.mark.parametrize("source", [ALIASED_ACCUMULATOR, TEMP_AFTER_LOOP, PREVIOUS_KEPT],
                         ids=["aliased", "temp_after_loop", "previous_kept"])
def test_unsafe_loops_are_not_reported_and_a_forced_swap_breaks_them(source):
    assert check_source(source, config=TRUSTED) == []
    assert fix_source(source, config=TRUSTED, unsafe_fixes=True).text == source
    outs = chunk_inputs(5, 3)[0]
    expected, _, _ = run(source, "run", outs)
    got, _, _ = run(_force_swap(source), "run", outs)
    assert not same(got, expected), "the forced swap should have changed the program"


def _force_swap(source: str) -> str:
    """A naive codemod's swap, ignoring every safety condition: the form the
    tool must not produce on these loops."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While)):
            body = node.body
            allocs = [s for s in body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call)
                      and ast.unparse(s.value.func) == "torch.empty_like"]
            temps = {s.targets[0].id for s in allocs}
            indent = " " * node.col_offset
            inner = " " * body[0].col_offset
            for s in reversed(body):
                if isinstance(s, ast.Assign) and isinstance(s.value, ast.Name) and s.value.id in temps:
                    acc, tmp = s.targets[0].id, s.value.id
                    lines[s.lineno - 1] = f"{inner}{acc}, {tmp} = {tmp}, {acc}"
            for s in reversed(allocs):
                tmp = s.targets[0].id
                lines[s.lineno - 1] = f"{inner}if {tmp} is None: {ast.unparse(s)}"
            first = sorted(temps)
            lines[node.lineno - 1:node.lineno - 1] = [f"{indent}{t} = None" for t in first]
            break
    return "\n".join(lines) + "\n"
