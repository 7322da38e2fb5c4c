# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 828, "k": 4, "noqa_temps": [], "seed": 828, "shape": [3, 4], "shape_tags": ["group:attn", "loop:zip+nested", "chunk:p", "first:pre", "template:acc"], "tags": ["c3"]}
# Class 3: torch.zeros(..., out=x) returns the caller's x.
# Found by the differential fuzzer (seed 828) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: args
import torch
from fuzzlib import merge_attn_states


def run(x, parts, lses, x_lse):
    for batch in range(2):
        acc = torch.zeros(x.shape, out=x)
        acc_lse = x_lse.clone()
        for p, lp in zip(parts, lses):
            o, l = p, lp
            tmp = torch.empty_like(acc, dtype=acc.dtype)
            tmp_lse = torch.empty_like(acc_lse, dtype=acc_lse.dtype)
            merge_attn_states(output=tmp, output_lse=tmp_lse, prefix_output=acc, prefix_lse=acc_lse,
                              suffix_output=o, suffix_lse=l)
            acc = tmp
