# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 449, "k": 4, "noqa_temps": [], "seed": 449, "shape": [3, 4], "shape_tags": ["group:attn", "loop:range", "chunk:p", "first:i0_continue", "template:acc"], "tags": ["c3"]}
# Class 3: unary plus returns the caller's tensor, which the swap overwrites.
# Found by the differential fuzzer (seed 449) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: args
import torch
from fuzzlib import merge_attn_states


def run(x, parts, lses, x_lse):
    for i in range(len(parts)):
        p = parts[i]
        lp = lses[i]
        o, l = p, lp
        acc, acc_lse = +o, +l
        tmp = torch.empty_like(acc)
        tmp_lse = torch.empty_like(acc_lse)
        merge_attn_states(output=tmp, output_lse=tmp_lse, prefix_output=acc, prefix_lse=acc_lse,
                          suffix_output=o, suffix_lse=l)
        acc, acc_lse = tmp, tmp_lse
