"""What ALC001's safe fixes cost and save, measured on the CPU (the GPU report is
examples/RESULTS.md). Output: bench/out/alc001_safety.txt.

    python bench/alc001_safety.py

1. Peak memory over a whole call, as live tensor-storage bytes (a CPU stand-in
   for torch.cuda.max_memory_allocated: tests/runtime.py LiveBytes), and
   allocator calls, for a vLLM-shaped merge loop whose chunk outputs are fresh
   kernel results and which goes on working after the loop: the original, the
   safe fix (lazy ping-pong, scratch released after the loop), the same with
   both buffers allocated at the first merge, the same without the release,
   and the swap (--unsafe-fixes here: the first value is a kernel's output).
2. The per-iteration cost of the guarded form's metadata check against the
   allocation it replaces.
"""
from __future__ import annotations

import platform
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import torch  # noqa: E402

import alloc_lint  # noqa: E402
from runtime import CountAllocations, LiveBytes, load  # noqa: E402

TOKENS, HEADS, DIM = 256, 16, 128  # one bf16 output 1 MiB, its fp32 lse 16 KiB

PROGRAM = """
import torch

def attend(q, i):
    return q * (i + 1.0), q[..., 0].float().t().contiguous() * 0.5  # a kernel's fresh output and lse

def run(q, chunks):
    output = None
    for i in range(chunks):
        attn_output, attn_lse = attend(q, i)
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output_tmp, output_lse_tmp, output, output_lse, attn_output, attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    projected = output * 2.0  # the function goes on working after the loop
    return projected, output_lse
"""

MERGE = """
def merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    torch.logaddexp(prefix_lse, suffix_lse, out=output_lse)
    w = torch.exp(prefix_lse - output_lse).t().unsqueeze(-1)
    torch.mul(prefix_output, w, out=output)
    output.addcmul_(suffix_output, torch.exp(suffix_lse - output_lse).t().unsqueeze(-1))
"""


def variants() -> dict:
    safe = alloc_lint.fix_source(PROGRAM).text
    eager = safe.replace("            if output_tmp is None:\n",
                         "            if output_tmp is None:\n"
                         "                output_tmp_alt = torch.empty_like(output)\n"
                         "                output_lse_tmp_alt = torch.empty_like(output_lse)\n")
    kept = safe.replace("    output_tmp = output_tmp_alt = output_lse_tmp = output_lse_tmp_alt = None\n", "")
    swap = alloc_lint.fix_source(PROGRAM, unsafe_fixes=True).text
    assert len({PROGRAM, safe, eager, kept, swap}) == 5, "the fix's shape changed: update this script"
    return {"original": PROGRAM, "safe fix (lazy ping-pong, released)": safe,
            "both buffers at the first merge": eager, "safe fix without the release": kept,
            "swap (--unsafe-fixes)": swap}


def measure(source: str, chunks: int):
    namespace = load(MERGE + source)
    q = torch.randn(TOKENS, HEADS, DIM, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    live, counter = LiveBytes(), CountAllocations()
    with live, counter:
        result = namespace["run"](q, chunks)
    return live.peak, counter.calls, result


def main() -> int:
    out = ["# ALC001 safe fixes on the CPU: peak memory, allocator calls, guard cost",
           f"command: python bench/alc001_safety.py; date {time.strftime('%Y-%m-%d %H:%M %Z')}",
           f"torch {torch.__version__}, Python {platform.python_version()}, "
           f"{platform.processor() or platform.machine()}",
           f"alloc_lint: {alloc_lint.__file__}", "",
           f"## 1. peak live bytes over the call (MiB) and allocator calls; bf16 output [{TOKENS}, {HEADS}, {DIM}] "
           f"= {TOKENS * HEADS * DIM * 2 / 2**20:.2f} MiB, fp32 lse [{HEADS}, {TOKENS}]", ""]
    forms = variants()
    chunk_counts = (2, 3, 4, 8, 16)
    out.append(f"{'form':40}" + "".join(f"{f'{n} chunks':>18}" for n in chunk_counts))
    reference = {n: measure(PROGRAM, n) for n in chunk_counts}
    for name, text in forms.items():
        cells = []
        for n in chunk_counts:
            peak, calls, result = measure(text, n)
            assert all(torch.equal(a, b) for a, b in zip(result, reference[n][2])), (name, n)
            cells.append(f"{peak / 2**20:8.2f} MiB {calls:3d} al")
        out.append(f"{name:40}" + "".join(f"{c:>18}" for c in cells))
    out += ["", "Every form gives bitwise-equal results (checked above). 'al': allocator calls over the call.",
            "From the third chunk on, any reuse form holds its scratch buffer while the next chunk output is",
            "computed and the previous one is still bound: one buffer per accumulator above the original.", ""]

    out.append("## 2. guard cost per merge (median of 5 runs)")
    for shape in ((16, 128), (TOKENS, HEADS, DIM), (1024, 128, 128)):
        X = torch.empty(shape, dtype=torch.bfloat16)
        T = torch.empty_like(X)
        env = {"X": X, "T": T, "torch": torch}
        guard = "T is None or T.shape != X.shape or T.dtype != X.dtype or T.device != X.device " \
                "or T.stride() != X.stride() or X.is_quantized"

        def per_call(stmt, number):
            return sorted(timeit.repeat(stmt, globals=env, number=number, repeat=5))[2] / number * 1e6

        allocation = per_call("torch.empty_like(X)", 2000)
        out.append(f"shape {str(list(shape)):18} guard {per_call(guard, 100000):6.2f} us   `T is None` "
                   f"{per_call('T is None', 100000):6.3f} us   torch.empty_like {allocation:7.2f} us")
    text = "\n".join(out) + "\n"
    target = ROOT / "bench" / "out" / "alc001_safety.txt"
    target.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
