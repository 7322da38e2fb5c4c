# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 1743, "k": 4, "noqa_temps": [], "seed": 1743, "shape": [3, 4], "shape_tags": ["group:attn", "loop:for", "chunk:p", "first:pre", "template:acc", "groups:2"], "tags": ["c3", "c5", "c7", "views"]}
# Class 7: loop under inference_mode, first value made outside it: the result's kind changes.
# Found by the differential fuzzer (seed 1743) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch


def run(x, parts, lses, x_lse):
    vs = []
    output = torch.zeros_like(x, dtype=torch.bfloat16)
    output_lse = +x_lse
    acc2 = torch.zeros_like(x)
    with torch.inference_mode():
        for p, lp in zip(parts, lses):
            tmp2 = torch.empty_like(acc2)
            torch.mul(acc2, 0.5, out=tmp2)
            acc2 = tmp2
    return output, output_lse, acc2, vs
